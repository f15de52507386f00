"""``audiogen-prepare`` on hostile input: every format audio reads, folder links, few files, faulty MAESTRO
metadata, a full disk. Each case is run as a user runs it (a subprocess) unless it needs a fault
injected in-process; see test_reliability.py for corrupt audio files and test_data.py for the cache itself.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import MAESTRO_COLUMNS, make_piano_maestro, piano_like

from audiogen.audio import AUDIO_SUFFIXES
from audiogen.cache import open_cache
from audiogen.sources import SplitFractions, list_audio_dir, split_bucket, split_for_key

ROOT = Path(__file__).resolve().parents[1]
SR = 8000  # small files: decoding and resampling are not what is tested here
SMALL_FRONTEND = "sample_rate: 8000\nn_fft: 256\nhop_length: 64\nwin_length: 256\nn_mels: 16\n"


def prepare_here(capsys, *args: str) -> tuple[int, list[str]]:
    """``audiogen-prepare`` in this process, for refusals (no decoding): (status, non-empty stderr lines)."""
    from audiogen.cli.prepare import main

    code = main(["--workers", "1", "--no-progress", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [line for line in err.splitlines() if line.strip()]


def prepare(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "audiogen.cli.prepare", "--workers", "1", "--no-progress", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def small_config(folder: Path) -> str:
    path = folder / "small.yaml"
    path.write_text(SMALL_FRONTEND)
    return str(path)


def write_audio(path: Path, seed: int, rate: int = SR, **soundfile_options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, piano_like(1.5, rate, seed=seed), rate, **soundfile_options)


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.strip()]


def prepared_sources(cache: Path) -> dict[str, str]:
    opened = open_cache(cache)
    return {p.metadata["source"]: split for split in ("train", "validation", "test") for p in opened.pieces(split)}


def skipped_lines(stdout: str) -> dict[str, str]:
    """source → kind of each skipped piece listed in the summary (each must be listed once)."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        match = re.match(r"  (\w+) +(train|validation|test) +(\S+): ", line)
        if match:
            assert match.group(3) not in found, f"{match.group(3)} listed twice:\n{stdout}"
            found[match.group(3)] = match.group(1)
    return found


# ------------------------------------------------------------------------------ --audio-dir


def test_audio_dir_reads_every_audio_format_follows_folder_links_and_lists_what_it_skips(tmp_path):
    music = tmp_path / "music"
    write_audio(music / "a.flac", 0)
    write_audio(music / "b.wav", 1)
    write_audio(music / "c.opus", 2, rate=48000, format="OGG", subtype="OPUS")
    write_audio(music / "d.oga", 3, format="OGG", subtype="VORBIS")
    outside = tmp_path / "elsewhere"
    write_audio(outside / "e.flac", 4)
    (music / "linked").symlink_to(outside)  # a folder link: followed
    (music / "again").symlink_to(outside)  # a second link to it: its files once, not twice
    (music / "loop").symlink_to(music)  # a link to an ancestor: no endless walk
    (music / "gone.flac").symlink_to(tmp_path / "deleted.flac")  # dangling
    (music / "alias.wav").symlink_to(music / "b.wav")  # a second path to a file in the tree
    os.mkfifo(music / "pipe.wav")  # opening it would block preparation forever
    (music / "._a.flac").write_bytes(b"\0" * 100)  # macOS resource fork: hidden, not audio
    cache = tmp_path / "cache"

    result = prepare("--audio-dir", str(music), "--out", str(cache), "--config", small_config(tmp_path))

    assert result.returncode == 1, result.stdout + result.stderr  # 1: finished, with inputs skipped
    assert sorted(prepared_sources(cache)) == ["a.flac", "again/e.flac", "b.wav", "c.opus", "d.oga"]
    assert skipped_lines(result.stdout) == {
        "alias.wav": "duplicate", "gone.flac": "missing", "linked": "duplicate", "loop": "duplicate",
        "pipe.wav": "unreadable",
    }
    gone = next(line for line in result.stdout.splitlines() if "gone.flac:" in line)
    assert "dangling symbolic link" in gone and "deleted.flac" in gone


def test_folder_listing_and_fad_accept_one_list_of_formats():
    from audiogen import embeddings

    assert embeddings.AUDIO_EXTENSIONS is AUDIO_SUFFIXES
    assert {".opus", ".oga", ".ogg", ".flac", ".wav", ".mp3"} <= set(AUDIO_SUFFIXES)


def test_unreadable_folder_and_file_are_listed_as_skipped(tmp_path, monkeypatch):
    # root reads everything, so the permission errors a user meets are injected where they arise
    write_audio(tmp_path / "ok.flac", 0)
    write_audio(tmp_path / "locked" / "x.flac", 1)
    write_audio(tmp_path / "secret.flac", 2)
    scandir, access = os.scandir, os.access

    def denying_scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denying_scandir)
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "secret.flac" and access(p, mode))
    listed = {p.key: p.problem for p in list_audio_dir(tmp_path)}
    assert listed["ok.flac"] is None
    assert listed["locked"][0] == "unreadable" and "Permission denied" in listed["locked"][1]
    assert listed["secret.flac"] == ("unreadable", f"{tmp_path / 'secret.flac'}: permission denied")
    assert "locked/x.flac" not in listed


def keys_all_in_train(count: int) -> list[str]:
    """``count`` file names that the default 80/10/10 split all puts in train."""
    names = (f"take{i:03d}.flac" for i in range(10_000))
    return [n for n in names if split_for_key(n) == "train"][:count]


def test_few_files_all_in_train_warn_once_and_the_suggested_fractions_fill_every_split(tmp_path):
    names = keys_all_in_train(7)
    for i, name in enumerate(names):
        write_audio(tmp_path / "few" / name, i)
    config = small_config(tmp_path)

    result = prepare("--audio-dir", str(tmp_path / "few"), "--out", str(tmp_path / "c1"), "--config", config)

    assert result.returncode == 0, result.stderr
    (warning,) = stderr_lines(result)
    assert warning.startswith("audiogen-prepare: warning: the validation and test splits are empty")
    assert set(prepared_sources(tmp_path / "c1").values()) == {"train"}
    suggested = re.search(r"--val-fraction (\S+) --test-fraction (\S+)", warning)
    assert suggested, warning

    result = prepare("--audio-dir", str(tmp_path / "few"), "--out", str(tmp_path / "c2"), "--config", config,
                     "--val-fraction", suggested.group(1), "--test-fraction", suggested.group(2))

    assert result.returncode == 0 and not stderr_lines(result), result.stderr
    assert set(prepared_sources(tmp_path / "c2").values()) == {"train", "validation", "test"}


def test_split_fractions_are_stable_whole_percents(tmp_path):
    keys = [f"f{i}/take_{i}.wav" for i in range(3000)]
    wide = SplitFractions(validation=0.3, test=0.2)
    splits = [split_for_key(k, wide) for k in keys]
    for split, share in (("train", 0.5), ("validation", 0.3), ("test", 0.2)):
        assert abs(splits.count(split) / 3000 - share) < 0.03
    # wider shares only move files toward validation and test, never back to train
    order = {"train": 0, "validation": 1, "test": 2}
    assert all(order[a] <= order[b] for a, b in zip([split_for_key(k) for k in keys], splits, strict=True))
    assert all(split_for_key(k) == ("train" if split_bucket(k) < 80 else "validation" if split_bucket(k) < 90
                                    else "test") for k in keys)  # the default is the 80/10/10 of old caches
    for bad in ({"validation": 0.123}, {"validation": -0.1}, {"validation": 0.6, "test": 0.4}):
        with pytest.raises(ValueError):
            SplitFractions(**bad)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--val-fraction", "0.5", "--test-fraction", "0.5"], "leave nothing to train on"),
        (["--val-fraction", "0.123"], "--val-fraction"),
        (["--test-fraction", "1.5"], "--test-fraction"),
        (["--maestro", "MAESTRO", "--val-fraction", "0.2"], "--audio-dir only"),
    ],
)
def test_bad_split_options_are_refused_in_one_line(tmp_path, capsys, options, fragment):
    write_audio(tmp_path / "dir" / "a.flac", 0)
    make_piano_maestro(tmp_path / "maestro", {"train": 1}, seconds=1.0, sr=SR)
    source = [] if "--maestro" in options else ["--audio-dir", str(tmp_path / "dir")]
    options = [str(tmp_path / "maestro") if o == "MAESTRO" else o for o in options]
    code, (line, *more) = prepare_here(capsys, *source, *options, "--out", str(tmp_path / "cache"))
    assert code == 2 and not more, more
    assert line.startswith("audiogen-prepare: error: ") and fragment in line, line
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------ MAESTRO metadata


def write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    """A MAESTRO CSV of (audio_filename, split) rows."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MAESTRO_COLUMNS)
        for audio, split in rows:
            writer.writerow(["C", audio, split, 2004, audio + ".midi", audio, 1.5])


def test_a_repeated_row_and_a_file_in_two_splits_are_reported_and_prepared_once(tmp_path):
    root = tmp_path / "maestro"
    for i, stem in enumerate(["a", "b", "c"]):
        write_audio(root / "2004" / f"{stem}.flac", i)
    rows = [("2004/a.flac", "train"), ("2004/b.flac", "train"), ("2004/a.flac", "train"),
            ("2004/c.flac", "validation"), ("2004/b.wav", "test")]  # b's .wav twin: the same recording
    write_rows(root / "maestro-v3.0.0.csv", rows)

    result = prepare("--maestro", str(root), "--out", str(tmp_path / "cache"), "--config", small_config(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "already in the cache: 0 pieces" in result.stdout and "prepared 3 pieces" in result.stdout
    repeated, two_splits = stderr_lines(result)
    # rows as a spreadsheet numbers them: the header is row 1, rows[i] is row i + 2
    assert "row 4 repeats row 2" in repeated and "2004/a.flac" in repeated and "header is row 1" in repeated
    assert "row 6 lists 2004/b.wav" in two_splits and "row 3 in train" in two_splits
    assert "prepared once, in train" in two_splits
    assert prepared_sources(tmp_path / "cache") == {"2004/a.flac": "train", "2004/b.flac": "train",
                                                   "2004/c.flac": "validation"}


def test_metadata_errors_name_rows_as_the_user_counts_them(tmp_path, capsys):
    root = tmp_path / "maestro"
    write_audio(root / "2004" / "a.flac", 0)
    rows = [("2004/a.flac", "train")] * 3 + [("2004/b.flac", "dev")]  # rows[3]: row 5 of the file
    write_rows(root / "maestro-v3.0.0.csv", rows)
    code, (line, *more) = prepare_here(capsys, "--maestro", str(root), "--out", str(tmp_path / "cache"))
    assert code == 2 and not more, more
    assert "maestro-v3.0.0.csv row 5 (the header is row 1): split 'dev'" in line, line

    (root / "maestro-v3.0.0.csv").unlink()  # v3 JSON: rows are named by their id in the file
    columns = {c: {"0": "x", "7": "y"} for c in MAESTRO_COLUMNS}
    columns["split"] = {"0": "train", "7": "dev"}
    columns["duration"] = {"0": 1.5, "7": 1.5}
    (root / "maestro-v3.0.0.json").write_text(json.dumps(columns))
    code, (line, *more) = prepare_here(capsys, "--maestro", str(root), "--out", str(tmp_path / "cache"))
    assert code == 2 and not more and "maestro-v3.0.0.json row id '7': split 'dev'" in line, line


def test_metadata_without_its_audio_is_one_line_naming_the_folder(tmp_path):
    root = make_piano_maestro(tmp_path / "download" / "maestro-v3.0.0", {"train": 20, "test": 5}, seconds=1.0, sr=SR)
    meta_only = tmp_path / "meta-only"  # the metadata copied without the year folders
    meta_only.mkdir()
    shutil.copy(root / "maestro-v3.0.0.csv", meta_only)
    result = prepare("--maestro", str(meta_only), "--out", str(tmp_path / "cache"))
    assert result.returncode == 2
    (line,) = stderr_lines(result)
    assert f"25 of 25 audio files listed in {meta_only / 'maestro-v3.0.0.csv'} are missing under {meta_only}" in line
    assert "is --maestro the folder that holds the year folders?" in line
    assert not (tmp_path / "cache").exists()

    shutil.copy(root / "maestro-v3.0.0.csv", tmp_path / "download")  # the audio is one folder down
    (line,) = stderr_lines(prepare("--maestro", str(tmp_path / "download"), "--out", str(tmp_path / "cache")))
    assert line.endswith(f"They are under {root}: pass --maestro {root}"), line


def test_many_missing_files_are_counted_not_each_printed_twice(tmp_path):
    root = make_piano_maestro(tmp_path / "maestro", {"train": 12, "validation": 2}, seconds=1.2, sr=SR)
    gone = sorted((root / "2004").glob("*.flac"))[:12]
    for path in gone:
        path.unlink()
    result = prepare("--maestro", str(root), "--out", str(tmp_path / "cache"), "--config", small_config(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    (warning,) = stderr_lines(result)
    assert "12 of 14 audio files listed in" in warning
    lines = (result.stdout + result.stderr).splitlines()
    for path in gone:  # on one line at most, and the ones not shown are counted
        assert sum(path.name in line for line in lines) <= 1, lines
    assert sum(any(path.name in line for line in lines) for path in gone) == 3
    assert "... and 9 more" in result.stdout and "index.json" in result.stdout
    assert len(open_cache(tmp_path / "cache").skipped) == 12  # every one is in the index


# ------------------------------------------------------------------------------ a full disk


def cache_state(cache: Path) -> tuple[list[str], list[str]]:
    """(pieces listed in the index, temporary names left in the cache); each listed piece is whole."""
    index = json.loads((cache / "index.json").read_text())
    listed = []
    for split, entries in index["splits"].items():
        for entry in entries:
            folder = cache / split / entry["name"]
            assert np.load(folder / "audio.npy").shape == (entry["n_samples"],)
            assert np.load(folder / "mel.npy").shape[1] == entry["n_frames"]
            listed.append(entry["name"])
    return sorted(listed), sorted(p.name for p in cache.rglob(".tmp-*"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (needs root; skipped elsewhere, where the injected fault below still runs)."""
    mount = tmp_path / "tinyfs"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_stops_with_status_3_and_a_rerun_continues(tmp_path, tiny_disk):
    root = make_piano_maestro(tmp_path / "maestro", {"train": 8, "validation": 2, "test": 2}, seconds=3.0)
    cache = tiny_disk / "cache"  # each piece takes about 215 kB at the default frontend: four fit

    result = prepare("--maestro", str(root), "--out", str(cache))

    assert result.returncode == 3, result.stdout + result.stderr  # not 1, "some pieces were skipped"
    (line,) = stderr_lines(result)
    listed, leftovers = cache_state(cache)
    assert line.startswith(f"audiogen-prepare: error: no space left on the device writing {cache}: "
                           f"{len(listed)} pieces are complete"), line
    assert 0 < len(listed) < 12 and leftovers == []
    assert not (cache / "skipped").exists() or not list((cache / "skipped").iterdir())

    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_disk)], check=True)
    result = prepare("--maestro", str(root), "--out", str(cache))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"prepared {12 - len(listed)} pieces" in result.stdout
    assert f"already in the cache: {len(listed)} pieces" in result.stdout
    assert len(cache_state(cache)[0]) == 12


def test_a_write_failing_for_want_of_space_is_status_3_and_nothing_half_written(tmp_path, monkeypatch, capsys):
    # the same as above without root: the third array write fails as a full disk fails it
    import audiogen.preparation as preparation
    from audiogen.cli.prepare import main

    root = make_piano_maestro(tmp_path / "maestro", {"train": 3}, seconds=1.2, sr=SR)
    save_npy, writes = preparation.save_npy, []

    def filling_disk(path, array):
        writes.append(path)
        if len(writes) == 3:
            Path(path).write_bytes(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        save_npy(path, array)

    monkeypatch.setattr(preparation, "save_npy", filling_disk)
    args = ["--maestro", str(root), "--out", str(tmp_path / "cache"), "--workers", "1", "--no-progress",
            "--config", small_config(tmp_path)]
    assert main(args) == 3
    assert "no space left on the device" in capsys.readouterr().err
    assert cache_state(tmp_path / "cache") == ([open_cache(tmp_path / "cache").pieces("train")[0].name], [])
    monkeypatch.setattr(preparation, "save_npy", save_npy)
    assert main(args) == 0
    assert "already in the cache: 1 pieces" in capsys.readouterr().out
