"""The causal transformer trunk the transformer priors share (:mod:`audiogen.flow_prior`,
:mod:`audiogen.token_prior`): pre-norm blocks with rotary position embeddings.

Rotary embeddings encode relative positions only, so a sliding key/value cache continues a
piece forever; :meth:`TransformerBlock.step` is one new position against that cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
