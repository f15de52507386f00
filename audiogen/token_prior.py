"""A latent prior over discrete tokens: residual codebooks on the VAE's latents, a causal transformer.

The token-LM route of Jukebox and MusicGen, on top of the frozen VAE: each latent frame (D,) is
quantised by ``codebooks`` residual codebooks of ``codebook_size`` words (the first codebook
takes the frame, each next one what the ones before left), and a causal transformer predicts
the codes with a softmax. A categorical over a thousand words can put its mass on several very
different next notes at once, where :mod:`audiogen.mixture_prior`'s per-frame diagonal mixture
averages them into a held chord; and sampling with temperature or top-k trades variety for
safety the way the field's token models do.

- **Codebooks** are fitted online, inside training (VQ-VAE-2's exponential moving averages of
  the frames each word is nearest to; a word that goes unused is moved onto a random frame of
  the batch), for the first ``codebook_steps`` training steps, then frozen: the codes the
  transformer learns to predict stop moving. They live in the module's buffers, so an export
  carries them. Their words are latent frames, so a sampled token decodes with the VAE as is.
- **Tokens**: ``frames_per_token`` frames are one position of the transformer (``frames ·
  codebooks`` codes), so its ``context_tokens`` cover that many times as many seconds.
- **Trunk**: the rotary transformer the flow prior has too (:class:`audiogen.transformer.TransformerPrior`),
  with a sliding key/value cache for sampling (one position costs one small matrix product per
  layer, memory bounded) and a start embedding shown to half of each training batch.
- **Depth head**: the codes of one position are predicted one after another from the trunk's
  summary (an RQ-Transformer-style depth decoder: a residual MLP step per code, fed the code
  just chosen), frame by frame and, within a frame, coarse codebook before fine.
- **Exposure bias**: in training, a share of each window's input codes, drawn uniformly from
  ``[0, input_noise]``, is swapped for codes of the same slot from elsewhere in the batch, while
  the targets stay the true codes. A sampler's mistakes are plausible codes in the wrong place;
  trained only on true contexts, the model reads its own mistakes as the music it should
  continue (the washes a long sample can fall into), and swapped codes are meant to teach it to
  read past them. Off by default: at 0.2 the bundled model's samples washed a little less and
  fell silent instead, with sparser onsets and more drift (docs/priors.md).

``forward(z)`` is the training loss: the mean cross-entropy per code in nats
(``prior/token_ce``); it is not a likelihood of the continuous latents, so compare this prior
with the others by what it generates (tools/fad_benchmark.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiogen.surprise_band import code_surprise
from audiogen.transformer import TransformerBlock, TransformerPrior, TrunkState, targets_of


@dataclass(frozen=True)
class TokenPriorConfig:
    """The token prior (the ``model`` section of a ``prior`` trainer config).

    ``latent_dim`` comes from the VAE, never from here. Training windows hold
    ``context_tokens + 1`` tokens: ``(context_tokens + 1) · frames_per_token · time_ratio`` mel frames.
    """

    kind: str = "token_prior"
    codebooks: int = 2
    codebook_size: int = 1024
    codebook_decay: float = 0.99
    codebook_steps: int = 1000
    frames_per_token: int = 2
    width: int = 192
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 3
    context_tokens: int = 255
    top_k: int = 0
    dropout: float = 0.0
    input_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.kind != "token_prior":
            raise ValueError(f"kind must be 'token_prior', got {self.kind!r}")
        for name in ("codebooks", "frames_per_token", "width", "layers", "heads", "mlp_ratio", "context_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if not 0 < self.codebook_decay < 1:
            raise ValueError(f"codebook_decay must lie in (0, 1), got {self.codebook_decay}")
        if self.codebook_steps < 1:  # the words start as zeros: a prior never fitted would write silence
            raise ValueError(f"codebook_steps must be >= 1, got {self.codebook_steps}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width ({self.width}) must split into {self.heads} heads of even size")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.input_noise <= 1:
            raise ValueError(f"input_noise must be in [0, 1], got {self.input_noise}")


# --------------------------------------------------------------------------------------------
# Residual codebooks


class ResidualCodebooks(nn.Module):
    """``stages`` residual codebooks of ``size`` words in R^dim, fitted by moving averages.

    ``encode`` (..., dim) → codes (..., stages); ``decode`` codes → (..., dim), the sum of the
    chosen words. In training mode, ``update`` moves the words towards the frames nearest to
    them (each stage on the residuals the stages before leave) until ``steps`` updates are done.
    """

    def __init__(self, dim: int, stages: int, size: int, decay: float, steps: int):
        super().__init__()
        self.dim, self.stages, self.size, self.decay, self.max_updates = dim, stages, size, decay, steps
        self.register_buffer("words", torch.zeros(stages, size, dim))
        self.register_buffer("counts", torch.ones(stages, size))
        self.register_buffer("sums", torch.zeros(stages, size, dim))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def _nearest(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        """Index (N,) of the word of ``stage`` nearest to each row of x (N, dim)."""
        words = self.words[stage]
        distance = (x * x).sum(-1, keepdim=True) - 2 * x @ words.T + (words * words).sum(-1)[None]
        return distance.argmin(-1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.dim).float()
        codes = []
        for stage in range(self.stages):
            code = self._nearest(stage, flat)
            codes.append(code)
            flat = flat - self.words[stage][code]
        return torch.stack(codes, -1).reshape(*x.shape[:-1], self.stages)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(*codes.shape[:-1], self.dim, device=self.words.device)
        for stage in range(self.stages):
            out = out + self.words[stage][codes[..., stage]]
        return out

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """One moving-average step on frames x (..., dim); a no-op once ``steps`` are done."""
        if int(self.updates) >= self.max_updates:
            return
        flat = x.reshape(-1, self.dim).float()
        for stage in range(self.stages):
            if int(self.updates) == 0:  # start from frames of the data, not from zeros
                pick = torch.randint(flat.shape[0], (self.size,), device=flat.device)
                self.words[stage].copy_(flat[pick])
                self.sums[stage].copy_(flat[pick])
            code = self._nearest(stage, flat)
            onehot = F.one_hot(code, self.size).to(flat.dtype)  # (N, size)
            self.counts[stage].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
            self.sums[stage].mul_(self.decay).add_(onehot.T @ flat, alpha=1 - self.decay)
            self.words[stage].copy_(self.sums[stage] / self.counts[stage].clamp_min(1e-5)[:, None])
            # a word that has gone unused (its average count under 1 % of a frame) restarts on a random
            # frame of this batch, so every word earns its code
            dead = self.counts[stage] < 1e-2
            if dead.any():
                pick = torch.randint(flat.shape[0], (int(dead.sum()),), device=flat.device)
                self.words[stage][dead] = flat[pick]
                self.sums[stage][dead] = flat[pick]
                self.counts[stage][dead] = 1.0
            flat = flat - self.words[stage][self._nearest(stage, flat)]
        self.updates.add_(1)


# --------------------------------------------------------------------------------------------
# Sampling


def pick_code(logits: torch.Tensor, uniform: float, temperature: float, top_k: int) -> int:
    """The code a uniform number in [0, 1) picks from logits (K,): the first code whose cumulative
    probability under the softmax at ``temperature`` passes it (inverse-CDF sampling), among the
    ``top_k`` likeliest codes when top_k > 0; temperature 0 takes the likeliest code.

    One uniform a code, rather than torch.multinomial, so that any runtime that replays the
    generator's uniforms draws the same codes (:mod:`audiogen.onnx_generation` does, with numpy).
    """
    if temperature <= 0:
        return int(logits.argmax())
    scaled = logits.double() / temperature
    if 0 < top_k < scaled.numel():
        floor = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < floor, float("-inf"))
    cumulative = torch.cumsum(torch.softmax(scaled, -1), -1)
    return int(torch.searchsorted(cumulative, torch.tensor([uniform * float(cumulative[-1])], dtype=torch.float64),
                                  right=True).clamp_max(scaled.numel() - 1))


# --------------------------------------------------------------------------------------------
# The prior


class TokenPrior(TransformerPrior):
    """Autoregressive prior over residual-codebook tokens of latent frames (see the module docstring)."""

    loss_name = "prior/token_ce"

    def __init__(
        self,
        *,
        latent_dim: int,
        codebooks: int = 2,
        codebook_size: int = 1024,
        codebook_decay: float = 0.99,
        codebook_steps: int = 1000,
        frames_per_token: int = 2,
        width: int = 192,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: int = 3,
        context_tokens: int = 255,
        top_k: int = 0,
        dropout: float = 0.0,
        input_noise: float = 0.0,
    ):
        super().__init__()
        self.latent_dim, self.frames_per_token = latent_dim, frames_per_token
        self.codebook_size, self.top_k, self.input_noise = codebook_size, top_k, float(input_noise)
        self.codes_per_token = frames_per_token * codebooks
        self.heads, self.head_dim = heads, width // heads
        self.context_tokens = context_tokens
        self.receptive_field = context_tokens * frames_per_token  # latent frames a sample can see
        self.codebooks = ResidualCodebooks(latent_dim, codebooks, codebook_size, codebook_decay, codebook_steps)
        # one embedding table per code slot of a token; a token's input is the sum of its codes'
        self.embed = nn.Parameter(torch.randn(self.codes_per_token, codebook_size, width) * 0.02)
        self.start = nn.Parameter(torch.randn(width) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, mlp_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        # depth head: slot j reads h_j, then h_{j+1} = h_j + MLP(LN(h_j) + embedding of code j)
        self.depth_norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(self.codes_per_token))
        self.depth_out = nn.ModuleList(nn.Linear(width, codebook_size) for _ in range(self.codes_per_token))
        self.depth_embed = nn.Parameter(torch.randn(self.codes_per_token, codebook_size, width) * 0.02)
        self.depth_mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
            for _ in range(self.codes_per_token - 1))

    @classmethod
    def from_config(cls, config: TokenPriorConfig, latent_dim: int) -> TokenPrior:
        """Build from a config; ``latent_dim`` comes from the VAE."""
        return cls(latent_dim=latent_dim, **{k: getattr(config, k) for k in (
            "codebooks", "codebook_size", "codebook_decay", "codebook_steps", "frames_per_token", "width",
            "layers", "heads", "mlp_ratio", "context_tokens", "top_k", "dropout", "input_noise")})

    # -- tokens

    def to_codes(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, D, L) → codes (B, L // frames, frames · codebooks), frame-major, coarse first
        within a frame; a ragged end is dropped."""
        b, d, length = z.shape
        n = length // self.frames_per_token
        codes = self.codebooks.encode(z[..., : n * self.frames_per_token].transpose(1, 2))  # (B, n·f, S)
        return codes.reshape(b, n, self.codes_per_token)

    def to_frames(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, N, frames · codebooks) → latents (B, D, N · frames)."""
        b, n, _ = codes.shape
        frames = self.codebooks.decode(codes.reshape(b, n * self.frames_per_token, -1))  # (B, n·f, D)
        return frames.transpose(1, 2)

    def _embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, N, J) → trunk inputs (B, N, W): the sum of each slot's embedding."""
        slots = torch.arange(self.codes_per_token, device=codes.device)
        return self.embed[slots, codes].sum(-2)

    # -- training

    def _swapped(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, N, J) with a share of each window's codes (uniform in ``[0, input_noise]``
        a window) replaced by the code of the same slot at a random place of the batch."""
        b, n, j = codes.shape
        by_slot = codes.permute(2, 0, 1).reshape(j, b * n)
        donors = torch.gather(by_slot, 1, torch.randint(b * n, (j, b * n), device=codes.device))
        donors = donors.reshape(j, b, n).permute(1, 2, 0)
        share = torch.rand(b, 1, 1, device=codes.device) * self.input_noise
        return torch.where(torch.rand(codes.shape, device=codes.device) < share, donors, codes)

    def _depth_logits(self, summary: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (..., J, K) of each code slot from the summaries (..., W) and the
        true codes (..., J) of the slots before it."""
        h, logits = summary, []
        for j in range(self.codes_per_token):
            logits.append(self.depth_out[j](self.depth_norms[j](h)))
            if j + 1 < self.codes_per_token:
                h = h + self.depth_mlp[j](self.depth_norms[j](h) + self.depth_embed[j][codes[..., j]])
        return torch.stack(logits, -2)

    def loss(self, z: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per code (nats), z (B, D, L) → scalar, half of the batch after the
        start embedding (:meth:`TransformerPrior._teacher_forced`); in training mode the codebooks
        take one moving-average step on z first (until they are frozen), and the inputs, not the
        targets, have codes swapped (``input_noise``)."""
        if z.dim() != 3 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents (B, {self.latent_dim}, L), got {tuple(z.shape)}")
        if self.training:
            self.codebooks.update(z.transpose(1, 2))
        codes = self._window(z, self.to_codes(z))  # (B, N + 1, J)
        inputs = self._swapped(codes) if self.training and self.input_noise > 0 else codes
        summary, has_start = self._teacher_forced(self._embed_codes(inputs))
        targets = targets_of(codes, has_start)  # (B, N, J)
        logits = self._depth_logits(summary, targets)
        return F.cross_entropy(logits.float().reshape(-1, self.codebook_size), targets.reshape(-1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.loss(z)

    @torch.inference_mode()
    def surprises(self, z: torch.Tensor) -> np.ndarray:
        """The surprise (nats: ``-log p`` of its codes at temperature 1, summed) of each token (N,)
        of latents z (1, D, L) read as a sampler reads what it draws: from the start of a piece,
        each token after the sliding context of the ones before it (:meth:`begin`, :meth:`advance`).

        What :mod:`audiogen.surprise_band` measures a band of real music with."""
        if z.dim() != 3 or z.shape[:2] != (1, self.latent_dim):
            raise ValueError(f"expected latents (1, {self.latent_dim}, L), got {tuple(z.shape)}")
        codes = self.to_codes(z.to(self._device(), torch.float32))[0]  # (N, J)
        state, out = self.begin(), []
        for token in codes:
            logits = self._depth_logits(state.summary, token[None])[0]  # (J, K)
            out.append(-torch.log_softmax(logits.double(), -1).gather(-1, token[:, None]).sum())
            self.advance(state, token[None])
        return torch.stack(out).cpu().numpy() if out else np.zeros(0)

    # -- sampling

    def _embed_context(self, frames: torch.Tensor) -> torch.Tensor:
        return self._embed_codes(self.to_codes(frames))

    @torch.inference_mode()
    def advance(self, state: TrunkState, codes: torch.Tensor) -> TrunkState:
        """Feed one token's codes (1, J) and update the state in place."""
        return self._advance_embedded(state, self._embed_codes(codes.reshape(1, 1, -1).to(self._device())))

    @torch.inference_mode()
    def draw(self, summary: torch.Tensor, temperature: float, generator: torch.Generator | None,
             with_surprise: bool = True) -> tuple[torch.Tensor, float | None]:
        """One token's codes (1, J), slot by slot, each from one uniform of ``generator`` (see
        :func:`pick_code`), and their surprise: ``-log p`` of the codes at temperature 1, in nats
        (:func:`audiogen.surprise_band.code_surprise`; None unless ``with_surprise``)."""
        h, codes, surprise = summary, [], 0.0
        for j in range(self.codes_per_token):
            logits = self.depth_out[j](self.depth_norms[j](h))[0].float().cpu()
            code = pick_code(logits, float(torch.rand((), generator=generator)), temperature, self.top_k)
            if with_surprise:
                surprise += code_surprise(logits.numpy(), code)
            codes.append(code)
            if j + 1 < self.codes_per_token:
                h = h + self.depth_mlp[j](self.depth_norms[j](h) + self.depth_embed[j][int(code)])
        return torch.tensor([codes], device=summary.device), surprise if with_surprise else None

    def _token_sampler(self, generator):
        def next_token(state: TrunkState, temperature: float, with_surprise: bool
                       ) -> tuple[torch.Tensor, torch.Tensor, float | None]:
            codes, surprise = self.draw(state.summary, temperature, generator, with_surprise)  # one uniform a code
            return codes, self.to_frames(codes[:, None]), surprise

        return next_token
