"""A latent prior that can choose among many next frames: a causal transformer with a flow head.

:class:`FlowPrior` models the VAE's latent frames (B, D, L) autoregressively, like
:class:`audiogen.mixture_prior.LatentPrior`, but where that prior ends in one mixture of diagonal
Gaussians per frame — which cannot say "one of these many different next notes" and averages
them into a held chord — this one ends in a small flow-matching network (a conditional
velocity field, as in MAR, Li et al. 2024, with rectified flow's straight paths): given the
transformer's summary of the past, it carries Gaussian noise to a sample of the next token
along an ODE, so the next token's distribution can have any shape.

- **Tokens**: ``frames_per_token`` latent frames (D each) are one token of ``P = D · frames``
  numbers, so the trunk runs at half the latent rate (10.8 tokens/s by default) and
  ``context_tokens`` of attention cover twice as many seconds.
- **Trunk**: pre-norm transformer blocks with rotary position embeddings (relative positions
  only, so a sliding key/value cache continues a piece forever) and causal attention over
  the last ``context_tokens`` tokens. Sampling keeps that window as a key/value cache: one token
  costs one small matrix product per layer, memory is bounded for any length. As in Mistral's
  sliding-window attention, the cached keys of a deeper layer were computed when their own
  window reached further back, so a long sample's state is not a fresh pass over its last
  window (that would cost the whole window per token); up to one window they are equal.
- **Start**: a learned start embedding stands before the first token of a piece. Training
  windows are random crops of pieces, and a sampler's window stops holding the start once a
  piece is longer than the context; so half of each training batch is shown with the start
  and half without, and both kinds of window are in-distribution.
- **Exposure bias**: teacher-forced inputs get Gaussian noise of a per-window std drawn
  uniformly from ``[0, input_noise]`` (continuous autoregressive models drift otherwise).
- **Head**: an MLP of adaptive-LayerNorm residual blocks on (noisy token, flow time, trunk
  output) predicts the velocity ``x1 - x0`` of the straight path ``x_t = (1 - t) x0 + t x1``;
  ``flow_samples`` flow times are drawn per token each step (the head is cheap, the trunk is
  not). Sampling integrates from ``x0 ~ N(0, temperature · I)`` with ``sampling_steps``
  midpoint steps.

``forward(z)`` is the training loss (mean squared velocity error per number), so a
DDP-wrapped prior trains through ``__call__``; it is not a likelihood, so it cannot be compared
with the mixture prior's NLL: compare the two by what they generate (tools/fad_benchmark.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiogen.transformer import TransformerBlock, TransformerPrior, TrunkState, targets_of

TIME_FEATURES = 64  # sinusoidal features of the flow time


@dataclass(frozen=True)
class FlowPriorConfig:
    """The transformer flow prior (the ``model`` section of a ``prior`` trainer config).

    ``latent_dim`` comes from the VAE, never from here. Training windows hold
    ``context_tokens + 1`` tokens (the trainer's ``segment_frames`` should give at least that
    many: ``(context_tokens + 1) · frames_per_token · time_ratio`` mel frames).
    """

    kind: str = "flow_prior"
    frames_per_token: int = 2
    width: int = 256
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    context_tokens: int = 255
    head_width: int = 256
    head_blocks: int = 3
    flow_samples: int = 4
    sampling_steps: int = 8
    input_noise: float = 0.3
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.kind != "flow_prior":
            raise ValueError(f"kind must be 'flow_prior', got {self.kind!r}")
        for name in ("frames_per_token", "width", "layers", "heads", "mlp_ratio", "context_tokens",
                     "head_width", "head_blocks", "flow_samples", "sampling_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width ({self.width}) must split into {self.heads} heads of even size")
        if not 0 <= self.dropout < 1 or self.input_noise < 0:
            raise ValueError("dropout must be in [0, 1) and input_noise >= 0")


# --------------------------------------------------------------------------------------------
# Flow head


def _time_features(t: torch.Tensor) -> torch.Tensor:
    """Sinusoidal features (..., TIME_FEATURES) of flow times t (...,) in [0, 1]."""
    half = TIME_FEATURES // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[..., None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class _AdaBlock(nn.Module):
    """Residual MLP block whose LayerNorm shift, scale and output gate come from the condition."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.modulation = nn.Linear(width, 3 * width)
        nn.init.zeros_(self.modulation.weight)  # each block starts as the identity
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(cond).chunk(3, dim=-1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class _FlowHead(nn.Module):
    """Velocity v(x_t, t | c): noisy token (..., P), flow time (...,), condition (..., C) → (..., P)."""

    def __init__(self, token_dim: int, cond_width: int, width: int, blocks: int):
        super().__init__()
        self.inp = nn.Linear(token_dim, width)
        self.cond = nn.Linear(cond_width, width)
        self.time = nn.Sequential(nn.Linear(TIME_FEATURES, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(_AdaBlock(width) for _ in range(blocks))
        self.out_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.out = nn.Linear(width, token_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.velocity(x, self.time(_time_features(t)), self.cond(c))

    def velocity(self, x: torch.Tensor, time_embedding: torch.Tensor, cond_embedding: torch.Tensor) -> torch.Tensor:
        """The same, with the time and condition already embedded (a sampler reuses them)."""
        cond = F.silu(cond_embedding + time_embedding)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, cond)
        return self.out(self.out_norm(h))


# --------------------------------------------------------------------------------------------
# The prior


class FlowPrior(TransformerPrior):
    """Autoregressive prior over latent frames with a flow-matching head (see the module docstring)."""

    loss_name = "prior/flow_mse"

    def __init__(
        self,
        *,
        latent_dim: int,
        frames_per_token: int = 2,
        width: int = 256,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        context_tokens: int = 255,
        head_width: int = 256,
        head_blocks: int = 3,
        flow_samples: int = 4,
        sampling_steps: int = 8,
        input_noise: float = 0.3,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.latent_dim, self.frames_per_token = latent_dim, frames_per_token
        self.token_dim = latent_dim * frames_per_token
        self.heads, self.head_dim = heads, width // heads
        self.context_tokens, self.flow_samples = context_tokens, flow_samples
        self.sampling_steps, self.input_noise = sampling_steps, float(input_noise)
        self.receptive_field = context_tokens * frames_per_token  # latent frames a sample can see
        self.inp = nn.Linear(self.token_dim, width)
        self.start = nn.Parameter(torch.randn(width) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, mlp_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = _FlowHead(self.token_dim, width, head_width, head_blocks)

    @classmethod
    def from_config(cls, config: FlowPriorConfig, latent_dim: int) -> FlowPrior:
        """Build from a config; ``latent_dim`` comes from the VAE."""
        return cls(latent_dim=latent_dim, **{k: getattr(config, k) for k in (
            "frames_per_token", "width", "layers", "heads", "mlp_ratio", "context_tokens", "head_width",
            "head_blocks", "flow_samples", "sampling_steps", "input_noise", "dropout")})

    # -- tokens

    def to_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, D, L) → tokens (B, L // frames, frames · D), frame-major; a ragged end is dropped."""
        b, d, length = z.shape
        n = length // self.frames_per_token
        return z[..., : n * self.frames_per_token].transpose(1, 2).reshape(b, n, self.token_dim)

    def to_frames(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, frames · D) → latents (B, D, N · frames)."""
        b, n, _ = tokens.shape
        return tokens.reshape(b, n * self.frames_per_token, self.latent_dim).transpose(1, 2)

    # -- training

    def _windows(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced trunk summaries (B, N, W) and the tokens they predict (B, N, P), half
        of the batch after the start embedding (:meth:`TransformerPrior._teacher_forced`)."""
        tokens = self._window(z, self.to_tokens(z))  # (B, N + 1, P)
        inputs = tokens
        if self.training and self.input_noise > 0:
            level = torch.rand(tokens.shape[0], 1, 1, device=z.device) * self.input_noise
            inputs = inputs + level * torch.randn_like(inputs)
        summary, has_start = self._teacher_forced(self.inp(inputs))
        return summary, targets_of(tokens, has_start)

    def loss(self, z: torch.Tensor) -> torch.Tensor:
        """Flow-matching loss (mean squared velocity error per number), z (B, D, L) → scalar."""
        summary, target = self._windows(z)
        k = self.flow_samples
        x1 = target.float().unsqueeze(2).expand(-1, -1, k, -1)  # (B, N, K, P)
        c = summary.unsqueeze(2).expand(-1, -1, k, -1)
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[:-1], device=z.device)
        xt = (1 - t[..., None]) * x0 + t[..., None] * x1
        velocity = self.head(xt.to(c.dtype), t, c)
        return F.mse_loss(velocity.float(), x1 - x0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.loss(z)

    # -- sampling

    def _embed_context(self, frames: torch.Tensor) -> torch.Tensor:
        return self.inp(self.to_tokens(frames))

    @torch.inference_mode()
    def advance(self, state: TrunkState, token: torch.Tensor) -> TrunkState:
        """Feed one token (1, P) and update the state in place."""
        return self._advance_embedded(state, self.inp(token.reshape(1, 1, self.token_dim).to(self._device(),
                                                                                              torch.float32)))

    @torch.inference_mode()
    def draw(self, summary: torch.Tensor, noise: torch.Tensor, temperature: float,
             time_embeddings: torch.Tensor) -> torch.Tensor:
        """One token (1, P): integrate the flow from ``sqrt(temperature) · noise`` (P,) with
        midpoint steps; ``time_embeddings`` (2 · steps, width) from :meth:`_step_times`."""
        x = (math.sqrt(max(temperature, 0.0)) * noise).reshape(1, -1).to(summary.device)
        cond = self.head.cond(summary)
        dt = 1.0 / self.sampling_steps
        for i in range(self.sampling_steps):
            v = self.head.velocity(x, time_embeddings[2 * i], cond)
            v = self.head.velocity(x + 0.5 * dt * v, time_embeddings[2 * i + 1], cond)
            x = x + dt * v
        return x

    def _step_times(self) -> torch.Tensor:
        """The head's time embeddings at each midpoint step's start and middle (2 · steps, width)."""
        dt = 1.0 / self.sampling_steps
        times = torch.tensor([t for i in range(self.sampling_steps) for t in (i * dt, (i + 0.5) * dt)],
                             device=self._device())
        return self.head.time(_time_features(times))

    def _token_sampler(self, generator):
        times = self._step_times()

        def next_token(state: TrunkState, temperature: float, with_surprise: bool
                       ) -> tuple[torch.Tensor, torch.Tensor, None]:
            noise = torch.randn(self.token_dim, generator=generator)  # P normal numbers a token
            token = self.draw(state.summary, noise, temperature, times)
            return token, self.to_frames(token[:, None]), None  # a flow gives no surprise

        return next_token
