"""The spectrogram VAE: log-mel spectrograms to a compact latent sequence and back.

:class:`SpecVAE` compresses a log-mel spectrogram (B, n_mels, F) to a latent sequence
(B, latent_dim, ceil(F / time_ratio)) and decodes it back. It is trained with an L1
reconstruction loss, a KL term with free bits per latent channel (:func:`kl_divergence`,
warmed up by :func:`kl_weight`) and, so that decoded mels are sharp rather than blurred, the
LSGAN and feature-matching losses of :mod:`audiogen.losses` against
:class:`audiogen.discriminators.SpecDiscriminator`. A latent prior (:mod:`audiogen.priors`)
writes new latent sequences; :mod:`audiogen.latents` decodes them in a stream, varies,
interpolates and measures them.

Small experiments behind the bundled configs (FluidSynth renderings of 13 music21 scores,
38 min, 3 pieces held out; one busy CPU core): a VAE like ``configs/spec/piano_cpu.yaml`` reached
a held-out log-mel L1 of 0.58 (through float16 latents, 32x smaller than 16-bit PCM) after 850
steps (5 min).

Units: mels are natural-log magnitudes in the frontend's units (floored at ``log(log_floor)``);
the model normalises internally with fixed constants (``mel_mean``, ``mel_std``) so its
outputs come back in the same units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiogen.frontend import FrontendConfig

LRELU_SLOPE = 0.1
# Bounds on the encoder's log-variance: exp(-12) is far below any useful posterior spread and
# exp(4) far above the prior's; clamping keeps exp() finite in bf16 early in training.
LOGVAR_MIN, LOGVAR_MAX = -12.0, 4.0


@dataclass(frozen=True)
class SpecVAEConfig:
    """The spectrogram VAE (the ``model`` section of a ``vae`` trainer config).

    ``strides`` are the encoder's downsampling factors (their product is ``time_ratio``);
    ``channels`` has one entry per rate: the mel rate, then after each downsampling. Each rate
    has ``res_blocks`` residual blocks of dilated convolutions (``dilations``). ``free_bits``
    (nats per latent channel and frame) and ``kl_warmup_steps`` are read by the trainer.
    ``n_mels`` comes from the frontend, never from here.
    """

    kind: str = "spec_vae"
    latent_dim: int = 32
    strides: tuple[int, ...] = (2, 2)
    channels: tuple[int, ...] = (96, 160, 256)
    res_blocks: int = 2
    dilations: tuple[int, ...] = (1, 3)
    kernel_size: int = 3
    mel_mean: float = -5.5
    mel_std: float = 2.5
    free_bits: float = 0.1
    kl_warmup_steps: int = 2000

    def __post_init__(self) -> None:
        if self.kind != "spec_vae":
            raise ValueError(f"kind must be 'spec_vae', got {self.kind!r}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if not self.strides or any(s < 2 for s in self.strides):
            raise ValueError(f"strides must be a non-empty list of factors >= 2, got {self.strides}")
        if len(self.channels) != len(self.strides) + 1 or any(c < 1 for c in self.channels):
            raise ValueError(f"channels needs {len(self.strides) + 1} positive entries (one per rate), "
                             f"got {self.channels}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.res_blocks < 0 or not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError("res_blocks must be >= 0 and dilations positive")
        if not self.mel_std > 0:
            raise ValueError(f"mel_std must be positive, got {self.mel_std}")
        if self.free_bits < 0 or self.kl_warmup_steps < 0:
            raise ValueError("free_bits and kl_warmup_steps must be >= 0")

    @property
    def time_ratio(self) -> int:
        return math.prod(self.strides)



class _ResBlock(nn.Module):
    """Residual units ``x + conv1x1(lrelu(conv_k,d(lrelu(x))))``, one per dilation.

    Purely local in time (no normalisation over time), so a window decodes like the whole.
    """

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2)
            for d in dilations
        )
        self.mixes = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in dilations)
        self.context = sum(d * (kernel_size - 1) // 2 for d in dilations)  # frames each side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, mix in zip(self.convs, self.mixes, strict=True):
            x = x + mix(F.leaky_relu(conv(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


def _down(c_in: int, c_out: int, stride: int) -> nn.Conv1d:
    """Strided conv with kernel 2·stride that maps length L (a multiple of stride) to L / stride."""
    return nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=(stride + 1) // 2)


def _up(c_in: int, c_out: int, stride: int) -> nn.ConvTranspose1d:
    """Transposed conv with kernel 2·stride that maps length L to exactly L · stride."""
    pad = (stride + 1) // 2
    return nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, padding=pad, output_padding=2 * pad - stride)


class SpecVAE(nn.Module):
    """Convolutional VAE on log-mel spectrograms; mel bins are the channels of 1-D convs.

    Shapes: mel (B, n_mels, F) → latents (B, latent_dim, L) with L = ceil(F / time_ratio) →
    mel (B, n_mels, L · time_ratio). A mel whose length is not a multiple of ``time_ratio`` is
    padded on the right by repeating its last frame; :meth:`forward` crops the output back.
    """

    def __init__(
        self,
        *,
        n_mels: int,
        latent_dim: int = 32,
        strides: tuple[int, ...] = (2, 2),
        channels: tuple[int, ...] = (96, 160, 256),
        res_blocks: int = 2,
        dilations: tuple[int, ...] = (1, 3),
        kernel_size: int = 3,
        mel_mean: float = -5.5,
        mel_std: float = 2.5,
        frontend_config: FrontendConfig | None = None,
    ):
        super().__init__()
        if frontend_config is not None and frontend_config.n_mels != n_mels:
            raise ValueError(f"n_mels {n_mels} differs from the frontend's {frontend_config.n_mels}")
        if len(channels) != len(strides) + 1:
            raise ValueError("channels needs one entry per rate (len(strides) + 1)")
        self.n_mels = n_mels
        self.latent_dim = latent_dim
        self.strides = tuple(strides)
        self.time_ratio = math.prod(self.strides)
        self.mel_mean, self.mel_std = float(mel_mean), float(mel_std)
        self.frontend_config = frontend_config
        io_kernel = 5

        def blocks(c: int) -> list[nn.Module]:
            return [_ResBlock(c, kernel_size, tuple(dilations)) for _ in range(res_blocks)]

        enc: list[nn.Module] = [nn.Conv1d(n_mels, channels[0], io_kernel, padding=io_kernel // 2)]
        for i, stride in enumerate(self.strides):
            enc += blocks(channels[i]) + [_down(channels[i], channels[i + 1], stride)]
        enc += blocks(channels[-1]) + [nn.LeakyReLU(LRELU_SLOPE), nn.Conv1d(channels[-1], 2 * latent_dim, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)

        # The decoder mirrors the encoder. Its context (how many latent frames on each side one
        # output frame depends on) is summed as it is built: decode_stream needs that overlap.
        dec: list[nn.Module] = [nn.Conv1d(latent_dim, channels[-1], 3, padding=1)]
        context, rate = 1.0, 1  # in latent frames; mel frames per frame at this layer's input
        for i in reversed(range(len(self.strides))):
            dec += blocks(channels[i + 1])
            context += res_blocks * dec[-1].context / rate if res_blocks else 0.0
            dec.append(_up(channels[i + 1], channels[i], self.strides[i]))
            context += 2.0 / rate  # a kernel-2s transposed conv reaches < 2 input frames each side
            rate *= self.strides[i]
        dec += blocks(channels[0])
        context += res_blocks * dec[-1].context / rate if res_blocks else 0.0
        dec += [nn.LeakyReLU(LRELU_SLOPE), nn.Conv1d(channels[0], n_mels, io_kernel, padding=io_kernel // 2)]
        context += (io_kernel // 2) / rate
        self.decoder = nn.Sequential(*dec)
        self.decoder_context = math.ceil(context)

    @classmethod
    def from_config(cls, config: SpecVAEConfig, frontend: FrontendConfig) -> SpecVAE:
        """Build from a config; ``n_mels`` comes from the frontend."""
        return cls(
            n_mels=frontend.n_mels,
            latent_dim=config.latent_dim,
            strides=tuple(config.strides),
            channels=tuple(config.channels),
            res_blocks=config.res_blocks,
            dilations=tuple(config.dilations),
            kernel_size=config.kernel_size,
            mel_mean=config.mel_mean,
            mel_std=config.mel_std,
            frontend_config=frontend,
        )

    def latent_frames(self, mel_frames: int) -> int:
        """Latent frames for a mel of ``mel_frames`` frames: ceil(F / time_ratio)."""
        return -(-mel_frames // self.time_ratio)

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters of a mel of any length.

        Args:
            mel: (B, n_mels, F) log-mel in the frontend's units.

        Returns:
            (mu, logvar), each (B, latent_dim, ceil(F / time_ratio)).
        """
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"expected mel (B, {self.n_mels}, F), got {tuple(mel.shape)}")
        x = (mel - self.mel_mean) / self.mel_std
        pad = self.latent_frames(mel.shape[-1]) * self.time_ratio - mel.shape[-1]
        if pad:
            x = F.pad(x, (0, pad), mode="replicate")
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Mel (B, n_mels, L · time_ratio) from latents (B, latent_dim, L), cropped to ``num_frames``."""
        if z.dim() != 3 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents (B, {self.latent_dim}, L), got {tuple(z.shape)}")
        mel = self.decoder(z) * self.mel_std + self.mel_mean
        return mel if num_frames is None else mel[..., :num_frames]

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A posterior sample ``mu + exp(logvar / 2) · ε`` (differentiable in mu and logvar)."""
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * noise

    def forward(self, mel: torch.Tensor, sample: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct a mel.

        Args:
            mel: (B, n_mels, F).
            sample: decode a posterior sample (default while training) or the mean.

        Returns:
            (recon (B, n_mels, F), mu, logvar (B, latent_dim, ceil(F / time_ratio))).
        """
        mu, logvar = self.encode(mel)
        sample = self.training if sample is None else sample
        z = self.reparameterize(mu, logvar) if sample else mu
        return self.decode(z, mel.shape[-1]), mu, logvar


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """KL(q(z|x) ‖ N(0, I)) with free bits per latent channel, in nats per latent element.

    The KL is averaged over batch and time for each channel, each channel's average is raised
    to at least ``free_bits`` (so a channel below it feels no pressure and the encoder is free
    to use it: Kingma et al. 2016), and the channels are averaged.

    Args:
        mu, logvar: (B, D, L).
        free_bits: nats per channel and latent frame that cost nothing.

    Returns:
        A scalar (float32).
    """
    mu, logvar = mu.float(), logvar.float()
    kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)  # (B, D, L)
    per_channel = kl.mean(dim=(0, 2))
    if free_bits > 0:
        per_channel = torch.clamp(per_channel, min=free_bits)
    return per_channel.mean()


def kl_weight(step: int, warmup_steps: int, max_weight: float) -> float:
    """Linear KL warm-up: 0 at step 0, ``max_weight`` from ``warmup_steps`` on."""
    if warmup_steps <= 0:
        return float(max_weight)
    return float(max_weight) * min(1.0, max(0, step) / warmup_steps)
