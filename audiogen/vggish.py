"""VGGish (Hershey et al. 2017) and its exact input pipeline, for Fréchet Audio Distance.

Input pipeline (the TensorFlow reference ``mel_features.py`` / ``vggish_input.py``):
16 kHz mono; frames of 400 samples (25 ms) every 160 samples (10 ms), taken without padding;
a periodic Hann window; magnitude ``|rfft|`` with n_fft 512; 64 mel bands from 125 to 7500 Hz on
the HTK mel scale ``1127 ln(1 + f / 700)`` whose triangles are linear *in mel* (not in Hz, unlike
librosa's ``htk=True``), with the DC bin zeroed; ``log(mel + 0.01)``; patches of 96 frames
(0.96 s). Resampling to 16 kHz is done by :func:`audiogen.audio.resample` (soxr HQ, named by
``audiogen.audio.RESAMPLER``); torchvggish uses resampy, which moves FAD values slightly.

Two framings of a clip into patches (:data:`FRAMINGS`):

- ``torchvggish`` (default): non-overlapping 0.96 s patches, the remainder dropped, as
  torchvggish's ``waveform_to_examples`` and the PyTorch FAD libraries do. Patch ``p`` needs
  samples ``[15360 p, 15360 p + 15600)`` (96 frames: 95 hops plus one 400-sample window).
- ``google-reference``: google-research's ``frechet_audio_distance`` — each clip divided by
  ``max(0.1, max(samples))`` (``np.amax`` of the signed samples, not of their magnitude, as the
  reference does), then 1 s windows every 0.5 s; each window gives 98 frames of which the first
  96 form the patch.

Network: the ``vggish_slim`` layer order — conv3x3(64) ReLU, maxpool 2x2; conv3x3(128) ReLU,
maxpool; conv3x3(256) ReLU, conv3x3(256) ReLU, maxpool; conv3x3(512) ReLU, conv3x3(512) ReLU,
maxpool; fc 12288→4096 ReLU, fc 4096→4096 ReLU, fc 4096→128. The embedding for FAD is the
output of that last fully connected layer *before* its ReLU, without PCA or quantisation.

Checkpoint: the public torchvggish port ``vggish-10086976.pth`` is loaded as that file is, with
``torch.load(..., weights_only=True)``. Its keys are those of torchvggish's ``VGG`` module:
``features.{0,3,6,8,11,13}.{weight,bias}`` (the convolutions at their ``nn.Sequential``
indices between ReLUs and pools) and ``embeddings.{0,2,4}.{weight,bias}``; this module keeps
exactly that layout, so the state dict loads with ``strict=True``. torchvggish's conv output is
(B, C=512, H=6 time, W=4 mel); before flattening it transposes to (B, H, W, C) so the 12288
features are in TensorFlow's NHWC order, which the first fc layer's columns expect.

How the layer order and flatten order were verified (``tests/test_vggish.py``): the key names
and shapes were read from torchvggish's ``vggish.py`` (``make_layers`` and ``VGG``) and the TF
checkpoint's variable list (conv1, conv2, conv3/conv3_{1,2}, conv4/conv4_{1,2},
fc1/fc1_{1,2}, fc2); the test writes that key list out literally, fills it with random
weights, saves it with ``torch.save``, loads it through :func:`load_vggish` and compares the
embeddings with an independent numpy forward pass that follows the TF graph literally (NHWC
tensors, HWIO kernels, SAME 3x3 convolutions as sums of shifted matrix products, 2x2 max
pools, flatten of the NHWC tensor, fc layers as ``x @ W.T + b``). The same test checks that a
channel-first (C, H, W) flatten gives different embeddings, so the comparison does pin the
order. The log-mel patches are compared with a numpy transcription of ``mel_features.py``
(loops over bands, periodic Hann, ``np.fft.rfft``) and, for the google-reference framing, of
``AudioSetModel.extract_features``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiogen.download import (
    VGGISH_WEIGHTS_FILENAME,
    VGGISH_WEIGHTS_SHA256_PREFIX,
    VGGISH_WEIGHTS_URL,
    default_cache_dir,
    sha256_file,
)

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
N_FFT = 512  # next power of two above the window, as mel_features.log_mel_spectrogram picks
N_MELS = 64
MEL_FMIN = 125.0
MEL_FMAX = 7500.0
LOG_OFFSET = 0.01
PATCH_FRAMES = 96
EMBEDDING_DIM = 128
PEAK_FLOOR = 0.1  # google-research: 10 ** (-20 dB / 20), at most +20 dB of gain

WEIGHTS_ENV = "AUDIOGEN_VGGISH_WEIGHTS"

# Conv channels and "M" (2x2 max pool) in vggish_slim's order; with a ReLU after each conv this
# reproduces torchvggish's nn.Sequential indices (convs at 0, 3, 6, 8, 11, 13).
_FEATURE_LAYOUT: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
_FLAT_FEATURES = 512 * (PATCH_FRAMES // 16) * (N_MELS // 16)  # (H=6, W=4, C=512) → 12288


class WeightsError(ValueError):
    """A VGGish checkpoint that cannot be used; the message names the file and the reason."""


class WeightsNotFoundError(FileNotFoundError):
    """No VGGish weights were found; the message says how to get them."""


# ---------------------------------------------------------------------------------------------
# Framing


@dataclass(frozen=True)
class Framing:
    """How a clip is cut into embedded patches.

    Attributes:
        name: the name used in options and reports.
        segment_seconds: audio span of one patch (for VGGish: 96 frames = 0.975 s, or 1 s).
        hop_seconds: step between patch starts.
        peak_normalize: divide the clip by ``max(0.1, max(samples))`` first.
        description: one line for reports.
    """

    name: str
    segment_seconds: float
    hop_seconds: float
    peak_normalize: bool
    description: str

    def segment_samples(self, sample_rate: int) -> int:
        return int(round(self.segment_seconds * sample_rate))

    def hop_samples(self, sample_rate: int) -> int:
        return int(round(self.hop_seconds * sample_rate))

    def num_patches(self, num_samples: int, sample_rate: int) -> int:
        """Whole patches in a clip; a clip shorter than one segment has none."""
        segment = self.segment_samples(sample_rate)
        if num_samples < segment:
            return 0
        return 1 + (num_samples - segment) // self.hop_samples(sample_rate)

    def prepare(self, audio: np.ndarray) -> np.ndarray:
        """Apply the clip-level normalisation of this framing (float32 out)."""
        audio = np.asarray(audio, dtype=np.float32)
        if self.peak_normalize and audio.size:
            audio = audio / max(PEAK_FLOOR, float(np.max(audio)))
        return audio.astype(np.float32, copy=False)

    def segments(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """A read-only (P, segment_samples) view of the prepared clip, one row per patch."""
        audio = np.ascontiguousarray(self.prepare(audio))
        segment, hop = self.segment_samples(sample_rate), self.hop_samples(sample_rate)
        count = self.num_patches(audio.shape[0], sample_rate)
        if count == 0:
            return np.zeros((0, segment), dtype=np.float32)
        stride = audio.strides[0]
        return np.lib.stride_tricks.as_strided(
            audio, shape=(count, segment), strides=(hop * stride, stride), writeable=False
        )


FRAMINGS: dict[str, Framing] = {
    "torchvggish": Framing(
        name="torchvggish",
        # 96 frames = 95 hops of 160 + one 400-sample window = 15600 samples at 16 kHz
        segment_seconds=(HOP_SAMPLES * (PATCH_FRAMES - 1) + WINDOW_SAMPLES) / SAMPLE_RATE,
        hop_seconds=HOP_SAMPLES * PATCH_FRAMES / SAMPLE_RATE,
        peak_normalize=False,
        description="non-overlapping 0.96 s patches (torchvggish, frechet-audio-distance, fadtk)",
    ),
    "google-reference": Framing(
        name="google-reference",
        segment_seconds=1.0,
        hop_seconds=0.5,
        peak_normalize=True,
        description="1 s windows every 0.5 s, clip divided by max(0.1, peak) (google-research FAD)",
    ),
}
DEFAULT_FRAMING = "torchvggish"


def get_framing(name: str | Framing) -> Framing:
    """Look a framing up by name (a clear error lists the known ones)."""
    if isinstance(name, Framing):
        return name
    try:
        return FRAMINGS[name]
    except KeyError:
        raise ValueError(f"unknown framing {name!r}; choose one of {', '.join(FRAMINGS)}") from None


# ---------------------------------------------------------------------------------------------
# Log-mel frontend


def hz_to_mel_htk(freq_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, ``1127 ln(1 + f / 700)`` (the one mel_features.py uses)."""
    return 1127.0 * np.log1p(np.asarray(freq_hz, dtype=np.float64) / 700.0)


def vggish_mel_matrix(
    num_bins: int = N_FFT // 2 + 1,
    n_mels: int = N_MELS,
    sample_rate: int = SAMPLE_RATE,
    fmin: float = MEL_FMIN,
    fmax: float = MEL_FMAX,
) -> np.ndarray:
    """Mel weights of shape (num_bins, n_mels), float64, as ``spectrogram_to_mel_matrix`` builds them.

    Triangles with peak 1 (no area normalisation) whose slopes are linear in HTK mel between
    ``n_mels + 2`` edges spaced evenly in mel from ``fmin`` to ``fmax``; the DC bin gets weight 0.
    """
    bins_mel = hz_to_mel_htk(np.linspace(0.0, sample_rate / 2.0, num_bins))[:, None]  # (bins, 1)
    edges = np.linspace(hz_to_mel_htk(fmin), hz_to_mel_htk(fmax), n_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]  # (n_mels,) each
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def periodic_hann(length: int) -> np.ndarray:
    """Periodic ("DFT-even") Hann window, float64, as mel_features.periodic_hann."""
    return 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(length) / length)


class VGGishFrontend(nn.Module):
    """Log-mel frames for VGGish, batched, on any device.

    Shapes: audio (T,) or (B, T) at 16 kHz → log-mel (B, F, 64) with
    F = 1 + (T - 400) // 160 (frames without padding; T >= 400).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.from_numpy(periodic_hann(WINDOW_SAMPLES)).float(), persistent=False)
        self.register_buffer("mel_matrix", torch.from_numpy(vggish_mel_matrix()).float(), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        if audio.shape[-1] < WINDOW_SAMPLES:
            raise ValueError(f"need at least {WINDOW_SAMPLES} samples, got {audio.shape[-1]}")
        frames = audio.float().unfold(-1, WINDOW_SAMPLES, HOP_SAMPLES)  # (B, F, 400)
        # the frame sits at the start of the 512-point FFT and is zero-padded at the end, as
        # np.fft.rfft(frame, 512) does; torch.stft would centre the window instead
        magnitude = torch.fft.rfft(frames * self.window, n=N_FFT).abs()  # (B, F, 257)
        return torch.log(torch.matmul(magnitude, self.mel_matrix) + LOG_OFFSET)  # (B, F, 64)


def vggish_patches(
    audio: np.ndarray,
    framing: str | Framing = DEFAULT_FRAMING,
    frontend: VGGishFrontend | None = None,
) -> torch.Tensor:
    """Log-mel patches (P, 1, 96, 64) of a 16 kHz mono clip, on the frontend's device.

    Each patch is computed from its own audio segment (:meth:`Framing.segments`): STFT frames
    depend only on their own 400 samples, so this equals framing the whole clip's log-mel
    (torchvggish) or running the reference per 1 s window (google-research), while keeping
    memory bounded by the batch.
    """
    frontend = frontend or VGGishFrontend()
    device = frontend.window.device
    segments = get_framing(framing).segments(audio, SAMPLE_RATE)
    if segments.shape[0] == 0:
        return torch.zeros((0, 1, PATCH_FRAMES, N_MELS), device=device)
    with torch.inference_mode():
        log_mel = frontend(
            torch.from_numpy(np.array(segments, dtype=np.float32)).to(device)
        )  # copy: the view is read-only
    return log_mel[:, :PATCH_FRAMES].unsqueeze(1)


# ---------------------------------------------------------------------------------------------
# Network


class VGGish(nn.Module):
    """The VGGish network up to its 128-d embedding (before the final ReLU).

    Module names and ``nn.Sequential`` indices are those of torchvggish's ``VGG`` so its
    checkpoint loads unchanged. Shapes: patches (B, 1, 96, 64) (time × mel) → (B, 128).
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for item in _FEATURE_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                # 3x3 stride 1 with one pixel of zero padding = TensorFlow's SAME
                layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(_FLAT_FEATURES, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIM),  # torchvggish appends a ReLU here; FAD uses the raw output
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.features(patches)  # (B, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # NHWC flatten, TensorFlow's order
        return self.embeddings(x)


def load_vggish(path: str | Path) -> VGGish:
    """Build :class:`VGGish` from a torchvggish-layout checkpoint (``vggish-10086976.pth``).

    Only tensors are unpickled (``weights_only=True``). PCA parameters of torchvggish's
    postprocessor (``pproc.*``), if a full-module state dict is given, are ignored.

    Raises:
        WeightsNotFoundError: no such file.
        WeightsError: not a checkpoint, or keys/shapes that are not VGGish's (listed).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: VGGish weights file not found. {how_to_get_weights()}")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and weights_only refusals all land here
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(f"{path}: not a loadable tensor-only PyTorch checkpoint ({reason})") from err
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors (torchvggish layout)")
    state = {k: v for k, v in state.items() if not k.startswith("pproc.")}
    # built on the meta device: random initialisation of 72 M parameters would take seconds
    # only to be overwritten; load_state_dict(assign=True) then puts the real tensors in place
    with torch.device("meta"):
        model = VGGish()
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected))
    for key in sorted(set(expected) & set(state)):
        if tuple(state[key].shape) != tuple(expected[key].shape):
            problems.append(f"{key} has shape {tuple(state[key].shape)}, expected {tuple(expected[key].shape)}")
    if problems:
        raise WeightsError(f"{path}: not a torchvggish VGGish checkpoint: " + "; ".join(problems))
    model.load_state_dict({k: v.float().contiguous() for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Weights resolution


def default_weights_path() -> Path:
    """Where ``audiogen-fad download-weights`` puts the checkpoint."""
    return default_cache_dir() / VGGISH_WEIGHTS_FILENAME


def how_to_get_weights() -> str:
    """The one-paragraph instruction printed wherever weights are missing."""
    return (
        f"Get them with `audiogen-fad download-weights` (downloads {VGGISH_WEIGHTS_URL} into "
        f"{default_weights_path().parent}, checking SHA-256 prefix {VGGISH_WEIGHTS_SHA256_PREFIX}), "
        f"or pass --vggish-weights PATH, or set {WEIGHTS_ENV}=PATH. Without weights, "
        "--embedding mel gives a weight-free score that is not comparable to published FAD."
    )


def resolve_weights(path: str | Path | None = None) -> Path:
    """The checkpoint to use: ``path``, else ``$AUDIOGEN_VGGISH_WEIGHTS``, else the cache.

    Raises:
        WeightsNotFoundError: the chosen file does not exist (message says how to get one).
    """
    if path is not None:
        chosen, origin = Path(path).expanduser(), "--vggish-weights"
    elif os.environ.get(WEIGHTS_ENV):
        chosen, origin = Path(os.environ[WEIGHTS_ENV]).expanduser(), WEIGHTS_ENV
    else:
        chosen, origin = default_weights_path(), "the cache folder"
    if not chosen.is_file():
        raise WeightsNotFoundError(f"VGGish weights not found at {chosen} (from {origin}). {how_to_get_weights()}")
    return chosen


# ---------------------------------------------------------------------------------------------
# Embedder


class VGGishEmbedder:
    """Clip → VGGish embeddings, batched over patches.

    Args:
        model: a loaded :class:`VGGish`.
        weights_sha256: SHA-256 of the weights file (reported and used in cache keys).
        framing: a name from :data:`FRAMINGS` or a :class:`Framing`.
        device: torch device for the frontend and the network.
        batch_size: patches per forward pass.
    """

    name = "vggish"
    dim = EMBEDDING_DIM
    sample_rate = SAMPLE_RATE
    comparable_to_published = True

    def __init__(
        self,
        model: VGGish,
        weights_sha256: str,
        framing: str | Framing = DEFAULT_FRAMING,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.frontend = VGGishFrontend().to(self.device)
        self.weights_sha256 = weights_sha256
        self.framing = get_framing(framing)
        self.batch_size = batch_size

    @classmethod
    def from_weights(
        cls,
        weights: str | Path | None = None,
        framing: str | Framing = DEFAULT_FRAMING,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ) -> VGGishEmbedder:
        """Resolve (:func:`resolve_weights`), hash and load the checkpoint."""
        path = resolve_weights(weights)
        model = load_vggish(path)
        return cls(model, sha256_file(path), framing=framing, device=device, batch_size=batch_size)

    def identity(self) -> dict:
        """What determines the embeddings: goes into reports and cache keys."""
        return {
            "model": self.name,
            "weights_sha256": self.weights_sha256,
            "official_weights": self.weights_sha256.startswith(VGGISH_WEIGHTS_SHA256_PREFIX),
            "framing": self.framing.name,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "comparable_to_published": True,
        }

    def patches(self, audio: np.ndarray) -> torch.Tensor:
        """Log-mel patches (P, 1, 96, 64) of a 16 kHz mono clip, on this embedder's device."""
        return vggish_patches(audio, self.framing, self.frontend)

    @torch.inference_mode()
    def embed(self, audio: np.ndarray) -> np.ndarray:
        """Embeddings (P, 128) float32 of a 16 kHz mono clip; P = 0 for clips under one patch."""
        segments = self.framing.segments(audio, self.sample_rate)
        out = np.zeros((segments.shape[0], EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, segments.shape[0], self.batch_size):
            chunk = np.array(segments[start : start + self.batch_size], dtype=np.float32)  # writable copy
            log_mel = self.frontend(torch.from_numpy(chunk).to(self.device))  # (b, F, 64)
            patches = log_mel[:, :PATCH_FRAMES].unsqueeze(1)  # (b, 1, 96, 64)
            out[start : start + chunk.shape[0]] = self.model(patches).float().cpu().numpy()
        return out
