"""The latent prior families, chosen by the ``kind`` of a prior config's ``model`` section.

- ``latent_prior``: :class:`audiogen.mixture_prior.LatentPrior`, causal dilated convolutions ending in a
  mixture of diagonal Gaussians per frame;
- ``flow_prior``: :class:`audiogen.flow_prior.FlowPrior`, a causal transformer ending in a
  flow-matching head per token.

Both take latents (B, D, L) and give the training loss from ``forward``, and both sample with
``sample_stream(chunk_frames, temperature, generator, context)`` and ``sample(...)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from audiogen.config import ConfigError, from_dict

PRIOR_KINDS = ("latent_prior", "flow_prior")


def build_prior(model: dict[str, Any], latent_dim: int, where: str = "model") -> nn.Module:
    """The prior a config's ``model`` section describes (``latent_prior`` when it names no kind).

    Raises:
        ConfigError: an unknown kind, an unknown key or a bad value.
    """
    kind = (model or {}).get("kind", "latent_prior")
    if kind == "flow_prior":
        from audiogen.flow_prior import FlowPrior, FlowPriorConfig

        return FlowPrior.from_config(from_dict(FlowPriorConfig, model, where), latent_dim=latent_dim)
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
