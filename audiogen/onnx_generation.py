"""Generation under onnxruntime, with numpy and without torch: what ``generate`` runs when it can.

The same pipeline as :class:`audiogen.generation.Generator` — the prior's step (the mixture prior's
or the token prior's), the VAE decoder and the vocoder, streamed with the same chunks and overlaps —
on the graphs of :mod:`audiogen.onnx_export`. Why a second runtime: on the project's 2-core CPUs
importing torch alone takes 1.3-1.4 s, and onnxruntime runs a prior's one-step graphs several times
faster than PyTorch's many small ops; measured side by side in ``tools/bench.py --only generate``.

The same seed makes the same music as the PyTorch path. The random numbers are torch's own:
:class:`TorchRandom` replays the stream of a seeded ``torch.Generator`` (its Mersenne Twister, its
24-bit uniforms and its Box-Muller layout for ``randn``) in numpy. The mixture prior
(:class:`OnnxMixturePrior`) gets per frame the uniform and the normals that
:class:`audiogen.mixture_prior.SamplingNoise` gives it (:class:`TorchSamplingNoise`), the uniforms
bit for bit and the normals within a few float32 ulps (torch's vectorised log and cos); the token
prior (:class:`OnnxTokenPrior`) one uniform per code, bit for bit, which :func:`pick_code` turns into
the code :func:`audiogen.token_prior.pick_code` picks. What is left are the graphs' float differences
from PyTorch (≤ 1e-4, tests/test_onnx.py): the clips agree within the tolerances
tests/test_onnx_generation.py and tests/test_onnx_token_prior.py state, and they would part only where
a uniform falls within such a difference of a boundary between two components or codes.

Where the graphs come from (:func:`find_graphs`): a folder of ``audiogen export-onnx`` whose
manifest names the very model folders being run (their weights and config.yaml), written once
into the cache by ``audiogen export-onnx --cache`` (:func:`cache_dir`), the bundled models' too:
shipped beside them, the graphs would double the package's weights (33 MB more than its 40 MB).
The mixture prior (kind ``latent_prior``) and the token prior (kind ``token_prior``) have step
graphs; the flow prior, ``--like`` and GPUs stay with PyTorch.

Nothing here imports torch; onnxruntime is imported when a generator is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiogen.generation import (
    clip_samples,
    exact_length,
    latent_chunk_frames,
    latent_frames,
    take_frames,
    vocoder_chunk_frames,
)
from audiogen.mel_sharpening import MelSharpening, sharpen
from audiogen.overlap import CrossfadeChunker, decode_with_overlap, raised_cosine_fade_in
from audiogen.surprise_band import SurpriseBand, SurpriseController, code_surprise, default_temperature

MANIFEST_VERSION = 1  # of the manifest.json audiogen.onnx_export writes
DECODING_GRAPHS = ("vae_decoder", "vocoder")
MIXTURE_GRAPHS = ("prior_step",)  # the mixture prior's step (kind latent_prior)
CACHE_ENV = "AUDIOGEN_CACHE_DIR"


# --------------------------------------------------------------------------------------------
# Where the graphs are


def cache_dir() -> Path:
    """audiogen's cache folder: ``$AUDIOGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/audiogen``, else
    ``~/.cache/audiogen``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "audiogen"


def graphs_key(model_sha: str, vocoder_sha: str) -> str:
    """The name of a folder of graphs: the short hashes of the two model folders' weights
    (:func:`audiogen.clip_tags.model_hash`), so new weights never meet old graphs."""
    return f"{model_sha}-{vocoder_sha}"


def cached_graphs_dir(model_sha: str, vocoder_sha: str) -> Path:
    """Where ``audiogen export-onnx --cache`` writes the graphs of these weights."""
    return cache_dir() / "onnx" / graphs_key(model_sha, vocoder_sha)


@dataclass(frozen=True)
class SourceIdentity:
    """What graphs must have been exported from to stand for a model folder: its weights, its
    config.yaml (a folder whose config.yaml is broken or changed is not the one exported, and
    PyTorch, which reads it, says so), its surprise band and its mel sharpening (the manifest
    carries them)."""

    weights_sha: str  # audiogen.clip_tags.model_hash of the folder
    config_sha256: str
    band_sha256: str = "none"  # of surprise_band.json (audiogen.surprise_band), "none" without one
    sharpening_sha256: str = "none"  # of mel_sharpening.json (audiogen.mel_sharpening), "none" without one

    @classmethod
    def of(cls, folder: str | Path, weights_sha: str | None = None) -> SourceIdentity:
        """The identity of a model folder (``weights_sha``: its model_hash, when the caller has it)."""
        from audiogen.clip_tags import model_hash
        from audiogen.mel_sharpening import SHARPENING_FILE
        from audiogen.surprise_band import BAND_FILE

        folder = Path(folder)
        return cls(weights_sha or model_hash(folder), _file_sha256(folder / "config.yaml"),
                   _file_sha256(folder / BAND_FILE), _file_sha256(folder / SHARPENING_FILE))

    def is_source(self, source: dict[str, Any]) -> bool:
        """Whether a manifest's ``sources`` entry names this folder."""
        return (source.get("weights_sha") == self.weights_sha and source.get("config_sha256") == self.config_sha256
                and source.get("band_sha256", "none") == self.band_sha256
                and source.get("sharpening_sha256", "none") == self.sharpening_sha256)


def _file_sha256(path: Path) -> str:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "none"


def token_graphs(codes_per_token: int) -> tuple[str, ...]:
    """The token prior's graphs: its trunk step, then its depth head's step after each slot but the last."""
    return ("token_step", *(f"token_depth_{j}" for j in range(codes_per_token - 1)))


def is_generation_graph(name: str) -> bool:
    """Whether ``generate`` runs a graph of this name (the VAE encoder it does not)."""
    return name in DECODING_GRAPHS + MIXTURE_GRAPHS + ("token_step",) or name.startswith("token_depth_")


def generation_graphs(manifest: dict[str, Any]) -> tuple[str, ...] | None:
    """The graphs of a manifest that ``generate`` runs: the decoding ones and a prior's whole step
    (:data:`MIXTURE_GRAPHS` or :func:`token_graphs`), else None."""
    graphs = manifest.get("graphs", {})
    if MIXTURE_GRAPHS[0] in graphs:
        prior = MIXTURE_GRAPHS
    elif isinstance(graphs.get("token_step", {}).get("codes_per_token"), int):
        prior = token_graphs(graphs["token_step"]["codes_per_token"])
    else:
        return None
    return DECODING_GRAPHS + prior if set(DECODING_GRAPHS + prior) <= set(graphs) else None


def find_graphs(model: SourceIdentity, vocoder: SourceIdentity) -> Path | None:
    """The cache folder of generation graphs exported from exactly these model folders, else None.

    It counts when its manifest's ``sources`` name both and it holds every graph of
    :func:`generation_graphs`; stale graphs (the weights or configs changed since the export) are
    passed over.
    """
    folder = cached_graphs_dir(model.weights_sha, vocoder.weights_sha)
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    sources, names = manifest.get("sources", {}), generation_graphs(manifest)
    if (model.is_source(sources.get("model", {})) and vocoder.is_source(sources.get("vocoder", {}))
            and names is not None and all((folder / f"{name}.onnx").is_file() for name in names)):
        return folder
    return None


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """A graphs folder's manifest, or None when it has none that this version reads."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(manifest, dict) and manifest.get("format_version") == MANIFEST_VERSION
    return manifest if ok else None


def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported (the ``onnx`` extra), without importing it."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


# --------------------------------------------------------------------------------------------
# torch's random numbers, in numpy

MT_MASK = 0xFFFFFFFF


def torch_generator_state(seed: int) -> dict[str, Any]:
    """numpy's MT19937 state equal to ``torch.Generator().manual_seed(seed)``'s.

    torch seeds its Mersenne Twister with the reference ``init_genrand`` recurrence on the seed's
    low 32 bits and draws its first number after a full twist, which is numpy's state with the
    position at the end of the key.
    """
    key = np.empty(624, dtype=np.uint32)
    value = seed & MT_MASK
    for i in range(624):
        key[i] = value
        value = (1812433253 * (value ^ (value >> 30)) + i + 1) & MT_MASK
    return {"bit_generator": "MT19937", "state": {"key": key, "pos": 624}}


class TorchRandom:
    """The float32 numbers a seeded ``torch.Generator`` gives ``torch.rand`` and ``torch.randn`` on the CPU."""

    def __init__(self, seed: int):
        self.bits = np.random.MT19937()
        self.bits.state = torch_generator_state(seed)

    def rand(self, n: int) -> np.ndarray:
        """``torch.rand(n)``: the low 24 bits of each 32-bit draw, times 2^-24 (exactly torch's)."""
        raw = self.bits.random_raw(n).astype(np.uint32)
        return (raw & 0xFFFFFF).astype(np.float32) * np.float32(2.0**-24)

    def randn(self, n: int) -> np.ndarray:
        """``torch.randn(n)`` for ``n`` a multiple of 16 (torch's ``normal_fill``).

        torch fills the tensor with uniforms, then turns each block of 16 into normals by
        Box-Muller: u1 = 1 - x[0:8], u2 = x[8:16], r = sqrt(-2 log u1), and the block becomes
        r·cos(2π u2) then r·sin(2π u2). In float32, as torch computes it.
        """
        if n % 16:
            raise ValueError(f"randn of {n} numbers: only multiples of 16 follow torch's block layout")
        u = self.rand(n).reshape(-1, 2, 8)
        radius = np.sqrt(np.float32(-2.0) * np.log(np.float32(1.0) - u[:, 0]))
        theta = np.float32(2.0 * math.pi) * u[:, 1]
        return np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1).reshape(-1)


class TorchSamplingNoise:
    """numpy twin of :class:`audiogen.mixture_prior.SamplingNoise`: per frame one uniform and ``dim``
    normals, drawn in blocks of 64 frames (a uniform block, then a normal block) from ``seed``."""

    BLOCK = 64

    def __init__(self, dim: int, seed: int):
        self.dim, self.random = dim, TorchRandom(seed)
        self.index = self.BLOCK
        self.uniform = self.normal = None

    def next(self) -> tuple[np.float32, np.ndarray]:
        """(u in [0, 1), eps (dim,))."""
        if self.index == self.BLOCK:
            self.uniform = self.random.rand(self.BLOCK)
            self.normal = self.random.randn(self.BLOCK * self.dim).reshape(self.BLOCK, self.dim)
            self.index = 0
        i = self.index
        self.index += 1
        return self.uniform[i], self.normal[i]


# --------------------------------------------------------------------------------------------
# The three stages


@dataclass(frozen=True)
class MixtureHead:
    """How to read the prior step's ``params`` (the manifest's prior_step facts)."""

    num_mixtures: int
    latent_dim: int
    min_log_scale: float


def draw_frame(params: np.ndarray, head: MixtureHead, temperature: float, u: np.float32, eps: np.ndarray) -> np.ndarray:
    """One frame (D,) from the step's params (K(1 + 2D),): :meth:`LatentPrior.draw` in float32 numpy.

    The component is the first whose cumulative probability (of ``softmax(logits / temperature)``)
    reaches ``u``; temperature 0 takes the likeliest component's mean.
    """
    k, d = head.num_mixtures, head.latent_dim
    logits = params[:k]
    if temperature <= 0:
        c = int(np.argmax(logits))
        return params[k + c * d: k + (c + 1) * d].copy()
    scaled = logits / np.float32(temperature)
    weights = np.exp(scaled - scaled.max())
    probs = weights / weights.sum()
    c = min(int(np.count_nonzero(np.cumsum(probs) < u)), k - 1)
    mean = params[k + c * d: k + (c + 1) * d]
    log_scale = np.maximum(params[k + (k + c) * d: k + (k + c + 1) * d], np.float32(head.min_log_scale))
    return mean + np.exp(log_scale) * (np.float32(math.sqrt(temperature)) * eps)


class OnnxMixturePrior:
    """The mixture prior stepped by its graph: :meth:`LatentPrior.sample_stream` without torch."""

    def __init__(self, session: Any, head: MixtureHead, state_shape: tuple[int, int]):
        self.session, self.head, self.state_shape = session, head, state_shape

    def sample_stream(self, chunk_frames: int, temperature: float, seed: int) -> Iterator[np.ndarray]:
        """Latent chunks (1, D, chunk_frames) forever, from the start of a piece."""
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        d = self.head.latent_dim
        state = np.zeros((1, *self.state_shape), dtype=np.float32)
        frame = np.zeros((1, d), dtype=np.float32)  # a zero frame into a zero state: the first frame's distribution
        params, state = self.session.run(None, {"frame": frame, "state": state})
        noise = TorchSamplingNoise(d, seed)
        while True:
            chunk = np.empty((1, d, chunk_frames), dtype=np.float32)
            for i in range(chunk_frames):
                frame = draw_frame(params[0], self.head, temperature, *noise.next())
                chunk[0, :, i] = frame
                params, state = self.session.run(None, {"frame": frame[None], "state": state})
            yield chunk


def pick_code(logits: np.ndarray, uniform: float, temperature: float, top_k: int) -> int:
    """:func:`audiogen.token_prior.pick_code` in numpy: the code a uniform in [0, 1) picks from logits
    (K,) by inverting the CDF of the softmax at ``temperature`` (in float64, as torch does), among the
    ``top_k`` likeliest codes when top_k > 0; temperature 0 takes the likeliest code."""
    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    if 0 < top_k < scaled.size:
        floor = np.partition(scaled, scaled.size - top_k)[scaled.size - top_k]  # the top_k-th largest
        scaled = np.where(scaled < floor, -np.inf, scaled)
    weights = np.exp(scaled - scaled.max())
    cumulative = np.cumsum(weights / weights.sum())
    return min(int(np.searchsorted(cumulative, uniform * cumulative[-1], side="right")), scaled.size - 1)


def rotary(position: int, head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (1, head_dim / 2) of :func:`audiogen.transformer.rotary` at one position: the angles
    in float64 (positions grow without bound), rounded to float32."""
    inv_freq = 10000.0 ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.float64(position) * inv_freq[None]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


@dataclass(frozen=True)
class TokenFacts:
    """The token prior's sizes (the manifest's token_step facts)."""

    latent_dim: int
    frames_per_token: int
    codes_per_token: int
    top_k: int
    context_tokens: int
    blocks: int
    heads: int
    head_dim: int
    cache_slots: int

    @classmethod
    def of(cls, step: dict[str, Any]) -> TokenFacts:
        return cls(**{field.name: int(step[field.name]) for field in dataclasses.fields(cls)})


class OnnxTokenPrior:
    """The token prior stepped by its graphs: :meth:`TokenPrior.sample_stream` without torch.

    Per token: ``token_step`` (the trunk: the token just drawn in, the next one's summary and slot-0
    logits out, with the drawn token's frames), then for each slot a code picked by :func:`pick_code`
    from one uniform of the replayed generator, with ``token_depth_<j>`` between slots. Each block's
    key/value cache is a ring of the last ``context_tokens - 1`` positions (see
    :class:`audiogen.onnx_export.TokenTrunkStep`): memory stays bounded however long the piece.
    """

    def __init__(self, trunk: Any, depth: list[Any], facts: TokenFacts):
        self.trunk, self.depth, self.facts = trunk, depth, facts

    def sampler(self, temperature: float, seed: int, band: SurpriseBand | None = None) -> OnnxTokenSampler:
        """A sampler from the start of a piece that can go back to a checkpoint (:mod:`audiogen.wash_guard`);
        with a ``band``, its temperature follows its surprise (:mod:`audiogen.surprise_band`)."""
        return OnnxTokenSampler(self, temperature, TorchRandom(seed), band)

    def sample_stream(self, chunk_frames: int, temperature: float, seed: int,
                      band: SurpriseBand | None = None) -> Iterator[np.ndarray]:
        """Latent chunks (1, D, chunk_frames) forever, from the start of a piece."""
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        sampler = self.sampler(temperature, seed, band)
        pending = [np.zeros((1, self.facts.latent_dim, 0), dtype=np.float32)]
        while True:
            have = sum(piece.shape[-1] for piece in pending)
            while have < chunk_frames:
                pending.append(sampler.draw(1))
                have += pending[-1].shape[-1]
            latents = np.concatenate(pending, axis=-1)
            yield latents[..., :chunk_frames]
            pending = [latents[..., chunk_frames:]]

    def _empty_caches(self) -> dict[str, np.ndarray]:
        f = self.facts
        caches = {}
        for i in range(f.blocks):
            caches[f"keys_{i}"] = np.zeros((1, f.heads, f.head_dim, f.cache_slots), dtype=np.float32)
            caches[f"values_{i}"] = np.zeros((1, f.heads, f.cache_slots, f.head_dim), dtype=np.float32)
        return caches

    def _step(self, feed: dict[str, np.ndarray], position: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The trunk at ``position`` on ``feed``'s codes and caches (position 0: the start embedding);
        its keys and values go into the rings. Returns the summary (1, W), slot 0's logits (1, K) and
        the frames of the codes (1, D, f)."""
        f = self.facts
        feed["cos"], feed["sin"] = rotary(position, f.head_dim)
        feed["first"] = np.array([position == 0])
        feed["valid"] = np.array(min(position, f.context_tokens - 1), dtype=np.int64)
        summary, logits, frames, new_keys, new_values = self.trunk.run(None, feed)
        slot = position % f.cache_slots
        for i in range(f.blocks):
            feed[f"keys_{i}"][..., slot] = new_keys[i]
            feed[f"values_{i}"][:, :, slot] = new_values[i]
        return summary, logits, frames


@dataclass
class _TokenState:
    """Where an :class:`OnnxTokenSampler` is: the trunk's feed (codes and key/value rings), the
    next position, and the summary and slot-0 logits of the token to draw next."""

    feed: dict[str, np.ndarray]
    position: int
    summary: np.ndarray
    logits: np.ndarray

    def copy(self) -> _TokenState:
        return _TokenState({name: array.copy() for name, array in self.feed.items()}, self.position,
                           self.summary, self.logits)


class OnnxTokenSampler:
    """:class:`audiogen.transformer.TrunkSampler` on the graphs: :meth:`draw` tokens, go back to a
    :meth:`checkpoint` (the rings are written in place, so a checkpoint copies them: 0.4 MB). With a
    ``band``, a :class:`audiogen.surprise_band.SurpriseController` sets each token's temperature, as
    on PyTorch."""

    def __init__(self, prior: OnnxTokenPrior, temperature: float, random: TorchRandom,
                 band: SurpriseBand | None = None):
        self.prior, self.temperature, self.random = prior, temperature, random
        self.controller = SurpriseController(band, temperature) if band is not None else None
        feed = {"codes": np.zeros((1, prior.facts.codes_per_token), dtype=np.int64), **prior._empty_caches()}
        summary, logits, _ = prior._step(feed, 0)  # TokenPrior.begin(None)
        self.state = _TokenState(feed, 1, summary, logits)

    def draw(self, tokens: int) -> np.ndarray:
        """The latent frames (1, D, tokens · frames_per_token) of the next ``tokens`` tokens."""
        prior, state, frames = self.prior, self.state, []
        codes = state.feed["codes"]
        for _ in range(tokens):
            summary, logits, surprise = state.summary, state.logits, 0.0
            temperature = self.temperature if self.controller is None else self.controller.temperature
            for slot in range(prior.facts.codes_per_token):
                code = pick_code(logits[0], float(self.random.rand(1)[0]), temperature, prior.facts.top_k)
                codes[0, slot] = code
                if self.controller is not None:
                    surprise += code_surprise(logits[0], code)
                if slot < len(prior.depth):
                    summary, logits = prior.depth[slot].run(None, {"h": summary, "code": codes[:, slot]})
            if self.controller is not None:
                self.controller.observe(surprise)
            state.summary, state.logits, token_frames = prior._step(state.feed, state.position)
            state.position += 1
            frames.append(token_frames)
        return np.concatenate(frames, axis=-1)

    def checkpoint(self) -> tuple[_TokenState, SurpriseController | None]:
        return self.state.copy(), None if self.controller is None else self.controller.copy()

    def restore(self, checkpoint: tuple[_TokenState, SurpriseController | None]) -> None:
        state, controller = checkpoint
        self.state = state.copy()
        self.controller = None if controller is None else controller.copy()


def concat_time(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces, axis=-1)


def chunked_vocoder(vocode: Any, chunk_frames: int, overlap_frames: int, hop: int) -> CrossfadeChunker:
    """The chunks and crossfades of :func:`audiogen.vocoder.vocode_stream` around ``vocode``
    (mel (1, n_mels, f) → audio (1, f · hop), numpy), so both runtimes lay a clip out alike."""
    fade_in = raised_cosine_fade_in(2 * (overlap_frames // 2) * hop)
    return CrossfadeChunker(vocode, chunk_frames, overlap_frames, hop, concat_time, fade_in)


# --------------------------------------------------------------------------------------------
# The generator


def ort_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads that do not spin between runs
    (spinning threads steal the cores the other stages and other jobs need)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass
class OnnxGenerator:
    """Seeds to piano audio on onnxruntime: the generating part of :class:`audiogen.generation.Generator`."""

    prior: OnnxMixturePrior | OnnxTokenPrior
    decoder: Any  # onnxruntime session of vae_decoder.onnx
    vocoder: Any  # onnxruntime session of vocoder.onnx
    sample_rate: int
    hop_length: int
    time_ratio: int
    decoder_context: int
    vocoder_chunk: int
    vocoder_overlap: int
    graphs: Path
    pipelined: bool = False  # the prior and the VAE decoder on threads of their own (see audio())
    wash_guard: bool = False  # draw again what washes (audiogen.wash_guard; token priors only)
    surprise_band: SurpriseBand | None = None  # the token prior's temperature follows its surprise
    mel_sharpening: MelSharpening | None = None  # of the decoded log-mel (audiogen.mel_sharpening)
    log_silence: float = math.log(1e-5)  # the frontend's log-mel of digital silence: sharpening's floor
    runtime = "onnxruntime"

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def default_temperature(self) -> float:
        """The temperature when none is asked for: the surprise band's while it is on, else 1.0."""
        return default_temperature(self.surprise_band)

    def latent_frames(self, samples: int) -> int:
        return latent_frames(samples, self.hop_length, self.time_ratio)

    def latents(self, samples: int | None, seed: int, temperature: float | None = None,
                chunk_seconds: float = 8.0) -> Iterator[np.ndarray]:
        """The latent chunks (1, D, l) of a clip of ``samples`` samples (None: endless), as the prior
        draws them (``temperature`` None: :attr:`default_temperature`)."""
        temperature = default_temperature(self.surprise_band) if temperature is None else temperature
        frames = None if samples is None else self.latent_frames(samples)
        band = {"band": self.surprise_band} if isinstance(self.prior, OnnxTokenPrior) else {}
        if self.wash_guard and isinstance(self.prior, OnnxTokenPrior):
            from audiogen.wash_guard import guarded_latents

            sampled = guarded_latents(
                self.prior.sampler(temperature, seed, **band), self._render_now,
                latent_rate=self.frame_rate / self.time_ratio, frames_per_token=self.prior.facts.frames_per_token,
                samples_per_frame=self.time_ratio * self.hop_length, sample_rate=self.sample_rate,
                concat=concat_time, frames=frames)
        else:
            chunk = latent_chunk_frames(frames, self.frame_rate / self.time_ratio, chunk_seconds)
            sampled = self.prior.sample_stream(chunk, temperature, seed, **band)
        return sampled if frames is None else take_frames(sampled, frames)

    def _render_now(self, latents: np.ndarray) -> np.ndarray:
        """The audio (n,) of latents (1, D, l), on this thread (the wash guard's judge)."""
        return np.concatenate(list(self._vocoded(self.mels([latents]), None)))

    def mels(self, latents: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The log-mel pieces (n_mels, f) the VAE decodes from a stream of latent chunks."""

        def decode(z: np.ndarray) -> np.ndarray:
            return self.decoder.run(None, {"latents": z})[0][0]

        return decode_with_overlap(decode, latents, self.decoder_context, self.time_ratio, concat_time)

    def audio(self, latents: Iterable[np.ndarray], vocoder_chunk_frames: int | None = None) -> Iterator[np.ndarray]:
        """Float32 audio pieces (n,) as the latents (the prior's) arrive, their log-mel sharpened
        by :attr:`mel_sharpening` (the wash guard judges them unsharpened, as the torch runtime does).

        With :attr:`pipelined`, the prior and the VAE decoder each run on a thread of their own
        (:func:`audiogen.pipeline.threaded`; onnxruntime lets go of the GIL while a graph runs), so
        the prior draws the next chunk while this thread vocodes the last one. Each stage sees the
        same items in the same order, so the audio does not depend on it.
        """
        from audiogen.pipeline import threaded

        if self.pipelined:
            latents = threaded(latents, depth=2, name="prior", inference_mode=False)
        mels = self.mels(latents)
        if self.mel_sharpening is not None:
            mels = (sharpen(mel, self.mel_sharpening, self.log_silence) for mel in mels)
        if self.pipelined:
            mels = threaded(mels, depth=2, name="vae-decoder", inference_mode=False)
        return self._vocoded(mels, vocoder_chunk_frames)

    def _vocoded(self, mels: Iterable[np.ndarray], vocoder_chunk_frames: int | None) -> Iterator[np.ndarray]:
        def vocode(mel: np.ndarray) -> np.ndarray:
            return self.vocoder.run(None, {"mel": mel})[0][:, 0]  # (1, frames · hop)

        runner = chunked_vocoder(vocode, vocoder_chunk_frames or self.vocoder_chunk, self.vocoder_overlap,
                                 self.hop_length)
        for mel in mels:
            for audio in runner.push(mel[None]):
                yield audio[0]
        for audio in runner.finish():
            yield audio[0]

    def stream(self, seconds: float, seed: int, temperature: float | None = None,
               chunk_seconds: float = 8.0, vocoder_chunk_seconds: float | None = None) -> Iterator[np.ndarray]:
        """Float32 audio chunks adding up to exactly ``seconds`` × sample rate samples (see
        :meth:`audiogen.generation.Generator.stream`; ``math.inf``: endless)."""
        total = clip_samples(seconds, self.sample_rate)
        frames = vocoder_chunk_frames(vocoder_chunk_seconds, self.frame_rate, self.vocoder_overlap)
        return exact_length(self.audio(self.latents(total, seed, temperature, chunk_seconds), frames), total)

    def generate(self, seconds: float, seed: int, temperature: float | None = None) -> np.ndarray:
        """A whole clip in memory (float32, not normalised)."""
        parts = list(self.stream(seconds, seed, temperature))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def onnx_prior(graphs: Path, facts: dict[str, Any]) -> OnnxMixturePrior | OnnxTokenPrior:
    """The prior of a folder of generation graphs, its sessions on one thread each (its matrices are
    too small to split)."""
    if "prior_step" in facts:
        step = facts["prior_step"]
        head = MixtureHead(step["num_mixtures"], step["latent_dim"], step["min_log_scale"])
        return OnnxMixturePrior(ort_session(graphs / step["file"], 1), head, tuple(step["inputs"][1]["shape"][1:]))
    trunk = facts["token_step"]
    depth = [ort_session(graphs / facts[name]["file"], 1) for name in token_graphs(trunk["codes_per_token"])[1:]]
    return OnnxTokenPrior(ort_session(graphs / trunk["file"], 1), depth, TokenFacts.of(trunk))


def load_onnx_generator(graphs: str | Path, threads: int = 1) -> OnnxGenerator:
    """Sessions on a folder of generation graphs; the VAE decoder and the vocoder get ``threads``
    intra-op threads, the prior's step one (its matrices are too small to split).

    Raises:
        ValueError: the folder holds no manifest this version reads, or lacks a generation graph.
    """
    graphs = Path(graphs)
    manifest = read_manifest(graphs)
    if manifest is None:
        raise ValueError(f"{graphs}: no manifest.json of audiogen export-onnx (format {MANIFEST_VERSION})")
    if generation_graphs(manifest) is None:
        raise ValueError(f"{graphs}: no complete set of generation graphs ({manifest.get('not_exported', {})})")
    facts = manifest["graphs"]
    decoder, vocoder = facts["vae_decoder"], facts["vocoder"]
    frontend = manifest["frontend"]
    band, sharpening = manifest.get("surprise_band"), manifest.get("mel_sharpening")
    where = str(graphs / "manifest.json")
    return OnnxGenerator(
        prior=onnx_prior(graphs, facts),
        decoder=ort_session(graphs / decoder["file"], threads),
        vocoder=ort_session(graphs / vocoder["file"], threads),
        sample_rate=frontend["sample_rate"], hop_length=frontend["hop_length"],
        time_ratio=decoder["time_ratio"], decoder_context=decoder["context_latent_frames"],
        vocoder_chunk=vocoder["chunk_frames"], vocoder_overlap=vocoder["overlap_frames"], graphs=graphs,
        surprise_band=SurpriseBand.from_dict(band, where) if band else None,
        mel_sharpening=MelSharpening.from_dict(sharpening, where) if sharpening else None,
        log_silence=math.log(frontend["log_floor"]),
    )  # fmt: skip

