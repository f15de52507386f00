"""The surprise band: its controller, the band of real music, and the samplers that follow it."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

from audiogen.surprise_band import (
    BAND_FILE,
    SurpriseBand,
    SurpriseController,
    band_of_surprises,
    code_surprise,
    moving_average,
    read_band,
)

BAND = SurpriseBand(low=10.0, high=14.0, memory_tokens=4.0, gain=0.1, min_scale=0.8, max_scale=1.25)


def run(controller: SurpriseController, surprises) -> list[float]:
    temperatures = []
    for surprise in surprises:
        controller.observe(surprise)
        temperatures.append(controller.temperature)
    return temperatures


def test_a_predictable_stretch_heats_the_sampler_up_after_it_settles():
    temperatures = run(SurpriseController(BAND, 1.0), [8.0] * 4 + [9.0] * 20)
    assert temperatures[:3] == [1.0, 1.0, 1.0]  # the first memory_tokens tokens do not steer
    assert temperatures[3] == pytest.approx(math.exp(0.1 * 2.0), rel=2e-3)  # 2 nats below: 0.1 of the log a nat
    assert temperatures[-1] == pytest.approx(math.exp(0.1 * 1.0), rel=2e-3)  # the average came up to 9
    assert run(SurpriseController(BAND, 1.0), [0.0] * 10)[-1] == pytest.approx(1.25, rel=2e-3)  # its bound


def test_a_surprising_stretch_cools_it_down_to_its_bound():
    temperatures = run(SurpriseController(BAND, 0.9), [15.0] * 4 + [30.0] * 20)
    assert temperatures[3] == pytest.approx(0.9 * math.exp(-0.1), rel=2e-3)
    assert temperatures[-1] == pytest.approx(0.9 * 0.8, rel=2e-3)


def test_inside_the_band_the_temperature_is_the_one_asked_for():
    controller = SurpriseController(BAND, 1.0)
    hot = run(controller, [6.0] * 10)[-1]
    back = run(controller, [12.0] * 40)
    assert hot > 1.1 and back[-1] == 1.0
    assert 1.0 in back[:20] and back.index(1.0) > 0  # once the average is back inside


def test_a_copy_goes_on_alone():
    controller = SurpriseController(BAND, 1.0)
    run(controller, [6.0] * 5)
    twin = controller.copy()
    run(controller, [20.0] * 5)
    assert twin.temperature != controller.temperature
    assert run(twin, [20.0] * 5)[-1] == controller.temperature


def test_code_surprise_is_minus_log_softmax():
    logits = np.array([2.0, -1.0, 0.5, 3.0], dtype=np.float32)
    expected = -torch.log_softmax(torch.tensor(logits, dtype=torch.float64), -1)
    assert [code_surprise(logits, k) for k in range(4)] == pytest.approx(expected.tolist(), abs=1e-12)


def test_the_band_is_quantiles_of_the_moving_average_after_it_settles():
    rng = np.random.default_rng(0)
    pieces = [rng.normal(12.0, 3.0, 400), rng.normal(15.0, 3.0, 300)]
    band = band_of_surprises(pieces, (0.1, 0.9), memory_tokens=8.0)
    pooled = np.concatenate([moving_average(p, 8.0)[8:] for p in pieces])
    assert (band.low, band.high) == pytest.approx(tuple(np.quantile(pooled, (0.1, 0.9))))
    assert 11.0 < band.low < 13.5 < band.high < 16.0
    with pytest.raises(ValueError, match="longer than 8 tokens"):
        band_of_surprises([np.ones(8)], memory_tokens=8.0)


@pytest.mark.parametrize("bad", [dict(low=5, high=4), dict(low=-1, high=4), dict(low=1, high=4, memory_tokens=0),
                                 dict(low=1, high=4, min_scale=1.1), dict(low=1, high=4, gain=-1)])
def test_bad_bands_are_refused(bad):
    with pytest.raises(ValueError):
        SurpriseBand(**bad)


def test_a_model_folder_carries_its_band(tmp_path):
    assert read_band(tmp_path) is None
    (tmp_path / BAND_FILE).write_text(json.dumps({"band": BAND.to_dict(), "split": "validation"}))
    assert read_band(tmp_path) == BAND
    (tmp_path / BAND_FILE).write_text('{"band": {"low": 1, "high": 2, "colour": 3}}')
    with pytest.raises(ValueError, match="unknown surprise band keys"):
        read_band(tmp_path)
    (tmp_path / BAND_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        read_band(tmp_path)


# ------------------------------------------------------------------------------ the token prior


def tiny_prior():
    from audiogen.token_prior import TokenPrior

    torch.manual_seed(0)
    prior = TokenPrior(latent_dim=4, codebooks=2, codebook_size=16, frames_per_token=2, width=16, layers=2, heads=2,
                       mlp_ratio=2, context_tokens=6, codebook_steps=1).eval()
    prior.codebooks.update(torch.randn(64, 4))
    return prior


class Recording(SurpriseController):
    """A controller at temperature 1 that keeps what it heard; without a band it steers nowhere."""

    def __init__(self, band=None):
        super().__init__(band or SurpriseBand(0.0, 0.0, gain=0.0), 1.0)
        self.heard = []

    def observe(self, surprise):
        self.heard.append(surprise)
        super().observe(surprise)


def test_the_surprises_of_real_latents_are_what_a_sampler_hears_drawing_them():
    prior = tiny_prior()
    with torch.no_grad():  # stage 1 the corners of a cube, stage 2 small: codes survive decoding
        prior.codebooks.words[0].copy_(torch.tensor(list(itertools.product([-1.0, 1.0], repeat=4))))
        prior.codebooks.words[1].mul_(0.01)
    sampler = prior.sampler(1.0, torch.Generator().manual_seed(2))
    sampler.controller = recording = Recording()
    drawn = sampler.draw(15)  # past the context: the caches have started to slide
    np.testing.assert_allclose(prior.surprises(drawn), recording.heard, rtol=1e-6)
    assert min(recording.heard) > 0
    with pytest.raises(ValueError, match="expected latents"):
        prior.surprises(drawn[0])


def test_a_banded_sampler_goes_back_to_its_checkpoint_with_its_temperature():
    prior = tiny_prior()
    band = SurpriseBand(low=9.0, high=9.5, memory_tokens=2.0, gain=0.2, min_scale=0.5, max_scale=2.0)
    generator = torch.Generator().manual_seed(1)
    sampler = prior.sampler(1.0, generator, band=band)
    sampler.draw(8)
    here, random_here = sampler.checkpoint(), generator.get_state()
    assert sampler.controller.temperature != 1.0  # the band is narrow: it has steered
    ahead = sampler.draw(5)
    after = sampler.controller.temperature
    sampler.restore(here)
    generator.set_state(random_here)
    torch.testing.assert_close(sampler.draw(5), ahead, rtol=0, atol=0)
    assert sampler.controller.temperature == after


def test_the_band_changes_what_is_drawn_and_none_leaves_it_alone():
    prior = tiny_prior()

    def draw(band):
        return prior.sampler(1.0, torch.Generator().manual_seed(4), band=band).draw(12)

    plain = draw(None)
    torch.testing.assert_close(draw(SurpriseBand(0.0, 1e9)), plain, rtol=0, atol=0)  # never outside
    assert not torch.equal(draw(SurpriseBand(50.0, 60.0, memory_tokens=2.0, gain=1.0, max_scale=3.0)), plain)


def test_a_band_keeps_the_sampler_nearer_it_than_a_fixed_temperature():
    # a prior that is confident and a band above its confidence: the controller heats it up,
    # and the surprise of what it draws rises towards the band
    prior = tiny_prior()
    with torch.no_grad():
        for out in prior.depth_out:
            out.weight.mul_(30.0)
    band = SurpriseBand(low=8.0, high=9.0, memory_tokens=4.0, gain=0.5, max_scale=4.0)
    heard = {}
    for name, chosen in (("fixed", None), ("banded", band)):
        sampler = prior.sampler(1.0, torch.Generator().manual_seed(3))
        sampler.controller = recording = Recording(chosen)
        sampler.draw(120)
        heard[name] = float(np.mean(recording.heard[40:]))
    assert heard["fixed"] < 8.0
    assert heard["banded"] > heard["fixed"] + 1.0
    assert math.isfinite(heard["banded"])


# ------------------------------------------------------------------------------ the tool and generate


@pytest.fixture(scope="module")
def banded_setup(models, tmp_path_factory):
    """A cache of two 8-s validation pieces and the tiny VAE with a small token prior, exported."""
    import yaml
    from helpers import make_piano_maestro

    from audiogen.checkpoint import export_model
    from audiogen.frontend import FrontendConfig
    from audiogen.generation import load_vae
    from audiogen.maestro import list_maestro
    from audiogen.preparation import prepare_cache
    from audiogen.token_prior import TokenPrior

    root = tmp_path_factory.mktemp("banded")
    maestro = make_piano_maestro(root / "maestro", {"train": 1, "validation": 2}, seconds=8.0)
    cache = root / "cache"
    prepare_cache(list_maestro(maestro), cache, FrontendConfig(), workers=1, progress=False)
    vae, _ = load_vae(models["model"])
    torch.manual_seed(0)
    shape = dict(codebooks=2, codebook_size=16, frames_per_token=2, width=16, layers=2, heads=2, mlp_ratio=2,
                 context_tokens=32)
    prior = TokenPrior(latent_dim=vae.latent_dim, **shape).eval()
    prior.codebooks.words.copy_(torch.randn_like(prior.codebooks.words))  # as if fitted
    config = yaml.safe_load((models["model"] / "config.yaml").read_text())
    config["model"] = {"kind": "token_prior", **shape}
    model = export_model(root / "model", {"vae": vae, "prior": prior}, config, {})
    return cache, model


def test_the_tool_measures_a_band_and_generate_samples_within_it(banded_setup, models, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from audiogen.clip_tags import read_tags, remake_command
    from audiogen.generation import load_generator

    cache, model = banded_setup
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "tools" / "surprise_band.py"), "--data", str(cache),
                           "--model", str(model), "--write", "--json", str(tmp_path / "band.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "band.json").read_text())
    band = read_band(model)
    assert band is not None and band.to_dict() == report["band"] and report["pieces"] == 2
    assert band.low < report["moving_average_quantiles"]["0.5"] < band.high
    assert "band:" in done.stdout
    assert load_generator(model, models["vocoder"]).surprise_band == band
    clips = {}
    for flags in ([], ["--no-surprise-band"]):
        out = tmp_path / f"clip{len(flags)}.wav"
        done = subprocess.run([sys.executable, "-m", "audiogen.cli.generate", "--quiet", "--model", str(model),
                               "--vocoder", str(models["vocoder"]), "--runtime", "torch", "--seconds", "6",
                               "--seed", "3", "--out", str(out), *flags], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        clips[len(flags)] = out
    assert "surprise_band" not in read_tags(clips[0])
    assert read_tags(clips[1])["surprise_band"] is False
    assert "--no-surprise-band" in remake_command(read_tags(clips[1]))
    import soundfile as sf

    assert not np.array_equal(sf.read(clips[0])[0], sf.read(clips[1])[0])
