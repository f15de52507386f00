"""The transformer flow prior: tokens of frames, and a head that can choose between distinct next
frames where a mean would fall between them (what it shares with the token prior:
test_transformer_priors.py)."""

import pytest
import torch

from audiogen.config import ConfigError
from audiogen.flow_prior import FlowPrior, FlowPriorConfig
from audiogen.priors import build_prior


def tiny(**overrides) -> FlowPrior:
    torch.manual_seed(0)
    args = dict(latent_dim=3, frames_per_token=2, width=16, layers=2, heads=2, mlp_ratio=2, context_tokens=5,
                head_width=16, head_blocks=1, flow_samples=2, sampling_steps=3, input_noise=0.0)
    return FlowPrior(**{**args, **overrides}).eval()


def test_tokens_round_trip_frames_in_order():
    prior = tiny()
    z = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    tokens = prior.to_tokens(z)
    assert tokens.shape == (2, 4, 6)
    assert torch.equal(tokens[0, 1, :3], z[0, :, 2]) and torch.equal(tokens[0, 1, 3:], z[0, :, 3])
    assert torch.equal(prior.to_frames(tokens), z)


def test_head_learns_two_modes_where_a_mean_would_fall_between():
    """Every frame is +1 or -1 at random: a model of the mean would sample near 0; the flow head
    must put its samples near the two modes."""
    torch.manual_seed(0)
    prior = tiny(latent_dim=1, frames_per_token=1, context_tokens=7, sampling_steps=8, flow_samples=8).train()
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    for _ in range(300):
        z = torch.randint(0, 2, (16, 1, 8)).float() * 2 - 1
        loss = prior(z)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    samples = prior.sample(200, generator=torch.Generator().manual_seed(0)).reshape(-1)
    near_modes = ((samples.abs() - 1).abs() < 0.35).float().mean().item()
    near_zero = (samples.abs() < 0.35).float().mean().item()
    both_signs = min((samples > 0).float().mean().item(), (samples < 0).float().mean().item())
    assert near_modes > 0.7 and near_zero < 0.1 and both_signs > 0.25, (near_modes, near_zero, both_signs)


def test_build_prior_by_kind_and_bad_configs():
    assert isinstance(build_prior({"kind": "flow_prior", "width": 16, "heads": 2, "head_width": 8}, 4), FlowPrior)
    with pytest.raises(ConfigError, match="kind must be one of"):
        build_prior({"kind": "diffusion"}, 4)
    with pytest.raises(ConfigError, match="unknown key"):
        build_prior({"kind": "flow_prior", "channels": 8}, 4)
    with pytest.raises(ValueError, match="heads of even size"):
        FlowPriorConfig(width=18, heads=4)


def test_loss_under_bf16_autocast_is_finite_near_fp32_and_trains():
    """What a bf16 GPU run computes: the same loss within a few percent, gradients everywhere."""
    prior = tiny(input_noise=0.2).train()
    z = torch.randn(4, 3, 16)
    torch.manual_seed(1)
    fp32 = prior(z)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = prior(z)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16)
    assert bf16.item() == pytest.approx(fp32.item(), rel=0.05) and bf16.item() != fp32.item()
    bf16.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in prior.parameters())
