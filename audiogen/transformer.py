"""The causal transformer trunk the transformer priors share (:mod:`audiogen.flow_prior`,
:mod:`audiogen.token_prior`): pre-norm blocks with rotary position embeddings, and
:class:`TransformerPrior`, their start embedding, teacher-forced windows and sampling state.

Rotary embeddings encode relative positions only, so a sliding key/value cache continues a
piece forever; :meth:`TransformerBlock.step` is one new position against that cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiogen.priors import StreamingPrior, one_thread
from audiogen.surprise_band import SurpriseBand, SurpriseController


def rotary(positions: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (N, head_dim / 2) of rotary embeddings at integer ``positions`` (N,).

    Angles are formed in float64: a sampler's positions grow without bound, and only their
    differences matter, which float32 angles at position 10^4 would blur.
    """
    inv_freq = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None]
    return torch.cos(angles).float(), torch.sin(angles).float()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply rotary embeddings to (B, H, N, dh) with cos/sin (N, dh / 2)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: causal rotary self-attention, then a GELU MLP; (B, N, W)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b, n, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        return rotate(q, cos, sin), rotate(k, cos, sin), v  # (B, H, N, dh) each

    def _finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = attended.shape
        x = x + F.dropout(self.proj(attended.transpose(1, 2).reshape(b, n, -1)), self.dropout, self.training)
        return x + F.dropout(self.mlp(self.norm2(x)), self.dropout, self.training)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x, cos, sin)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                  dropout_p=self.dropout if self.training else 0.0)
        return self._finish(x, attended)

    def step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: list[torch.Tensor],
             window: int) -> torch.Tensor:
        """One new position x (B, 1, W) attending to ``cache`` ([keys, values], (B, H, n, dh))
        and itself; the cache is updated in place and keeps at most ``window`` positions."""
        q, k, v = self._qkv(x, cos, sin)
        keys = torch.cat([cache[0], k], dim=2)[:, :, -window:]
        values = torch.cat([cache[1], v], dim=2)[:, :, -window:]
        cache[0], cache[1] = keys, values
        return self._finish(x, F.scaled_dot_product_attention(q, keys, values))


# --------------------------------------------------------------------------------------------
# What the transformer priors share


@dataclass
class TrunkState:
    """A sampler's state: per block [keys, values] (1, H, n, dh), the next position, and the
    trunk's output for the next token (1, W)."""

    caches: list[list[torch.Tensor]]
    position: int
    summary: torch.Tensor


class TransformerPrior(StreamingPrior):
    """The part of a transformer prior that does not depend on what a token is.

    A learned start embedding stands before a piece's first token. Training windows are random
    crops of pieces, and a sampler's window stops holding the start once a piece is longer than
    the context, so :meth:`_teacher_forced` shows half of each batch with the start and half
    without: both kinds of window are in-distribution. Sampling keeps the last
    ``context_tokens`` keys and values of every block (:meth:`begin`, :meth:`_advance_embedded`).

    Subclasses set ``latent_dim``, ``frames_per_token``, ``context_tokens``, ``head_dim``,
    ``receptive_field`` (= context_tokens · frames_per_token), the parameters ``start`` (W,),
    ``blocks`` (:class:`TransformerBlock`) and ``norm``, and give :meth:`_embed_context`.
    """

    latent_dim: int
    frames_per_token: int
    context_tokens: int
    head_dim: int
    receptive_field: int

    def _embed_context(self, frames: torch.Tensor) -> torch.Tensor:
        """Trunk inputs (1, n, W) of latent frames (1, D, n · frames_per_token)."""
        raise NotImplementedError

    def _device(self) -> torch.device:
        return self.start.device

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Embedded inputs (B, N, W) → causal summaries (B, N, W), position i seeing inputs ≤ i."""
        cos, sin = rotary(torch.arange(x.shape[1], device=x.device), self.head_dim)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.norm(x)

    def _window(self, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The first ``context_tokens + 1`` of a window's tokens (B, N, ...), its latents z (B, D, L) checked."""
        if z.dim() != 3 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents (B, {self.latent_dim}, L), got {tuple(z.shape)}")
        if tokens.shape[1] < 2:
            raise ValueError(f"need at least {2 * self.frames_per_token} latent frames, got {z.shape[-1]}")
        return tokens[:, : self.context_tokens + 1]

    def _teacher_forced(self, embedded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summaries (B, N, W) of a window's embedded tokens (B, N + 1, W), and which items
        (B, 1, 1) saw the start: even items start with the start embedding and predict tokens
        0 .. N-1 (their window is a piece's beginning as far as the model knows), odd ones with
        a real token one step earlier and predict tokens 1 .. N (a window deep inside a piece, as
        a long sample's is). :func:`targets_of` picks what each predicts."""
        n = embedded.shape[1] - 1
        start = self.start.expand(embedded.shape[0], 1, -1).to(embedded.dtype)
        with_start = torch.cat([start, embedded[:, : n - 1]], dim=1)
        has_start = (torch.arange(embedded.shape[0], device=embedded.device) % 2 == 0)[:, None, None]
        return self._trunk(torch.where(has_start, with_start, embedded[:, :n])), has_start

    @torch.inference_mode()
    def begin(self, context: torch.Tensor | None = None) -> TrunkState:
        """The sampler's state after ``context`` (1, D, L) (None: the start of a piece).

        Only whole tokens of the context's last ``receptive_field`` frames are used (a ragged
        front is dropped).
        """
        device = self._device()
        start = self.start.view(1, 1, -1)
        if context is None or context.shape[-1] < self.frames_per_token:
            x = start
        else:
            if context.dim() != 3 or context.shape[:2] != (1, self.latent_dim):
                raise ValueError(f"expected context (1, {self.latent_dim}, L), got {tuple(context.shape)}")
            frames = context[..., -self.receptive_field:].to(device, torch.float32)
            x = self._embed_context(frames[..., frames.shape[-1] % self.frames_per_token:])
            if context.shape[-1] < self.receptive_field:
                x = torch.cat([start, x], dim=1)
        cos, sin = rotary(torch.arange(x.shape[1], device=device), self.head_dim)
        caches = []
        for block in self.blocks:
            q, k, v = block._qkv(x, cos, sin)
            caches.append([k[:, :, -self.context_tokens:], v[:, :, -self.context_tokens:]])
            x = block._finish(x, F.scaled_dot_product_attention(q, k, v, is_causal=True))
        return TrunkState(caches=caches, position=x.shape[1], summary=self.norm(x)[:, -1])

    def _token_sampler(self, generator: torch.Generator | None
                       ) -> Callable[[TrunkState, float, bool], tuple[torch.Tensor, torch.Tensor, float | None]]:
        """A function from a sampler's state, a temperature and whether the surprise is wanted to
        the next token, as :meth:`advance` takes it, its latent frames (1, D, frames_per_token) and
        its surprise in nats (None where the prior has no likelihood of a token or it is not wanted:
        a sampler without a band does not pay for it); it takes its random numbers from ``generator``."""
        raise NotImplementedError

    def sampler(self, temperature: float = 1.0, generator: torch.Generator | None = None,
                context: torch.Tensor | None = None, band: SurpriseBand | None = None) -> TrunkSampler:
        """A sampler that draws tokens on demand and can go back to a checkpoint (what
        :mod:`audiogen.wash_guard` drives), starting after ``context`` as :meth:`begin` does; with a
        ``band``, its temperature follows the surprise of what it drew (:mod:`audiogen.surprise_band`)."""
        return TrunkSampler(self, temperature, generator, context, band)

    @torch.inference_mode()
    def sample_stream(
        self,
        chunk_frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
        band: SurpriseBand | None = None,
    ) -> Iterator[torch.Tensor]:
        """Latent chunks (1, D, chunk_frames) forever, each continuing the ones before.

        Each token takes its random numbers from ``generator`` (on the CPU) in order, so the
        frames depend on the seed, never on ``chunk_frames`` or the device.
        """
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        sampler = self.sampler(temperature, generator, context, band)
        pending = torch.zeros(1, self.latent_dim, 0, device=self._device())
        while True:
            missing = chunk_frames - pending.shape[-1]
            if missing > 0:
                pending = torch.cat([pending, sampler.draw(-(-missing // self.frames_per_token))], dim=-1)
            yield pending[..., :chunk_frames]
            pending = pending[..., chunk_frames:]

    def _advance_embedded(self, state: TrunkState, x: torch.Tensor) -> TrunkState:
        """Feed one embedded token x (1, 1, W) and update the state in place."""
        cos, sin = rotary(torch.tensor([state.position], device=x.device), self.head_dim)
        for block, cache in zip(self.blocks, state.caches, strict=True):
            x = block.step(x, cos, sin, cache, self.context_tokens)
        state.summary = self.norm(x)[:, -1]
        state.position += 1
        return state


class TrunkSampler:
    """A transformer prior's sampler: :meth:`draw` tokens, :meth:`checkpoint` and :meth:`restore`
    its state (:class:`audiogen.wash_guard.RewindableSampler`). A checkpoint costs no copy of the
    caches: the trunk replaces its cache tensors rather than writing into them. With a ``band``, a
    :class:`audiogen.surprise_band.SurpriseController` sets each token's temperature, and is part
    of the checkpoint."""

    def __init__(self, prior: TransformerPrior, temperature: float, generator: torch.Generator | None,
                 context: torch.Tensor | None, band: SurpriseBand | None = None):
        self.prior, self.temperature = prior, temperature
        self.state = prior.begin(context)
        self.controller = SurpriseController(band, temperature) if band is not None else None
        self._next_token = prior._token_sampler(generator)

    @torch.inference_mode()
    def draw(self, tokens: int) -> torch.Tensor:
        """The latent frames (1, D, tokens · frames_per_token) of the next ``tokens`` tokens."""
        frames = []
        with one_thread(self.prior._device()):
            for _ in range(tokens):
                temperature = self.temperature if self.controller is None else self.controller.temperature
                token, token_frames, surprise = self._next_token(self.state, temperature, self.controller is not None)
                if surprise is not None:
                    self.controller.observe(surprise)
                self.prior.advance(self.state, token)
                frames.append(token_frames)
        return torch.cat(frames, dim=-1)

    def checkpoint(self) -> tuple[TrunkState, SurpriseController | None]:
        return _copied(self.state), None if self.controller is None else self.controller.copy()

    def restore(self, checkpoint: tuple[TrunkState, SurpriseController | None]) -> None:
        state, controller = checkpoint
        self.state = _copied(state)
        self.controller = None if controller is None else controller.copy()


def _copied(state: TrunkState) -> TrunkState:
    return TrunkState([list(cache) for cache in state.caches], state.position, state.summary)


def targets_of(tokens: torch.Tensor, has_start: torch.Tensor) -> torch.Tensor:
    """What each item of :meth:`TransformerPrior._teacher_forced` predicts: tokens (B, N + 1, ...)
    → (B, N, ...), tokens 0 .. N-1 for items that saw the start, 1 .. N for the others."""
    n = tokens.shape[1] - 1
    mask = has_start.reshape(-1, *([1] * (tokens.dim() - 1)))
    return torch.where(mask, tokens[:, :n], tokens[:, 1:])
