"""Generation on onnxruntime (audiogen.onnx_generation): torch's random numbers replayed in numpy, each
stage against its PyTorch twin, the bundled models' graphs (exported into a test cache) against
their weights, whole clips against the PyTorch path's for the same seed, and how `generate` picks
its runtime and falls back.

Tolerances: the graphs match PyTorch within 1e-4 on the same input (tests/test_onnx.py); through the
autoregressive prior the latents of a clip stay within LATENT_TOLERANCE of PyTorch's and the audio
within AUDIO_TOLERANCE of full scale (measured over 9 seeds x 120 s of the bundled models: latents
9e-5 at most, audio 3e-4). The skips name what is missing; CI installs the onnx extra, so they run there.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiogen.clip_tags import model_hash, read_tags
from audiogen.generation import load_generator, load_vae, load_vocoder, pretrained_dir
from audiogen.latents import decode_stream as torch_decode_stream
from audiogen.mixture_prior import LatentPrior, SamplingNoise
from audiogen.onnx_generation import (
    MixtureHead,
    SourceIdentity,
    TorchRandom,
    TorchSamplingNoise,
    cached_graphs_dir,
    chunked_vocoder,
    concat_time,
    draw_frame,
    find_graphs,
    load_onnx_generator,
    onnxruntime_available,
)
from audiogen.overlap import decode_with_overlap
from audiogen.vocoder import vocode_stream

LATENT_TOLERANCE = 1e-3
AUDIO_TOLERANCE = 1e-3
SR = 22050

needs_onnxruntime = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed (onnx extra)")


def have_onnxscript() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxscript") is not None


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test its own cache folder: nothing is written to the user's ~/.cache."""
    monkeypatch.setenv("AUDIOGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def bundled_identities() -> tuple[SourceIdentity, SourceIdentity]:
    return SourceIdentity.of(pretrained_dir("spec")), SourceIdentity.of(pretrained_dir("vocoder"))


# ------------------------------------------------------------------------------ torch's random numbers


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**31 - 1, 2**40 + 5, -7])
def test_torch_random_replays_a_seeded_torch_generator(seed):
    generator, twin = torch.Generator().manual_seed(seed), TorchRandom(seed)
    for _ in range(3):  # several blocks: the streams stay in step
        assert np.array_equal(torch.rand(64, generator=generator).numpy(), twin.rand(64))
        normals = torch.randn(64 * 32, generator=generator).numpy()
        np.testing.assert_allclose(twin.randn(64 * 32), normals, rtol=0, atol=2e-6)  # a few ulps: torch's SIMD log/cos


def test_sampling_noise_twin_gives_every_frame_its_numbers():
    dim, seed = 5, 42
    torch_noise, twin = SamplingNoise(dim, torch.Generator().manual_seed(seed)), TorchSamplingNoise(dim, seed)
    for _ in range(150):  # past two blocks of 64 frames
        (u, eps), (u2, eps2) = torch_noise.next(), twin.next()
        assert u == u2
        np.testing.assert_allclose(eps2, eps.numpy(), atol=2e-6)


@pytest.mark.parametrize("temperature", [0.0, 0.5, 1.0, 1.7])
def test_draw_frame_is_latent_prior_draw(temperature):
    prior = LatentPrior(latent_dim=4, channels=8, dilations=(1, 2), num_mixtures=3, min_log_scale=-3.0)
    head = MixtureHead(3, 4, -3.0)
    generator = torch.Generator().manual_seed(0)
    noise, twin = SamplingNoise(4, torch.Generator().manual_seed(9)), TorchSamplingNoise(4, 9)
    for _ in range(40):
        params = torch.randn(1, 3 * (1 + 2 * 4), generator=generator) * 2  # log-scales down to the clamp
        expected = prior.draw(params, temperature, noise).numpy()[0]
        got = draw_frame(params.numpy()[0], head, temperature, *twin.next())
        np.testing.assert_allclose(got, expected, atol=1e-5)


# ------------------------------------------------------------------------------ the stages


def split(array: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(array, np.cumsum(sizes)[:-1], axis=-1)


def test_numpy_decode_stream_matches_the_torch_one_for_any_chunks(models):
    vae, _ = load_vae(models["model"])
    z = np.random.default_rng(0).standard_normal((1, vae.latent_dim, 41)).astype(np.float32)
    sizes = [1, 7, 3, 19, 11]

    def decode(latents: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return vae.decode(torch.from_numpy(latents)).numpy()[0]

    expected = torch.cat(list(torch_decode_stream(vae, (torch.from_numpy(c) for c in split(z, sizes)))), -1)
    got = np.concatenate(list(decode_with_overlap(decode, split(z, sizes), vae.decoder_context, vae.time_ratio,
                                                  concat_time)), -1)
    assert got.shape == tuple(expected.shape) == (vae.n_mels, 41 * vae.time_ratio)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_numpy_chunked_vocoder_matches_the_torch_one_for_any_pieces(models):
    vocoder = load_vocoder(models["vocoder"])
    mel = (np.random.default_rng(1).standard_normal((vocoder.n_mels, 333)) - 5).astype(np.float32)
    sizes = [50, 1, 120, 100, 62]

    def vocode(m: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return vocoder(torch.from_numpy(m)).numpy()[:, 0]

    expected = np.concatenate(list(vocode_stream(vocoder, (torch.from_numpy(p) for p in split(mel, sizes)),
                                                 chunk_frames=100, overlap_frames=16)))
    runner = chunked_vocoder(vocode, 100, 16, vocoder.hop_length)
    got = np.concatenate([a for piece in split(mel, sizes) for a in runner.push(piece[None])] + runner.finish(), -1)[0]
    assert got.shape == expected.shape == (333 * vocoder.hop_length,)
    np.testing.assert_allclose(got, expected, atol=1e-5)


# ------------------------------------------------------------------------------ the bundled graphs


@pytest.fixture(scope="module")
def bundled_cache(tmp_path_factory) -> Path:
    """A cache holding the bundled models' graphs, exported once as `audiogen export-onnx --cache`
    does after installing (they are not shipped)."""
    if not onnxruntime_available() or not have_onnxscript():
        pytest.skip("onnxruntime or onnxscript not installed (onnx extra)")
    root = tmp_path_factory.mktemp("bundled-cache")
    done = subprocess.run([sys.executable, "-m", "audiogen", "export-onnx", "--cache", "--quiet"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "AUDIOGEN_CACHE_DIR": str(root),
                                                       "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture
def bundled_graphs(bundled_cache, monkeypatch) -> Path:
    """The bundled models' graph folder, with this test's cache pointed at it."""
    monkeypatch.setenv("AUDIOGEN_CACHE_DIR", str(bundled_cache))
    folder = find_graphs(*bundled_identities())
    assert folder is not None and folder.parent == bundled_cache / "onnx"
    return folder


def test_export_to_the_cache_writes_the_bundled_models_graphs_once(bundled_graphs):
    manifest = json.loads((bundled_graphs / "manifest.json").read_text())
    assert {"vae_decoder", "vocoder"} <= set(manifest["graphs"]) and "vae_encoder" not in manifest["graphs"]
    before = {p.name: p.stat().st_mtime_ns for p in bundled_graphs.iterdir()}
    again = subprocess.run([sys.executable, "-m", "audiogen", "export-onnx", "--cache"], capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and "there already" in again.stderr and again.stderr.count("\n") == 1
    assert {p.name: p.stat().st_mtime_ns for p in bundled_graphs.iterdir()} == before  # kept, not rewritten


def test_stale_or_foreign_graphs_are_passed_over(bundled_graphs):
    model, vocoder = SourceIdentity("0123456789ab", "1" * 64), SourceIdentity("ba9876543210", "2" * 64)
    assert find_graphs(model, vocoder) is None
    folder = cached_graphs_dir(model.weights_sha, vocoder.weights_sha)
    shutil.copytree(bundled_graphs, folder)
    assert find_graphs(model, vocoder) is None  # its manifest names the bundled folders, not these
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sources"]["model"].update(dataclasses.asdict(model))
    manifest["sources"]["vocoder"].update(dataclasses.asdict(vocoder))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert find_graphs(model, vocoder) == folder
    assert find_graphs(model, dataclasses.replace(vocoder, config_sha256="3" * 64)) is None  # another config.yaml
    (folder / "vocoder.onnx").unlink()
    assert find_graphs(model, vocoder) is None  # incomplete


def test_the_bundled_weights_with_an_edited_config_are_not_the_bundled_graphs(bundled_graphs, tmp_path):
    folder = tmp_path / "spec"
    shutil.copytree(pretrained_dir("spec"), folder)
    assert find_graphs(SourceIdentity.of(folder), bundled_identities()[1]) == bundled_graphs
    with open(folder / "config.yaml", "a") as config:
        config.write("# edited\n")
    assert find_graphs(SourceIdentity.of(folder), bundled_identities()[1]) is None


@pytest.fixture(scope="module")
def bundled_pair(bundled_cache):
    torch.set_num_threads(1)
    folder = cached_graphs_dir(model_hash(pretrained_dir("spec")), model_hash(pretrained_dir("vocoder")))
    return load_generator(), load_onnx_generator(folder, threads=1)


@pytest.mark.parametrize(("seed", "temperature", "seconds"), [(3, 1.0, 8.0), (11, 0.8, 3.0)])
def test_same_seed_same_clip_as_pytorch(bundled_pair, seed, temperature, seconds):
    torch_gen, onnx_gen = bundled_pair
    samples = int(seconds * SR)
    expected = torch.cat(list(torch_gen.latents(samples, seed, temperature)), -1).numpy()
    got = np.concatenate(list(onnx_gen.latents(samples, seed, temperature)), -1)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= LATENT_TOLERANCE
    audio, reference = onnx_gen.generate(seconds, seed, temperature), torch_gen.generate(seconds, seed, temperature)
    assert audio.shape == reference.shape == (samples,)
    assert np.abs(audio - reference).max() <= AUDIO_TOLERANCE
    assert np.abs(reference).max() > 0.05  # music, not silence that matches trivially
    other = onnx_gen.generate(seconds, seed + 1, temperature)
    assert np.abs(other - audio).max() > 100 * AUDIO_TOLERANCE  # and the seed matters


def test_pipelined_and_threaded_make_the_serial_clip(bundled_pair, bundled_graphs):
    _, serial = bundled_pair
    expected = serial.generate(12.0, 5)
    threaded = load_onnx_generator(bundled_graphs, threads=2)
    threaded.pipelined = True
    np.testing.assert_allclose(threaded.generate(12.0, 5), expected, atol=1e-6)


def test_the_onnx_samplers_checkpoint_is_a_copy(bundled_pair):
    _, onnx_gen = bundled_pair
    sampler = onnx_gen.prior.sampler(1.0, seed=3)
    sampler.draw(300)  # past the ring's length: the rings have wrapped
    here, random_here = sampler.checkpoint(), copy.deepcopy(sampler.random)
    ahead = sampler.draw(5)
    sampler.restore(here)
    sampler.random = random_here
    np.testing.assert_array_equal(sampler.draw(5), ahead)


def test_the_guarded_clip_is_the_same_on_both_runtimes(bundled_pair, monkeypatch):
    # each runtime judges its own audio; a judge that calls washes by their order takes float
    # rounding out of it, so the two must draw again at the same places and agree
    import audiogen.descriptors

    torch_gen, onnx_gen = bundled_pair
    samples = int(14.0 * SR)
    latents = {}
    for name, generator in (("torch", torch_gen), ("onnx", onnx_gen)):
        calls = itertools.count()

        def by_order(audio, rate, calls=calls):
            return next(calls) in (1, 2, 4, 5, 6, 7, 8)

        monkeypatch.setattr(audiogen.descriptors, "is_wash", by_order)
        monkeypatch.setattr(generator, "wash_guard", True)
        chunks = list(generator.latents(samples, 7))
        latents[name] = np.concatenate([np.asarray(c) for c in chunks], -1)
        assert next(calls) > 9  # it judged, and drew again
    assert latents["onnx"].shape == latents["torch"].shape
    assert np.abs(latents["onnx"] - latents["torch"]).max() <= LATENT_TOLERANCE
    unguarded = torch.cat(list(torch_gen.latents(samples, 7)), -1).numpy()
    assert np.abs(unguarded - latents["torch"]).max() > 0.1  # the redraws changed the clip


def test_the_banded_clip_is_the_same_on_both_runtimes(bundled_pair, monkeypatch):
    # a band narrow enough that the temperature moves all the time: the two runtimes' surprises
    # agree to float rounding, and so, on the controller's grid, do their temperatures
    from audiogen.surprise_band import SurpriseBand

    torch_gen, onnx_gen = bundled_pair
    band = SurpriseBand(low=13.0, high=14.0)
    samples = int(12.0 * SR)
    for generator in (torch_gen, onnx_gen):
        monkeypatch.setattr(generator, "surprise_band", band)
    expected = torch.cat(list(torch_gen.latents(samples, 9)), -1).numpy()
    got = np.concatenate(list(onnx_gen.latents(samples, 9)), -1)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= LATENT_TOLERANCE
    for generator in (torch_gen, onnx_gen):
        monkeypatch.setattr(generator, "surprise_band", None)
    fixed = torch.cat(list(torch_gen.latents(samples, 9)), -1).numpy()
    assert np.abs(fixed - expected).max() > 0.1  # the band changed the clip


def test_the_manifest_carries_the_model_folders_band(bundled_graphs, tmp_path):
    from audiogen.surprise_band import BAND_FILE, read_band

    manifest = json.loads((bundled_graphs / "manifest.json").read_text())
    band = read_band(pretrained_dir("spec"))
    assert manifest["surprise_band"] == (band.to_dict() if band is not None else None)
    assert load_onnx_generator(bundled_graphs).surprise_band == band
    folder = tmp_path / "spec"
    shutil.copytree(pretrained_dir("spec"), folder)
    assert find_graphs(SourceIdentity.of(folder), bundled_identities()[1]) == bundled_graphs
    (folder / BAND_FILE).write_text(json.dumps({"band": {"low": 1.0, "high": 2.0}}))
    assert find_graphs(SourceIdentity.of(folder), bundled_identities()[1]) is None  # another band: stale


def test_the_manifest_carries_the_model_folders_mel_sharpening(bundled_graphs, tmp_path):
    from audiogen.mel_sharpening import SHARPENING_FILE, read_sharpening

    manifest = json.loads((bundled_graphs / "manifest.json").read_text())
    sharpening = read_sharpening(pretrained_dir("spec"))
    assert manifest["mel_sharpening"] == (sharpening.to_dict() if sharpening is not None else None)
    assert load_onnx_generator(bundled_graphs).mel_sharpening == sharpening
    folder = tmp_path / "spec"
    shutil.copytree(pretrained_dir("spec"), folder)
    (folder / SHARPENING_FILE).write_text(json.dumps({"sharpening": {"strength": 0.9, "bins": 3}}))
    assert find_graphs(SourceIdentity.of(folder), bundled_identities()[1]) is None  # another sharpening: stale


def test_the_sharpened_clip_is_the_same_on_both_runtimes(bundled_pair, monkeypatch):
    from audiogen.mel_sharpening import MelSharpening

    torch_gen, onnx_gen = bundled_pair
    for generator in (torch_gen, onnx_gen):
        monkeypatch.setattr(generator, "mel_sharpening", MelSharpening(0.6, 5))
    reference, audio = torch_gen.generate(4.0, 6), onnx_gen.generate(4.0, 6)
    assert np.abs(audio - reference).max() <= AUDIO_TOLERANCE
    monkeypatch.setattr(onnx_gen, "mel_sharpening", None)
    assert np.abs(onnx_gen.generate(4.0, 6) - audio).max() > 100 * AUDIO_TOLERANCE  # the sharpening changed it


def test_endless_stream_continues_the_finite_clip(bundled_pair):
    _, onnx_gen = bundled_pair
    finite = onnx_gen.generate(3.0, 2)
    stream = onnx_gen.stream(float("inf"), 2)
    endless = np.concatenate([next(stream) for _ in range(2)])
    stream.close()
    assert len(endless) >= len(finite)
    np.testing.assert_allclose(endless[: len(finite) - SR], finite[: len(finite) - SR], atol=1e-6)


# ------------------------------------------------------------------------------ generate picks its runtime


def run_generate(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audiogen.cli.generate", "--quiet", *args], capture_output=True,
                          text=True, timeout=300, env=env or dict(os.environ))


def test_generate_runs_the_bundled_models_without_importing_torch(bundled_graphs, tmp_path):
    out = tmp_path / "clip.wav"
    probe = ("import sys; from audiogen.cli.generate import main; "
             f"code = main(['--seconds', '2', '--seed', '4', '--quiet', '--out', {str(out)!r}]); "
             "print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["0", "False"], done.stderr
    assert read_tags(out)["runtime"] == "onnxruntime"
    torch_out = tmp_path / "torch.wav"
    assert run_generate("--seconds", "2", "--seed", "4", "--runtime", "torch", "--out", str(torch_out)).returncode == 0
    assert read_tags(torch_out)["runtime"] == "torch"
    a, b = sf.read(out, dtype="int16")[0].astype(int), sf.read(torch_out, dtype="int16")[0].astype(int)
    assert len(a) == len(b) == 2 * SR
    assert np.abs(a - b).max() <= 32767 * AUDIO_TOLERANCE * 2  # both normalised to the same peak


def test_without_onnxruntime_generate_falls_back_to_pytorch_silently(tmp_path, monkeypatch, capsys):
    from audiogen import onnx_generation
    from audiogen.cli.generate import main

    monkeypatch.setattr(onnx_generation, "onnxruntime_available", lambda: False)
    out = tmp_path / "clip.wav"
    assert main(["--seconds", "1", "--seed", "0", "--quiet", "--out", str(out)]) == 0
    assert capsys.readouterr().err.strip().splitlines() == [f"wrote {out} (1 s, 22050 Hz, seed 0)"]
    assert read_tags(out)["runtime"] == "torch"
    assert main(["--seconds", "1", "--seed", "0", "--runtime", "onnxruntime", "--out", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--runtime onnxruntime: onnxruntime is not installed" in err


@needs_onnxruntime
def test_runtime_onnxruntime_says_in_one_line_what_it_cannot_run(models, tmp_path):
    tiny = ["--model", str(models["model"]), "--vocoder", str(models["vocoder"])]
    done = run_generate(*tiny, "--runtime", "onnxruntime", "--seconds", "1", "--out", str(tmp_path / "a.wav"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no ONNX graphs" in done.stderr
    assert "--cache" in done.stderr
    like = tmp_path / "like.wav"
    sf.write(like, np.zeros(SR, dtype=np.float32), SR)
    done = run_generate("--runtime", "onnxruntime", "--like", str(like), "--seconds", "1", "--out",
                        str(tmp_path / "b.wav"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--like" in done.stderr
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "b.wav").exists()


@needs_onnxruntime
@pytest.mark.skipif(not have_onnxscript(), reason="onnxscript not installed (onnx extra)")
def test_export_to_the_cache_then_generate_finds_the_graphs(models, tmp_path):
    tiny = ["--model", str(models["model"]), "--vocoder", str(models["vocoder"])]
    done = subprocess.run([sys.executable, "-m", "audiogen", "export-onnx", *tiny, "--cache", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    folder = cached_graphs_dir(model_hash(models["model"]), model_hash(models["vocoder"]))
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["prior_step.onnx", "vae_decoder.onnx", "vocoder.onnx"]
    assert find_graphs(SourceIdentity.of(models["model"]), SourceIdentity.of(models["vocoder"])) == folder
    clips = {}
    for runtime in ("auto", "torch"):
        out = tmp_path / f"{runtime}.wav"
        assert run_generate(*tiny, "--runtime", runtime, "--seconds", "1.5", "--seed", "2", "--out",
                            str(out)).returncode == 0
        clips[read_tags(out)["runtime"]] = sf.read(out, dtype="float32")[0]
    assert set(clips) == {"onnxruntime", "torch"}
    assert np.abs(clips["onnxruntime"] - clips["torch"]).max() <= 0.01  # an untrained model, each clip normalised
    again = subprocess.run([sys.executable, "-m", "audiogen", "export-onnx", *tiny, "--cache"], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and "there already" in again.stderr and again.stderr.count("\n") == 1
    # the same weights with another sharpening (an upgrade that changes a setting): the stale graphs are replaced
    from audiogen.mel_sharpening import SHARPENING_FILE

    changed = tmp_path / "model"
    shutil.copytree(models["model"], changed)
    (changed / SHARPENING_FILE).write_text(json.dumps({"sharpening": {"strength": 0.3, "bins": 5}}))
    assert find_graphs(SourceIdentity.of(changed), SourceIdentity.of(models["vocoder"])) is None
    done = subprocess.run([sys.executable, "-m", "audiogen", "export-onnx", "--model", str(changed),
                           "--vocoder", str(models["vocoder"]), "--cache", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert find_graphs(SourceIdentity.of(changed), SourceIdentity.of(models["vocoder"])) == folder
    assert json.loads((folder / "manifest.json").read_text())["mel_sharpening"] == {"strength": 0.3, "bins": 5}
