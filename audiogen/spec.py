"""The generator of new music: a spectrogram VAE/GAN and an autoregressive prior over its latents.

Two stages, each fully convolutional in time:

1. :class:`SpecVAE` compresses a log-mel spectrogram (B, n_mels, F) to a latent sequence
   (B, latent_dim, ceil(F / time_ratio)) and decodes it back. It is trained with an L1
   reconstruction loss, a KL term with free bits per latent channel (:func:`kl_divergence`,
   warmed up by :func:`kl_weight`) and, so that decoded mels are sharp rather than blurred, the
   LSGAN and feature-matching losses of :mod:`audiogen.losses` against
   :class:`SpecDiscriminator` (2-D convolutions over (mel, time) patches at several time scales).
2. :class:`LatentPrior` models sequences of latent frames autoregressively, so that generated
   music has continuity rather than the texture that independent Gaussian latents decode to.

Why an autoregressive prior rather than a Musika-style latent GAN: the prior is trained by
maximum likelihood, so it has a validation loss that falls steadily and means something
(early stopping and model selection need no listening), it trains stably on a CPU in well
under an hour (no discriminator balance, no mode collapse), and seamless long-form sampling
is native to it: each latent frame is conditioned on everything within the receptive field
before it, so 30 s and 10 minutes are the same loop with a bounded cache. A chunk GAN
conditioned on the previous chunk needs its own seam handling and twice the networks.

Small experiments behind the bundled configs (FluidSynth renderings of 13 music21 scores,
38 min, 3 pieces held out; one busy CPU core): a VAE like ``configs/spec/piano_cpu.yaml`` reached
a held-out log-mel L1 of 0.58 (through float16 latents, 32x smaller than 16-bit PCM) after 850
steps (5 min). A smaller prior (4 dilations, 192 channels), trained 6 minutes on its
posterior samples, reached a held-out NLL of 0.83 nats per latent element against 1.26 for a
per-channel Gaussian fitted to the training latents (1.34 for N(0, I)), and its samples have
the data's scale and frame-to-frame change and keep pitch and register over many seconds
where decoded independent latents are unstructured texture (though, at that training length,
with few new onsets: sustained chords rather than phrases). Without ``input_noise`` and with
a quarter of that training, a sample drifted into silence after a second (exposure bias),
which is why the configs train on noisy inputs.

The prior is a causal stack of dilated convolutions (WaveNet's receptive-field growth with
pre-norm residual blocks) that outputs a mixture of diagonal Gaussians for the next frame.
Sampling keeps, per block, a ring buffer of its last ``(kernel_size - 1) * dilation`` inputs
("fast WaveNet" caching), so one latent frame costs one small matrix product per block and
the memory is bounded for any length. :meth:`LatentPrior.sample_stream` yields chunks forever;
:func:`decode_stream` decodes them with enough latent context on both sides that the
concatenated mel equals decoding the whole sequence at once.

Beyond sampling: :func:`encode_clip`, :func:`variation` (noise or prior-guided resampling near
an encoded clip), :func:`interpolate` (frame-wise slerp between two clips' latents) and
:func:`compression_report` (latent bytes vs 16-bit PCM, reconstruction log-mel L1).

Units: mels are natural-log magnitudes in the frontend's units (floored at ``log(log_floor)``);
the models normalise internally with fixed constants (``mel_mean``, ``mel_std``) so their
outputs come back in the same units.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from audiogen.frontend import FrontendConfig

LRELU_SLOPE = 0.1
# Bounds on the encoder's log-variance: exp(-12) is far below any useful posterior spread and
# exp(4) far above the prior's; clamping keeps exp() finite in bf16 early in training.
LOGVAR_MIN, LOGVAR_MAX = -12.0, 4.0

Scores = list[torch.Tensor]
FeatureMaps = list[list[torch.Tensor]]


# --------------------------------------------------------------------------------------------
# Configs


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


@dataclass(frozen=True)
class LatentPriorConfig:
    """The autoregressive latent prior (the ``model`` section of a ``prior`` trainer config).

    The receptive field is ``1 + (kernel_size - 1) * sum(dilations)`` latent frames.
    ``input_noise`` is the std of Gaussian noise added to the teacher-forced inputs during
    training, which makes sampling robust to the model's own (imperfect) samples.
    ``latent_dim`` comes from the VAE, never from here.
    """

    kind: str = "latent_prior"
    channels: int = 256
    kernel_size: int = 2
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 1, 2, 4, 8, 16, 32)
    num_mixtures: int = 8
    dropout: float = 0.0
    input_noise: float = 0.0
    min_log_scale: float = -7.0

    def __post_init__(self) -> None:
        if self.kind != "latent_prior":
            raise ValueError(f"kind must be 'latent_prior', got {self.kind!r}")
        if self.channels < 1 or self.kernel_size < 2 or self.num_mixtures < 1:
            raise ValueError("channels and num_mixtures must be >= 1, kernel_size >= 2")
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError(f"dilations must be positive, got {self.dilations}")
        if not 0 <= self.dropout < 1 or self.input_noise < 0:
            raise ValueError("dropout must be in [0, 1) and input_noise >= 0")

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * sum(self.dilations)


# --------------------------------------------------------------------------------------------
# VAE


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


# --------------------------------------------------------------------------------------------
# Discriminator


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


# --------------------------------------------------------------------------------------------
# Latent prior


class _CausalBlock(nn.Module):
    """Pre-norm residual block: ``x + W2 · gelu(W1 · [h_{t-(k-1)d}, …, h_{t-d}, h_t])``, h = LN(x).

    Works on (B, L, C) sequences; the causal dilated convolution is written as a linear layer
    on time-shifted copies, so a single step (B, C) uses the very same weights.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.span = (kernel_size - 1) * dilation  # frames of history one step needs
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Linear(kernel_size * channels, channels)
        self.mix = nn.Linear(channels, channels)
        self.dropout = dropout

    def _mlp(self, taps: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.conv(taps))
        return self.mix(F.dropout(h, self.dropout, self.training))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, C) → (output (B, L, C), normalised input (B, L, C) for the sampling cache)."""
        h = self.norm(x)
        length = h.shape[1]
        padded = F.pad(h, (0, 0, self.span, 0))  # zeros before the start: nothing to condition on
        taps = [padded[:, j * self.dilation: j * self.dilation + length] for j in range(self.kernel_size)]
        return x + self._mlp(torch.cat(taps, dim=-1)), h

    def step(self, x: torch.Tensor, buffer: torch.Tensor, t: int) -> torch.Tensor:
        """One frame (B, C) at time ``t``; ``buffer`` (B, span, C) holds h_{t-span..t-1} at index time % span."""
        h = self.norm(x)
        lags = [(self.kernel_size - 1 - j) * self.dilation for j in range(self.kernel_size - 1)]
        taps = [buffer[:, (t - lag) % self.span] for lag in lags]
        out = x + self._mlp(torch.cat(taps + [h], dim=-1))
        buffer[:, t % self.span] = h
        return out


@dataclass
class PriorState:
    """The sampling cache of a :class:`LatentPrior`: one ring buffer per block, the time index,
    and the head's output (the next frame's distribution parameters, (B, K + 2·K·D))."""

    buffers: list[torch.Tensor]
    t: int
    params: torch.Tensor = field(repr=False)


class SamplingNoise:
    """The random numbers of sampling: per frame one uniform (the mixture component) and
    ``dim`` standard normals, drawn from ``generator`` in fixed blocks so that how the frames
    are chunked never changes which numbers a frame gets (and few calls are made)."""

    BLOCK = 64

    def __init__(self, dim: int, generator: torch.Generator | None = None):
        self.dim, self.generator = dim, generator
        self.index = self.BLOCK
        self.uniform = self.normal = None

    def next(self) -> tuple[float, torch.Tensor]:
        """(u in [0, 1), eps (dim,))."""
        if self.index == self.BLOCK:
            self.uniform = torch.rand(self.BLOCK, generator=self.generator).tolist()
            self.normal = torch.randn(self.BLOCK, self.dim, generator=self.generator)
            self.index = 0
        i = self.index
        self.index += 1
        return self.uniform[i], self.normal[i]


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run frame-by-frame CPU sampling on one thread: its matrices are too small to split, and
    waking a thread pool for every tiny op costs more than the op (10x slower on a busy CPU)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class LatentPrior(nn.Module):
    """Autoregressive prior p(z_t | z_{<t}) over VAE latent frames: a mixture of K diagonal
    Gaussians per frame from a causal dilated conv stack (see the module docstring).

    ``forward(z)`` is the training loss (so a DDP-wrapped prior trains through ``__call__``).
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int = 256,
        kernel_size: int = 2,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 1, 2, 4, 8, 16, 32),
        num_mixtures: int = 8,
        dropout: float = 0.0,
        input_noise: float = 0.0,
        min_log_scale: float = -7.0,
    ):
        super().__init__()
        self.latent_dim, self.num_mixtures = latent_dim, num_mixtures
        self.input_noise, self.min_log_scale = float(input_noise), float(min_log_scale)
        self.receptive_field = 1 + (kernel_size - 1) * sum(dilations)
        self.inp = nn.Linear(latent_dim, channels)
        self.blocks = nn.ModuleList(_CausalBlock(channels, kernel_size, d, dropout) for d in dilations)
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, num_mixtures * (1 + 2 * latent_dim))

    @classmethod
    def from_config(cls, config: LatentPriorConfig, latent_dim: int) -> LatentPrior:
        """Build from a config; ``latent_dim`` comes from the VAE."""
        return cls(
            latent_dim=latent_dim,
            channels=config.channels,
            kernel_size=config.kernel_size,
            dilations=tuple(config.dilations),
            num_mixtures=config.num_mixtures,
            dropout=config.dropout,
            input_noise=config.input_noise,
            min_log_scale=config.min_log_scale,
        )

    # -- training

    def _run(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Inputs (B, L, D) → head outputs (B, L, K(1 + 2D)) and each block's normalised input."""
        x = self.inp(frames)
        normed = []
        for block in self.blocks:
            x, h = block(x)
            normed.append(h)
        return self.head(self.norm(x)), normed

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., K(1 + 2D)) → logits (..., K), means and log-scales (..., K, D), in float32."""
        params = params.float()
        k, d = self.num_mixtures, self.latent_dim
        logits = params[..., :k]
        means = params[..., k: k + k * d].unflatten(-1, (k, d))
        log_scales = params[..., k + k * d:].unflatten(-1, (k, d)).clamp(min=self.min_log_scale)
        return logits, means, log_scales

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z_t | z_{<t}) for every frame, in nats: z (B, D, L) → (B, L).

        The first frame is conditioned on nothing (zeros before the start, as when sampling
        from scratch).
        """
        if z.dim() != 3 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents (B, {self.latent_dim}, L), got {tuple(z.shape)}")
        target = z.transpose(1, 2)  # (B, L, D)
        inputs = target
        if self.training and self.input_noise > 0:
            inputs = inputs + self.input_noise * torch.randn_like(inputs)
        inputs = F.pad(inputs, (0, 0, 1, 0))[:, :-1]  # frame t sees frames < t
        params, _ = self._run(inputs)
        logits, means, log_scales = self._split(params)  # (B, L, K), (B, L, K, D)
        x = target.float().unsqueeze(2)
        log_normal = -0.5 * ((x - means) * torch.exp(-log_scales)).square() - log_scales - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(F.log_softmax(logits, dim=-1) + log_normal.sum(-1), dim=-1)

    def loss(self, z: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per latent element (nats), z (B, D, L) → scalar."""
        return -self.log_prob(z).mean() / self.latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.loss(z)

    # -- sampling

    @torch.inference_mode()
    def begin(self, context: torch.Tensor | None = None) -> PriorState:
        """The sampling state after ``context`` (1, D, L) (None: the start of a piece).

        Only the last ``receptive_field`` frames of the context can matter, so only those are
        run; the result is exactly the state that stepping through the whole context gives.
        """
        device = self.head.weight.device
        start = torch.zeros(1, 1, self.latent_dim, device=device)
        if context is None or context.shape[-1] == 0:
            frames = start
        else:
            if context.dim() != 3 or context.shape[:2] != (1, self.latent_dim):
                raise ValueError(f"expected context (1, {self.latent_dim}, L), got {tuple(context.shape)}")
            frames = context[..., -self.receptive_field:].transpose(1, 2).to(device, torch.float32)
            if context.shape[-1] < self.receptive_field:
                frames = torch.cat([start, frames], dim=1)
        params, normed = self._run(frames)
        n = frames.shape[1]
        buffers = []
        for block, h in zip(self.blocks, normed, strict=True):
            buffer = h.new_zeros(1, block.span, h.shape[-1])
            first = max(0, n - block.span)
            buffer[:, torch.arange(first, n, device=device) % block.span] = h[:, first:]
            buffers.append(buffer)
        return PriorState(buffers=buffers, t=n, params=params[:, -1])

    @torch.inference_mode()
    def advance(self, state: PriorState, frame: torch.Tensor) -> PriorState:
        """Feed one frame (1, D) (or (1, D, 1)) and update the state in place."""
        x = self.inp(frame.reshape(1, self.latent_dim).to(self.head.weight.device, torch.float32))
        for block, buffer in zip(self.blocks, state.buffers, strict=True):
            x = block.step(x, buffer, state.t)
        state.params = self.head(self.norm(x))
        state.t += 1
        return state

    def draw(self, params: torch.Tensor, temperature: float, noise: SamplingNoise) -> torch.Tensor:
        """Sample one frame (1, D) from the head's output (1, K(1 + 2D)).

        Temperature divides the mixture logits and multiplies the scales by sqrt(temperature);
        0 takes the most likely component's mean. The component is picked by inverting the
        mixture's CDF at a uniform number, so each frame takes exactly one uniform and D normal
        numbers from ``noise`` whatever the weights.
        """
        k, d = self.num_mixtures, self.latent_dim
        u, eps = noise.next()
        p = params.reshape(-1).float().cpu()
        logits = p[:k]
        if temperature <= 0:
            c = int(logits.argmax())
            return p[k + c * d: k + (c + 1) * d].reshape(1, d).to(params.device)
        probs = torch.softmax(logits / temperature, dim=0)
        c = min(int((probs.cumsum(0) < u).sum()), k - 1)
        mean = p[k + c * d: k + (c + 1) * d]
        log_scale = p[k + (k + c) * d: k + (k + c + 1) * d].clamp(min=self.min_log_scale)
        frame = mean + torch.exp(log_scale) * (math.sqrt(temperature) * eps)
        return frame.reshape(1, d).to(params.device)

    @torch.inference_mode()
    def sample_stream(
        self,
        chunk_frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """Latent chunks (1, D, chunk_frames) forever, each continuing the ones before.

        Memory is bounded (one ring buffer per block). The frames do not depend on
        ``chunk_frames``: the concatenated chunks equal :meth:`sample` of the same total length
        with an identically seeded generator. Random numbers come from ``generator`` on the
        CPU, so a seed gives the same music on any device.

        Args:
            context: optional frames (1, D, L) to continue from (not repeated in the output).
        """
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        state = self.begin(context)
        noise = SamplingNoise(self.latent_dim, generator)
        while True:
            frames = []
            with _one_thread(self.head.weight.device):
                for _ in range(chunk_frames):
                    frame = self.draw(state.params, temperature, noise)
                    frames.append(frame)
                    self.advance(state, frame)
            yield torch.stack(frames, dim=-1)  # (1, D, chunk_frames)

    def sample(
        self,
        num_frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``num_frames`` new latent frames (1, D, num_frames), optionally after ``context``."""
        if num_frames < 1:
            return torch.zeros(1, self.latent_dim, 0, device=self.head.weight.device)
        return next(self.sample_stream(num_frames, temperature, generator, context))


# --------------------------------------------------------------------------------------------
# Long-form decoding, variations, interpolation, compression


@torch.inference_mode()
def decode_stream(
    vae: SpecVAE, latent_chunks: Iterable[torch.Tensor], overlap: int | None = None
) -> Iterator[torch.Tensor]:
    """Decode latent chunks as they arrive; yield mel pieces as soon as they are final.

    Each piece is decoded from a window holding ``overlap`` latent frames of context on each
    side (``vae.decoder_context`` by default: the decoder's whole reach), so the concatenated
    output equals ``vae.decode`` of the concatenated latents, up to float rounding, while
    memory holds only the pending frames plus ``2 · overlap``. A piece is held back until
    ``overlap`` frames after it have arrived; the last one comes when the input ends.

    Args:
        latent_chunks: (1, D, l_i) pieces of one latent sequence (any l_i ≥ 0).
        overlap: context frames per side; less than the decoder's reach trades exactness for speed.

    Yields:
        mel pieces (n_mels, l · time_ratio), in the frontend's units.
    """
    overlap = vae.decoder_context if overlap is None else int(overlap)
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    ratio = vae.time_ratio
    pending: torch.Tensor | None = None  # latent frames [start, start + len)
    start = emitted = 0  # global latent indices: first frame held; first frame not yet decoded

    def window(stop: int) -> torch.Tensor:
        first = max(start, emitted - overlap)
        mel = vae.decode(pending[..., first - start:])[0]
        return mel[:, (emitted - first) * ratio: (stop - first) * ratio]

    for chunk in latent_chunks:
        if chunk.dim() != 3 or chunk.shape[:2] != (1, vae.latent_dim):
            raise ValueError(f"expected latent chunks (1, {vae.latent_dim}, l), got {tuple(chunk.shape)}")
        pending = chunk if pending is None else torch.cat([pending, chunk.to(pending.device)], dim=-1)
        ready = start + pending.shape[-1] - overlap
        if ready > emitted:
            yield window(ready)
            emitted = ready
            keep = max(start, emitted - overlap)
            pending, start = pending[..., keep - start:], keep
    if pending is not None and start + pending.shape[-1] > emitted:
        yield window(start + pending.shape[-1])


@torch.inference_mode()
def encode_clip(vae: SpecVAE, mel: torch.Tensor) -> torch.Tensor:
    """The posterior means (1, D, ceil(F / time_ratio)) of a mel (n_mels, F) or (1, n_mels, F)."""
    if mel.dim() == 2:
        mel = mel.unsqueeze(0)
    mu, _ = vae.encode(mel.to(next(vae.parameters()).device, torch.float32))
    return mu


@torch.inference_mode()
def variation(
    vae: SpecVAE,
    z: torch.Tensor,
    amount: float,
    generator: torch.Generator | None = None,
    prior: LatentPrior | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Latents near ``z`` (1, D, L): 0 returns ``z``, 1 something new in the same spirit.

    Without a prior, each frame is pulled towards fresh N(0, I) noise (the VAE's prior):
    ``sqrt(1 - a²)·z + a·ε``, which keeps the latents' overall scale. With a prior, frames are
    re-sampled in order, each from the prior conditioned on the *varied* frames before it and
    mixed with the original, ``(1 - a)·z_t + a·ẑ_t``: the variation follows its own musical
    continuation instead of adding static.

    Args:
        vae: the model ``z`` came from (its latent size is checked).
        amount: in [0, 1].
        generator: CPU random generator (seeded for reproducible variations).
        prior: optional :class:`LatentPrior` for prior-guided variations.
        temperature: the prior's sampling temperature.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    if z.dim() != 3 or z.shape[:2] != (1, vae.latent_dim):
        raise ValueError(f"expected latents (1, {vae.latent_dim}, L), got {tuple(z.shape)}")
    if amount == 0.0:
        return z.clone()
    if prior is None:
        noise = torch.randn(z.shape, generator=generator).to(z.device, z.dtype)
        return math.sqrt(1.0 - amount**2) * z + amount * noise
    state = prior.begin()
    noise = SamplingNoise(prior.latent_dim, generator)
    frames = []
    for t in range(z.shape[-1]):
        guess = prior.draw(state.params, temperature, noise).to(z.device)
        frame = (1.0 - amount) * z[..., t] + amount * guess
        frames.append(frame)
        prior.advance(state, frame)
    return torch.stack(frames, dim=-1)


def _resample_frames(z: torch.Tensor, length: int) -> torch.Tensor:
    if z.shape[-1] == length:
        return z
    return F.interpolate(z, size=length, mode="linear", align_corners=True)


def interpolate(
    z_a: torch.Tensor, z_b: torch.Tensor, t: float | torch.Tensor, length: int | None = None, spherical: bool = True
) -> torch.Tensor:
    """Frame-wise interpolation between two latent sequences (1, D, L_a) and (1, D, L_b).

    Sequences of different lengths are first stretched (linearly in time) to ``length``
    (default the longer one). Each frame is slerped (``spherical``), which keeps the norm of
    Gaussian-like latents where a plain lerp would shrink them towards silence, or lerped.

    Args:
        t: 0 gives ``z_a``, 1 gives ``z_b``; a tensor (length,) varies it per frame (a morph).

    Returns:
        (1, D, length).
    """
    if z_a.dim() != 3 or z_b.dim() != 3 or z_a.shape[:2] != z_b.shape[:2]:
        raise ValueError(f"expected two (B, D, L) latents of the same size, got {tuple(z_a.shape)}, {tuple(z_b.shape)}")
    length = max(z_a.shape[-1], z_b.shape[-1]) if length is None else int(length)
    a, b = _resample_frames(z_a.float(), length), _resample_frames(z_b.float(), length)
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device).reshape(1, 1, -1)  # (1, 1, 1 or length)
    if not spherical:
        return (1 - t) * a + t * b
    norm_a, norm_b = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    cos = ((a * b).sum(dim=1, keepdim=True) / (norm_a * norm_b).clamp(min=1e-8)).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    # nearly parallel frames: slerp's weights tend to lerp's, and the division is unstable
    safe = sin > 1e-4
    w_a = torch.where(safe, torch.sin((1 - t) * omega) / sin.clamp(min=1e-4), 1 - t)
    w_b = torch.where(safe, torch.sin(t * omega) / sin.clamp(min=1e-4), t)
    return w_a * a + w_b * b


@torch.inference_mode()
def compression_report(vae: SpecVAE, mel: torch.Tensor, num_samples: int | None = None,
                       frontend: FrontendConfig | None = None) -> dict[str, float]:
    """How well a clip survives encode → float16 latents → decode, and how small it gets.

    Args:
        mel: (n_mels, F) or (1, n_mels, F) log-mel of the clip.
        num_samples: the clip's length in samples (default ``(F - 1) · hop``).
        frontend: the audio settings (default the VAE's own).

    Returns:
        ``latent_bytes`` (float16), ``pcm_bytes`` (16-bit mono PCM of the same duration),
        ``ratio`` (pcm / latent), ``latent_rate_hz``, ``latent_dim``, ``kbps`` of the latents,
        ``seconds`` and ``mel_l1`` (mean |log-mel error| of the decoded float16 latents).
    """
    frontend = frontend or vae.frontend_config
    if frontend is None:
        raise ValueError("compression_report needs the frontend config (the VAE has none)")
    if mel.dim() == 2:
        mel = mel.unsqueeze(0)
    mel = mel.float().to(next(vae.parameters()).device)
    stored = encode_clip(vae, mel).half()  # what a compressed file would hold
    recon = vae.decode(stored.float(), mel.shape[-1])
    num_samples = (mel.shape[-1] - 1) * frontend.hop_length if num_samples is None else int(num_samples)
    seconds = num_samples / frontend.sample_rate
    latent_bytes = stored.numel() * 2
    pcm_bytes = num_samples * 2
    return {
        "seconds": seconds,
        "latent_dim": float(vae.latent_dim),
        "latent_rate_hz": frontend.frame_rate / vae.time_ratio,
        "latent_bytes": float(latent_bytes),
        "pcm_bytes": float(pcm_bytes),
        "ratio": pcm_bytes / latent_bytes,
        "kbps": latent_bytes * 8 / max(seconds, 1e-9) / 1000,
        "mel_l1": F.l1_loss(recon, mel).item(),
    }
