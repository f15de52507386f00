"""The mel sharpening of drawn latents' log-mel: the filter, its file, the generators that apply it,
and the tool that chooses its strength."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import make_piano_maestro

from audiogen.mel_sharpening import SHARPENING_FILE, MelSharpening, read_sharpening, sharpen, sharpen_torch

ROOT = Path(__file__).resolve().parents[1]
FLOOR = float(np.log(1e-5))


def test_a_peak_rises_and_its_neighbours_sink_by_the_unsharp_mask():
    frame = np.array([0.0, 0.0, 3.0, 0.0, 0.0], dtype=np.float32)[:, None]  # (n_mels, 1 frame)
    got = sharpen(frame, MelSharpening(strength=0.5, bins=3), floor=-10.0)[:, 0]
    # local means over 3 bands (edges repeated): 0, 1, 1, 1, 0
    np.testing.assert_allclose(got, [0.0, -0.5, 4.0, -0.5, 0.0], atol=1e-6)


def test_a_flat_spectrum_and_strength_zero_are_left_alone():
    rng = np.random.default_rng(0)
    flat = np.full((80, 7), -3.0, dtype=np.float32)
    np.testing.assert_allclose(sharpen(flat, MelSharpening(0.8, 5), FLOOR), flat, atol=1e-6)
    noisy = rng.normal(size=(80, 7)).astype(np.float32)
    np.testing.assert_array_equal(sharpen(noisy, MelSharpening(0.0, 5), FLOOR), noisy)
    assert np.abs(sharpen(noisy, MelSharpening(0.35, 5), FLOOR) - noisy).max() > 0.1


def test_valleys_stop_at_digital_silence():
    frame = np.full((20, 1), FLOOR + 0.1, dtype=np.float32)
    frame[10] = 0.0
    got = sharpen(frame, MelSharpening(2.0, 5), FLOOR)
    assert got.min() == pytest.approx(FLOOR) and got[10, 0] > 0.0


def test_frames_are_sharpened_alone_so_chunks_make_the_whole():
    mel = np.random.default_rng(1).normal(size=(80, 50)).astype(np.float32)
    sharpening = MelSharpening(0.35, 5)
    whole = sharpen(mel, sharpening, FLOOR)
    pieces = np.concatenate([sharpen(mel[:, :17], sharpening, FLOOR), sharpen(mel[:, 17:], sharpening, FLOOR)], -1)
    np.testing.assert_array_equal(pieces, whole)
    batched = sharpen(np.stack([mel, mel[::-1]]), sharpening, FLOOR)  # (..., n_mels, frames)
    np.testing.assert_allclose(batched[0], whole, atol=1e-6)
    tensor = sharpen_torch(torch.from_numpy(mel), sharpening, FLOOR)
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_allclose(tensor.numpy(), whole, atol=1e-6)
    assert sharpen_torch(tensor, None, FLOOR) is tensor


@pytest.mark.parametrize("bad", [dict(strength=-0.1), dict(strength=float("nan")), dict(bins=4), dict(bins=1)])
def test_bad_sharpenings_are_refused(bad):
    with pytest.raises(ValueError, match="mel sharpening"):
        MelSharpening(**bad)


def test_a_model_folder_carries_its_sharpening(tmp_path):
    assert read_sharpening(tmp_path) is None
    path = tmp_path / SHARPENING_FILE
    path.write_text(json.dumps({"sharpening": {"strength": 0.2, "bins": 7}}))
    assert read_sharpening(tmp_path) == MelSharpening(0.2, 7)
    for text, message in (("{", "not readable JSON"), ("[]", "'sharpening' object"),
                          ('{"sharpening": {"strength": 0.2, "width": 3}}', "unknown mel sharpening keys"),
                          ('{"sharpening": {"bins": 5.5}}', "whole number"),
                          ('{"sharpening": {"strength": "hard"}}', "hard")):
        path.write_text(text)
        with pytest.raises(ValueError, match=message) as error:
            read_sharpening(tmp_path)
        assert str(path) in str(error.value)


def test_generated_clips_are_sharpened_and_decoded_latents_are_not(models):
    from audiogen.generation import load_generator

    torch.set_num_threads(1)
    generator = load_generator(models["model"], models["vocoder"])
    assert generator.mel_sharpening is None  # the folder carries none
    samples = generator.sample_rate * 2
    plain = generator.generate(2.0, seed=4)
    latents = torch.cat(list(generator.latents(samples, seed=4)), -1)
    generator.mel_sharpening = MelSharpening(0.5, 5)
    sharpened = generator.generate(2.0, seed=4)
    assert sharpened.shape == plain.shape and np.abs(sharpened - plain).max() > 1e-3
    with torch.inference_mode():
        mel = torch.cat(list(generator.mels([latents])), -1).numpy()
        by_hand = generator.vocode(sharpen(mel, generator.mel_sharpening, generator.frontend.config.log_silence))
    np.testing.assert_allclose(sharpened, by_hand[:samples], atol=1e-4)
    decoded = np.concatenate(list(generator.render([latents], samples)))
    np.testing.assert_allclose(decoded, plain, atol=1e-5)  # given latents are the VAE's, not sharpened


def test_the_tool_chooses_a_strength_and_generate_uses_it(models, tmp_path):
    import shutil

    from audiogen.clip_tags import read_tags, remake_command
    from audiogen.generation import load_generator

    reference = make_piano_maestro(tmp_path / "maestro", {"validation": 2}, seconds=6.0)
    model = tmp_path / "model"
    shutil.copytree(models["model"], model)
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "mel_sharpening.py"), "--reference", str(reference),
                           "--model", str(model), "--vocoder", str(models["vocoder"]), "--num", "3",
                           "--seconds", "2", "--strengths", "0,0.5", "--write", "--json", str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "s.json").read_text())
    assert set(report["rows"]) == {"real", "0", "0.5"}
    assert report["rows"]["0"]["chroma_entropy"] != report["rows"]["0.5"]["chroma_entropy"]
    least = report["rows"]["0"]
    def cost(name: str) -> float:
        return sum(report["rows"][name][key] / max(least[key], 1e-9) for key in ("fad", "kad"))

    best = min(("0", "0.5"), key=cost)
    assert report["sharpening"] == {"strength": float(best), "bins": 5}
    assert f"chosen: strength {best}" in done.stdout
    assert load_generator(model, models["vocoder"]).mel_sharpening == MelSharpening(float(best), 5)
    (model / SHARPENING_FILE).write_text(json.dumps({"sharpening": {"strength": 0.5, "bins": 5}}))
    clips = {}
    for flags in ([], ["--no-mel-sharpening"]):
        out = tmp_path / f"clip{len(flags)}.wav"
        done = subprocess.run([sys.executable, "-m", "audiogen.cli.generate", "--quiet", "--model", str(model),
                               "--vocoder", str(models["vocoder"]), "--runtime", "torch", "--seconds", "3",
                               "--seed", "3", "--out", str(out), *flags], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        clips[len(flags)] = out
    assert "mel_sharpening" not in read_tags(clips[0])
    assert read_tags(clips[1])["mel_sharpening"] is False
    assert "--no-mel-sharpening" in remake_command(read_tags(clips[1]))
    assert not np.array_equal(sf.read(clips[0])[0], sf.read(clips[1])[0])


def test_the_benchmark_counts_washes_on_the_clips_as_heard_and_unsharpened(models):
    import importlib.util

    from audiogen.generation import load_generator

    spec = importlib.util.spec_from_file_location("fad_benchmark_tool", ROOT / "tools" / "fad_benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up while they are made
    spec.loader.exec_module(bench)
    torch.set_num_threads(1)
    generator = load_generator(models["model"], models["vocoder"])
    clips, unsharpened = bench.generate_long_clips(generator, 2, 2.0, 7, 1.0, "long")
    assert unsharpened is None and len(clips) == 2  # nothing to sharpen: the clips generate makes
    np.testing.assert_allclose(clips[1], generator.generate(2.0, seed=8, temperature=1.0), atol=1e-6)
    generator.mel_sharpening = MelSharpening(0.5, 5)
    clips, unsharpened = bench.generate_long_clips(generator, 2, 2.0, 7, 1.0, "long")
    np.testing.assert_allclose(clips[1], generator.generate(2.0, seed=8, temperature=1.0), atol=1e-5)
    assert [c.shape for c in unsharpened] == [c.shape for c in clips]
    assert np.abs(unsharpened[1] - clips[1]).max() > 1e-3
    generator.mel_sharpening = None
    np.testing.assert_allclose(unsharpened[1], generator.generate(2.0, seed=8, temperature=1.0), atol=1e-5)
