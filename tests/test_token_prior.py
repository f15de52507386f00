"""The token prior: residual codebooks that fit and freeze, codes that decode to their words, and
a softmax that learns a rule and keeps a choice open (what it shares with the flow prior:
test_transformer_priors.py)."""

import pytest
import torch

from audiogen.config import ConfigError
from audiogen.priors import build_prior
from audiogen.token_prior import ResidualCodebooks, TokenPrior, TokenPriorConfig


def tiny(**overrides) -> TokenPrior:
    torch.manual_seed(0)
    args = dict(latent_dim=3, codebooks=2, codebook_size=8, codebook_steps=5, frames_per_token=2, width=16,
                layers=2, heads=2, mlp_ratio=2, context_tokens=5)
    prior = TokenPrior(**{**args, **overrides}).eval()
    prior.codebooks.words.copy_(torch.randn_like(prior.codebooks.words))  # as if fitted
    return prior


def clusters(n: int, centres: torch.Tensor, noise: float = 0.02) -> torch.Tensor:
    """n points (n, dim), each a random centre plus a little Gaussian noise."""
    return centres[torch.randint(len(centres), (n,))] + noise * torch.randn(n, centres.shape[1])


def test_codebooks_find_the_clusters_then_freeze():
    torch.manual_seed(0)
    centres = torch.randn(6, 4) * 3
    books = ResidualCodebooks(dim=4, stages=1, size=8, decay=0.8, steps=40)
    for _ in range(40):
        books.update(clusters(512, centres))
    x = clusters(2000, centres)
    error = ((books.decode(books.encode(x)) - x) ** 2).mean() / x.var(0).mean()
    assert error < 0.01, error.item()
    frozen = books.words.clone()
    books.update(clusters(512, centres * 2))  # after `steps` updates nothing moves
    assert torch.equal(books.words, frozen) and int(books.updates) == 40


def test_each_residual_stage_takes_what_the_ones_before_left():
    torch.manual_seed(0)
    x = torch.randn(4000, 4)
    errors = []
    for stages in (1, 2, 3):
        books = ResidualCodebooks(dim=4, stages=stages, size=16, decay=0.8, steps=30)
        for _ in range(30):
            books.update(x[torch.randint(len(x), (1024,))])
        codes = books.encode(x)
        assert codes.shape == (4000, stages) and codes.max() < 16
        errors.append(((books.decode(codes) - x) ** 2).mean().item())
    assert errors[0] > errors[1] > errors[2], errors


def test_codes_of_a_token_decode_to_the_sum_of_their_words_frame_by_frame():
    prior = tiny().train()
    z = torch.randn(2, 3, 40)
    prior.loss(z)  # one codebook update: words taken from these frames
    codes = prior.to_codes(z[..., :8])
    assert codes.shape == (2, 4, 4)  # 4 tokens of 2 frames x 2 codebooks
    frames = prior.to_frames(codes)
    words = prior.codebooks.words
    first = words[0][codes[0, 1, 0]] + words[1][codes[0, 1, 1]]  # token 1, frame 0
    second = words[0][codes[0, 1, 2]] + words[1][codes[0, 1, 3]]  # token 1, frame 1
    assert torch.allclose(frames[0, :, 2], first) and torch.allclose(frames[0, :, 3], second)


def test_learns_a_rule_and_keeps_a_real_choice_open():
    """Each piece starts at +1 or -1 at random and then alternates sign every frame. A sampler
    must follow the rule (a mean model would drift to 0) and start on both signs about equally
    (a mode-seeking one would always pick the same)."""
    torch.manual_seed(0)
    prior = tiny(latent_dim=1, codebooks=1, codebook_size=4, codebook_steps=20, frames_per_token=1,
                 context_tokens=7).train()
    optimizer = torch.optim.Adam([p for p in prior.parameters()], lr=1e-2)
    signs = torch.tensor([1.0, -1.0] * 4)
    for _ in range(250):
        start = torch.randint(0, 2, (32, 1, 1)).float() * 2 - 1
        loss = prior(start * signs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    firsts, follows = [], []
    for seed in range(40):
        sample = prior.sample(6, generator=torch.Generator().manual_seed(seed)).reshape(-1)
        assert ((sample.abs() - 1).abs() < 0.1).all(), sample  # the words sit on the two values
        firsts.append(float(sample[0] > 0))
        follows.extend((sample[1:] * sample[:-1] < 0).tolist())
    assert sum(follows) / len(follows) > 0.95
    assert 0.25 < sum(firsts) / len(firsts) < 0.75, firsts


def test_top_k_one_is_the_likeliest_code_whatever_the_seed():
    prior = tiny(top_k=1)
    a = prior.sample(10, generator=torch.Generator().manual_seed(1))
    b = prior.sample(10, generator=torch.Generator().manual_seed(2))
    greedy = prior.sample(10, temperature=0.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(a, greedy)
    assert not torch.equal(tiny().sample(10, generator=torch.Generator().manual_seed(1)),
                           tiny().sample(10, generator=torch.Generator().manual_seed(2)))


def test_build_prior_by_kind_and_bad_configs():
    assert isinstance(build_prior({"kind": "token_prior", "width": 16, "heads": 2, "codebook_size": 8}, 4),
                      TokenPrior)
    with pytest.raises(ConfigError, match="unknown key"):
        build_prior({"kind": "token_prior", "head_width": 8}, 4)
    for bad in (dict(codebook_size=1), dict(codebook_decay=1.0), dict(codebooks=0), dict(codebook_steps=0),
                dict(top_k=-1), dict(width=18, heads=4), dict(input_noise=-0.1), dict(input_noise=1.5)):
        with pytest.raises(ValueError):
            TokenPriorConfig(**bad)


def test_input_noise_swaps_a_window_share_of_codes_for_codes_of_the_same_slot():
    prior = tiny(input_noise=0.6)
    torch.manual_seed(3)
    # slot j holds codes j·2 and j·2 + 1 only (codebook_size 8, 4 slots): a swap stays in its slot's pair
    codes = torch.randint(2, (64, 40, 4)) + 2 * torch.arange(4)
    swapped = prior._swapped(codes)
    assert ((swapped // 2) == torch.arange(4)).all()
    changed = (swapped != codes).float().mean((1, 2))  # per window
    # a window's share is uniform in [0, 0.6] and half of the swaps pick the same code: mean 0.15
    assert 0.11 < float(changed.mean()) < 0.19
    assert float(changed.min()) < 0.05 and float(changed.max()) > 0.22  # the share varies by window


def test_input_noise_touches_the_inputs_in_training_only_never_the_targets():
    clean, noisy = tiny(), tiny(input_noise=1.0)
    for prior in (clean, noisy):
        prior.codebooks.updates.fill_(prior.codebooks.max_updates)  # frozen: no moving-average step
    z = torch.randn(4, 3, 24)
    assert torch.equal(clean.loss(z), noisy.loss(z))  # eval mode: the true codes in, as a sampler sees them
    clean.train(), noisy.train()
    assert torch.equal(clean.loss(z), clean.loss(z))
    assert not torch.equal(noisy.loss(z), clean.loss(z))
    # inputs come from _swapped, targets do not: with another window's codes swapped in, the loss
    # is not that window's own loss (whose targets are its codes), and with none swapped it is z's
    z_other = torch.randn(4, 3, 24)
    noisy._swapped = lambda codes: clean._window(z_other, clean.to_codes(z_other))
    assert not torch.allclose(noisy.loss(z), clean.loss(z_other))
    noisy._swapped = lambda codes: codes
    assert torch.equal(noisy.loss(z), clean.loss(z))


def test_loss_under_bf16_autocast_is_finite_near_fp32_and_trains():
    """What a bf16 GPU run computes: the same loss within a few percent, gradients everywhere."""
    prior = tiny().train()
    prior.codebooks.updates.fill_(prior.codebooks.max_updates)  # frozen: both passes see the same codes
    z = torch.randn(4, 3, 16)
    fp32 = prior(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = prior(z)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16)
    assert bf16.item() == pytest.approx(fp32.item(), rel=0.05) and bf16.item() != fp32.item()
    bf16.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in prior.parameters())


def test_pick_code_is_inverse_cdf_sampling_of_the_tempered_top_k_softmax():
    from audiogen.token_prior import pick_code

    logits = torch.tensor([2.0, 0.5, -1.0, 1.0, 0.0])
    grid = [(i + 0.5) / 2000 for i in range(2000)]  # evenly spread uniforms: counts are the probabilities
    for temperature, top_k in ((1.0, 0), (0.5, 0), (1.0, 2)):
        counts = torch.bincount(torch.tensor([pick_code(logits, u, temperature, top_k) for u in grid]), minlength=5)
        scaled = logits / temperature
        if top_k:
            scaled = scaled.masked_fill(scaled < torch.topk(scaled, top_k).values[-1], float("-inf"))
        assert torch.allclose(counts / 2000, torch.softmax(scaled, -1), atol=1e-3), (temperature, top_k, counts)
    assert pick_code(logits, 0.999, 0.0, 0) == 0 and pick_code(logits, 0.0, 1.0, 0) == 0
    assert pick_code(logits, 0.9999999, 1.0, 2) == 3  # the last code kept, never one masked out
