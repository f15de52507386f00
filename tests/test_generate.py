"""The `generate` command: arguments, output files, seeds, streaming, and the bundled models."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiogen.cli.generate import main, output_names
from audiogen.generation import TARGET_PEAK, load_generator, pretrained_dir, write_clip

SR = 22050


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # generate raises torch's thread count to all cores unless OMP_NUM_THREADS is set
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def generate(models, capsys, *args: str) -> tuple[int, str]:
    code = main(["--model", str(models["model"]), "--vocoder", str(models["vocoder"]), "--quiet", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seconds", "-3"], "--seconds must be a positive number"),
        (["--seconds", "nan"], "--seconds must be a positive number"),
        (["--seconds", "1e9"], "over the limit"),
        (["--num", "0"], "--num must be between"),
        (["--temperature", "-1"], "--temperature must be between"),
        (["--variation", "2"], "--variation must be between"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--out", "clip.mp3"], "must end in .wav or .flac"),
        (["--out", "/no/such/folder/clip.wav"], "does not exist"),
        (["--out", "-", "--num", "2"], "--out - writes one clip"),
    ],
)
def test_bad_arguments_end_with_one_line_and_status_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["--model", str(tmp_path / "absent"), *args])  # refused before any model is looked at
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_missing_model_folder_is_one_line(capsys, tmp_path):
    code = main(["--model", str(tmp_path / "absent"), "--out", str(tmp_path / "x.wav")])
    err = capsys.readouterr().err
    assert code == 2 and "absent" in err and "not found" in err and "Traceback" not in err


def test_unwritable_folder_is_refused(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root ignores permission bits: nothing to test there
        pytest.skip("running as root")
    code = main(["--out", str(locked / "x.wav")])
    err = capsys.readouterr().err
    assert code == 2 and "not writable" in err


def test_default_threads_follow_the_load(monkeypatch):
    from audiogen.cli import generate as cli

    monkeypatch.setattr(cli.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert cli.default_threads() == 4
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (3.9, 1.0, 1.0))
    assert cli.default_threads() == 1


def test_output_names():
    assert output_names("clip.wav", 1) == ["clip.wav"]
    assert output_names("out/clip.flac", 3) == ["out/clip-000.flac", "out/clip-001.flac", "out/clip-002.flac"]
    assert output_names("take-{i}.wav", 2) == ["take-0.wav", "take-1.wav"]


def test_same_seed_same_bytes_exact_length_and_level(models, capsys, tmp_path):
    for name in ("a.wav", "b.wav"):
        code, err = generate(models, capsys, "--seconds", "1.5", "--seed", "3", "--out", str(tmp_path / name))
        assert code == 0, err
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    info = sf.info(tmp_path / "a.wav")
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, int(1.5 * SR), "PCM_16")
    audio, _ = sf.read(tmp_path / "a.wav")
    assert abs(np.abs(audio).max() - TARGET_PEAK) < 1e-3  # -1 dBFS peak, no clipping


def test_no_wash_guard_is_tagged_and_made_again(models, capsys, tmp_path):
    from audiogen.clip_tags import read_tags, remake_command

    for name, extra in (("guarded.wav", []), ("unguarded.wav", ["--no-wash-guard"])):
        code, err = generate(models, capsys, "--seconds", "1", "--seed", "4", "--out", str(tmp_path / name), *extra)
        assert code == 0, err
    assert "wash_guard" not in read_tags(tmp_path / "guarded.wav")
    tags = read_tags(tmp_path / "unguarded.wav")
    assert tags["wash_guard"] is False and "--no-wash-guard" in remake_command(tags)


def test_without_seed_a_fresh_one_is_printed_and_reproduces_the_clip(models, capsys, tmp_path):
    code, err = generate(models, capsys, "--seconds", "1", "--out", str(tmp_path / "fresh.wav"))
    assert code == 0
    seed = int(err.split("--seed ")[1].split()[0])
    code, _ = generate(models, capsys, "--seconds", "1", "--seed", str(seed), "--out", str(tmp_path / "again.wav"))
    assert (tmp_path / "fresh.wav").read_bytes() == (tmp_path / "again.wav").read_bytes()


def test_num_writes_distinct_numbered_clips_and_flac(models, capsys, tmp_path):
    args = ["--seconds", "1", "--seed", "5", "--num", "3", "--out", str(tmp_path / "c.flac")]
    code, err = generate(models, capsys, *args)
    assert code == 0, err
    files = sorted(tmp_path.glob("c-*.flac"))
    assert [f.name for f in files] == ["c-000.flac", "c-001.flac", "c-002.flac"]
    clips = [sf.read(f)[0] for f in files]
    assert all(sf.info(f).format == "FLAC" and len(c) == SR for f, c in zip(files, clips, strict=True))
    assert not np.array_equal(clips[0], clips[1])


def test_out_dash_writes_a_wav_to_standard_output(models, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "audiogen.cli.generate", "--model", str(models["model"]), "--vocoder",
         str(models["vocoder"]), "--seconds", "0.5", "--seed", "1", "--out", "-", "--threads", "1"],
        capture_output=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr.decode()
    audio, rate = sf.read(io.BytesIO(result.stdout))
    assert rate == SR and len(audio) == SR // 2
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_long_clips_stream_in_bounded_chunks(models):
    generator = load_generator(models["model"], models["vocoder"])
    sizes = [len(chunk) for chunk in generator.stream(180.0, seed=0, chunk_seconds=4.0)]
    assert sum(sizes) == 180 * SR
    assert len(sizes) > 10 and max(sizes) < 15 * SR  # no stage holds the whole clip


def test_write_clip_normalises_and_refuses_nan(tmp_path):
    chunks = [np.full(1000, 0.25, np.float32), np.full(500, -0.5, np.float32)]
    stats = write_clip(iter(chunks), tmp_path / "x.wav", SR)
    audio, _ = sf.read(tmp_path / "x.wav")
    assert stats["samples"] == 1500 and abs(audio.min() + TARGET_PEAK) < 1e-4 and abs(audio[0] - TARGET_PEAK / 2) < 1e-4
    with pytest.raises(ValueError, match="NaN"):  # a ValueError: commands end it in one line
        write_clip(iter([np.array([0.1, np.nan], np.float32)]), tmp_path / "y.wav", SR)
    assert not (tmp_path / "y.wav").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


def test_bundled_models_load_and_make_audio(tmp_path):
    """The models shipped in the package: the same frontend on both, and a clip that is not silence."""
    if not (pretrained_dir("spec").is_dir() and pretrained_dir("vocoder").is_dir()):
        pytest.fail("bundled models missing from audiogen/pretrained (CI needs them)")
    generator = load_generator()
    audio = generator.generate(3.0, seed=0)
    assert audio.shape == (3 * SR,) and np.isfinite(audio).all()
    assert np.sqrt(np.mean(audio**2)) > 1e-3
