"""Discriminators (shapes, widths, gradients) and losses (zero on identical signals, gradients)."""

import math

import pytest
import torch

from audiogen.config import ConfigError, from_dict
from audiogen.discriminators import (
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    build_discriminators,
)
from audiogen.frontend import MelFrontend
from audiogen.losses import (
    MelL1Loss,
    MultiResolutionSTFTLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    multi_resolution_stft_distance,
)
from audiogen.vocoder import VocosGenerator

SR = 22050


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one intra-op thread is much faster than two on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tone(seconds: float = 0.5, freq: float = 220.0, seed: int = 0) -> torch.Tensor:
    """A decaying harmonic tone plus a little noise, (1, 1, T)."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    y = sum(torch.sin(2 * math.pi * freq * k * t) / k for k in range(1, 6)) * torch.exp(-2 * t)
    y = y + 0.01 * torch.randn(t.shape, generator=gen)
    return (0.4 * y / y.abs().max()).view(1, 1, -1)


def test_paper_sizes_at_full_width():
    # HiFi-GAN's MPD has 41.1 M parameters and its MSD 29.6 M (weight/spectral norm included)
    mpd = sum(p.numel() for p in MultiPeriodDiscriminator().parameters())
    msd = sum(p.numel() for p in MultiScaleDiscriminator().parameters())
    assert abs(mpd / 1e6 - 41.1) < 0.1
    assert abs(msd / 1e6 - 29.6) < 0.1


def test_width_shrinks_and_config_validates():
    full = build_discriminators(DiscriminatorConfig())
    narrow = build_discriminators(DiscriminatorConfig(width=0.25))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(narrow) < count(full) / 8
    assert set(full.members) == {"mpd", "msd"}
    with pytest.raises(ConfigError):
        from_dict(DiscriminatorConfig, {"periods": [], "num_scales": 0, "resolutions": []})
    with pytest.raises(ConfigError):
        from_dict(DiscriminatorConfig, {"resolutions": [[512, 1024, 512]]})
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(DiscriminatorConfig, {"channels": 3})


@pytest.mark.parametrize("length", [4096, 4097, 3000])
def test_all_families_return_scores_and_feature_maps(length):
    config = DiscriminatorConfig(
        periods=(2, 3, 5), num_scales=2, resolutions=((256, 64, 256), (512, 128, 512)), width=0.125
    )
    discs = build_discriminators(config)
    audio = torch.randn(3, 1, length) * 0.1
    scores, fmaps = discs(audio)
    assert len(scores) == len(fmaps) == 3 + 2 + 2
    for score, maps in zip(scores, fmaps, strict=True):
        assert score.dim() == 2 and score.shape[0] == 3
        assert len(maps) >= 5 and all(m.shape[0] == 3 for m in maps)
    # examples are independent: scoring one alone gives its batch row (eval mode: spectral norm
    # runs a power iteration at every training-mode call, which changes the weights slightly)
    discs.eval()
    scores, _ = discs(audio)
    single, _ = discs(audio[1:2])
    for s_batch, s_one in zip(scores, single, strict=True):
        assert torch.allclose(s_batch[1:2], s_one, atol=1e-5)


def test_gradients_flow_through_discriminators_to_the_audio():
    discs = build_discriminators(DiscriminatorConfig(resolutions=((512, 128, 512),), width=0.125))
    audio = (torch.randn(2, 1, 4096) * 0.1).requires_grad_()
    scores, fmaps = discs(audio)
    generator_adversarial_loss(scores).backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0
    assert all(p.grad is not None for p in discs.parameters())


def test_lsgan_losses():
    ones, zeros = [torch.ones(2, 5), torch.ones(2, 3)], [torch.zeros(2, 5), torch.zeros(2, 3)]
    assert discriminator_loss(ones, zeros) == 0  # perfect discriminator
    assert discriminator_loss(zeros, ones) == 4  # 2 sub-discriminators × (1 + 1)
    assert generator_adversarial_loss(ones) == 0
    assert generator_adversarial_loss(zeros) == 2
    fake = [torch.full((2, 4), 0.5, requires_grad=True)]
    generator_adversarial_loss(fake).backward()
    assert (fake[0].grad < 0).all()  # pushes the fake scores up, towards "real"
    with pytest.raises(ValueError):
        discriminator_loss(ones, zeros[:1])


def test_feature_matching_is_zero_for_identical_and_detaches_real():
    real = [[torch.randn(2, 4, 8, requires_grad=True), torch.randn(2, 8)], [torch.randn(2, 3)]]
    same = [[m.detach().clone().requires_grad_() for m in maps] for maps in real]
    assert feature_matching_loss(real, same) == 0
    shifted = [[m + 0.5 for m in maps] for maps in same]
    loss = feature_matching_loss(real, shifted)
    assert torch.isclose(loss, torch.tensor(1.5))  # 3 maps × mean |0.5|
    loss.backward()
    assert real[0][0].grad is None and same[0][0].grad is not None


def test_mel_and_stft_losses_zero_on_identical_larger_on_different():
    mel_loss = MelL1Loss(MelFrontend())
    stft_loss = MultiResolutionSTFTLoss()
    a, b = tone(freq=220.0), tone(freq=233.1, seed=1)
    assert mel_loss(a, a.clone()) == 0
    assert stft_loss(a, a.clone()) == 0
    assert mel_loss(a, b) > 0.1
    assert stft_loss(a, b) > 0.1
    # a slightly perturbed copy is closer than a different note
    near = a + 0.002 * torch.randn_like(a)
    assert 0 < stft_loss(near, a) < stft_loss(b, a)
    assert 0 < mel_loss(near, a) < mel_loss(b, a)
    # silence against silence is defined (the magnitude floor keeps SC and log finite)
    quiet = torch.zeros(1, 4096)
    assert torch.isfinite(stft_loss(quiet, quiet)) and stft_loss(quiet, quiet) == 0
    terms = stft_loss.terms(b, a)
    assert set(terms) == {"stft/sc", "stft/logmag"}
    assert math.isclose(multi_resolution_stft_distance(b, a), float(stft_loss(b, a)), rel_tol=1e-6)
    # the real side may be given as its log-mel
    assert torch.isclose(mel_loss(b, real_mel=MelFrontend()(a[:, 0])), mel_loss(b, a))


def test_losses_reach_a_generator_through_its_istft_head():
    torch.manual_seed(0)
    model = VocosGenerator(dim=16, intermediate_dim=16, num_layers=1).train()
    target = tone(seconds=16 * 256 / SR)
    mel = MelFrontend()(target[:, 0])[..., :16]
    fake = model(mel)
    loss = MelL1Loss(MelFrontend())(fake, target) + MultiResolutionSTFTLoss()(fake, target)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["head.weight"].abs().sum() > 0 and grads["embed.weight"].abs().sum() > 0


def test_a_few_reconstruction_steps_reduce_the_losses():
    """The iSTFT head is trainable: a tiny generator fits one clip's mel better after a few steps."""
    torch.manual_seed(0)
    frontend = MelFrontend()
    model = VocosGenerator(dim=32, intermediate_dim=64, num_layers=2).train()
    target = tone(seconds=32 * 256 / SR)
    mel = frontend(target[:, 0])[..., :32]
    mel_loss, stft_loss = MelL1Loss(frontend), MultiResolutionSTFTLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_now() -> torch.Tensor:
        fake = model(mel)
        return mel_loss(fake, target) + stft_loss(fake, target)

    with torch.no_grad():
        first = float(loss_now())
    for _ in range(40):
        opt.zero_grad()
        loss_now().backward()
        opt.step()
    with torch.no_grad():
        assert float(loss_now()) < 0.7 * first
