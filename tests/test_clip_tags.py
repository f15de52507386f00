"""Provenance tags: written into a clip, read back by `audiogen info`, the remake command right."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiogen.clip_tags import apply_tags, clip_tags, model_hash, read_tags, remake_command


def _tags(**changes) -> dict:
    tags = clip_tags(version="9.9", seed=41, temperature=0.8, seconds=12.5, model="runs/prior/best",
                     model_sha="abc", vocoder="bundled", vocoder_sha="def")
    return {**tags, **changes}


def _write(path, tags) -> None:
    with sf.SoundFile(str(path), "w", samplerate=22050, channels=1, subtype="PCM_16") as handle:
        if tags is not None:
            apply_tags(handle, tags)
        handle.write(np.zeros(2205, dtype=np.float32))


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_tags_survive_the_file(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"
    _write(path, _tags())
    assert read_tags(path) == _tags()


def test_untagged_and_foreign_comments_read_as_none(tmp_path):
    _write(tmp_path / "plain.wav", None)
    assert read_tags(tmp_path / "plain.wav") is None
    with sf.SoundFile(str(tmp_path / "other.wav"), "w", samplerate=8000, channels=1) as handle:
        handle.comment = '{"seed": 1}'  # JSON, but not ours
        handle.write(np.zeros(80, dtype=np.float32))
    assert read_tags(tmp_path / "other.wav") is None


def test_remake_command_names_what_differs_from_the_defaults():
    words = shlex.split(remake_command(_tags()))
    assert words[:1] == ["generate"]
    assert words[words.index("--seed") + 1] == "41"
    assert words[words.index("--seconds") + 1] == "12.5"
    assert words[words.index("--model") + 1] == "runs/prior/best"
    assert "--vocoder" not in words  # the bundled vocoder is the default
    like = shlex.split(remake_command(_tags(like="my take.wav", variation=0.25)))
    assert like[like.index("--like") + 1] == "my take.wav"


def test_remake_command_turns_the_wash_guard_off_where_the_clip_was_made_without_it():
    assert "--no-wash-guard" not in remake_command(_tags())  # made with it: the default
    unguarded = clip_tags(version="0.2.0", seed=1, temperature=1.0, seconds=5, model="bundled", model_sha="a",
                          vocoder="bundled", vocoder_sha="b", wash_guard=False)
    assert unguarded["wash_guard"] is False and "--no-wash-guard" in remake_command(unguarded)
    before_the_guard = {key: value for key, value in _tags(audiogen="0.1.0").items() if key != "wash_guard"}
    assert "--no-wash-guard" in remake_command(before_the_guard)  # 0.1.0 had no guard and no tag for it
    assert "--no-wash-guard" not in remake_command(_tags(audiogen="0.2.0.dev1"))


def test_remake_command_says_which_of_the_0_3_settings_were_off():
    current = _tags(audiogen="0.3.0")
    assert "--no-surprise-band" not in remake_command(current)
    assert "--no-mel-sharpening" not in remake_command(current)
    plain = clip_tags(version="0.3.0", seed=1, temperature=1.0, seconds=5, model="bundled", model_sha="a",
                      vocoder="bundled", vocoder_sha="b", mel_sharpening=False)
    assert plain["mel_sharpening"] is False and "surprise_band" not in plain
    assert "--no-mel-sharpening" in remake_command(plain) and "--no-surprise-band" not in remake_command(plain)
    older = remake_command({key: value for key, value in _tags(audiogen="0.2.0").items()
                            if key not in ("surprise_band", "mel_sharpening")})
    assert "--no-mel-sharpening" in older and "--no-surprise-band" in older  # 0.2 had neither


def test_model_hash_follows_the_weights_not_the_folder(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "vae.safetensors").write_bytes(b"weights")
    shutil.copytree(a, b)
    assert model_hash(a) == model_hash(b)
    (b / "vae.safetensors").write_bytes(b"other weights")
    assert model_hash(a) != model_hash(b)


def test_info_prints_tags_and_says_which_files_have_none(tmp_path):
    _write(tmp_path / "tagged.wav", _tags())
    _write(tmp_path / "plain.wav", None)
    run = subprocess.run([sys.executable, "-m", "audiogen.cli.info", str(tmp_path / "tagged.wav"),
                          str(tmp_path / "plain.wav")], capture_output=True, text=True)
    assert run.returncode == 1, run.stderr  # one file had no tags: a partial answer
    assert "seed" in run.stdout and "41" in run.stdout
    assert "make it again: generate" in run.stdout
    assert "plain.wav: no audiogen provenance tags" in run.stdout


def test_info_on_a_non_audio_file_is_one_line(tmp_path):
    (tmp_path / "notes.wav").write_text("not audio")
    run = subprocess.run([sys.executable, "-m", "audiogen", "info", str(tmp_path / "notes.wav")],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "notes.wav" in run.stderr
