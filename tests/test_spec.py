"""Spectrogram VAE/GAN (audiogen.spec, its discriminator), the mixture latent prior
(audiogen.mixture_prior) and the long-form helpers (audiogen.latents)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from audiogen.config import ConfigError, from_dict, read_yaml
from audiogen.discriminators import SpecDiscriminator, SpecDiscriminatorConfig
from audiogen.frontend import FrontendConfig
from audiogen.latents import compression_report, decode_stream, encode_clip, interpolate, rate_report, variation
from audiogen.mixture_prior import LatentPrior, LatentPriorConfig
from audiogen.spec import SpecVAE, SpecVAEConfig, kl_divergence, kl_weight

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "spec"
FRONTEND = FrontendConfig()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a thread pool only adds waiting (badly so on a busy 2-core CI)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_vae(**overrides) -> SpecVAE:
    args = dict(latent_dim=4, strides=(2, 2), channels=(8, 12, 16), res_blocks=1, dilations=(1, 3))
    args.update(overrides)
    torch.manual_seed(0)
    return SpecVAE.from_config(SpecVAEConfig(**args), FRONTEND)


def tiny_prior(latent_dim: int = 4, **overrides) -> LatentPrior:
    args = dict(channels=16, dilations=(1, 2, 4), num_mixtures=3)
    args.update(overrides)
    torch.manual_seed(0)
    return LatentPrior.from_config(LatentPriorConfig(**args), latent_dim=latent_dim).eval()


def piano_like_mel(frames: int, n_mels: int = 80, seed: int = 0) -> torch.Tensor:
    """Log-mel (1, n_mels, frames) of decaying harmonic notes starting at random frames."""
    g = torch.Generator().manual_seed(seed)
    power = torch.full((n_mels, frames), 1e-5)
    bins = torch.arange(n_mels).float()[:, None]
    t = torch.arange(frames).float()[None]
    for _ in range(max(1, frames // 16)):
        onset = int(torch.randint(0, frames, (1,), generator=g))
        root = float(torch.randint(8, 40, (1,), generator=g))
        for harmonic in range(1, 5):
            centre = root + 18 * math.log2(harmonic)
            envelope = torch.exp(-(t - onset).clamp(min=0) / 20) * (t >= onset)
            power = power + envelope * torch.exp(-0.5 * (bins - centre) ** 2) / harmonic
    return torch.log(power).unsqueeze(0)


# --------------------------------------------------------------------------------------------
# VAE


@pytest.mark.parametrize("frames", [1, 3, 5, 17, 64])
def test_vae_shapes_for_any_length(frames):
    vae = tiny_vae()
    mel = piano_like_mel(frames).repeat(2, 1, 1)
    recon, mu, logvar = vae(mel)
    latent = math.ceil(frames / vae.time_ratio)
    assert recon.shape == mel.shape
    assert mu.shape == logvar.shape == (2, vae.latent_dim, latent)
    assert vae.decode(mu).shape == (2, 80, latent * vae.time_ratio)
    assert vae.latent_frames(frames) == latent


def test_vae_rejects_wrong_mel_count():
    with pytest.raises(ValueError, match="80"):
        tiny_vae().encode(torch.zeros(1, 64, 16))


def test_vae_output_is_in_frontend_units():
    """With the decoder's last conv zeroed, the output is exactly the normalisation mean."""
    vae = tiny_vae(mel_mean=-4.0, mel_std=3.0)
    last = vae.decoder[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    out = vae.decode(torch.randn(1, vae.latent_dim, 5))
    assert torch.allclose(out, torch.full_like(out, -4.0))


def test_decode_stream_equals_whole_decode():
    vae = tiny_vae().eval()
    z = torch.randn(1, vae.latent_dim, 61, generator=torch.Generator().manual_seed(1))
    whole = vae.decode(z)[0]
    for sizes in ([61], [1, 1, 1, 1, 1, 56], [7, 0, 13, 2, 30, 9], [40, 21]):
        chunks = torch.split(z, sizes, dim=-1) if 0 not in sizes else [
            z[..., a:b] for a, b in itertools.pairwise(itertools.accumulate([0] + sizes))]
        pieces = list(decode_stream(vae, chunks))
        streamed = torch.cat(pieces, dim=-1)
        assert streamed.shape == whole.shape
        assert torch.allclose(streamed, whole, atol=1e-4), sizes
    # without overlap the seams show: the test above could fail
    cut = torch.cat(list(decode_stream(vae, torch.split(z, 10, dim=-1), overlap=0)), dim=-1)
    assert not torch.allclose(cut, whole, atol=1e-4)


def test_decode_stream_is_incremental_on_an_endless_input():
    """Pieces come out while the input is still arriving, so a 10-minute stream needs no more
    memory than a few chunks (an endless input would otherwise never yield)."""
    vae = tiny_vae().eval()
    g = torch.Generator().manual_seed(0)
    endless = (torch.randn(1, vae.latent_dim, 5, generator=g) for _ in itertools.count())
    pieces = list(itertools.islice(decode_stream(vae, endless), 12))
    assert sum(p.shape[-1] for p in pieces) >= 12 * 5 * vae.time_ratio - 2 * vae.decoder_context * vae.time_ratio
    assert all(p.shape[0] == 80 for p in pieces)


def test_gradients_reach_the_encoder_through_the_reparameterisation():
    vae = tiny_vae().train()
    mel = piano_like_mel(32)
    mu, logvar = vae.encode(mel)
    mu.retain_grad()
    logvar.retain_grad()
    z = vae.reparameterize(mu, logvar)
    F.l1_loss(vae.decode(z, mel.shape[-1]), mel).backward()
    assert mu.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0
    assert vae.encoder[0].weight.grad.abs().sum() > 0


def test_forward_samples_only_while_training():
    vae = tiny_vae()
    mel = piano_like_mel(16)
    vae.eval()
    assert torch.equal(vae(mel)[0], vae(mel)[0])
    vae.train()
    assert not torch.equal(vae(mel)[0], vae(mel)[0])


def test_a_few_steps_reduce_the_reconstruction_loss():
    data = read_yaml(CONFIGS / "tiny.yaml")
    config = from_dict(SpecVAEConfig, data["model"])
    torch.manual_seed(0)
    vae = SpecVAE.from_config(config, FRONTEND)
    mel = torch.cat([piano_like_mel(64, seed=s) for s in range(2)])
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    losses = []
    for step in range(30):
        recon, mu, logvar = vae(mel)
        rec = F.l1_loss(recon, mel)
        loss = rec + kl_weight(step, config.kl_warmup_steps, 1e-2) * kl_divergence(mu, logvar, config.free_bits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(rec.item())
    assert min(losses[-5:]) < 0.75 * losses[0]


# --------------------------------------------------------------------------------------------
# KL


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(2, 3, 5)
    assert kl_divergence(zeros, zeros, 0.0).item() == pytest.approx(0.0, abs=1e-7)
    mu = torch.full((2, 3, 5), 2.0)
    assert kl_divergence(mu, zeros, 0.0).item() == pytest.approx(2.0)  # mu² / 2 nats per element


def test_kl_free_bits_per_channel():
    mu = torch.zeros(2, 3, 5)
    mu[:, 0] = 2.0  # channel 0: 2 nats per frame; channels 1, 2: 0.005 nats
    mu[:, 1:] = 0.1
    mu.requires_grad_(True)
    kl = kl_divergence(mu, torch.zeros_like(mu), free_bits=0.5)
    assert kl.item() == pytest.approx((2.0 + 0.5 + 0.5) / 3)
    kl.backward()
    assert mu.grad[:, 0].abs().sum() > 0  # above the free bits: pushed towards the prior
    assert mu.grad[:, 1:].abs().sum() == 0  # below them: free to carry information


def test_kl_weight_warms_up_linearly():
    assert kl_weight(0, 100, 0.2) == 0.0
    assert kl_weight(50, 100, 0.2) == pytest.approx(0.1)
    assert kl_weight(100, 100, 0.2) == pytest.approx(0.2)
    assert kl_weight(10_000, 100, 0.2) == pytest.approx(0.2)
    assert kl_weight(0, 0, 0.2) == pytest.approx(0.2)


# --------------------------------------------------------------------------------------------
# Discriminator


def test_discriminator_matches_the_loss_format():
    from audiogen.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss

    disc = SpecDiscriminator.from_config(SpecDiscriminatorConfig(channels=(4, 8), scales=3), FRONTEND)
    real, fake = piano_like_mel(33), piano_like_mel(33, seed=1).requires_grad_(True)
    real_scores, real_feats = disc(real)
    fake_scores, fake_feats = disc(fake)
    assert len(real_scores) == len(real_feats) == 3
    assert all(s.dim() == 2 and s.shape[0] == 1 for s in real_scores)
    assert all(len(f) == len(real_feats[0]) for f in real_feats)
    loss = generator_adversarial_loss(fake_scores) + feature_matching_loss(real_feats, fake_feats)
    loss.backward()
    assert fake.grad.abs().sum() > 0
    assert discriminator_loss(real_scores, [s.detach() for s in fake_scores]).item() > 0


def test_discriminator_judges_examples_independently():
    disc = SpecDiscriminator.from_config(SpecDiscriminatorConfig(channels=(4, 8)), FRONTEND)
    a, b = piano_like_mel(24), piano_like_mel(24, seed=3)
    together, _ = disc(torch.cat([a, b]))
    alone, _ = disc(a)
    assert all(torch.allclose(t[:1], s, atol=1e-5) for t, s in zip(together, alone, strict=True))


# --------------------------------------------------------------------------------------------
# Prior


def test_prior_loss_is_a_per_element_nll():
    prior = tiny_prior()
    z = torch.randn(3, 4, 20)
    loss = prior.loss(z)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.allclose(loss, -prior.log_prob(z).mean() / 4)
    assert torch.allclose(prior(z), loss)  # forward is the loss (DDP trains through __call__)


def test_prior_is_causal():
    prior = tiny_prior()
    z = torch.randn(1, 4, 30)
    changed = z.clone()
    changed[..., 20:] += 5.0
    lp, lp_changed = prior.log_prob(z), prior.log_prob(changed)
    assert torch.allclose(lp[:, :20], lp_changed[:, :20], atol=1e-5)
    assert not torch.allclose(lp[:, 20:], lp_changed[:, 20:])


def test_prior_cache_steps_match_the_full_forward():
    """Stepping frame by frame with the ring buffers gives the distributions that the
    training-time forward pass computes, also after a context longer than the receptive field."""
    prior = tiny_prior(kernel_size=3)
    z = torch.randn(1, 4, 40)
    inputs = F.pad(z.transpose(1, 2), (0, 0, 1, 0))  # the start frame, then z
    with torch.no_grad():
        full, _ = prior._run(inputs)  # (1, 41, P): position i predicts z_i
    state = prior.begin()
    assert torch.allclose(state.params, full[:, 0], atol=1e-5)
    for t in range(40):
        prior.advance(state, z[..., t])
        assert torch.allclose(state.params, full[:, t + 1], atol=1e-5), t
    for n in (1, 5, prior.receptive_field - 1, prior.receptive_field, 40):
        primed = prior.begin(context=z[..., :n])
        assert torch.allclose(primed.params, full[:, n], atol=1e-5), n
        if n < 40:  # the cache keeps working after priming
            prior.advance(primed, z[..., n])
            assert torch.allclose(primed.params, full[:, n + 1], atol=1e-5), n


def test_prior_sampling_shapes_and_determinism():
    prior = tiny_prior()
    a = prior.sample(25, generator=torch.Generator().manual_seed(7))
    b = prior.sample(25, generator=torch.Generator().manual_seed(7))
    c = prior.sample(25, generator=torch.Generator().manual_seed(8))
    assert a.shape == (1, 4, 25)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    cold = [prior.sample(10, temperature=0.0, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    assert torch.equal(cold[0], cold[1])  # temperature 0 ignores the random numbers


def test_sample_stream_chunks_continue_one_sequence():
    prior = tiny_prior()
    whole = prior.sample(30, generator=torch.Generator().manual_seed(3))
    stream = prior.sample_stream(7, generator=torch.Generator().manual_seed(3))
    chunks = list(itertools.islice(stream, 5))
    assert all(c.shape == (1, 4, 7) for c in chunks)
    joined = torch.cat(chunks, dim=-1)
    assert torch.allclose(joined[..., :30], whole, atol=1e-6)


def test_sampling_continues_a_context():
    prior = tiny_prior()
    context = torch.randn(1, 4, 12)
    g = torch.Generator().manual_seed(0)
    after = prior.sample(6, generator=g, context=context)
    fresh = prior.sample(6, generator=torch.Generator().manual_seed(0))
    assert after.shape == (1, 4, 6)
    assert not torch.allclose(after, fresh)
    # the stream after a context equals the sample after that context
    streamed = next(prior.sample_stream(6, generator=torch.Generator().manual_seed(0), context=context))
    assert torch.equal(streamed, after)


def test_prior_learns_a_predictable_sequence():
    """A few steps on smooth sequences lower the NLL and the samples follow the data's scale."""
    prior = tiny_prior(dilations=(1, 2))
    prior.train()
    t = torch.arange(48).float()
    phases = torch.rand(8, 4, 1) * 6.28
    z = torch.sin(0.3 * t + phases)  # (8, 4, 48)
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = prior.loss(z)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0
    prior.eval()
    sample = prior.sample(48, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert sample.abs().max() < 3.0


# --------------------------------------------------------------------------------------------
# Variations, interpolation, compression


def test_encode_clip_gives_posterior_means():
    vae = tiny_vae().eval()
    mel = piano_like_mel(21)
    z = encode_clip(vae, mel[0])
    assert z.shape == (1, vae.latent_dim, 6)
    assert torch.allclose(z, vae.encode(mel)[0])


def test_variation_amounts():
    vae = tiny_vae().eval()
    z = encode_clip(vae, piano_like_mel(40))
    assert torch.equal(variation(vae, z, 0.0, torch.Generator().manual_seed(0)), z)
    near = variation(vae, z, 0.1, torch.Generator().manual_seed(0))
    far = variation(vae, z, 0.9, torch.Generator().manual_seed(0))
    assert near.shape == far.shape == z.shape
    assert (near - z).abs().mean() < (far - z).abs().mean()
    again = variation(vae, z, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(near, again)
    with pytest.raises(ValueError):
        variation(vae, z, 1.5)


def test_variation_with_a_prior():
    vae = tiny_vae().eval()
    prior = tiny_prior(latent_dim=vae.latent_dim)
    z = encode_clip(vae, piano_like_mel(40))
    assert torch.allclose(variation(vae, z, 0.0, prior=prior), z)
    half = variation(vae, z, 0.5, torch.Generator().manual_seed(0), prior=prior)
    assert half.shape == z.shape and not torch.allclose(half, z)
    free = variation(vae, z, 1.0, torch.Generator().manual_seed(0), prior=prior)
    # amount 1 is a free prior sample with the same random numbers
    assert torch.allclose(free, prior.sample(z.shape[-1], generator=torch.Generator().manual_seed(0)), atol=1e-5)


def test_interpolate_endpoints_lengths_and_norms():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 8, 10, generator=g), torch.randn(1, 8, 14, generator=g)
    assert interpolate(a, b, 0.0).shape == (1, 8, 14)
    assert torch.allclose(interpolate(a, b, 1.0), b, atol=1e-5)
    same = torch.randn(1, 8, 14, generator=g)
    assert torch.allclose(interpolate(same, b, 0.0), same, atol=1e-5)
    assert interpolate(a, b, 0.5, length=6).shape == (1, 8, 6)
    # orthogonal unit frames: slerp stays on the sphere, lerp cuts through it
    x = torch.zeros(1, 2, 1)
    x[0, 0] = 1.0
    y = torch.zeros(1, 2, 1)
    y[0, 1] = 1.0
    assert interpolate(x, y, 0.5).norm().item() == pytest.approx(1.0, abs=1e-5)
    assert interpolate(x, y, 0.5, spherical=False).norm().item() == pytest.approx(math.sqrt(0.5), abs=1e-5)
    # per-frame t morphs from a to b
    morph = interpolate(same, b, torch.linspace(0, 1, 14))
    assert torch.allclose(morph[..., 0], same[..., 0], atol=1e-5)
    assert torch.allclose(morph[..., -1], b[..., -1], atol=1e-5)


def test_compression_report():
    vae = tiny_vae().eval()
    mel = piano_like_mel(87)
    report = compression_report(vae, mel)
    latent_frames = math.ceil(87 / vae.time_ratio)
    assert report["latent_bytes"] == vae.latent_dim * latent_frames * 2
    assert report["pcm_bytes"] == 86 * FRONTEND.hop_length * 2
    assert report["ratio"] == pytest.approx(report["pcm_bytes"] / report["latent_bytes"])
    assert report["latent_rate_hz"] == pytest.approx(FRONTEND.frame_rate / vae.time_ratio)
    assert report["mel_l1"] > 0 and math.isfinite(report["mel_l1"])


def test_rate_report_measures_the_kl_and_what_codebooks_lose():
    from audiogen.token_prior import ResidualCodebooks

    vae = tiny_vae().eval()
    mels = [piano_like_mel(64, seed=s)[0] for s in range(3)]
    with torch.no_grad():
        stats = [vae.encode(m[None]) for m in mels]
    frames = torch.cat([mu[0].T for mu, _ in stats])  # (3 · 16, D): every posterior mean
    nats = torch.cat([(0.5 * (mu**2 + lv.exp() - 1 - lv)).sum(1).flatten() for mu, lv in stats]).mean().item()

    # codebooks holding every frame as a word lose nothing; a single word (zero) loses the music
    exact = ResidualCodebooks(dim=4, stages=1, size=len(frames), decay=0.9, steps=1)
    exact.words[0].copy_(frames)
    report = rate_report(vae, mels, exact)
    assert report["kl_nats_per_frame"] == pytest.approx(nats, rel=1e-5)
    assert report["kl_bits_per_frame"] == pytest.approx(nats / math.log(2), rel=1e-5)
    assert report["kbit_per_s"] == pytest.approx(report["kl_bits_per_frame"] * FRONTEND.frame_rate / 4 / 1000)
    assert report["codebook_mel_l1"] == pytest.approx(report["vae_mel_l1"], abs=1e-5)
    assert report["codebook_bits_per_frame"] == pytest.approx(math.log2(len(frames)))
    assert report["codebook_use"] == pytest.approx(1.0)
    assert report["spread_max"] >= report["spread_min"] > 0
    silent = ResidualCodebooks(dim=4, stages=1, size=2, decay=0.9, steps=1)  # words stay at zero: silence in
    lossy = rate_report(vae, mels, silent)
    with torch.no_grad():
        zero = [F.l1_loss(vae.decode(torch.zeros_like(mu), 64), m[None]).item()
                for (mu, _), m in zip(stats, mels, strict=True)]
    assert lossy["codebook_mel_l1"] == pytest.approx(sum(zero) / 3, rel=1e-5) and lossy["codebook_use"] == 0.5
    assert lossy["codebook_mel_l1"] != report["vae_mel_l1"]
    assert "codebook_mel_l1" not in rate_report(vae, mels)
    with pytest.raises(ValueError, match="at least one"):
        rate_report(vae, [])


# --------------------------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize("name", ["tiny.yaml", "piano_cpu.yaml", "gpu.yaml"])
def test_vae_configs_build(name):
    from audiogen.tasks import TrainerConfig

    config = from_dict(TrainerConfig, read_yaml(CONFIGS / name), name)
    assert config.task == "vae"
    vae = SpecVAE.from_config(from_dict(SpecVAEConfig, config.model), config.frontend)
    disc = SpecDiscriminator.from_config(from_dict(SpecDiscriminatorConfig, config.discriminator), config.frontend)
    mel = piano_like_mel(2 * vae.time_ratio + 1, n_mels=config.frontend.n_mels)
    with torch.no_grad():
        assert vae(mel)[0].shape == mel.shape
        assert len(disc(mel)[0]) >= 1


@pytest.mark.parametrize("name", ["tiny_prior.yaml", "piano_cpu_prior.yaml", "gpu_prior.yaml"])
def test_prior_configs_build(name):
    from audiogen.tasks import TrainerConfig

    config = from_dict(TrainerConfig, read_yaml(CONFIGS / name), name)
    assert config.task == "prior"
    prior = LatentPrior.from_config(from_dict(LatentPriorConfig, config.model), latent_dim=8)
    assert prior.receptive_field > 1
    vae_file = name.replace("_prior", "")  # each prior config's stage-1 VAE config
    vae = from_dict(SpecVAEConfig, read_yaml(CONFIGS / vae_file)["model"])
    if name != "tiny_prior.yaml":
        # training segments cover the receptive field, or sampling would meet longer contexts
        # than training ever showed
        assert config.train.segment_frames // vae.time_ratio >= prior.receptive_field


@pytest.mark.parametrize("family", ["flow_prior", "token_prior"])
@pytest.mark.parametrize("size", ["tiny", "piano_cpu", "gpu"])
def test_transformer_prior_configs_build_and_their_windows_hold_the_context(family, size):
    from audiogen.priors import build_prior
    from audiogen.tasks import TrainerConfig

    name = f"{size}_{family}.yaml"
    config = from_dict(TrainerConfig, read_yaml(CONFIGS / name), name)
    assert config.task == "prior" and config.model["kind"] == family
    prior = build_prior(config.model, latent_dim=8, where=name)
    vae = from_dict(SpecVAEConfig, read_yaml(CONFIGS / f"{size}.yaml")["model"])
    # a training window holds the whole context and one token to predict, as sampling will see
    needed = (prior.context_tokens + 1) * prior.frames_per_token * vae.time_ratio
    assert config.train.segment_frames >= needed, (config.train.segment_frames, needed)


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(SpecVAEConfig, {"latent_dims": 8})
    with pytest.raises(ConfigError, match="channels"):
        from_dict(SpecVAEConfig, {"strides": [2, 2, 2], "channels": [8, 8]})
    with pytest.raises(ConfigError, match="kind"):
        from_dict(LatentPriorConfig, {"kind": "spec_vae"})
