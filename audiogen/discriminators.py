"""GAN discriminators on raw audio: HiFi-GAN's multi-period and multi-scale ones, and a
multi-resolution STFT discriminator (UnivNet, Vocos).

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
