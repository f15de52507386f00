"""The latent prior families, chosen by the ``kind`` of a prior config's ``model`` section.

- ``latent_prior``: :class:`audiogen.mixture_prior.LatentPrior`, causal dilated convolutions ending in a
  mixture of diagonal Gaussians per frame;
- ``flow_prior``: :class:`audiogen.flow_prior.FlowPrior`, a causal transformer ending in a
  flow-matching head per token;
- ``token_prior``: :class:`audiogen.token_prior.TokenPrior`, residual codebooks on the latent
  frames and a causal transformer ending in a softmax per code.

All are :class:`StreamingPrior`: they take latents (B, D, L) and give the training loss from
``forward``, and sample with ``sample_stream(chunk_frames, temperature, generator, context)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from audiogen.config import ConfigError, from_dict

PRIOR_KINDS = ("latent_prior", "flow_prior", "token_prior")


class StreamingPrior(nn.Module):
    """The contract of a latent prior: ``forward(z)`` with z (B, latent_dim, L) is the training
    loss (a scalar), and ``sample_stream`` yields latent chunks (1, latent_dim, chunk_frames)
    forever, each continuing the ones before (after ``context`` (1, latent_dim, L) if given),
    with frames that depend on the CPU ``generator``'s seed, never on the chunking."""

    latent_dim: int
    loss_name: str  # the logged name of forward's loss (a likelihood and a flow error do not compare)

    def sample_stream(self, chunk_frames: int, temperature: float = 1.0,
                      generator: torch.Generator | None = None,
                      context: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def sample(
        self,
        num_frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``num_frames`` new latent frames (1, D, num_frames), optionally after ``context``."""
        if num_frames < 1:
            return torch.zeros(1, self.latent_dim, 0, device=next(self.parameters()).device)
        return next(self.sample_stream(num_frames, temperature, generator, context))


def build_prior(model: dict[str, Any], latent_dim: int, where: str = "model") -> nn.Module:
    """The prior a config's ``model`` section describes (``latent_prior`` when it names no kind).

    Raises:
        ConfigError: an unknown kind, an unknown key or a bad value.
    """
    kind = (model or {}).get("kind", "latent_prior")
    if kind == "flow_prior":
        from audiogen.flow_prior import FlowPrior, FlowPriorConfig

        return FlowPrior.from_config(from_dict(FlowPriorConfig, model, where), latent_dim=latent_dim)
    if kind == "token_prior":
        from audiogen.token_prior import TokenPrior, TokenPriorConfig

        return TokenPrior.from_config(from_dict(TokenPriorConfig, model, where), latent_dim=latent_dim)
    if kind == "latent_prior":
        from audiogen.mixture_prior import LatentPrior, LatentPriorConfig

        return LatentPrior.from_config(from_dict(LatentPriorConfig, model or {}, where), latent_dim=latent_dim)
    raise ConfigError(f"{where}: kind must be one of {PRIOR_KINDS}, got {kind!r}")


@contextlib.contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
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
