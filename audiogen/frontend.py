"""The mel frontend: the single source of the audio numbers, log-mel on CPU/GPU, Griffin-Lim.

Every model, the prepared cache and the vocoder read sample rate, hop and mel count from one
:class:`FrontendConfig`. Checkpoints store it, and loading refuses a checkpoint whose frontend
differs from the one it is used with (:func:`check_same_frontend`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class FrontendConfig:
    """Audio and STFT/mel settings (HiFi-GAN's frontend by default).

    ``fmax`` None means Nyquist: a piano's upper partials reach past 8 kHz, and a vocoder that
    sees the whole band need not invent it. Log compression is ``log(max(mel, log_floor))`` on
    the magnitude (``power`` 1) mel spectrogram, as in HiFi-GAN.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None
    log_floor: float = 1e-5
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            raise ValueError("sample_rate, hop_length and n_mels must be positive")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        nyquist = self.sample_rate / 2
        if self.fmax is not None and not (self.fmin < self.fmax <= nyquist):
            raise ValueError(f"need fmin < fmax <= {nyquist} Hz, got {self.fmin}..{self.fmax}")
        if self.power not in (1.0, 2.0):
            raise ValueError("power must be 1 (magnitude) or 2 (power)")

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def log_silence(self) -> float:
        """The log-mel value of digital silence."""
        return math.log(self.log_floor)

    def num_frames(self, num_samples: int) -> int:
        """Frames of a centered STFT: ``1 + num_samples // hop``."""
        return 1 + num_samples // self.hop_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class FrontendMismatchError(ValueError):
    """A checkpoint or cache made with other audio settings than the ones in use."""


def check_same_frontend(expected: FrontendConfig, found: FrontendConfig, what: str) -> None:
    """Raise a clear error naming the differing fields when two frontends differ."""
    if expected == found:
        return
    diffs = [
        f"{f.name} {getattr(found, f.name)} (expected {getattr(expected, f.name)})"
        for f in dataclasses.fields(FrontendConfig)
        if getattr(expected, f.name) != getattr(found, f.name)
    ]
    raise FrontendMismatchError(f"{what} was made for another audio frontend: " + ", ".join(diffs))


def hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    linear = freq / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(freq >= 1000.0, log_part, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filterbank(config: FrontendConfig) -> np.ndarray:
    """Slaney-normalised triangular mel filters, shape (n_mels, n_fft // 2 + 1).

    The same filters as ``librosa.filters.mel`` (tested against it), computed here so that
    ``generate`` does not pay librosa's 1.5 s import.
    """
    fmax = config.fmax if config.fmax is not None else config.sample_rate / 2
    fft_freqs = np.linspace(0, config.sample_rate / 2, 1 + config.n_fft // 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(config.fmin), hz_to_mel(fmax), config.n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per filter ("slaney" norm)
    return weights.astype(np.float32)


class MelFrontend(nn.Module):
    """Batched log-mel spectrograms with ``torch.stft`` (centered, zero-padded, Hann window).

    Shapes: audio (T,) or (B, T) float in [-1, 1] → log-mel (n_mels, F) or (B, n_mels, F) with
    F = 1 + T // hop. Zero padding (librosa's default) works for any length, even T < n_fft.
    Runs on whatever device the module is moved to.
    """

    def __init__(self, config: FrontendConfig | None = None):
        super().__init__()
        self.config = config or FrontendConfig()
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank(self.config)), persistent=False)
        self.register_buffer("window", torch.hann_window(self.config.win_length), persistent=False)

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        """Complex STFT (B, n_fft // 2 + 1, F)."""
        c = self.config
        return torch.stft(
            audio,
            n_fft=c.n_fft,
            hop_length=c.hop_length,
            win_length=c.win_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )

    def mel(self, audio: torch.Tensor) -> torch.Tensor:
        """Linear (not log) mel spectrogram, magnitude or power as configured."""
        squeeze = audio.dim() == 1
        if squeeze:
            audio = audio.unsqueeze(0)
        spec = self.stft(audio.float()).abs()
        if self.config.power == 2.0:
            spec = spec.square()
        mel = torch.matmul(self.mel_basis, spec)  # (B, n_mels, F)
        return mel.squeeze(0) if squeeze else mel

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrogram (natural log, floored at ``log_floor``)."""
        return torch.log(torch.clamp(self.mel(audio), min=self.config.log_floor))

    @torch.inference_mode()
    def log_mel_numpy(self, audio: np.ndarray) -> np.ndarray:
        """Convenience for data preparation: (T,) float32 → (n_mels, F) float32 on CPU."""
        return self(torch.from_numpy(np.asarray(audio, dtype=np.float32))).numpy()

    def griffin_lim(
        self, log_mel: torch.Tensor, n_iter: int = 32, momentum: float = 0.99, seed: int = 0
    ) -> torch.Tensor:
        """Invert a log-mel spectrogram to audio with fast Griffin-Lim (Perraudin et al. 2013).

        The mel is mapped back to a linear magnitude with the filter bank's pseudo-inverse
        (clamped at 0), then phase is estimated by ``n_iter`` Griffin-Lim iterations with
        momentum. This is the non-neural floor a vocoder is compared with.

        Args:
            log_mel: (n_mels, F) or (B, n_mels, F).

        Returns:
            audio (T,) or (B, T) with T = (F - 1) * hop.
        """
        c = self.config
        squeeze = log_mel.dim() == 2
        if squeeze:
            log_mel = log_mel.unsqueeze(0)
        mel = torch.exp(log_mel.float())
        if c.power == 2.0:
            mel = mel.sqrt()  # work on magnitudes; the basis maps magnitude to magnitude here
        inverse = torch.linalg.pinv(self.mel_basis)
        magnitude = torch.clamp(torch.matmul(inverse, mel), min=0.0)  # (B, bins, F)
        length = (log_mel.shape[-1] - 1) * c.hop_length
        generator = torch.Generator(device="cpu").manual_seed(seed)
        phase = torch.rand(magnitude.shape, generator=generator) * 2 * math.pi
        angles = torch.polar(torch.ones_like(magnitude), phase.to(magnitude.device))
        previous = torch.zeros_like(angles)
        audio = None
        for _ in range(n_iter):
            audio = self._istft(magnitude * angles, length)
            rebuilt = self.stft(audio)
            # momentum ("fast Griffin-Lim") converges in far fewer iterations than plain GLA
            accelerated = rebuilt - (momentum / (1 + momentum)) * previous
            previous = rebuilt
            angles = accelerated / torch.clamp(accelerated.abs(), min=1e-16)
        audio = self._istft(magnitude * angles, length)
        return audio.squeeze(0) if squeeze else audio

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        c = self.config
        return torch.istft(
            spec,
            n_fft=c.n_fft,
            hop_length=c.hop_length,
            win_length=c.win_length,
            window=self.window,
            center=True,
            length=length,
        )
