"""`from audiogen import Generator`: each method's contract (shapes, rates, seeds, errors)."""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers import piano_like

from audiogen.generation import TARGET_PEAK

SR = 22050


@pytest.fixture(scope="module")
def gen(models):
    """The API over the untrained tiny models (fast; the contracts do not depend on training)."""
    from audiogen import Generator

    return Generator.from_pretrained(models["model"], models["vocoder"])


@pytest.fixture(scope="module")
def bundled():
    """The trained models shipped in the package (where the music, not only the shapes, matters)."""
    from audiogen import Generator

    return Generator.from_pretrained()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return piano_like(1.5, SR)


def test_import_audiogen_stays_cheap():
    # the lazy attribute is what keeps `import audiogen` from loading torch
    code = ("import sys, audiogen; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'audiogen.api' not in sys.modules; from audiogen import Generator; "
            "assert 'torch' in sys.modules and Generator.__module__ == 'audiogen.api'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with pytest.raises(AttributeError, match="no attribute 'Generatr'"):
        import audiogen

        audiogen.Generatr  # noqa: B018


def test_bundled_models_load_by_default(bundled):
    gen = bundled
    assert gen.sample_rate == 22050 and gen.has_prior
    audio = gen.generate(0.5, seed=0)
    assert audio.shape == (round(0.5 * gen.sample_rate),) and audio.dtype == np.float32
    assert np.max(np.abs(audio)) == pytest.approx(TARGET_PEAK, rel=1e-5)


def test_generate_shape_rate_and_seeds(gen):
    one = gen.generate(1.0, seed=7)
    assert gen.sample_rate == SR
    assert one.shape == (SR,) and one.dtype == np.float32
    assert np.max(np.abs(one)) == pytest.approx(TARGET_PEAK, rel=1e-5)
    np.testing.assert_array_equal(gen.generate(1.0, seed=7), one)
    assert not np.allclose(gen.generate(1.0, seed=8), one)
    three = gen.generate(1.0, seed=7, num=3)
    assert three.shape == (3, SR)
    np.testing.assert_array_equal(three[0], one)  # clip i uses seed + i, as `generate --num` does
    np.testing.assert_array_equal(three[2], gen.generate(1.0, seed=9))
    raw = gen.generate(1.0, seed=7, normalize=False)
    np.testing.assert_allclose(raw * (TARGET_PEAK / np.max(np.abs(raw))), one, atol=1e-6)


def test_a_fresh_seed_is_kept_to_make_the_clip_again(gen):
    first = gen.generate(0.5)
    assert isinstance(gen.last_seed, int)
    np.testing.assert_array_equal(gen.generate(0.5, seed=gen.last_seed), first)


def test_generate_matches_the_file_of_the_cli(gen, models, tmp_path):
    from audiogen.cli.generate import main as generate

    out = tmp_path / "clip.wav"
    code = generate(["--seconds", "1", "--seed", "11", "--out", str(out), "--quiet", "--threads", "1",
                     "--model", str(models["model"]), "--vocoder", str(models["vocoder"])])
    assert code == 0
    written, rate = sf.read(out, dtype="float32")
    assert rate == gen.sample_rate
    np.testing.assert_allclose(gen.generate(1.0, seed=11), written, atol=1.5 / 32768)  # 16-bit rounding


def test_stream_adds_up_to_generate(gen):
    whole = gen.generate(3.0, seed=5, normalize=False)
    pieces = list(gen.stream(3.0, seed=5, chunk_seconds=0.5))
    assert len(pieces) > 1 and all(p.dtype == np.float32 and p.ndim == 1 for p in pieces)
    streamed = np.concatenate(pieces)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    # an endless stream is the same music, going on past any length
    endless = np.concatenate(list(itertools.islice(gen.stream(None, seed=5, chunk_seconds=0.5), 12)))
    assert len(endless) > len(whole)
    np.testing.assert_allclose(endless[: 2 * SR], whole[: 2 * SR], atol=1e-5)


def test_mel_and_vocode_shapes(gen, clip):
    mel = gen.mel(clip, SR)
    assert mel.shape == (gen.n_mels, 1 + len(clip) // gen.hop_length) and mel.dtype == np.float32
    # the rate is taken into account: the same music at twice the rate gives the same frames
    doubled = np.repeat(clip, 2)
    assert gen.mel(doubled, 2 * SR).shape == mel.shape
    audio = gen.vocode(mel)
    assert audio.shape == (mel.shape[1] * gen.hop_length,) and audio.dtype == np.float32


def test_encode_decode_round_trip_shapes(gen, clip):
    z = gen.encode(clip, SR)
    frames = math.ceil((1 + len(clip) // gen.hop_length) / gen.pipeline.vae.time_ratio)
    assert z.shape == (gen.latent_dim, frames) and z.dtype == np.float32
    np.testing.assert_array_equal(gen.encode(clip, SR), z)  # posterior means: no randomness
    back = gen.decode(z, samples=len(clip))
    assert back.shape == clip.shape and back.dtype == np.float32
    assert gen.decode(z).shape == (frames * gen.samples_per_latent,)
    np.testing.assert_allclose(gen.decode(z[None], samples=len(clip)), back)  # (1, D, L) is taken too
    # integer PCM is scaled to [-1, 1] first
    pcm = np.round(clip * 32767).astype(np.int16)
    np.testing.assert_allclose(gen.encode(pcm, SR), z, atol=1e-3)


def test_variation_lengths_and_seeds(gen, clip):
    same = gen.variation(clip, SR, amount=0.5, seed=3)
    assert same.shape == clip.shape and same.dtype == np.float32
    np.testing.assert_array_equal(gen.variation(clip, SR, amount=0.5, seed=3), same)
    assert not np.allclose(gen.variation(clip, SR, amount=0.5, seed=4), same)
    assert gen.variation(clip, SR, seed=3, seconds=2.5).shape == (round(2.5 * SR),)
    # amount 0 keeps the clip's latents: the seed only reaches the prior's frame after the clip
    kept = [gen.variation(clip, SR, amount=0.0, seed=s, normalize=False)[: SR // 2] for s in (1, 2)]
    np.testing.assert_allclose(kept[0], kept[1], atol=1e-6)


def test_morph_ends_and_length(gen, bundled, clip):
    other = piano_like(1.0, SR, seed=5)
    assert gen.morph(clip, other, SR).shape == clip.shape  # the longer clip's length by default
    assert gen.morph(clip, other, SR, seconds=2.0).shape == (2 * SR,)
    start = gen.morph(clip, other, SR, at=0.0, normalize=False)
    np.testing.assert_allclose(start, gen.decode(gen.encode(clip, SR), samples=len(clip)), atol=1e-4)
    # with trained models: the other end is the other clip (stretched to the output's length), not the first
    end = bundled.morph(clip, other, SR, at=1.0, normalize=False)
    np.testing.assert_allclose(end, bundled.morph(other, clip, SR, seconds=1.5, at=0.0, normalize=False), atol=1e-4)
    start = bundled.morph(clip, other, SR, at=0.0, normalize=False)
    assert np.abs(end - start).mean() > 0.1 * np.abs(start).mean()


def test_compression_figures(gen, clip):
    report = gen.compression(clip, SR)
    z = gen.encode(clip, SR)
    assert report["latent_bytes"] == z.size * 2  # float16
    assert report["pcm_bytes"] == len(clip) * 2
    assert report["ratio"] == pytest.approx(report["pcm_bytes"] / report["latent_bytes"])
    assert report["seconds"] == pytest.approx(len(clip) / SR)
    assert report["mel_l1"] >= 0


def test_a_vae_only_folder_encodes_but_does_not_generate(models, tmp_path, clip):
    from audiogen import Generator

    vae_only = tmp_path / "vae"
    shutil.copytree(models["model"], vae_only)
    (vae_only / "prior.safetensors").unlink()
    gen = Generator.from_pretrained(vae_only, models["vocoder"])
    assert not gen.has_prior
    assert gen.decode(gen.encode(clip, SR), samples=len(clip)).shape == clip.shape
    with pytest.raises(ValueError, match="generate needs a latent prior"):
        gen.generate(1.0)


BAD_CALLS = {
    "seconds 0": (lambda g, x: g.generate(0), "seconds must be a positive number"),
    "seconds nan": (lambda g, x: g.generate(float("nan")), "seconds must be a positive number"),
    "seconds too long": (lambda g, x: g.generate(4 * 3600), "over the limit"),
    "temperature": (lambda g, x: g.generate(1, temperature=-1), "temperature must be"),
    "num 0": (lambda g, x: g.generate(1, num=0), "num must be"),
    "num float": (lambda g, x: g.generate(1, num=1.5), "num must be"),
    "seed": (lambda g, x: g.generate(1, seed=-3), "seed must be"),
    "chunk": (lambda g, x: next(g.stream(1, chunk_seconds=0)), "chunk_seconds must be"),
    "stereo": (lambda g, x: g.encode(np.stack([x, x], axis=1), SR), "audio must be mono"),
    "empty": (lambda g, x: g.encode(np.zeros(0, np.float32), SR), "audio is empty"),
    "nan audio": (lambda g, x: g.mel(np.full(100, np.nan, np.float32), SR), "NaN or Inf"),
    "rate": (lambda g, x: g.encode(x, 0), "sr must be"),
    "text": (lambda g, x: g.encode(np.array(["a", "b"]), SR), "float or integer samples"),
    "latents": (lambda g, x: g.decode(np.zeros((3, 4), np.float32)), "latents must be"),
    "samples": (lambda g, x: g.decode(g.encode(x, SR), samples=0), "samples must be"),
    "mel": (lambda g, x: g.vocode(np.zeros((7, 10), np.float32)), "mel must be"),
    "amount": (lambda g, x: g.variation(x, SR, amount=2), "amount must be"),
    "at": (lambda g, x: g.morph(x, x, SR, at=1.5), "at must be"),
    "morph b": (lambda g, x: g.morph(x, x[:0], SR), "b is empty"),
    "morph seconds": (lambda g, x: g.morph(x, x, SR, seconds=-1), "seconds must be"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_arguments_raise_one_clear_value_error(gen, clip, case):
    call, message = BAD_CALLS[case]
    with pytest.raises(ValueError, match=message) as caught:
        call(gen, clip)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"device": "tpu"}, "device must be"),
    ({"threads": 0}, "threads must be"),
    ({"model_dir": "/nonexistent/model"}, "not found"),
])
def test_bad_loading_arguments(models, kwargs, message):
    from audiogen import Generator

    kwargs = {"model_dir": models["model"], "vocoder_dir": models["vocoder"], **kwargs}
    with pytest.raises(ValueError, match=message):
        Generator.from_pretrained(**kwargs)
