"""What the two transformer priors share (audiogen.transformer.TransformerPrior), checked on both:
a causal trunk, a stream that does not depend on its chunking, and a sampler state that equals
stepping and keeps a bounded window."""

import pytest
import torch

from audiogen.flow_prior import FlowPrior
from audiogen.token_prior import TokenPrior


def tiny(family: str):
    torch.manual_seed(0)
    common = dict(latent_dim=3, frames_per_token=2, width=16, layers=2, heads=2, mlp_ratio=2, context_tokens=5)
    if family == "flow":
        return FlowPrior(**common, head_width=16, head_blocks=1, flow_samples=2, sampling_steps=3,
                         input_noise=0.0).eval()
    prior = TokenPrior(**common, codebooks=2, codebook_size=8, codebook_steps=5).eval()
    prior.codebooks.words.copy_(torch.randn_like(prior.codebooks.words))  # as if fitted
    return prior


def tokens_of(prior, z: torch.Tensor) -> torch.Tensor:
    """What the prior's ``advance`` takes for each token of latents z (1, D, L): (N, ...)."""
    return (prior.to_codes(z) if isinstance(prior, TokenPrior) else prior.to_tokens(z))[0]


FAMILIES = pytest.mark.parametrize("family", ["flow", "token"])


@FAMILIES
def test_trunk_is_causal(family):
    prior = tiny(family)
    x = torch.randn(1, 6, 16)
    changed = x.clone()
    changed[:, 4:] = torch.randn(1, 2, 16)
    a, b = prior._trunk(x), prior._trunk(changed)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)


@FAMILIES
def test_stream_does_not_depend_on_chunking_and_follows_the_seed(family):
    prior = tiny(family)
    whole = prior.sample(23, generator=torch.Generator().manual_seed(3))
    stream = prior.sample_stream(4, generator=torch.Generator().manual_seed(3))
    pieces = torch.cat([next(stream) for _ in range(6)], dim=-1)[..., :23]
    assert whole.shape == (1, 3, 23)
    assert torch.allclose(whole, pieces, atol=1e-5)
    assert not torch.allclose(whole, prior.sample(23, generator=torch.Generator().manual_seed(4)))


@FAMILIES
def test_begin_equals_stepping_and_the_window_is_bounded(family):
    """A state built from a context shorter than the window equals feeding its tokens one by
    one; however long the piece, the caches hold at most the window."""
    prior = tiny(family)
    z = torch.randn(1, 3, 2 * 9)  # 9 tokens: more than the 5-token window
    tokens = tokens_of(prior, z)
    short = prior.begin(z[..., :6])  # 3 tokens after the start embedding
    stepped = prior.begin()
    for token in tokens[:3]:
        prior.advance(stepped, token[None])
    assert torch.allclose(short.summary, stepped.summary, atol=1e-5)
    for token in tokens[3:]:
        prior.advance(stepped, token[None])
    assert all(cache[0].shape[2] == cache[1].shape[2] == prior.context_tokens for cache in stepped.caches)
    assert prior.begin(z).caches[0][0].shape[2] == prior.context_tokens
