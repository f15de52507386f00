"""GAN discriminators on raw audio: HiFi-GAN's multi-period and multi-scale ones, and a
multi-resolution STFT discriminator (UnivNet, Vocos); and on log-mel spectrograms, the
spectrogram VAE's patch discriminator (:class:`SpecDiscriminator`).

Every discriminator maps audio (B, 1, T) to ``(scores, feature_maps)``: one score tensor per
sub-discriminator and, for each, the list of its intermediate activations (for the feature
matching loss). :class:`DiscriminatorSet` runs all configured families and concatenates their
lists, so the losses in :mod:`audiogen.losses` sum over every sub-discriminator as HiFi-GAN does.

``width`` scales every channel count: 1.0 is the paper's size, a fraction makes the narrow
discriminators a CPU training run can afford.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from audiogen.frontend import FrontendConfig

LRELU_SLOPE = 0.1

Scores = list[torch.Tensor]
FeatureMaps = list[list[torch.Tensor]]


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Which discriminators to train against, and how wide.

    ``periods`` empty disables the multi-period discriminator, ``num_scales`` 0 the multi-scale
    one, ``resolutions`` empty (the default) the multi-resolution STFT one. Each resolution is
    ``(n_fft, hop, win)``.
    """

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    num_scales: int = 3
    resolutions: tuple[tuple[int, int, int], ...] = ()
    width: float = 1.0

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.num_scales < 0 or any(p < 1 for p in self.periods):
            raise ValueError("num_scales must be >= 0 and periods >= 1")
        for n_fft, hop, win in self.resolutions:
            if not (0 < hop <= win <= n_fft):
                raise ValueError(f"resolution ({n_fft}, {hop}, {win}) needs 0 < hop <= win <= n_fft")
        if not (self.periods or self.num_scales or self.resolutions):
            raise ValueError("at least one discriminator must be enabled")


def _scaled(channels: int, width: float, multiple: int) -> int:
    """``channels * width`` rounded to a positive multiple of ``multiple`` (for grouped convs)."""
    return max(multiple, int(round(channels * width / multiple)) * multiple)


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's DiscriminatorP: audio folded to (B, 1, T / period, period), 2-D convs along time.

    Channels (32, 128, 512, 1024, 1024) × width, kernels (5, 1), strides 3 then 1.
    """

    def __init__(self, period: int, width: float = 1.0):
        super().__init__()
        self.period = period
        chans = [1] + [_scaled(c, width, 4) for c in (32, 128, 512, 1024, 1024)]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:], strict=True))
        )
        self.conv_post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio (B, 1, T) → score (B, n), feature maps."""
        b, c, t = audio.shape
        if t % self.period:  # reflect-pad to a whole number of periods, as HiFi-GAN does
            pad = self.period - t % self.period
            audio = F.pad(audio, (0, pad), mode="reflect" if pad < t else "constant")
            t += pad
        x = audio.view(b, c, t // self.period, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class ScaleDiscriminator(nn.Module):
    """HiFi-GAN's DiscriminatorS: strided, grouped 1-D convs on the waveform.

    Channels (128, 128, 256, 512, 1024, 1024, 1024) × width (multiples of 16 for the groups).
    """

    _LAYERS = (  # (out channels, kernel, stride, groups)
        (128, 15, 1, 1), (128, 41, 2, 4), (256, 41, 2, 16), (512, 41, 4, 16),
        (1024, 41, 4, 16), (1024, 41, 1, 16), (1024, 5, 1, 1),
    )  # fmt: skip

    def __init__(self, width: float = 1.0, use_spectral_norm: bool = False):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        self.convs = nn.ModuleList()
        c_in = 1
        for c_out, kernel, stride, groups in self._LAYERS:
            c_out = _scaled(c_out, width, 16)
            self.convs.append(norm(nn.Conv1d(c_in, c_out, kernel, stride, groups=groups, padding=kernel // 2)))
            c_in = c_out
        self.conv_post = norm(nn.Conv1d(c_in, 1, 3, 1, padding=1))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio (B, 1, T) → score (B, n), feature maps."""
        x, fmaps = audio, []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class ResolutionDiscriminator(nn.Module):
    """Multi-resolution discriminator member (UnivNet, Vocos): 2-D convs on one STFT magnitude.

    The magnitude (B, 1, frames, n_fft // 2 + 1) goes through 32 × width channels of (3, 9)
    kernels (3 frames × 9 bins) striding by 2 along frequency, as Vocos does, then (3, 3)
    kernels. Unlike Vocos the first layer strides too: a 1-channel convolution's backward pass
    is slow on CPU at full resolution (2.3× faster for the whole discriminator at width 0.25).
    """

    def __init__(self, n_fft: int, hop: int, win: int, width: float = 1.0):
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop, win
        self.register_buffer("window", torch.hann_window(win), persistent=False)
        ch = _scaled(32, width, 4)
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(ch, ch, (3, 3), padding=(1, 1))),
            ]
        )
        self.conv_post = weight_norm(nn.Conv2d(ch, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio (B, 1, T) → score (B, n), feature maps."""
        spec = torch.stft(
            audio[:, 0].float(), self.n_fft, self.hop, self.win, self.window, center=True, return_complex=True
        )
        # magnitude with a floor so the gradient of |X| stays finite at X = 0
        x = torch.sqrt(spec.real.square() + spec.imag.square() + 1e-9).transpose(1, 2).unsqueeze(1)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period (HiFi-GAN: 2, 3, 5, 7, 11)."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), width: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, width) for p in periods)

    def forward(self, audio: torch.Tensor) -> tuple[Scores, FeatureMaps]:
        return _run_all(self.discriminators, [audio] * len(self.discriminators))


class MultiScaleDiscriminator(nn.Module):
    """HiFi-GAN's multi-scale discriminator: raw audio (spectrally normed), then ×2 and ×4
    average-pooled copies (weight normed)."""

    def __init__(self, num_scales: int = 3, width: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(width, use_spectral_norm=i == 0) for i in range(num_scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, audio: torch.Tensor) -> tuple[Scores, FeatureMaps]:
        inputs = [audio]
        for _ in range(len(self.discriminators) - 1):
            inputs.append(self.pool(inputs[-1]))
        return _run_all(self.discriminators, inputs)


class MultiResolutionDiscriminator(nn.Module):
    """One :class:`ResolutionDiscriminator` per (n_fft, hop, win)."""

    def __init__(
        self,
        resolutions: tuple[tuple[int, int, int], ...] = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048)),
        width: float = 1.0,
    ):
        super().__init__()
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(*r, width=width) for r in resolutions)

    def forward(self, audio: torch.Tensor) -> tuple[Scores, FeatureMaps]:
        return _run_all(self.discriminators, [audio] * len(self.discriminators))


def _run_all(discriminators: nn.ModuleList, inputs: list[torch.Tensor]) -> tuple[Scores, FeatureMaps]:
    scores, fmaps = [], []
    for disc, x in zip(discriminators, inputs, strict=True):
        score, fmap = disc(x)
        scores.append(score)
        fmaps.append(fmap)
    return scores, fmaps


class DiscriminatorSet(nn.Module):
    """All configured discriminator families, run as one.

    ``forward(audio (B, 1, T))`` → (scores, feature_maps) concatenated over the families in the
    order of ``members`` ("mpd", "msd", "mrd"); ``members[name]`` runs one family alone.
    Real and generated audio can go through in one call (concatenated along the batch): no
    layer mixes examples.
    """

    def __init__(self, members: dict[str, nn.Module]):
        super().__init__()
        self.members = nn.ModuleDict(members)

    def forward(self, audio: torch.Tensor) -> tuple[Scores, FeatureMaps]:
        scores, fmaps = [], []
        for member in self.members.values():
            s, f = member(audio)
            scores += s
            fmaps += f
        return scores, fmaps


def build_discriminators(config: DiscriminatorConfig) -> DiscriminatorSet:
    """The discriminators a config asks for, as one :class:`DiscriminatorSet`."""
    members: dict[str, nn.Module] = {}
    if config.periods:
        members["mpd"] = MultiPeriodDiscriminator(tuple(config.periods), config.width)
    if config.num_scales:
        members["msd"] = MultiScaleDiscriminator(config.num_scales, config.width)
    if config.resolutions:
        members["mrd"] = MultiResolutionDiscriminator(tuple(tuple(r) for r in config.resolutions), config.width)
    return DiscriminatorSet(members)


# --------------------------------------------------------------------------------------------
# On log-mel spectrograms (the spectrogram VAE's adversary)


@dataclass(frozen=True)
class SpecDiscriminatorConfig:
    """The spectrogram discriminator (the ``discriminator`` section of a ``vae`` config).

    ``channels`` are the widths of the strided 2-D conv layers (each halves mel and time),
    ``scales`` the number of time resolutions it judges (each one average-pooled by 2 more).
    """

    kind: str = "spec_patch"
    channels: tuple[int, ...] = (32, 64, 128)
    mel_kernel: int = 3
    time_kernel: int = 5
    scales: int = 2
    mel_mean: float = -5.5
    mel_std: float = 2.5

    def __post_init__(self) -> None:
        if self.kind != "spec_patch":
            raise ValueError(f"kind must be 'spec_patch', got {self.kind!r}")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive, got {self.channels}")
        if self.mel_kernel % 2 == 0 or self.time_kernel % 2 == 0:
            raise ValueError("mel_kernel and time_kernel must be odd")
        if self.scales < 1 or not self.mel_std > 0:
            raise ValueError("scales must be >= 1 and mel_std positive")



class _PatchDiscriminator(nn.Module):
    """2-D convs over a (mel, time) image; each strided layer halves both axes."""

    def __init__(self, channels: tuple[int, ...], mel_kernel: int, time_kernel: int):
        super().__init__()
        k, pad = (mel_kernel, time_kernel), (mel_kernel // 2, time_kernel // 2)
        layers = [weight_norm(nn.Conv2d(1, channels[0], k, padding=pad))]
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers.append(weight_norm(nn.Conv2d(c_in, c_out, k, stride=2, padding=pad)))
        layers.append(weight_norm(nn.Conv2d(channels[-1], channels[-1], k, stride=(2, 1), padding=pad)))
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(channels[-1], 1, (3, 3), padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
            features.append(x)
        score = self.out(x)
        features.append(score)
        return score.flatten(1), features


class SpecDiscriminator(nn.Module):
    """Multi-scale patch discriminator on log-mels, in the vocoder discriminators' format.

    ``forward(mel (B, n_mels, F))`` → (scores, feature_maps): one score tensor (B, N_k) per time
    scale k (the mel average-pooled over 2^k frames) and, for each, the list of its activations,
    so :mod:`audiogen.losses`' LSGAN and feature-matching losses apply unchanged. No layer mixes
    examples, so real and generated mels may share a batch.
    """

    def __init__(
        self,
        *,
        n_mels: int,
        channels: tuple[int, ...] = (32, 64, 128),
        mel_kernel: int = 3,
        time_kernel: int = 5,
        scales: int = 2,
        mel_mean: float = -5.5,
        mel_std: float = 2.5,
    ):
        super().__init__()
        self.n_mels = n_mels
        self.mel_mean, self.mel_std = float(mel_mean), float(mel_std)
        self.discriminators = nn.ModuleList(
            _PatchDiscriminator(tuple(channels), mel_kernel, time_kernel) for _ in range(scales)
        )

    @classmethod
    def from_config(cls, config: SpecDiscriminatorConfig, frontend: FrontendConfig) -> SpecDiscriminator:
        return cls(
            n_mels=frontend.n_mels,
            channels=tuple(config.channels),
            mel_kernel=config.mel_kernel,
            time_kernel=config.time_kernel,
            scales=config.scales,
            mel_mean=config.mel_mean,
            mel_std=config.mel_std,
        )

    def forward(self, mel: torch.Tensor) -> tuple[Scores, FeatureMaps]:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"expected mel (B, {self.n_mels}, F), got {tuple(mel.shape)}")
        x = ((mel - self.mel_mean) / self.mel_std).unsqueeze(1)  # (B, 1, n_mels, F)
        scores, fmaps = [], []
        for k, disc in enumerate(self.discriminators):
            if k:
                x = F.avg_pool2d(x, (1, 2), ceil_mode=True)
            score, features = disc(x)
            scores.append(score)
            fmaps.append(features)
        return scores, fmaps
