"""Preparing a cache: decode each piece once, resample, check, and store audio and log-mel atomically.

:func:`prepare_cache` decodes each piece once, resamples it to the frontend rate and stores audio
(int16 or float32) and log-mel (float32) as memory-mappable ``.npy`` per piece in the layout of
:mod:`audiogen.cache`, atomically, so a killed run leaves nothing half-written and a rerun resumes.
Bad files are skipped with the reason (:class:`Skipped`), never fatal. A failed write (a full
disk) stops the run: the piece being written is removed, the index lists the pieces finished
before it, and a rerun continues from there.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiogen.cache import (
    AUDIO_DTYPES,
    INT16_SCALE,
    SKIPPED_DIR,
    TMP_PREFIX,
    ensure_cache_frontend,
    json_text,
    piece_dir,
    write_index,
    write_text_atomic,
)
from audiogen.frontend import FrontendConfig, MelFrontend
from audiogen.sources import DataError, SourcePiece, missing_reason, shard_of

MAX_LISTED_PER_KIND = 10  # a summary lists at most this many skipped pieces of one kind, then counts the rest
MEL_CHUNK_FRAMES = 8192  # about 95 s at 22,050 Hz / hop 256: bounds a worker's STFT memory


def quantize_int16(audio: np.ndarray) -> np.ndarray:
    """float audio (T,) → int16 (T,) with scale 32768, clipped to the int16 range."""
    return np.clip(np.round(audio * INT16_SCALE), -32768, 32767).astype(np.int16)


def compute_log_mel(frontend: MelFrontend, audio: np.ndarray, chunk_frames: int = MEL_CHUNK_FRAMES) -> np.ndarray:
    """``frontend.log_mel_numpy(audio)`` computed in chunks of frames to bound memory.

    Each chunk is computed from its samples plus a margin of whole hops on both sides, and only
    the frames whose window lies entirely inside that stretch are kept; at the ends of the piece
    the stretch ends where the audio does, so the frontend's zero padding is the same as for the
    whole piece. The result equals the unchunked one to float32 rounding.

    Args:
        audio: (T,) float32.

    Returns:
        (n_mels, 1 + T // hop) float32 log-mel.
    """
    c = frontend.config
    n_frames = c.num_frames(len(audio))
    if n_frames <= chunk_frames:
        return frontend.log_mel_numpy(audio)
    margin = -(-(c.n_fft // 2) // c.hop_length)  # frames whose window reaches past a chunk edge
    out = np.empty((c.n_mels, n_frames), dtype=np.float32)
    for first in range(0, n_frames, chunk_frames):
        last = min(first + chunk_frames, n_frames)  # frames [first, last)
        lead = min(first, margin)
        start = (first - lead) * c.hop_length
        stop = min(len(audio), (last - 1 + margin) * c.hop_length)
        mel = frontend.log_mel_numpy(audio[start:stop])
        out[:, first:last] = mel[:, lead : lead + last - first]
    return out


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as ``np.save`` does (format 1.0), but through Python's file object.

    numpy's own writer reports a full disk as "N requested and M written" without an errno;
    written this way a full disk raises ``OSError(ENOSPC)``, which the command reports as such.
    """
    array = np.ascontiguousarray(array)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, np.lib.format.header_data_from_array_1_0(array))
        handle.write(memoryview(array).cast("B"))


@dataclass(frozen=True)
class PrepareOptions:
    """What preparation accepts: pieces shorter than ``min_seconds`` or with a peak below
    ``silence_dbfs`` are skipped; audio is stored as ``audio_dtype`` (int16 halves the disk
    and the page cache a trainer needs; the mel is computed from the stored samples either way,
    so mel and audio agree exactly)."""

    min_seconds: float = 1.0
    silence_dbfs: float = -60.0
    audio_dtype: str = "int16"

    def __post_init__(self) -> None:
        if self.audio_dtype not in AUDIO_DTYPES:
            raise ValueError(f"audio_dtype must be one of {AUDIO_DTYPES}, got {self.audio_dtype!r}")


@dataclass(frozen=True)
class Skipped:
    """A piece preparation left out.

    ``kind`` is missing (no file, or a dangling link), unreadable (a file or folder that cannot
    be opened), duplicate (a second path to a recording listed already), corrupt, too_short,
    silent or error.
    """

    name: str
    split: str
    source: str
    kind: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def piece_done(cache_dir: str | Path, piece: SourcePiece) -> bool:
    """Whether a piece is in the cache (its folder only appears once complete)."""
    return (piece_dir(cache_dir, piece.split, piece.name) / "meta.json").is_file()


def _remove_stale_tmp(parent: Path, name: str) -> None:
    if parent.is_dir():
        for stale in parent.glob(f"{TMP_PREFIX}{name}.*"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def _remove_tmp_of(pieces: Sequence[SourcePiece], cache_dir: Path) -> None:
    """Remove the temporary folders of these pieces' unfinished writes (a kill, a full disk).

    Only these pieces': shards sharing a cache folder own disjoint pieces, so another shard's
    write in progress is never touched.
    """
    owned = {(p.split, p.name) for p in pieces}
    for split in sorted({p.split for p in pieces}):
        folder = cache_dir / split
        for entry in folder.iterdir() if folder.is_dir() else []:
            # temporary names are f"{TMP_PREFIX}{piece name}.{pid}"
            if entry.name.startswith(TMP_PREFIX) and (split, entry.name[len(TMP_PREFIX) :].rsplit(".", 1)[0]) in owned:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def prepare_piece(
    piece: SourcePiece,
    cache_dir: str | Path,
    frontend: MelFrontend,
    options: PrepareOptions = PrepareOptions(),
) -> tuple[str, float, Skipped | None]:
    """Decode, check, resample and store one piece; never raises for a bad file.

    Returns:
        (status, seconds of audio, skip record): status "done" (written now), "exists" (already
        in the cache) or "skipped" (with the reason).
    """
    from audiogen.audio import AudioError, load_audio

    cache_dir = Path(cache_dir)
    config = frontend.config
    final = piece_dir(cache_dir, piece.split, piece.name)
    if (final / "meta.json").is_file():
        return "exists", 0.0, None

    def skip(kind: str, reason: str) -> tuple[str, float, Skipped]:
        record = Skipped(piece.name, piece.split, piece.key, kind, reason)
        (cache_dir / SKIPPED_DIR).mkdir(exist_ok=True)
        write_text_atomic(cache_dir / SKIPPED_DIR / f"{piece.name}.json", json_text(record.to_dict()))
        return "skipped", 0.0, record

    if piece.problem is not None:
        return skip(*piece.problem)
    if not piece.path.is_file():
        return skip("missing", missing_reason(piece.path))
    try:
        audio, _ = load_audio(piece.path, config.sample_rate)
    except AudioError as err:
        return skip("corrupt", str(err))
    except Exception as err:  # a decoder or resampler failure must not stop the run
        return skip("error", f"{piece.path}: {type(err).__name__}: {err}")
    seconds = len(audio) / config.sample_rate
    if seconds < options.min_seconds:
        return skip("too_short", f"{seconds:.3f} s < {options.min_seconds} s")
    peak = float(np.max(np.abs(audio)))
    peak_db = 20 * math.log10(peak) if peak > 0 else -math.inf
    if peak_db < options.silence_dbfs:
        return skip("silent", f"peak {peak_db:.1f} dBFS < {options.silence_dbfs} dBFS")

    if options.audio_dtype == "int16":
        stored = quantize_int16(audio)
        audio = stored.astype(np.float32) / INT16_SCALE  # the mel describes exactly what is stored
    else:
        stored = audio.astype(np.float32, copy=False)
    mel = compute_log_mel(frontend, audio)
    meta = {
        "name": piece.name,
        "split": piece.split,
        "n_samples": int(len(stored)),
        "n_frames": int(mel.shape[1]),
        "audio_dtype": options.audio_dtype,
        "metadata": {
            **piece.metadata,
            "duration": round(seconds, 3),
            "peak_dbfs": round(peak_db, 2),
            "source": piece.key,
        },
    }
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(parent, piece.name)
    tmp = parent / f"{TMP_PREFIX}{piece.name}.{os.getpid()}"
    tmp.mkdir()
    try:
        save_npy(tmp / "audio.npy", stored)
        save_npy(tmp / "mel.npy", mel)
        (tmp / "meta.json").write_text(json_text(meta), encoding="utf-8")
        try:
            os.replace(tmp, final)  # the piece appears whole or not at all
        except OSError:
            if not (final / "meta.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished it first
            return "exists", 0.0, None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (cache_dir / SKIPPED_DIR / f"{piece.name}.json").unlink(missing_ok=True)
    return "done", seconds, None


@dataclass
class PrepareReport:
    """What a preparation run did; ``audio_seconds`` counts only pieces written by this run."""

    prepared: int = 0
    existing: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    workers: int = 1

    @property
    def hours_per_core_hour(self) -> float:
        """Preparation throughput: hours of audio per hour of wall time per worker."""
        return self.audio_seconds / max(self.wall_seconds * self.workers, 1e-9)

    def summary(self, cache_dir: str | Path | None = None) -> str:
        """The report for a user: counts, then each skipped piece by kind (at most
        :data:`MAX_LISTED_PER_KIND` of a kind; every one is in ``cache_dir``'s index)."""
        lines = [
            f"prepared {self.prepared} pieces ({self.audio_seconds / 3600:.3f} h of audio) in "
            f"{self.wall_seconds:.1f} s with {self.workers} worker(s): "
            f"{self.hours_per_core_hour:.1f} h of audio per hour per core",
            f"already in the cache: {self.existing} pieces",
        ]
        if self.skipped:
            kinds: dict[str, int] = {}
            for s in self.skipped:
                kinds[s.kind] = kinds.get(s.kind, 0) + 1
            counts = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
            lines.append(f"skipped {len(self.skipped)} pieces ({counts}):")
            where = f"{Path(cache_dir) / 'index.json'}" if cache_dir is not None else "the cache's index.json"
            for kind in sorted(kinds):
                of_kind = [s for s in self.skipped if s.kind == kind]
                shown = of_kind if len(of_kind) <= MAX_LISTED_PER_KIND else of_kind[:3]
                lines += [f"  {s.kind:10s} {s.split:10s} {s.source}: {s.reason}" for s in shown]
                if len(shown) < len(of_kind):
                    lines.append(f"  {kind:10s} ... and {len(of_kind) - len(shown)} more (every one in {where})")
        else:
            lines.append("skipped: none")
        return "\n".join(lines)


_WORKER: dict[str, Any] = {}


def _worker_init(frontend: dict[str, Any], cache_dir: str, options: PrepareOptions) -> None:
    # one thread per process: the pool is the parallelism, and a fixed thread count keeps the
    # float reductions (hence the cache bytes) the same whatever --workers is
    torch.set_num_threads(1)
    _WORKER.update(frontend=MelFrontend(FrontendConfig(**frontend)), cache_dir=cache_dir, options=options)


def _worker_run(piece: SourcePiece) -> tuple[str, float, Skipped | None]:
    return prepare_piece(piece, _WORKER["cache_dir"], _WORKER["frontend"], _WORKER["options"])


def _prepare_all(
    todo: Sequence[SourcePiece],
    cache_dir: Path,
    frontend: FrontendConfig,
    options: PrepareOptions,
    workers: int,
    account: Callable[[tuple[str, float, Skipped | None]], None],
) -> None:
    """Prepare each piece, in this process or a pool, and pass each result to ``account``."""
    if workers == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            mel_frontend = MelFrontend(frontend)
            for piece in todo:
                account(prepare_piece(piece, cache_dir, mel_frontend, options))
        finally:
            torch.set_num_threads(threads)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fork after torch is loaded can deadlock
    init = (frontend.to_dict(), str(cache_dir), options)
    with context.Pool(workers, initializer=_worker_init, initargs=init) as pool:
        for result in pool.imap_unordered(_worker_run, todo):
            account(result)


def _size_key(piece: SourcePiece) -> tuple[int, str]:
    try:
        size = piece.path.stat().st_size
    except OSError:
        size = 0
    return -size, piece.key


def prepare_cache(
    pieces: Sequence[SourcePiece],
    cache_dir: str | Path,
    frontend: FrontendConfig,
    *,
    workers: int = 1,
    options: PrepareOptions = PrepareOptions(),
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    index_every_s: float = 120.0,
) -> PrepareReport:
    """Prepare ``pieces`` into ``cache_dir`` (resumable, shardable) and rewrite the index.

    Args:
        pieces: from :func:`list_maestro` or :func:`list_audio_dir`.
        frontend: the audio settings; an existing cache made with others is refused.
        workers: processes (spawn context); 1 runs in this process.
        shard: (I, N) to take only shard I of N (:func:`shard_of`); shards may share a cache
            folder or be merged later with :func:`merge_caches`.
        index_every_s: the index is also rewritten this often, so a trainer can read a cache
            whose preparation is still running or was killed.

    Raises:
        FrontendMismatchError: the cache was made with another frontend.
        DataError: two pieces with one key (a listing lists each file once).
        OSError: a write failed (e.g. ENOSPC, a full disk): the piece being written is removed
            and the index lists the pieces finished before it, so a rerun continues.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    cache_dir = Path(cache_dir)
    ensure_cache_frontend(cache_dir, frontend)
    if shard is not None:
        pieces = shard_of(pieces, *shard)
    keys = [p.key for p in pieces]
    if len(set(keys)) != len(keys):
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        raise DataError(f"pieces listed twice: {', '.join(repeated[:3])}; each file must be listed once")
    report = PrepareReport(workers=max(1, workers))
    todo = []
    for piece in pieces:
        if piece_done(cache_dir, piece):
            report.existing += 1
        else:
            todo.append(piece)
    todo.sort(key=_size_key)  # longest first: the pool's last task is a short one
    report.workers = min(report.workers, max(1, len(todo)))  # the processes actually used
    _remove_tmp_of(todo, cache_dir)  # space a killed or failed run left, before asking for more
    write_index(cache_dir)
    bar = tqdm(total=len(todo), unit="piece", disable=not progress, desc="prepare", smoothing=0.05)
    last_index = time.monotonic()

    def account(result: tuple[str, float, Skipped | None]) -> None:
        nonlocal last_index
        status, seconds, skipped = result
        if status == "done":
            report.prepared += 1
            report.audio_seconds += seconds
        elif status == "exists":
            report.existing += 1
        elif skipped is not None:
            report.skipped.append(skipped)  # listed once, in the summary (the bar counts them)
        bar.update()
        bar.set_postfix(hours=f"{report.audio_seconds / 3600:.2f}", skipped=len(report.skipped))
        if time.monotonic() - last_index > index_every_s:
            write_index(cache_dir)
            last_index = time.monotonic()

    try:
        _prepare_all(todo, cache_dir, frontend, options, report.workers, account)
    except OSError:
        # a full disk, most likely: workers stopped mid-write leave temporary folders; the
        # pieces finished so far stay and are indexed when there is room for the index
        _remove_tmp_of(todo, cache_dir)
        try:
            write_index(cache_dir)
        except OSError:
            pass  # the previous index stays; it lists only complete pieces too
        raise
    finally:
        bar.close()
    write_index(cache_dir)
    report.skipped.sort(key=lambda s: s.source)
    report.wall_seconds = time.perf_counter() - started
    return report
