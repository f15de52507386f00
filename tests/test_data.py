"""MAESTRO metadata, splits, cache preparation (skips, resume after a kill, shards) and datasets."""

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from audiogen.cache import merge_caches, open_cache
from audiogen.cli.prepare import main as prepare_main
from audiogen.datasets import FullPieceDataset, SegmentDataset
from audiogen.frontend import FrontendConfig, FrontendMismatchError, MelFrontend
from audiogen.maestro import MAESTRO_COLUMNS, list_maestro, read_maestro_metadata
from audiogen.preparation import PrepareOptions, compute_log_mel, prepare_cache
from audiogen.sources import SPLITS, DataError, list_audio_dir, shard_of, split_for_key

REAL_META = Path(__file__).resolve().parents[2] / "shared" / "data" / "maestro-meta"
SMALL = FrontendConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=16)


def tone(seconds: float, sr: int, f0: float, amp: float = 0.5, seed: int = 0) -> np.ndarray:
    """Decaying notes with harmonics, a stand-in for piano audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    out = np.zeros_like(t)
    for start in np.arange(0, seconds, 0.3):
        f = f0 * 2 ** (rng.integers(0, 12) / 12)
        env = np.where(t >= start, np.exp(-(t - start) * 4), 0)
        out += env * sum(np.sin(2 * np.pi * f * k * (t - start)) / k for k in range(1, 5))
    return (amp * out / np.abs(out).max()).astype(np.float32)


ROWS = [
    # composer, title, split, year, stem, seconds, kind
    ("Johann Sebastian Bach", "Prelude, BWV 846", "train", 2004, "2004/bach", 2.0, "ok"),
    ("Frédéric Chopin", "Ballade No. 1", "train", 2006, "2006/chopin", 3.1, "ok"),
    ("Franz Liszt", "Sonata", "train", 2008, "2008/liszt", 1.6, "ok"),
    ("Claude Debussy", "Clair de lune", "validation", 2009, "2009/debussy", 2.3, "ok"),
    ("Robert Schumann", "Kinderszenen", "test", 2011, "2011/schumann", 1.9, "ok"),
    ("Broken", "Corrupt", "train", 2013, "2013/corrupt", 2.0, "corrupt"),
    ("Quiet", "Silent", "validation", 2014, "2014/silent", 2.0, "silent"),
    ("Short", "Too short", "test", 2015, "2015/short", 0.4, "short"),
]


def make_maestro(root: Path, rows=ROWS, sr: int = 44100) -> Path:
    """A MAESTRO-layout folder: CSV listing .wav files, written as .flac (MAESTRO re-encodes)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "maestro-v3.0.0.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MAESTRO_COLUMNS)
        for i, (composer, title, split, year, stem, seconds, kind) in enumerate(rows):
            writer.writerow([composer, title, split, year, f"{stem}.midi", f"{stem}.wav", seconds])
            path = root / f"{stem}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "corrupt":
                path.write_bytes(b"fLaC" + bytes(range(256)) * 4)
            elif kind == "silent":
                sf.write(path, np.full(int(seconds * sr), 1e-5, np.float32), sr)
            else:
                sf.write(path, tone(seconds, sr, 110 * (i + 1), seed=i), sr)
    return root


def write_v3_json(records_csv: Path, out: Path) -> None:
    """MAESTRO v3's JSON layout: {column: {row index: value}}."""
    with records_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    data = {
        c: {
            str(i): (float(r[c]) if c == "duration" else int(r[c]) if c == "year" else r[c]) for i, r in enumerate(rows)
        }
        for c in MAESTRO_COLUMNS
    }
    out.write_text(json.dumps(data))


# ------------------------------------------------------------------------------------ metadata


def test_csv_and_both_json_layouts_read_the_same(tmp_path):
    root = make_maestro(tmp_path / "m")
    from_csv = read_maestro_metadata(root / "maestro-v3.0.0.csv")
    write_v3_json(root / "maestro-v3.0.0.csv", tmp_path / "v3.json")
    rows = [{c: getattr(r, c) for c in MAESTRO_COLUMNS} for r in from_csv]
    (tmp_path / "v1.json").write_text(json.dumps(rows))  # v1/v2: a list of row objects
    assert read_maestro_metadata(tmp_path / "v3.json") == from_csv
    assert read_maestro_metadata(tmp_path / "v1.json") == from_csv
    assert [r.split for r in from_csv] == [row[2] for row in ROWS]
    assert from_csv[1].canonical_composer == "Frédéric Chopin" and from_csv[1].year == 2006
    assert from_csv[0].canonical_title == "Prelude, BWV 846"  # a quoted comma survives


def test_v3_json_rows_in_numeric_order(tmp_path):
    cols = {c: {str(i): f"{c}{i}" for i in range(12)} for c in MAESTRO_COLUMNS}
    cols["split"] = {str(i): "train" for i in range(12)}
    cols["duration"] = {str(i): float(i) for i in range(12)}
    cols["year"] = {str(i): 2000 + i for i in range(12)}
    (tmp_path / "m.json").write_text(json.dumps(cols))
    assert [r.duration for r in read_maestro_metadata(tmp_path / "m.json")] == [float(i) for i in range(12)]


def test_bad_metadata_is_a_clear_error(tmp_path):
    (tmp_path / "a.csv").write_text("canonical_composer,split\nX,train\n")
    with pytest.raises(DataError, match="missing column"):
        read_maestro_metadata(tmp_path / "a.csv")
    root = make_maestro(tmp_path / "m", ROWS[:1])
    text = (root / "maestro-v3.0.0.csv").read_text().replace(",train,", ",dev,")
    (root / "maestro-v3.0.0.csv").write_text(text)
    with pytest.raises(DataError, match="split 'dev'"):
        read_maestro_metadata(root / "maestro-v3.0.0.csv")
    with pytest.raises(DataError, match="not found"):
        read_maestro_metadata(tmp_path / "nope.csv")


@pytest.mark.skipif(not (REAL_META / "maestro-v3.0.0.csv").is_file(), reason="real MAESTRO metadata not here")
def test_real_maestro_v3_metadata():
    from_csv = read_maestro_metadata(REAL_META / "maestro-v3.0.0.csv")
    from_json = read_maestro_metadata(REAL_META / "maestro-v3.0.0.json")
    assert len(from_csv) == 1276
    assert Counter(r.split for r in from_csv) == {"train": 962, "validation": 137, "test": 177}
    # the official CSV quotes a few titles ('"La Campanella"') that its JSON does not
    key = sorted((r.audio_filename, r.split, r.canonical_title.strip('"'), r.year) for r in from_csv)
    assert key == sorted((r.audio_filename, r.split, r.canonical_title.strip('"'), r.year) for r in from_json)
    assert all(abs(a.duration - b.duration) < 1e-6 for a, b in zip(from_csv, from_json, strict=True))


def test_listed_wav_found_as_flac_and_vice_versa(tmp_path):
    root = make_maestro(tmp_path / "m", ROWS[:2])
    # the second piece exists as .wav while the CSV says .flac
    text = (root / "maestro-v3.0.0.csv").read_text().replace("2006/chopin.wav", "2006/chopin.flac")
    (root / "maestro-v3.0.0.csv").write_text(text)
    audio, sr = sf.read(root / "2006/chopin.flac")
    (root / "2006/chopin.flac").unlink()
    sf.write(root / "2006/chopin.wav", audio, sr)
    pieces = list_maestro(root)
    assert [p.path.name for p in pieces] == ["bach.flac", "chopin.wav"]
    assert all(p.path.is_file() for p in pieces)


def test_audio_dir_split_is_deterministic_80_10_10(tmp_path):
    keys = [f"folder{i % 7}/take_{i}.flac" for i in range(3000)]
    splits = [split_for_key(k) for k in keys]
    assert splits == [split_for_key(k) for k in keys]
    share = Counter(splits)
    assert abs(share["train"] / 3000 - 0.8) < 0.03
    assert abs(share["validation"] / 3000 - 0.1) < 0.02 and abs(share["test"] / 3000 - 0.1) < 0.02
    for name in ("b.wav", "a.flac", "sub/c.ogg", "notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    listed = list_audio_dir(tmp_path)
    assert [p.key for p in listed] == ["a.flac", "b.wav", "sub/c.ogg"]
    assert [p.split for p in listed] == [split_for_key(p.key) for p in listed]


def test_shards_are_disjoint_and_cover_every_piece(tmp_path):
    pieces = list_maestro(make_maestro(tmp_path / "m", [r[:6] + ("ok",) for r in ROWS[:5]]))
    many = [p.__class__(key=f"x/{i}.wav", path=p.path, split=p.split) for i, p in enumerate(pieces * 40)]
    for n in (1, 2, 3, 7):
        shards = [shard_of(many, i, n) for i in range(n)]
        keys = [p.key for s in shards for p in s]
        assert sorted(keys) == sorted(p.key for p in many)  # covering, and no key twice
        assert len(set(keys)) == len(keys)
    with pytest.raises(DataError):
        shard_of(many, 2, 2)


# ------------------------------------------------------------------------------------ preparation


def test_chunked_log_mel_equals_whole():
    frontend = MelFrontend(SMALL)
    for n in (64 * 50, 64 * 50 + 17, 64 * 50 + 63, 5000):
        audio = tone(n / SMALL.sample_rate, SMALL.sample_rate, 220)[:n]
        whole = frontend.log_mel_numpy(audio)
        for chunk in (7, 16, 40):
            chunked = compute_log_mel(frontend, audio, chunk_frames=chunk)
            assert chunked.shape == whole.shape == (SMALL.n_mels, 1 + n // SMALL.hop_length)
            np.testing.assert_allclose(chunked, whole, atol=2e-5, rtol=0)


def test_prepare_skips_and_reports_bad_files(tmp_path, capsys):
    root = make_maestro(tmp_path / "m")
    (root / "2004/bach.flac").rename(root / "2004/bach_moved.flac")  # a missing file too
    cache = tmp_path / "cache"
    code = prepare_main(["--maestro", str(root), "--out", str(cache), "--workers", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    for kind, source in [
        ("corrupt", "2013/corrupt"),
        ("silent", "2014/silent"),
        ("too_short", "2015/short"),
        ("missing", "2004/bach"),
    ]:
        assert any(kind in line and source in line for line in out.splitlines()), (kind, out)
    c = open_cache(cache)
    assert {s: [p.metadata["title"] for p in c.pieces(s)] for s in SPLITS} == {
        "train": ["Ballade No. 1", "Sonata"],
        "validation": ["Clair de lune"],
        "test": ["Kinderszenen"],
    }
    assert sorted(s["kind"] for s in c.skipped) == ["corrupt", "missing", "silent", "too_short"]
    # a rerun once the missing file is back prepares only it, and then nothing is skipped but the bad ones
    (root / "2004/bach_moved.flac").rename(root / "2004/bach.flac")
    assert prepare_main(["--maestro", str(root), "--out", str(cache), "--workers", "1", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "prepared 1 pieces" in out and "already in the cache: 4" in out
    assert "missing" not in {s["kind"] for s in open_cache(cache).skipped}


def test_all_good_exits_zero_and_cache_content_is_the_frontend_of_the_stored_audio(tmp_path):
    root = make_maestro(tmp_path / "m", [r for r in ROWS if r[6] == "ok"])
    cache = tmp_path / "cache"
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(SMALL.to_dict()))
    assert (
        prepare_main(
            ["--maestro", str(root), "--out", str(cache), "--config", str(cfg), "--workers", "1", "--no-progress"]
        )
        == 0
    )
    c = open_cache(cache, expected_frontend=SMALL)
    assert c.frontend == SMALL
    frontend = MelFrontend(SMALL)
    for entry in c.pieces("train") + c.pieces("test"):
        audio = c.load_audio(entry)
        mel = c.load_mel(entry)
        assert audio.dtype == np.float32 and isinstance(mel, np.memmap)
        assert entry.n_samples == len(audio) and entry.n_frames == 1 + len(audio) // SMALL.hop_length
        np.testing.assert_array_equal(mel, frontend.log_mel_numpy(np.asarray(audio)))
        assert abs(entry.metadata["duration"] - len(audio) / SMALL.sample_rate) < 1e-3
        # resampled from 44.1 kHz: within one sample of the listed length
        assert abs(len(audio) - entry.metadata["duration"] * SMALL.sample_rate) <= 4
    with pytest.raises(FrontendMismatchError, match="sample_rate"):
        open_cache(cache, expected_frontend=FrontendConfig())
    # a rerun with another frontend is refused rather than mixing two frontends in one cache
    assert prepare_main(["--maestro", str(root), "--out", str(cache), "--workers", "1", "--no-progress"]) == 2


def _cache_files(cache: Path) -> dict[str, bytes]:
    """Every file of a cache, by relative path; .npy compared by content, JSON as text."""
    return {p.relative_to(cache).as_posix(): p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file()}


def _run_prepare(root: Path, cache: Path, *extra: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "audiogen.cli.prepare",
        "--maestro",
        str(root),
        "--out",
        str(cache),
        "--workers",
        "1",
        "--no-progress",
        "--config",
        str(root / "small.yaml"),
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _complete_entries(cache):
    """Pieces a rerun counts as done: meta.json under its final name. A ``.tmp-`` folder gets its
    meta.json before the rename, and pathlib's glob matches hidden names, so those are left out."""
    return [p for p in cache.glob("*/*/meta.json") if not p.parent.name.startswith(".")]


def test_killed_preparation_resumes_to_the_same_cache(tmp_path):
    rows = [(f"C{i}", f"T{i}", SPLITS[i % 3], 2004, f"2004/p{i}", 2.0 + 0.37 * i, "ok") for i in range(10)]
    root = make_maestro(tmp_path / "m", rows)
    (root / "small.yaml").write_text(yaml.safe_dump(SMALL.to_dict()))
    reference = tmp_path / "reference"  # uninterrupted, in this process
    assert not prepare_cache(list_maestro(root), reference, SMALL, progress=False).skipped

    cache = tmp_path / "cache"
    proc = _run_prepare(root, cache)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_complete_entries(cache)) >= 2:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    killed_at = len(_complete_entries(cache))
    # a half-written entry as a kill during np.save would leave it: never read, removed on rerun
    partial = cache / "train" / ".tmp-2004__p0-deadbeef.99999"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "audio.npy").write_bytes(b"\x93NUMPY half")
    if (cache / "index.json").is_file():  # the index of a killed run lists only complete pieces
        index = json.loads((cache / "index.json").read_text())
        listed = [e["name"] for s in index["splits"].values() for e in s]
        assert all(
            (cache / e["split"] / e["name"] / "meta.json").is_file() for s in index["splits"].values() for e in s
        ), listed

    proc = _run_prepare(root, cache)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, output
    assert f"already in the cache: {killed_at}" in output
    files = {k: v for k, v in _cache_files(cache).items() if "/.tmp-" not in k or "deadbeef" in k}
    files.pop("train/.tmp-2004__p0-deadbeef.99999/audio.npy", None)
    assert files == _cache_files(reference)  # byte-identical: .npy files, index, frontend.yaml


def test_shards_merge_into_the_full_cache(tmp_path):
    rows = [(f"C{i}", f"T{i}", SPLITS[i % 3], 2004, f"2004/s{i}", 1.5 + 0.2 * i, "ok") for i in range(7)]
    root = make_maestro(tmp_path / "m", rows, sr=16000)
    pieces = list_maestro(root)
    opts = PrepareOptions(audio_dtype="float32")
    full = prepare_cache(pieces, tmp_path / "full", SMALL, options=opts, progress=False)
    assert full.prepared == 7 and not full.skipped
    counts = []
    for i in range(3):
        report = prepare_cache(pieces, tmp_path / f"shard{i}", SMALL, options=opts, shard=(i, 3), progress=False)
        counts.append(report.prepared)
    assert sum(counts) == 7
    names = [
        {p.name for s in SPLITS for p in open_cache(tmp_path / f"shard{i}").pieces(s)} if counts[i] else set()
        for i in range(3)
    ]
    assert not (names[0] & names[1]) and not (names[1] & names[2]) and not (names[0] & names[2])
    merged = tmp_path / "merged"
    shard_dirs = [tmp_path / f"shard{i}" for i in range(3) if counts[i]]
    assert prepare_main(["--merge", *map(str, shard_dirs), "--out", str(merged)]) == 0
    assert _cache_files(merged) == _cache_files(tmp_path / "full")
    # shards writing into one shared folder give the same cache too
    for i in range(3):
        prepare_cache(pieces, tmp_path / "shared", SMALL, options=opts, shard=(i, 3), progress=False)
    assert _cache_files(tmp_path / "shared") == _cache_files(tmp_path / "full")
    with pytest.raises(FrontendMismatchError):
        merge_caches([tmp_path / "full"], _cache_with_other_frontend(tmp_path))


def _cache_with_other_frontend(tmp_path: Path) -> Path:
    other = tmp_path / "other"
    other.mkdir()
    (other / "frontend.yaml").write_text("sample_rate: 16000\n")
    return other


def test_parallel_workers_give_the_same_cache(tmp_path):
    rows = [(f"C{i}", f"T{i}", "train", 2004, f"2004/w{i}", 1.2 + 0.1 * i, "ok") for i in range(2)]
    root = make_maestro(tmp_path / "m", rows, sr=16000)
    pieces = list_maestro(root)
    prepare_cache(pieces, tmp_path / "one", SMALL, workers=1, progress=False)
    report = prepare_cache(pieces, tmp_path / "two", SMALL, workers=2, progress=False)
    assert report.prepared == 2 and report.workers == 2
    assert _cache_files(tmp_path / "one") == _cache_files(tmp_path / "two")


def test_usage_errors_exit_2(tmp_path, capsys):
    assert prepare_main(["--out", str(tmp_path)]) == 2
    assert prepare_main(["--maestro", str(tmp_path / "none"), "--out", str(tmp_path / "c")]) == 2
    assert prepare_main(["--audio-dir", str(tmp_path), "--out", str(tmp_path / "c"), "--shard", "3/3"]) == 2
    assert prepare_main(["--reindex", "--out", str(tmp_path / "not-a-cache")]) == 2
    assert prepare_main(["--help"]) == 0
    assert "--merge" in capsys.readouterr().out


def test_open_cache_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_cache(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="index.json"):
        open_cache(tmp_path / "empty")
    prepare_cache([], tmp_path / "nothing", SMALL, progress=False)
    with pytest.raises(DataError, match="no pieces"):
        open_cache(tmp_path / "nothing")


# ------------------------------------------------------------------------------------ datasets


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    """Three train pieces (0.5 s, 3 s, 9 s at 8 kHz) and one validation piece, audio stored as int16."""
    tmp = tmp_path_factory.mktemp("ds")
    rows = [
        ("A", "short", "train", 2004, "a/short", 0.5, "ok"),
        ("B", "mid", "train", 2004, "a/mid", 3.0, "ok"),
        ("C", "long", "train", 2004, "a/long", 9.0, "ok"),
        ("D", "val", "validation", 2004, "a/val", 2.0, "ok"),
    ]
    root = make_maestro(tmp / "m", rows, sr=8000)
    report = prepare_cache(
        list_maestro(root), tmp / "cache", SMALL, options=PrepareOptions(min_seconds=0.1), progress=False
    )
    assert report.prepared == 4
    return tmp / "cache"


def test_segments_are_aligned_with_the_frontend(small_cache):
    seg = 20
    ds = SegmentDataset(small_cache, "train", segment_frames=seg, seed=3)
    cache = open_cache(small_cache)
    frontend = MelFrontend(SMALL)
    hop = SMALL.hop_length
    total = sum(p.n_frames for p in cache.pieces("train"))
    assert len(ds) == total // seg
    for i in range(12):
        item = ds[i]
        assert item["mel"].shape == (SMALL.n_mels, seg) and item["audio"].shape == (seg * hop,)
        assert item["mel"].dtype == torch.float32 and item["audio"].dtype == torch.float32
        position, start = ds.window(i)
        entry = ds.entries[position]
        audio = np.asarray(cache.load_audio(entry))
        full_mel = frontend.log_mel_numpy(audio)
        if entry.n_samples >= (start + seg) * hop:
            np.testing.assert_array_equal(item["audio"].numpy(), audio[start * hop : (start + seg) * hop])
            np.testing.assert_allclose(item["mel"].numpy(), full_mel[:, start : start + seg], atol=1e-5)
        # and the window's own audio gives the window's mel away from the edges (frame k ~ sample k*hop)
        inner = frontend.log_mel_numpy(item["audio"].numpy())[:, 4 : seg - 4]
        np.testing.assert_allclose(inner, item["mel"].numpy()[:, 4 : seg - 4], atol=1e-4)


def test_windows_are_deterministic_per_seed_epoch_index(small_cache):
    a = SegmentDataset(small_cache, "train", segment_frames=16, seed=1)
    b = SegmentDataset(small_cache, "train", segment_frames=16, seed=1)
    assert [a.window(i) for i in range(50)] == [b.window(i) for i in range(50)]
    torch.testing.assert_close(a[7], b[7])
    first = [a.window(i) for i in range(50)]
    a.set_epoch(1)
    assert [a.window(i) for i in range(50)] != first
    a.set_epoch(0)
    assert [a.window(i) for i in range(50)] == first
    assert [SegmentDataset(small_cache, "train", 16, seed=2).window(i) for i in range(50)] != first


def test_pieces_drawn_in_proportion_to_length(small_cache):
    ds = SegmentDataset(small_cache, "train", segment_frames=8, length=3000)
    counts = Counter(ds.entries[ds.window(i)[0]].metadata["title"] for i in range(3000))
    frames = {e.metadata["title"]: e.n_frames for e in ds.entries}
    total = sum(frames.values())
    for title, n in frames.items():
        assert abs(counts[title] / 3000 - n / total) < 0.03, (counts, frames)


def test_short_piece_is_padded(small_cache):
    cache = open_cache(small_cache)
    short = next(p for p in cache.pieces("train") if p.metadata["title"] == "short")
    seg = short.n_frames + 30
    ds = SegmentDataset(small_cache, "train", segment_frames=seg, length=400)
    i = next(i for i in range(400) if ds.entries[ds.window(i)[0]].name == short.name)
    assert ds.window(i)[1] == 0
    item = ds[i]
    mel, audio = item["mel"].numpy(), item["audio"].numpy()
    np.testing.assert_array_equal(mel[:, : short.n_frames], cache.load_mel(short))
    assert np.all(mel[:, short.n_frames :] == np.float32(SMALL.log_silence))
    np.testing.assert_array_equal(audio[: short.n_samples], cache.load_audio(short))
    assert np.all(audio[short.n_samples :] == 0)


def test_dataset_pickles_without_arrays_and_loads_in_a_dataloader(small_cache):
    ds = SegmentDataset(small_cache, "train", segment_frames=10, with_audio=False)
    ds[0]
    assert len(pickle.dumps(ds)) < 20_000  # memory maps are reopened in each worker, not copied
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert set(batch) == {"mel"} and batch["mel"].shape == (4, SMALL.n_mels, 10)
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(DataError, match="no pieces in split 'test'"):
        SegmentDataset(small_cache, "test", segment_frames=10)
    with pytest.raises(FrontendMismatchError):
        SegmentDataset(small_cache, "train", segment_frames=10, expected_frontend=FrontendConfig())


def test_full_piece_dataset(small_cache):
    cache = open_cache(small_cache)
    ds = FullPieceDataset(small_cache, "validation")
    assert len(ds) == 1
    item = ds[0]
    entry = cache.pieces("validation")[0]
    assert item["name"] == entry.name
    assert item["mel"].shape == (SMALL.n_mels, entry.n_frames)
    assert item["audio"].shape == (entry.n_frames * SMALL.hop_length,)
    np.testing.assert_array_equal(item["audio"].numpy()[: entry.n_samples], cache.load_audio(entry))
    capped = FullPieceDataset(small_cache, "validation", max_frames=33)[0]
    assert capped["mel"].shape == (SMALL.n_mels, 33) and capped["audio"].shape == (33 * SMALL.hop_length,)
    np.testing.assert_array_equal(capped["mel"].numpy(), item["mel"].numpy()[:, :33])
