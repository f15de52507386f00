"""Long-form generation: latent prior → VAE decoder → vocoder, streamed in bounded memory.

The pipeline is a chain of generators. The prior yields latent chunks, each conditioned on
the latents before it; the VAE decodes them with overlap; the vocoder turns mel chunks into
audio with overlap. Nothing holds the whole clip, so 10 minutes cost the memory of a few
seconds, and the pieces join without seams because every stage carries context across chunk
boundaries. Writing to a file takes two streaming passes (float32 scratch file, then the
peak-normalised 16-bit output), so the level is set on the whole clip, not per chunk. The
scratch file has no name (an unlinked file in the system temp folder, ``$TMPDIR`` or /tmp), so
no exit, not even a SIGKILL, leaves it behind; the output appears whole or not at all.

Importing this module does not import torch (a second of the 1.5 s a cold 30-s clip may take):
the writers, the defaults and the chunk arithmetic here serve the onnxruntime path too
(:mod:`audiogen.onnx_generation`), and torch is imported by the functions that load or run networks.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

if TYPE_CHECKING:
    import torch

    from audiogen.frontend import FrontendConfig, MelFrontend
    from audiogen.mel_sharpening import MelSharpening
    from audiogen.surprise_band import SurpriseBand

# Output level of a generated clip: -1 dBFS peak leaves headroom for 16-bit rounding and
# for players that add inter-sample overs.
TARGET_PEAK = 10 ** (-1 / 20)

# Sampling temperature of a latent prior by default: the one it was trained at (a model whose
# surprise band is on samples at the band's own instead: audiogen.surprise_band). On the mixture
# prior bundled until 2026-12-01, FAD (mel embedding, 149 clips of 10 s against the demo test
# split) was 132 at 0.9, 37.6 at 1.0 and 57.2 at 1.1: colder samples freeze on sustained chords,
# hotter ones wash out; on the token prior, 0.9 gave 238 against 68.2 at 1.0 (docs/priors.md).
DEFAULT_TEMPERATURE = 1.0


def pretrained_dir(name: str) -> Path:
    """Folder of a model bundled with the package (``spec`` or ``vocoder``)."""
    return Path(str(resources.files("audiogen") / "pretrained" / name))


def frontend_of_model_config(config: dict[str, Any], where: str) -> FrontendConfig:
    """The frontend an exported model folder's ``config.yaml`` was trained with."""
    from audiogen.config import from_dict
    from audiogen.frontend import FrontendConfig

    return from_dict(FrontendConfig, config.get("frontend") or {}, f"{where}: frontend")


def load_vocoder(model_dir: str | Path, frontend: FrontendConfig | None = None, device: str | torch.device = "cpu"):
    """Load an exported vocoder for inference (weight norm folded away, eval mode).

    Raises:
        CheckpointError: missing or incomplete folder, a config.yaml that describes another
            network than the weights hold.
        FrontendMismatchError: the vocoder was trained for another frontend than ``frontend``.
    """
    from audiogen.checkpoint import read_model_dir
    from audiogen.frontend import check_same_frontend
    from audiogen.vocoder import build_vocoder, vocoder_config_from_dict

    config, states = read_model_dir(model_dir, ["vocoder"])
    where = str(Path(model_dir) / "config.yaml")
    found = frontend_of_model_config(config, where)
    if frontend is not None:
        check_same_frontend(frontend, found, f"vocoder {model_dir}")
    model = _model_section(config, "model", where)
    vocoder = _build(where, lambda: build_vocoder(vocoder_config_from_dict(model), found))
    load_weights(vocoder, states["vocoder"], Path(model_dir) / "vocoder.safetensors")
    vocoder.remove_weight_norm()
    return vocoder.eval().to(device)


def load_vae(model_dir: str | Path, frontend: FrontendConfig | None = None, device: str | torch.device = "cpu"):
    """Load the spectrogram VAE of an exported ``vae`` or ``prior`` model folder."""
    from audiogen.checkpoint import read_model_dir
    from audiogen.config import from_dict
    from audiogen.frontend import check_same_frontend
    from audiogen.spec import SpecVAE, SpecVAEConfig

    config, states = read_model_dir(model_dir, ["vae"])
    where = str(Path(model_dir) / "config.yaml")
    found = frontend_of_model_config(config, where)
    if frontend is not None:
        check_same_frontend(frontend, found, f"model {model_dir}")
    # a prior's export carries its VAE's settings as vae_model
    section = "vae_model" if isinstance(config.get("vae_model"), dict) else "model"
    vae_config = from_dict(SpecVAEConfig, _model_section(config, section, where), f"{where}: {section}")
    vae = _build(where, lambda: SpecVAE.from_config(vae_config, found))
    load_weights(vae, states["vae"], Path(model_dir) / "vae.safetensors")
    return vae.eval().to(device), vae_config


def load_prior(model_dir: str | Path, latent_dim: int, device: str | torch.device = "cpu"):
    """Load the latent prior (any family of :mod:`audiogen.priors`) of an exported ``prior`` model folder."""
    from audiogen.checkpoint import read_model_dir
    from audiogen.priors import build_prior

    config, states = read_model_dir(model_dir, ["prior"])
    where = str(Path(model_dir) / "config.yaml")
    model = _model_section(config, "model", where)
    prior = _build(where, lambda: build_prior(model, latent_dim, f"{where}: model"))
    load_weights(prior, states["prior"], Path(model_dir) / "prior.safetensors")
    return prior.eval().to(device)


def _model_section(config: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    from audiogen.checkpoint import CheckpointError

    if key not in config:
        raise CheckpointError(f"{where}: no {key} section (an exported config.yaml describes its network there)")
    section = config[key]
    if not isinstance(section, dict):
        raise CheckpointError(f"{where}: {key} must be a mapping that describes the network, got {section!r}")
    return section


def _build(where: str, make: Any) -> Any:
    """Build a network from a config.yaml's settings, naming the file when they make none."""
    from audiogen.checkpoint import CheckpointError
    from audiogen.config import ConfigError

    try:
        return make()
    except ConfigError:
        raise
    except (ValueError, TypeError, RuntimeError) as err:  # e.g. a negative size from torch
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{where}: its model settings build no network ({reason})") from None


def load_weights(network: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load a weights file into the network its folder's config.yaml describes.

    Raises:
        CheckpointError: naming ``path``: the weights of another network (keys missing or
            unexpected), tensors of other shapes than config.yaml makes, or NaN/Inf weights.
    """
    import torch

    from audiogen.checkpoint import CheckpointError

    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    config_path = path.with_name("config.yaml")
    if missing or unexpected:
        parts = [f"{len(keys)} {what} such as {keys[0]!r}" for keys, what in
                 ((missing, "missing"), (unexpected, "unexpected")) if keys]
        raise CheckpointError(f"{path}: not the weights of the network {config_path} describes "
                              f"({', '.join(parts)}); another model's weights?")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, but {config_path} makes it "
                f"{tuple(expected[key].shape)}: the weights and config.yaml are of different models")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: {key} holds NaN or Inf values")
    network.load_state_dict(state)


@dataclass
class Generator:
    """The three networks that turn seeds into piano audio."""

    frontend: MelFrontend
    vae: Any
    prior: Any
    vocoder: Any
    device: torch.device
    vae_sha256: str = ""  # names the VAE whose latents these are (audiogen encode/decode check it)
    pipelined: bool = False  # run the prior, VAE decoder and vocoder on threads of their own (see audio())
    wash_guard: bool = False  # draw again what washes (audiogen.wash_guard; transformer priors only)
    # the token prior's temperature follows its surprise (audiogen.surprise_band; None: fixed)
    surprise_band: SurpriseBand | None = None
    # the log-mel of what the prior drew is sharpened before the vocoder (audiogen.mel_sharpening; None: not)
    mel_sharpening: MelSharpening | None = None
    runtime = "torch"  # what runs the networks (audiogen.onnx_generation.OnnxGenerator: "onnxruntime")

    @property
    def sample_rate(self) -> int:
        return self.frontend.config.sample_rate

    @property
    def default_temperature(self) -> float:
        """The temperature when none is asked for: the surprise band's while it is on, else 1.0."""
        from audiogen.surprise_band import default_temperature

        return default_temperature(self.surprise_band)

    @property
    def hop_length(self) -> int:
        return self.frontend.config.hop_length

    def latents(
        self,
        samples: int | None,
        seed: int,
        temperature: float | None = None,
        prefix: torch.Tensor | None = None,
        chunk_seconds: float = 8.0,
    ) -> Iterator[torch.Tensor]:
        """The latent chunks (1, D, l) of a clip of ``samples`` audio samples, as the prior draws them.

        Args:
            samples: the clip's length; None: an endless stream.
            temperature: the prior's; None: :attr:`default_temperature`.
            prefix: optional latent frames (1, D, L) the clip starts with (``--like``: a
                variation of an encoded clip); the prior continues from them.
        """
        import torch

        temperature = self.default_temperature if temperature is None else temperature
        frames = None if samples is None else self.latent_frames(samples)
        chunk = latent_chunk_frames(frames, self.frontend.config.frame_rate / self.vae.time_ratio, chunk_seconds)
        generator = torch.Generator().manual_seed(seed)
        band = {"band": self.surprise_band} if hasattr(self.prior, "sampler") else {}
        if self.wash_guard and hasattr(self.prior, "sampler"):
            from audiogen.wash_guard import guarded_latents

            after_prefix = None if frames is None else max(1, frames - (0 if prefix is None else prefix.shape[-1]))
            sampled = guarded_latents(
                self.prior.sampler(temperature, generator, context=prefix, **band), self._render_now,
                latent_rate=self.frontend.config.frame_rate / self.vae.time_ratio,
                frames_per_token=self.prior.frames_per_token, samples_per_frame=self.vae.time_ratio * self.hop_length,
                sample_rate=self.sample_rate, concat=lambda parts: torch.cat(parts, dim=-1), frames=after_prefix)
        else:
            sampled = self.prior.sample_stream(chunk, temperature, generator, context=prefix, **band)
        if prefix is not None:
            sampled = itertools.chain(torch.split(prefix, chunk, dim=-1), sampled)
        return sampled if frames is None else take_frames(sampled, frames)

    def latent_frames(self, samples: int) -> int:
        """Latent frames a clip of ``samples`` audio samples is decoded from (what :meth:`latents` yields)."""
        return latent_frames(samples, self.hop_length, self.vae.time_ratio)

    def like_seconds(self, samples: int) -> float:
        """How much of a ``--like`` clip a clip of ``samples`` samples uses, in seconds.

        The clip starts with (a variation of) the other clip's first latent frames; those
        depend on the audio under them plus the encoder's reach and one STFT window, and a
        little more for the resampler's filter. Reading only this much of a long file gives
        the same latents as reading all of it (up to float rounding at the far edge of the
        margin, which the clip does not use).
        """
        from audiogen.latents import encoder_reach

        cfg = self.frontend.config
        mel_frames = (self.latent_frames(samples) + 1) * self.vae.time_ratio + encoder_reach(self.vae)
        return (mel_frames * cfg.hop_length + cfg.n_fft) / cfg.sample_rate + 0.5

    def mels(self, latents: Iterable[torch.Tensor], drawn: bool = False) -> Iterator[torch.Tensor]:
        """The log-mel pieces (n_mels, f) the VAE decodes from a stream of latent chunks; with
        ``drawn`` (latents the prior drew), sharpened by :attr:`mel_sharpening`."""
        from audiogen.latents import decode_stream
        from audiogen.mel_sharpening import sharpen_torch

        mels = decode_stream(self.vae, (z.to(self.device) for z in latents))
        if not drawn or self.mel_sharpening is None:
            return mels
        floor = self.frontend.config.log_silence
        return (sharpen_torch(mel, self.mel_sharpening, floor) for mel in mels)

    def audio(self, latents: Iterable[torch.Tensor], vocoder_chunk_frames: int | None = None,
              drawn: bool = False) -> Iterator[np.ndarray]:
        """Float32 audio pieces (n,) as the latents arrive: the VAE decoder, then the vocoder
        (``drawn``: as in :meth:`mels`).

        With :attr:`pipelined`, the prior, the VAE decoder and the vocoder each run on a thread of
        their own (:func:`audiogen.pipeline.threaded`), one intra-op thread each, so a 2-core
        machine works on the next chunk's latents while it vocodes this one. Each stage sees
        the same items in the same order at one thread, so the audio is what ``--threads 1`` makes.
        (The calling thread, which vocodes, stays at one torch thread until this generator ends.)
        """
        import torch

        from audiogen.pipeline import threaded
        from audiogen.vocoder import DEFAULT_CHUNK_FRAMES, vocode_stream

        if self.pipelined:
            latents = threaded(latents, depth=2, name="prior", torch_threads=1)
        mels = self.mels(latents, drawn)
        if self.pipelined:
            mels = threaded(mels, depth=2, name="vae-decoder", torch_threads=1)
        chunk_frames = vocoder_chunk_frames or DEFAULT_CHUNK_FRAMES
        with torch.inference_mode(), _threads(1 if self.pipelined else None):
            for audio in vocode_stream(self.vocoder, mels, chunk_frames=chunk_frames):
                yield np.asarray(audio, dtype=np.float32).reshape(-1)

    def _render_now(self, latents: torch.Tensor) -> np.ndarray:
        """The audio (n,) of latents (1, D, l), on this thread (the wash guard's judge)."""
        import torch

        from audiogen.vocoder import DEFAULT_CHUNK_FRAMES, vocode_stream

        with torch.inference_mode():
            pieces = vocode_stream(self.vocoder, self.mels([latents]), chunk_frames=DEFAULT_CHUNK_FRAMES)
            return np.concatenate([np.asarray(piece, dtype=np.float32).reshape(-1) for piece in pieces])

    def render(self, latents: Iterable[torch.Tensor], samples: int | None,
               vocoder_chunk_frames: int | None = None, drawn: bool = False) -> Iterator[np.ndarray]:
        """Float32 audio chunks adding up to exactly ``samples`` (None: endless), from :meth:`audio`."""
        return exact_length(self.audio(latents, vocoder_chunk_frames, drawn), samples)

    def stream(
        self,
        seconds: float,
        seed: int,
        temperature: float | None = None,
        prefix: torch.Tensor | None = None,
        chunk_seconds: float = 8.0,
        vocoder_chunk_seconds: float | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield float32 audio chunks that add up to exactly ``seconds`` × sample rate samples.

        Args:
            seconds: the length; ``math.inf``: music until the caller stops iterating, in bounded memory.
            prefix, chunk_seconds: as in :meth:`latents`.
            vocoder_chunk_seconds: the vocoder's chunk (default about 12 s); shorter chunks bring
                the first audio sooner at more vocoder work per second (each has 64 frames of
                context on either side). The audio does not depend on it, to float rounding.
        """
        from audiogen.vocoder import DEFAULT_OVERLAP_FRAMES

        total = clip_samples(seconds, self.sample_rate)
        frames = vocoder_chunk_frames(vocoder_chunk_seconds, self.frontend.config.frame_rate, DEFAULT_OVERLAP_FRAMES)
        latents = self.latents(total, seed, temperature, prefix, chunk_seconds)
        return self.render(latents, total, frames, drawn=True)

    def generate(self, seconds: float, seed: int, temperature: float | None = None,
                 prefix: torch.Tensor | None = None) -> np.ndarray:
        """A whole clip in memory (float32, not normalised)."""
        parts = list(self.stream(seconds, seed, temperature, prefix))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def vocode(self, log_mel: np.ndarray) -> np.ndarray:
        """Copy-synthesis: a log-mel (n_mels, F) to audio with this generator's vocoder."""
        import torch

        from audiogen.vocoder import vocode

        with torch.inference_mode():
            mel = torch.as_tensor(np.asarray(log_mel, dtype=np.float32), device=self.device)
            return vocode(self.vocoder, mel).reshape(-1).cpu().numpy()

    def variation_of(self, audio: np.ndarray, amount: float, seed: int) -> torch.Tensor:
        """Latents (1, D, L) near those of ``audio`` (at the generator's sample rate).

        ``amount`` 0 keeps the clip's own latents; 1 moves them a whole posterior spread away.
        """
        import torch

        from audiogen.latents import variation

        with torch.inference_mode():
            return variation(self.vae, self.encode(audio), amount, torch.Generator().manual_seed(seed))

    def encode(self, audio: np.ndarray) -> torch.Tensor:
        """The VAE's latents (1, D, L), posterior means, of mono audio at the generator's rate."""
        import torch

        from audiogen.latents import encode_clip

        with torch.inference_mode():
            mel = self.frontend(torch.as_tensor(audio, device=self.device))[None]
            return encode_clip(self.vae, mel)


# --------------------------------------------------------------------------------------------
# The arithmetic of a clip's chunks, shared by every runtime (it works on torch and numpy arrays)


def clip_samples(seconds: float, sample_rate: int) -> int | None:
    """Audio samples of a clip of ``seconds`` (``math.inf``: None, an endless stream)."""
    return None if math.isinf(seconds) else int(round(seconds * sample_rate))


def latent_frames(samples: int, hop_length: int, time_ratio: int) -> int:
    """Latent frames a clip of ``samples`` audio samples is decoded from: the mel frames that cover
    the samples (one more than ``samples / hop``), in whole latent frames, and one latent frame to spare."""
    return math.ceil((samples / hop_length + 1) / time_ratio) + 1


def latent_chunk_frames(frames: int | None, latent_rate: float, chunk_seconds: float) -> int:
    """The prior's chunk, in latent frames, for a clip of ``frames`` (None: endless) at ``latent_rate``
    frames a second: equal chunks no longer than ``chunk_seconds``, since the prior samples whole
    chunks and a last short chunk would waste most of a full one (what is sampled does not depend on it)."""
    longest = max(4, int(chunk_seconds * latent_rate))
    if frames is None:
        return longest
    return math.ceil(frames / math.ceil(frames / longest))


def vocoder_chunk_frames(seconds: float | None, frame_rate: float, overlap_frames: int) -> int | None:
    """The vocoder's chunk in mel frames for ``seconds`` (None: the vocoder's default); a chunk is
    at least as long as the context on each side of it."""
    return None if seconds is None else max(overlap_frames, round(seconds * frame_rate))


def take_frames(chunks: Iterable[Any], frames: int) -> Iterator[Any]:
    """The first ``frames`` latent frames of a stream of (1, D, l) chunks."""
    left = frames
    if left <= 0:
        return
    for z in chunks:
        z = z[..., :left]
        left -= z.shape[-1]
        yield z
        if left <= 0:  # stop before pulling another chunk: the prior would sample it for nothing
            return


def exact_length(pieces: Iterator[np.ndarray], samples: int | None) -> Iterator[np.ndarray]:
    """Audio pieces cut (or, by rounding, padded with silence) to exactly ``samples`` (None: endless)."""
    if samples is None:
        yield from pieces
        return
    emitted = 0
    try:
        for audio in pieces:
            audio = audio[: samples - emitted]
            emitted += len(audio)
            if len(audio):
                yield audio
            if emitted >= samples:
                return
    finally:
        pieces.close()  # stops the stage threads when the caller or the length ends the clip
    if emitted < samples:  # the chain ran short by rounding: pad with silence (never happens in practice)
        yield np.zeros(samples - emitted, dtype=np.float32)


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """This thread's torch intra-op threads set to ``count`` for the block (None: left as they are)."""
    import torch

    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_generator(model_dir: str | Path | None = None, vocoder_dir: str | Path | None = None,
                   device: str | torch.device = "cpu", with_prior: bool = True) -> Generator:
    """The generation pipeline from exported folders (None: the models bundled with audiogen).

    ``with_prior=False`` accepts a VAE-only folder (encode, decode, morph need no prior).
    """
    import torch

    from audiogen.checkpoint import CheckpointError
    from audiogen.frontend import MelFrontend
    from audiogen.mel_sharpening import read_sharpening
    from audiogen.surprise_band import read_band

    model_dir = Path(model_dir) if model_dir is not None else pretrained_dir("spec")
    vocoder_dir = Path(vocoder_dir) if vocoder_dir is not None else pretrained_dir("vocoder")
    for path, what in ((model_dir, "spectrogram model"), (vocoder_dir, "vocoder")):
        if not path.is_dir():
            raise CheckpointError(f"{path}: {what} folder not found")
    device = torch.device(device)
    vae, _ = load_vae(model_dir, device=device)
    frontend = MelFrontend(vae.frontend_config).to(device)
    prior = load_prior(model_dir, vae.latent_dim, device=device) if with_prior else None
    vocoder = load_vocoder(vocoder_dir, frontend.config, device=device)
    vae_sha256 = hashlib.sha256((model_dir / "vae.safetensors").read_bytes()).hexdigest()
    band = read_band(model_dir) if with_prior else None
    sharpening = read_sharpening(model_dir) if with_prior else None
    return Generator(frontend, vae, prior, vocoder, device, vae_sha256, surprise_band=band,
                     mel_sharpening=sharpening)


def write_clip(chunks: Iterator[np.ndarray], target: str | Path | BinaryIO, sample_rate: int,
               progress: Any = None, force: bool = True, tags: dict | None = None) -> dict[str, float]:
    """Stream chunks to a WAV/FLAC file (or binary stream), peak-normalised to -1 dBFS.

    Two passes in bounded memory: chunks go to a float32 scratch file while the peak is
    tracked, then are read back block by block, scaled and encoded as 16-bit PCM. The scratch
    file is unnamed, in the system temp folder (``tempfile.TemporaryFile``: ``$TMPDIR``, else
    /tmp; 4 bytes a sample, about 950 MB for 3 hours at 22,050 Hz), so the kernel frees it
    however the process ends; a path is written with :func:`audiogen.audio.atomic_output`.

    Args:
        force: replace an existing file at ``target`` (else :class:`OutputExistsError`).
        tags: provenance (:func:`audiogen.clip_tags.clip_tags`) written into the file's metadata.

    Raises:
        ValueError: the model produced NaN/Inf samples (nothing is written).
        OutputExistsError: ``target`` exists and ``force`` is false.
    """
    import soundfile as sf

    from audiogen.audio import _format_for, atomic_output

    is_path = isinstance(target, (str, Path))
    fmt = _format_for(target)[0] if is_path else "WAV"
    peak, count = 0.0, 0
    with tempfile.TemporaryFile(prefix="audiogen-scratch-", suffix=".f32") as scratch:
        for chunk in chunks:
            if not np.isfinite(chunk).all():
                raise ValueError("the model produced NaN/Inf samples (are its weights trained?)")
            peak = max(peak, float(np.max(np.abs(chunk))) if chunk.size else 0.0)
            scratch.write(np.ascontiguousarray(chunk, dtype=np.float32).tobytes())
            count += len(chunk)
            if progress is not None:
                progress.update(len(chunk))
        gain = TARGET_PEAK / peak if peak > 1e-6 else 1.0
        scratch.seek(0)
        block = sample_rate * 10
        # libsndfile seeks back to finish a WAV header, so a stream (stdout) gets a finished
        # unnamed temporary file copied out
        with atomic_output(target, force=force) if is_path else tempfile.TemporaryFile() as finished:
            with sf.SoundFile(finished, "w", samplerate=sample_rate, channels=1, subtype="PCM_16",
                              format=fmt) as out:
                if tags is not None:
                    from audiogen.clip_tags import apply_tags

                    apply_tags(out, tags)
                for _ in range(0, count, block):
                    out.write(np.frombuffer(scratch.read(4 * block), dtype=np.float32) * gain)
            if not is_path:
                finished.seek(0)
                shutil.copyfileobj(finished, target)
                target.flush()
    return {"samples": count, "peak_before": peak, "gain": gain}


# The bundled models' raw output peaks at 0.15-0.64 in 10 s (median 0.5, seeds 0-7): x1.6 puts a
# typical peak near -1 dBFS; StreamLevel lowers it where a louder clip would clip.
STREAM_GAIN = 1.6
WAV_STREAM_SIZE = 0xFFFFFFFF  # RIFF and data sizes of a WAV whose length is not known (readers take "to the end")


def wav_header(sample_rate: int, samples: int | None) -> bytes:
    """A 44-byte RIFF/WAVE header for 16-bit mono PCM; ``samples`` None: a stream of unknown length."""
    import struct

    data = WAV_STREAM_SIZE if samples is None else 2 * samples
    riff = WAV_STREAM_SIZE if samples is None else 36 + data
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16) + b"data" + struct.pack("<I", data))


class StreamLevel:
    """The gain of a stream that cannot wait for its peak: a fixed gain, lowered for good (never
    raised) the moment a chunk would pass -1 dBFS, so nothing clips and the level never pumps up."""

    def __init__(self, gain: float = STREAM_GAIN):
        self.gain = gain

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        peak = float(np.max(np.abs(chunk))) if chunk.size else 0.0
        if peak * self.gain > TARGET_PEAK:
            self.gain = TARGET_PEAK / peak
        return chunk * self.gain


def stream_wav(chunks: Iterable[np.ndarray], target: BinaryIO, sample_rate: int, samples: int | None,
               progress: Any = None) -> int:
    """Write 16-bit mono WAV to a stream as the chunks come: the first audio leaves at once.

    A file is peak-normalised over the whole clip (:func:`write_clip`); a stream cannot wait for
    its end, so it gets :class:`StreamLevel`'s gain. The header carries the exact length when
    ``samples`` is given, else the "unknown length" sizes players read as "until the end".

    Returns:
        samples written.

    Raises:
        ValueError: the model produced NaN/Inf samples (nothing more is written).
        BrokenPipeError: the reader went away.
    """
    level = StreamLevel()
    target.write(wav_header(sample_rate, samples))
    written = 0
    for chunk in chunks:
        if not np.isfinite(chunk).all():
            raise ValueError("the model produced NaN/Inf samples (are its weights trained?)")
        pcm = np.clip(np.round(level(chunk) * 32767), -32768, 32767).astype("<i2")
        target.write(pcm.tobytes())
        target.flush()
        written += len(chunk)
        if progress is not None:
            progress.update(len(chunk))
    return written
