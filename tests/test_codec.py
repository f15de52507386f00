"""`audiogen encode / decode / morph`: the VAE as a latent codec, and morphs between clips."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import soundfile as sf

from audiogen.cli import main as audiogen
from audiogen.generation import load_generator

SR = 22050


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def clips(tmp_path):
    """Two 1.5 s clips of different tones."""
    t = np.arange(int(1.5 * SR)) / SR
    paths = []
    for i, f0 in enumerate((220.0, 523.0)):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * f0 * t) * np.exp(-t)).astype(np.float32), SR)
        paths.append(path)
    return paths


def run(models, capsys, command, *args, vocoder=True):
    extra = ["--model", str(models["model"])] + (["--vocoder", str(models["vocoder"])] if vocoder else [])
    code = audiogen([command, *map(str, args), *extra])
    return code, capsys.readouterr().err


def test_encode_decode_round_trip(models, clips, tmp_path, capsys):
    code, err = run(models, capsys, "encode", clips[0], "--out", tmp_path / "z.npz", vocoder=False)
    assert code == 0, err
    assert "smaller than 16-bit PCM" in err
    generator = load_generator(models["model"], models["vocoder"])
    with np.load(tmp_path / "z.npz") as data:
        z = data["latents"]
        assert z.dtype == np.float16 and z.shape[0] == generator.vae.latent_dim
        assert z.shape[1] == math.ceil((int(1.5 * SR) // 256 + 1) / generator.vae.time_ratio)
        assert int(data["samples"]) == int(1.5 * SR)
    # the latents are the encoder's, to float16 precision
    audio, _ = sf.read(clips[0], dtype="float32")
    np.testing.assert_allclose(z.astype(np.float32), generator.encode(audio)[0].numpy(), atol=2e-2, rtol=1e-2)
    code, err = run(models, capsys, "decode", tmp_path / "z.npz", "--out", tmp_path / "back.flac")
    assert code == 0, err
    back, rate = sf.read(tmp_path / "back.flac")
    assert rate == SR and len(back) == int(1.5 * SR)


def test_a_vae_folder_without_prior_encodes(models, clips, tmp_path, capsys):
    vae_only = tmp_path / "vae"
    shutil.copytree(models["model"], vae_only)
    (vae_only / "prior.safetensors").unlink()
    assert audiogen(["encode", str(clips[0]), "--out", str(tmp_path / "z.npz"), "--model", str(vae_only)]) == 0
    # the same VAE weights: the full folder decodes what the VAE-only one encoded
    code, err = run(models, capsys, "decode", tmp_path / "z.npz", "--out", tmp_path / "back.wav")
    assert code == 0, err


def test_decode_refuses_what_it_cannot_decode(models, clips, tmp_path, capsys):
    run(models, capsys, "encode", clips[0], "--out", tmp_path / "z.npz", vocoder=False)
    with np.load(tmp_path / "z.npz") as data:
        fields = {k: data[k] for k in data.files}
    np.savez(tmp_path / "other.npz", **{**fields, "vae_sha256": np.array("0" * 64)})
    frontend = fields["frontend"].item().replace('"n_mels": 80', '"n_mels": 64')
    np.savez(tmp_path / "mels64.npz", **{**fields, "frontend": np.array(frontend)})
    cases = [
        (tmp_path / "other.npz", "encoded by another VAE"),
        (tmp_path / "mels64.npz", "another audio frontend: n_mels 64"),
        (clips[0], "not an .npz archive"),
        (tmp_path / "missing.npz", "no such file"),
    ]
    for source, message in cases:
        code, err = run(models, capsys, "decode", source, "--out", tmp_path / "x.wav")
        assert code == 2 and message in err and "Traceback" not in err, (source, err)
        assert len(err.strip().splitlines()) == 1
    code, err = run(models, capsys, "decode", tmp_path / "z.npz", "--out", tmp_path / "x.mp3")
    assert code == 2 and "must end in .wav or .flac" in err


def test_morph_ends_are_the_clips(models, clips, tmp_path, capsys):
    def morph(name, *args):
        code, err = run(models, capsys, "morph", *clips, "--out", tmp_path / name, "--seconds", "2", *args)
        assert code == 0, err
        return sf.read(tmp_path / name, dtype="int16")[0]

    start, end, path = morph("start.wav", "--at", "0"), morph("end.wav", "--at", "1"), morph("path.wav")
    assert len(start) == len(path) == 2 * SR
    assert not np.array_equal(start, end)
    # a fixed blend at 0 is the first clip alone: the second one cannot change it
    code, err = run(models, capsys, "morph", clips[0], clips[0], "--out", tmp_path / "same.wav", "--seconds", "2",
                    "--at", "0")
    assert code == 0, err
    np.testing.assert_array_equal(sf.read(tmp_path / "same.wav", dtype="int16")[0], start)
    code, err = run(models, capsys, "morph", *clips, "--out", tmp_path / "x.wav", "--at", "1.5")
    assert code == 2 and "--at must be between 0 and 1" in err


def test_audiogen_lists_every_subcommand(capsys):
    assert audiogen(["--help"]) == 0
    usage = capsys.readouterr().out
    assert all(name in usage for name in ("generate", "prepare", "fad", "encode", "decode", "morph"))
    assert audiogen(["bogus"]) == 2
