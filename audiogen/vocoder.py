"""Neural vocoders: log-mel spectrogram → waveform, and their chunked / streaming inference.

Three generator families, each selected by ``kind`` in the ``model`` section of a vocoder config:

- ``hifigan``: HiFi-GAN (Kong et al. 2020): transposed-convolution upsampling from the mel frame
  rate to the sample rate, each stage followed by multi-receptive-field residual blocks.
- ``istft``: iSTFTNet (Kaneko et al. 2022): the same network stopped a few upsampling stages
  early; its last layer predicts the magnitude and phase of a small STFT, which an inverse
  STFT turns into audio.
- ``vocos``: Vocos-style (Siuzdenak 2023): ConvNeXt blocks that stay at the mel frame rate and a
  linear head to the log-magnitude and phase of the frontend's own STFT, then an inverse STFT.
  With few, narrow blocks this is the fast default: nothing runs at the sample rate but one
  inverse FFT.

Every generator honours the :class:`Vocoder` contract (``F`` mel frames in, exactly
``F * hop`` samples out). :func:`vocode` and :func:`vocode_stream` run any of them over inputs
of any length in overlapping chunks, in bounded memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from audiogen.config import ConfigError, from_dict
from audiogen.frontend import FrontendConfig
from audiogen.overlap import CrossfadeChunker, raised_cosine_fade_in

LRELU_SLOPE = 0.1  # HiFi-GAN's leaky-ReLU slope inside the generator


# --------------------------------------------------------------------------------------------
# Configs


@dataclass(frozen=True)
class HiFiGANConfig:
    """HiFi-GAN generator arguments (defaults: the paper's V1).

    ``n_mels`` None means "the frontend's"; when given it must equal it. The product of
    ``upsample_rates`` must equal the frontend's hop length.
    """

    kind: str = "hifigan"
    n_mels: int | None = None
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

    def __post_init__(self) -> None:
        if self.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            if kernel < rate or (kernel - rate) % 2:
                # otherwise the transposed convolution does not give exactly rate × length
                raise ValueError(f"upsample kernel {kernel} must be >= rate {rate} with an even difference")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError("upsample_initial_channel must halve evenly at every upsampling stage")


@dataclass(frozen=True)
class ISTFTConfig(HiFiGANConfig):
    """iSTFTNet generator: HiFi-GAN stages, then an inverse STFT (defaults: iSTFTNet C8C8I).

    The product of ``upsample_rates`` times ``istft_hop`` must equal the frontend's hop length.
    """

    kind: str = "istft"
    upsample_rates: tuple[int, ...] = (8, 8)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16)
    istft_n_fft: int = 16
    istft_hop: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.istft_hop <= self.istft_n_fft // 2:
            raise ValueError("istft_hop must be in 1..istft_n_fft / 2 (a Hann window needs overlap)")


@dataclass(frozen=True)
class VocosConfig:
    """Vocos-style generator: ConvNeXt blocks at the mel frame rate and an iSTFT head.

    ``n_fft`` None means the frontend's; the iSTFT hop is always the frontend's hop, since the
    network never leaves the mel frame rate.
    """

    kind: str = "vocos"
    n_mels: int | None = None
    dim: int = 256
    intermediate_dim: int = 768
    num_layers: int = 6
    kernel_size: int = 7
    n_fft: int | None = None
    layer_scale: float | None = None  # initial ConvNeXt layer scale; None → 1 / num_layers
    # Predict the log-magnitude as a correction to the mel's pseudo-inverse (the magnitude
    # Griffin-Lim starts from) instead of from nothing: the network then mostly learns phase.
    mel_prior: bool = False

    def __post_init__(self) -> None:
        if min(self.dim, self.intermediate_dim, self.num_layers) < 1:
            raise ValueError("dim, intermediate_dim and num_layers must be positive")
        if self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd (same-length depthwise convolution)")


VocoderConfig = HiFiGANConfig | ISTFTConfig | VocosConfig
_CONFIG_KINDS: dict[str, type] = {"hifigan": HiFiGANConfig, "istft": ISTFTConfig, "vocos": VocosConfig}


def vocoder_config_from_dict(data: dict) -> VocoderConfig:
    """Typed vocoder config from the ``model`` section of a trainer YAML (dispatch on ``kind``).

    Raises:
        ConfigError: unknown ``kind``, unknown keys or wrong types.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"model: expected a mapping, got {data!r}")
    kind = data.get("kind", "hifigan")
    if kind not in _CONFIG_KINDS:
        raise ConfigError(f"model.kind: unknown vocoder kind {kind!r}; known: {sorted(_CONFIG_KINDS)}")
    return from_dict(_CONFIG_KINDS[kind], data, "model")


# --------------------------------------------------------------------------------------------
# Base class


class Vocoder(nn.Module):
    """Base of every vocoder generator.

    Contract:
        ``forward(mel)``: mel (B, n_mels, F) float, the natural-log mel spectrogram of
        :class:`audiogen.frontend.MelFrontend` → audio (B, 1, F * hop_length) float. Frame ``k``
        of the mel is centred on output sample ``k * hop_length``; the output is in [-1, 1]
        (generators without a final tanh clip it in eval mode only, so training sees the
        unclipped signal). The network is equivariant to shifts by whole frames, which is what
        lets :func:`vocode` cut long inputs into chunks.

    Attributes:
        n_mels: mel bins expected at the input.
        hop_length: output samples per mel frame.
    """

    n_mels: int
    hop_length: int

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def remove_weight_norm(self) -> Vocoder:
        """Fold weight normalisation into plain weights for inference (same output, faster).

        Checkpoints hold the weight-normed form; load them first, then call this.
        """
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return self

    def num_parameters(self) -> int:
        """Trainable parameter count (weight norm's gains included, as in the HiFi-GAN paper)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _wn_conv1d(
    in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, init_std: float | None = 0.01
) -> nn.Module:
    """Weight-normed 'same' Conv1d; HiFi-GAN initialises its convolutions with N(0, 0.01)."""
    conv = nn.Conv1d(
        in_channels, out_channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2
    )
    if init_std is not None:
        nn.init.normal_(conv.weight, 0.0, init_std)
    return weight_norm(conv)


# --------------------------------------------------------------------------------------------
# HiFi-GAN


class ResBlock1(nn.Module):
    """HiFi-GAN's ResBlock1: three (dilated conv, conv) pairs, each pair residual."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(_wn_conv1d(channels, channels, kernel_size, d) for d in dilations)
        self.convs2 = nn.ModuleList(_wn_conv1d(channels, channels, kernel_size, 1) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2, strict=True):
            y = conv1(F.leaky_relu(x, LRELU_SLOPE))
            x = x + conv2(F.leaky_relu(y, LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """HiFi-GAN's lighter ResBlock2 (V3): one dilated conv per residual step."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(_wn_conv1d(channels, channels, kernel_size, d) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


class _HiFiGANBody(nn.Module):
    """conv_pre, then per stage: leaky ReLU, transposed conv, mean of the multi-receptive-field
    residual blocks. Output (B, C_last, F * prod(upsample_rates)) before any post layer."""

    def __init__(
        self,
        n_mels: int,
        upsample_rates: tuple[int, ...],
        upsample_kernel_sizes: tuple[int, ...],
        upsample_initial_channel: int,
        resblock: str,
        resblock_kernel_sizes: tuple[int, ...],
        resblock_dilation_sizes: tuple[tuple[int, ...], ...],
    ):
        super().__init__()
        self.conv_pre = _wn_conv1d(n_mels, upsample_initial_channel, 7, init_std=None)
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = upsample_initial_channel
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes, strict=True):
            up = nn.ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2)
            nn.init.normal_(up.weight, 0.0, 0.01)
            self.ups.append(weight_norm(up))
            channels //= 2
            for k, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(block(channels, k, tuple(dilations)))
        self.out_channels = channels
        self.num_kernels = len(resblock_kernel_sizes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / self.num_kernels
        # HiFi-GAN's last activation uses the default slope (0.01), not LRELU_SLOPE
        return F.leaky_relu(x)


class HiFiGANGenerator(Vocoder):
    """HiFi-GAN generator: (B, n_mels, F) log-mel → (B, 1, F * prod(upsample_rates)) in [-1, 1]."""

    def __init__(
        self,
        n_mels: int = 80,
        upsample_rates: tuple[int, ...] = (8, 8, 2, 2),
        upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4),
        upsample_initial_channel: int = 512,
        resblock: str = "1",
        resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11),
        resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
    ):
        super().__init__()
        self.n_mels = n_mels
        self.hop_length = math.prod(upsample_rates)
        self.body = _HiFiGANBody(
            n_mels, upsample_rates, upsample_kernel_sizes, upsample_initial_channel,
            resblock, resblock_kernel_sizes, resblock_dilation_sizes,
        )  # fmt: skip
        self.conv_post = _wn_conv1d(self.body.out_channels, 1, 7)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv_post(self.body(mel)))


class ISTFTGenerator(Vocoder):
    """iSTFTNet: HiFi-GAN stages to 1/istft_hop of the sample rate, then magnitude and phase of
    an ``istft_n_fft``-point STFT, inverted with a centred ``torch.istft``.

    (B, n_mels, F) → (B, 1, F * prod(upsample_rates) * istft_hop).
    """

    def __init__(
        self,
        n_mels: int = 80,
        upsample_rates: tuple[int, ...] = (8, 8),
        upsample_kernel_sizes: tuple[int, ...] = (16, 16),
        upsample_initial_channel: int = 512,
        resblock: str = "1",
        resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11),
        resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        istft_n_fft: int = 16,
        istft_hop: int = 4,
    ):
        super().__init__()
        self.n_mels = n_mels
        self.hop_length = math.prod(upsample_rates) * istft_hop
        self.istft_n_fft = istft_n_fft
        self.istft_hop = istft_hop
        self.body = _HiFiGANBody(
            n_mels, upsample_rates, upsample_kernel_sizes, upsample_initial_channel,
            resblock, resblock_kernel_sizes, resblock_dilation_sizes,
        )  # fmt: skip
        self.n_bins = istft_n_fft // 2 + 1
        self.conv_post = _wn_conv1d(self.body.out_channels, 2 * self.n_bins, 7)
        self.register_buffer("window", torch.hann_window(istft_n_fft), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        # float32 for the spectral part even under autocast (no half-precision FFTs or polar)
        x = self.conv_post(self.body(mel)).float().transpose(1, 2)  # (B, L, 2 * n_bins), L = F * prod(rates)
        log_mag, phase = x[..., : self.n_bins], x[..., self.n_bins :]
        # iSTFTNet bounds the phase with π·sin; the magnitude is exp of the first half, capped
        # so an untrained network cannot overflow
        spec = torch.polar(torch.exp(log_mag.clamp(max=10.0)), math.pi * torch.sin(phase))
        audio = _centred_istft(spec, self.istft_n_fft, self.istft_hop, self.window)
        return _clip_in_eval(audio, self.training)


def _centred_istft(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Inverse of a centred STFT: spec (B, L, n_fft // 2 + 1) → exactly L * hop samples (B, 1, L * hop).

    Frame ``k`` is centred on sample ``k * hop``, as in the frontend. A centred iSTFT of L
    frames naturally spans (L - 1) * hop samples; the last hop samples come from the tails of
    the last frames' windows (their window envelope is still far from zero, so they are sound).
    Equal to ``torch.istft(..., center=True, length=L * hop)``; when hop divides n_fft the
    overlap-add is done here as n_fft / hop shifted slice sums, about twice as fast on CPU.
    """
    frames = spec.shape[1]
    if n_fft % hop:
        audio = torch.istft(
            spec.transpose(1, 2), n_fft=n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
            length=frames * hop,
        )  # fmt: skip
        return audio.unsqueeze(1)
    signal = torch.fft.irfft(spec, n=n_fft, dim=-1) * window  # (B, L, n_fft)
    audio = _overlap_add(signal, hop)
    envelope = _overlap_add(window.square().expand(1, frames, n_fft), hop)
    start = n_fft // 2  # undo the centring pad
    audio = audio[:, start : start + frames * hop] / envelope[:, start : start + frames * hop]
    return audio.unsqueeze(1)


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """Overlap-add (B, L, n_fft) frames placed every ``hop`` samples → (B, (L - 1) * hop + n_fft).

    With r = n_fft / hop, slice j of every frame lands on the same hop-long block as slice
    j - 1 of the next frame, so the sum is r shifted copies of (B, L * hop) signals.
    """
    batch, count, n_fft = frames.shape
    ratio = n_fft // hop
    parts = frames.reshape(batch, count, ratio, hop)
    out = None
    for j in range(ratio):
        part = F.pad(parts[:, :, j].reshape(batch, count * hop), (j * hop, (ratio - 1 - j) * hop))
        out = part if out is None else out + part
    return out


def _clip_in_eval(audio: torch.Tensor, training: bool) -> torch.Tensor:
    # no tanh at the end of an iSTFT head (it would bend the spectrum); clip only at inference
    # so training gradients still see samples that overshoot
    return audio if training else audio.clamp(-1.0, 1.0)


# --------------------------------------------------------------------------------------------
# Vocos-style


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block on (B, T, C): depthwise conv, LayerNorm, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + self.gamma * y


class VocosGenerator(Vocoder):
    """ConvNeXt backbone at the mel frame rate, linear head to log-magnitude and phase, iSTFT.

    (B, n_mels, F) → (B, 1, F * hop_length). The head predicts, per frame, ``n_fft // 2 + 1``
    log-magnitudes and as many phases (used through cos/sin, so any real value is a valid
    phase); a centred inverse STFT with the frontend's hop and a Hann window of ``n_fft`` turns
    them into audio (frame ``k`` centred on sample ``k * hop``, as in the frontend).
    """

    def __init__(
        self,
        n_mels: int = 80,
        hop_length: int = 256,
        n_fft: int = 1024,
        dim: int = 256,
        intermediate_dim: int = 768,
        num_layers: int = 6,
        kernel_size: int = 7,
        layer_scale: float | None = None,
        mel_basis: np.ndarray | None = None,
        mel_power: float = 1.0,
    ):
        super().__init__()
        if hop_length > n_fft // 2:
            raise ValueError(f"hop_length {hop_length} must be <= n_fft / 2 = {n_fft // 2}")
        self.n_mels = n_mels
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.n_bins = n_fft // 2 + 1
        self.embed = nn.Conv1d(n_mels, dim, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        scale = 1.0 / num_layers if layer_scale is None else layer_scale
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, intermediate_dim, kernel_size, scale) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 2 * self.n_bins)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.mel_power = mel_power
        if mel_basis is not None:
            if mel_basis.shape != (n_mels, self.n_bins):
                raise ValueError(f"mel_basis must be ({n_mels}, {self.n_bins}), got {mel_basis.shape}")
            inverse = torch.linalg.pinv(torch.as_tensor(mel_basis, dtype=torch.float64)).float()
            self.register_buffer("mel_inverse", inverse, persistent=False)  # rebuilt from the config
            with torch.no_grad():  # start exactly at the pseudo-inverse magnitude
                self.head.weight[: self.n_bins].zero_()
                self.head.bias[: self.n_bins].zero_()
        else:
            self.mel_inverse = None

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        audio = _centred_istft(self.spectrum(mel), self.n_fft, self.hop_length, self.window)
        return _clip_in_eval(audio, self.training)

    def spectrum(self, mel: torch.Tensor) -> torch.Tensor:
        """The complex STFT (B, F, n_bins) the generator predicts for ``mel``, before the iSTFT."""
        x = self.norm(self.embed(mel).transpose(1, 2))  # (B, F, dim)
        for block in self.blocks:
            x = block(x)
        # the spectral part runs in float32 even under autocast (no half-precision FFTs or polar)
        x = self.head(self.final_norm(x)).float()  # (B, F, 2 * n_bins)
        log_mag, phase = x[..., : self.n_bins], x[..., self.n_bins :]
        if self.mel_inverse is not None:
            linear_mel = torch.exp(mel.float() / self.mel_power)  # magnitude mel, whatever the frontend's power
            base = torch.matmul(self.mel_inverse, linear_mel).clamp(min=1e-5).log()  # (B, n_bins, F)
            log_mag = log_mag + base.transpose(1, 2)
        # cap the magnitude (e^10 ≈ 2e4, far above any real frame) so early training cannot overflow
        return torch.polar(torch.exp(log_mag.clamp(max=10.0)), phase)


# --------------------------------------------------------------------------------------------
# Factory


def _mel_prior_arguments(config: VocosConfig, frontend: FrontendConfig, n_fft: int) -> dict:
    if not config.mel_prior:
        return {}
    if n_fft != frontend.n_fft:
        raise ConfigError(f"model.mel_prior needs model.n_fft equal to the frontend's ({frontend.n_fft}), got {n_fft}")
    from audiogen.frontend import mel_filterbank

    return {"mel_basis": mel_filterbank(frontend), "mel_power": frontend.power}


def build_vocoder(model_config: VocoderConfig, frontend: FrontendConfig) -> Vocoder:
    """Build the generator a config describes, checking it against the audio frontend.

    Raises:
        ConfigError: n_mels, hop or n_fft inconsistent with ``frontend``.
    """
    n_mels = frontend.n_mels if model_config.n_mels is None else model_config.n_mels
    if n_mels != frontend.n_mels:
        raise ConfigError(f"model.n_mels {n_mels} differs from the frontend's n_mels {frontend.n_mels}")
    hop = frontend.hop_length
    if isinstance(model_config, (HiFiGANConfig, ISTFTConfig)):
        istft_hop = model_config.istft_hop if isinstance(model_config, ISTFTConfig) else 1
        made = math.prod(model_config.upsample_rates) * istft_hop
        if made != hop:
            what = "product of model.upsample_rates" + (" × model.istft_hop" if istft_hop > 1 else "")
            raise ConfigError(f"{what} is {made}, but the frontend's hop_length is {hop}")
        kwargs = dict(
            n_mels=n_mels,
            upsample_rates=model_config.upsample_rates,
            upsample_kernel_sizes=model_config.upsample_kernel_sizes,
            upsample_initial_channel=model_config.upsample_initial_channel,
            resblock=model_config.resblock,
            resblock_kernel_sizes=model_config.resblock_kernel_sizes,
            resblock_dilation_sizes=model_config.resblock_dilation_sizes,
        )
        if isinstance(model_config, ISTFTConfig):
            return ISTFTGenerator(**kwargs, istft_n_fft=model_config.istft_n_fft, istft_hop=model_config.istft_hop)
        return HiFiGANGenerator(**kwargs)
    if isinstance(model_config, VocosConfig):
        n_fft = frontend.n_fft if model_config.n_fft is None else model_config.n_fft
        if hop > n_fft // 2:
            raise ConfigError(f"model.n_fft {n_fft} is too small for the frontend's hop_length {hop}")
        return VocosGenerator(
            n_mels=n_mels,
            hop_length=hop,
            n_fft=n_fft,
            dim=model_config.dim,
            intermediate_dim=model_config.intermediate_dim,
            num_layers=model_config.num_layers,
            kernel_size=model_config.kernel_size,
            layer_scale=model_config.layer_scale,
            **_mel_prior_arguments(model_config, frontend, n_fft),
        )
    raise ConfigError(f"not a vocoder config: {type(model_config).__name__}")


# --------------------------------------------------------------------------------------------
# Chunked and streaming inference


class _ChunkedVocoder(CrossfadeChunker):
    """:class:`audiogen.overlap.CrossfadeChunker` (fixed chunks with overlap, raised-cosine
    crossfades) on a vocoder: the mel goes to the vocoder's device, the audio comes back to the CPU."""

    def __init__(self, vocoder: Vocoder, chunk_frames: int, overlap_frames: int):
        self.vocoder = vocoder
        self.device = next(vocoder.parameters()).device
        fade_in = torch.from_numpy(raised_cosine_fade_in(2 * (overlap_frames // 2) * vocoder.hop_length))
        super().__init__(self._vocode, chunk_frames, overlap_frames, vocoder.hop_length,
                         lambda pieces: torch.cat(pieces, dim=-1), fade_in)

    def _vocode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocoder(mel)[:, 0].float().cpu()  # (B, frames · hop)

    def push(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """Add frames (B, n_mels, f); return the audio (B, n) that became final."""
        if mel.dim() != 3 or mel.shape[1] != self.vocoder.n_mels:
            raise ValueError(f"expected mel (B, {self.vocoder.n_mels}, frames), got {tuple(mel.shape)}")
        return super().push(mel.to(self.device, torch.float32))


DEFAULT_CHUNK_FRAMES = 1024  # ≈ 12 s at 22.05 kHz / hop 256
DEFAULT_OVERLAP_FRAMES = 64  # ≥ 32 frames of context kept each side of every sample


def vocode(
    vocoder: Vocoder,
    log_mel: torch.Tensor,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    overlap_frames: int = DEFAULT_OVERLAP_FRAMES,
) -> torch.Tensor:
    """Vocode a log-mel spectrogram of any length in bounded memory.

    Runs under ``torch.inference_mode`` in chunks of ``chunk_frames`` with ``overlap_frames``
    of context and crossfade (see :class:`_ChunkedVocoder`); inputs no longer than one chunk
    are vocoded in one call. Call ``vocoder.eval()`` (and ``remove_weight_norm()``) first.

    Args:
        vocoder: any :class:`Vocoder`.
        log_mel: (n_mels, F) or (B, n_mels, F), on any device.
        chunk_frames: frames owned by each chunk (memory grows with it).
        overlap_frames: context frames on each side of a chunk; the crossfade spans as many.

    Returns:
        audio (B, F * hop) float32 on the CPU (B = 1 for an unbatched input).
    """
    mel = log_mel.unsqueeze(0) if log_mel.dim() == 2 else log_mel
    with torch.inference_mode():
        runner = _ChunkedVocoder(vocoder, chunk_frames, overlap_frames)
        pieces = runner.push(mel) + runner.finish()
    return torch.cat(pieces, dim=-1) if pieces else torch.zeros(mel.shape[0], 0)


def vocode_stream(
    vocoder: Vocoder,
    mel_chunks: Iterable[torch.Tensor],
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    overlap_frames: int = DEFAULT_OVERLAP_FRAMES,
) -> Iterator[np.ndarray]:
    """Vocode mel pieces as they arrive; yield audio as soon as it is final.

    The concatenated output equals :func:`vocode` on the concatenated input (same chunk
    layout), whatever the sizes of the pieces. Memory holds about one chunk of mel and audio.

    Args:
        vocoder: any :class:`Vocoder` (in eval mode).
        mel_chunks: pieces (n_mels, f_i) or (B, n_mels, f_i), all batched the same way.
        chunk_frames, overlap_frames: as in :func:`vocode`.

    Yields:
        float32 audio pieces, (n,) for unbatched input, (B, n) for batched input.
    """
    runner = _ChunkedVocoder(vocoder, chunk_frames, overlap_frames)
    squeeze = None
    for piece in mel_chunks:
        if squeeze is None:
            squeeze = piece.dim() == 2
        with torch.inference_mode():
            ready = runner.push(piece.unsqueeze(0) if piece.dim() == 2 else piece)
        for audio in ready:
            yield (audio[0] if squeeze else audio).numpy()
    with torch.inference_mode():
        ready = runner.finish()
    for audio in ready:
        yield (audio[0] if squeeze else audio).numpy()
