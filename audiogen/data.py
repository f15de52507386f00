"""Data: MAESTRO metadata and splits, the prepared mel/audio cache, and the training datasets.

Three layers, each usable alone:

1. **Sources.** :func:`read_maestro_metadata` reads MAESTRO's ``maestro-v*.csv`` / ``.json``
   (v1/v2 JSON is a list of rows, v3 JSON is column-oriented); :func:`list_maestro` turns a
   MAESTRO root into :class:`SourcePiece` items with the official splits, accepting ``.flac``
   beside a listed ``.wav`` and vice versa; :func:`list_audio_dir` does the same for any folder
   of audio files with a deterministic 80/10/10 split by file (:func:`split_for_key`).
2. **Cache.** :func:`prepare_cache` decodes each piece once, resamples it to the frontend rate and
   stores audio (int16 or float32) and log-mel (float32) as memory-mappable ``.npy`` per piece,
   atomically, so a killed run leaves nothing half-written and a rerun resumes. Layout::

       CACHE/frontend.yaml                 the resolved FrontendConfig
       CACHE/index.json                    pieces per split with metadata, skipped pieces
       CACHE/<split>/<name>/audio.npy      (T,) int16 (scale 1/32768) or float32
       CACHE/<split>/<name>/mel.npy        (n_mels, 1 + T // hop) float32 log-mel
       CACHE/<split>/<name>/meta.json      the index entry of this piece
       CACHE/skipped/<name>.json           why a piece was skipped (removed once it succeeds)

   A piece exists once its folder exists: the folder is filled under a temporary name and
   renamed in one ``os.replace``. ``index.json`` is rebuilt from the piece folders, so shards
   written on several machines merge by copying the piece folders into one cache and
   re-indexing (:func:`merge_caches`).
3. **Datasets.** :func:`open_cache` gives a :class:`Cache`; :class:`SegmentDataset` draws random
   aligned (mel, audio) windows as a deterministic function of (seed, epoch, index);
   :class:`FullPieceDataset` yields whole pieces for validation.

This module never imports models (data flows one way).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiogen.frontend import FrontendConfig, MelFrontend, check_same_frontend

SPLITS = ("train", "validation", "test")
MAESTRO_COLUMNS = (
    "canonical_composer",
    "canonical_title",
    "split",
    "year",
    "midi_filename",
    "audio_filename",
    "duration",
)
# Newest first: a root holding several versions is read with the newest metadata.
MAESTRO_METADATA_NAMES = tuple(f"maestro-v{v}.{ext}" for v in ("3.0.0", "2.0.0", "1.0.0") for ext in ("json", "csv"))
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".aiff", ".aif", ".mp3")


class DataError(ValueError):
    """Bad metadata, a missing or inconsistent cache, or an unusable data folder."""


# --------------------------------------------------------------------------------------------
# Sources: MAESTRO metadata, folders of audio, splits
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaestroRecord:
    """One row of MAESTRO's metadata (duration in seconds; year None when absent)."""

    canonical_composer: str
    canonical_title: str
    split: str
    year: int | None
    midi_filename: str
    audio_filename: str
    duration: float


@dataclass(frozen=True)
class SourcePiece:
    """A piece of audio to prepare: where it is, its split and its descriptive metadata.

    ``key`` is the path relative to the dataset root with ``/`` separators; it names the piece
    in the cache, decides ``--shard`` membership and (for ``--audio-dir``) the split.
    """

    key: str
    path: Path
    split: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return piece_name(self.key)


def stable_hash(text: str) -> int:
    """A 64-bit hash of a string that is the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def split_for_key(key: str) -> str:
    """Deterministic 80/10/10 train/validation/test split of a file by its relative path."""
    bucket = stable_hash("split:" + key) % 100
    return "train" if bucket < 80 else "validation" if bucket < 90 else "test"


def piece_name(key: str) -> str:
    """A file-system-safe, unique, readable name for a piece from its relative path.

    The extension is dropped, separators become ``__`` and a short hash of the full key keeps
    names unique when two keys differ only in characters that were replaced.
    """
    stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__")).strip("._")[:150]
    return f"{safe}-{stable_hash(key) & 0xFFFFFFFF:08x}"


def _parse_year(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _record_from_row(row: dict[str, Any], where: str) -> MaestroRecord:
    missing = [c for c in MAESTRO_COLUMNS if c not in row and c != "year"]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; MAESTRO metadata has {list(MAESTRO_COLUMNS)}")
    split = str(row["split"]).strip()
    if split not in SPLITS:
        raise DataError(f"{where}: split {split!r} is not one of {SPLITS}")
    try:
        duration = float(row["duration"])
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: duration {row['duration']!r} is not a number") from err
    return MaestroRecord(
        canonical_composer=str(row["canonical_composer"]),
        canonical_title=str(row["canonical_title"]),
        split=split,
        year=_parse_year(row.get("year")),
        midi_filename=str(row["midi_filename"]),
        audio_filename=str(row["audio_filename"]),
        duration=duration,
    )


def _json_rows(data: Any, path: Path) -> list[dict[str, Any]]:
    """Rows from MAESTRO JSON: a list of row objects (v1, v2) or ``{column: {row: value}}`` (v3)."""
    if isinstance(data, list):
        if not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a list of row objects")
        return data
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        row_ids: list[str] = []
        for column in data.values():
            for rid in column:
                if rid not in row_ids:
                    row_ids.append(rid)
        # pandas writes row labels as "0", "1", ...: keep the numeric order, not the string order
        row_ids.sort(key=lambda r: (0, int(r)) if str(r).isdigit() else (1, str(r)))
        return [{col: values.get(rid) for col, values in data.items()} for rid in row_ids]
    raise DataError(f"{path}: not MAESTRO metadata (expected a list of rows or {{column: {{row: value}}}})")


def read_maestro_metadata(path: str | Path) -> list[MaestroRecord]:
    """Read ``maestro-v*.csv`` or ``.json`` (any of v1.0.0, v2.0.0, v3.0.0) in file order.

    Raises:
        DataError: missing file, unknown layout, missing columns or an unknown split.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metadata file not found")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from err
        rows = _json_rows(data, path)
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    else:
        raise DataError(f"{path}: expected a .csv or .json MAESTRO metadata file")
    return [_record_from_row(row, f"{path} row {i}") for i, row in enumerate(rows)]


def write_maestro_csv(records: Iterable[MaestroRecord], path: str | Path) -> None:
    """Write records in MAESTRO's CSV layout (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MAESTRO_COLUMNS)
        for r in records:
            writer.writerow(
                [
                    r.canonical_composer,
                    r.canonical_title,
                    r.split,
                    "" if r.year is None else r.year,
                    r.midi_filename,
                    r.audio_filename,
                    f"{r.duration:.3f}",
                ]
            )
    os.replace(tmp, path)


def find_maestro_metadata(root: str | Path) -> Path:
    """The metadata file of a MAESTRO root: ``maestro-v3.0.0.json`` etc., else one ``maestro*.csv``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: MAESTRO root folder not found")
    for name in MAESTRO_METADATA_NAMES:
        if (root / name).is_file():
            return root / name
    others = sorted(root.glob("maestro*.csv")) + sorted(root.glob("maestro*.json"))
    if others:
        return others[0]
    raise DataError(f"{root}: no MAESTRO metadata (expected one of {', '.join(MAESTRO_METADATA_NAMES)})")


def resolve_audio_path(root: str | Path, audio_filename: str) -> Path | None:
    """The audio file a metadata row names, or its FLAC/WAV twin beside it; None if neither exists."""
    listed = Path(root) / audio_filename
    candidates = [listed] + [listed.with_suffix(s) for s in (".flac", ".wav") if s != listed.suffix.lower()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def list_maestro(root: str | Path, metadata: str | Path | None = None) -> list[SourcePiece]:
    """Pieces of a MAESTRO root with the official splits, in metadata order.

    A listed file that exists neither as listed nor as its ``.flac``/``.wav`` twin is still
    returned (with the listed path) so that preparation reports it as missing.
    """
    root = Path(root)
    meta_path = Path(metadata) if metadata is not None else find_maestro_metadata(root)
    pieces = []
    for record in read_maestro_metadata(meta_path):
        path = resolve_audio_path(root, record.audio_filename) or root / record.audio_filename
        info = {
            "composer": record.canonical_composer,
            "title": record.canonical_title,
            "year": record.year,
            "duration": record.duration,
            "source": record.audio_filename,
            "midi_filename": record.midi_filename,
        }
        pieces.append(SourcePiece(key=record.audio_filename, path=path, split=record.split, metadata=info))
    return pieces


def list_audio_dir(directory: str | Path) -> list[SourcePiece]:
    """Every audio file under a folder (recursively), split 80/10/10 by relative path, sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: audio folder not found")
    pieces = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith("."):
            key = path.relative_to(directory).as_posix()
            info = {"composer": "", "title": path.stem, "year": None, "duration": None, "source": key}
            pieces.append(SourcePiece(key=key, path=path, split=split_for_key(key), metadata=info))
    return pieces


def shard_of(pieces: Sequence[SourcePiece], index: int, count: int) -> list[SourcePiece]:
    """The pieces of shard ``index`` of ``count``: disjoint, covering, stable under list changes."""
    if count < 1 or not 0 <= index < count:
        raise DataError(f"shard {index}/{count}: need 0 <= I < N")
    return [p for p in pieces if stable_hash("shard:" + p.key) % count == index]


# --------------------------------------------------------------------------------------------
# The cache: layout and small atomic writers
# --------------------------------------------------------------------------------------------

CACHE_FORMAT = "audiogen-cache"
CACHE_VERSION = 1
INDEX_NAME = "index.json"
FRONTEND_NAME = "frontend.yaml"
SKIPPED_DIR = "skipped"
AUDIO_DTYPES = ("int16", "float32")
INT16_SCALE = 32768.0  # int16 audio is stored as round(x * 32768), read back as q / 32768
TMP_PREFIX = ".tmp-"
MEL_CHUNK_FRAMES = 8192  # about 95 s at 22,050 Hz / hop 256: bounds a worker's STFT memory


def _write_text_atomic(path: Path, text: str) -> None:
    # the pid keeps two processes (shards sharing a cache) from writing the same temporary file
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def frontend_to_yaml(config: FrontendConfig) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def read_cache_frontend(cache_dir: str | Path) -> FrontendConfig | None:
    """The FrontendConfig stored in a cache folder, or None when there is none yet."""
    from audiogen.config import load_config

    path = Path(cache_dir) / FRONTEND_NAME
    return load_config(FrontendConfig, path) if path.is_file() else None


def ensure_cache_frontend(cache_dir: str | Path, config: FrontendConfig) -> None:
    """Create the cache folder with ``frontend.yaml``, or check an existing one matches."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = read_cache_frontend(cache_dir)
    if found is None:
        _write_text_atomic(cache_dir / FRONTEND_NAME, frontend_to_yaml(config))
    else:
        check_same_frontend(config, found, f"cache {cache_dir}")


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


# --------------------------------------------------------------------------------------------
# Preparing one piece
# --------------------------------------------------------------------------------------------


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
    """A piece preparation left out: ``kind`` is missing, corrupt, too_short, silent or error."""

    name: str
    split: str
    source: str
    kind: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def piece_dir(cache_dir: str | Path, split: str, name: str) -> Path:
    return Path(cache_dir) / split / name


def piece_done(cache_dir: str | Path, piece: SourcePiece) -> bool:
    """Whether a piece is in the cache (its folder only appears once complete)."""
    return (piece_dir(cache_dir, piece.split, piece.name) / "meta.json").is_file()


def _remove_stale_tmp(parent: Path, name: str) -> None:
    if parent.is_dir():
        for stale in parent.glob(f"{TMP_PREFIX}{name}.*"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


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
        _write_text_atomic(cache_dir / SKIPPED_DIR / f"{piece.name}.json", _json_text(record.to_dict()))
        return "skipped", 0.0, record

    if not piece.path.is_file():
        return skip("missing", f"{piece.path}: file not found (nor as .flac/.wav)")
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
        np.save(tmp / "audio.npy", stored)
        np.save(tmp / "mel.npy", mel)
        (tmp / "meta.json").write_text(_json_text(meta), encoding="utf-8")
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


# --------------------------------------------------------------------------------------------
# The index
# --------------------------------------------------------------------------------------------


def build_index(cache_dir: str | Path) -> dict[str, Any]:
    """The index of a cache from its piece folders and skip records (deterministic content)."""
    cache_dir = Path(cache_dir)
    frontend = read_cache_frontend(cache_dir)
    if frontend is None:
        raise DataError(f"{cache_dir}: not an audiogen cache (no {FRONTEND_NAME}); prepare it with audiogen-prepare")
    splits: dict[str, list[dict[str, Any]]] = {}
    present: set[str] = set()
    for split in SPLITS:
        entries = []
        folder = cache_dir / split
        if folder.is_dir():
            for child in sorted(folder.iterdir()):
                meta = child / "meta.json"
                if child.name.startswith(".") or not meta.is_file():
                    continue
                entries.append(json.loads(meta.read_text(encoding="utf-8")))
                present.add(child.name)
        splits[split] = entries
    skipped = []
    if (cache_dir / SKIPPED_DIR).is_dir():
        for record in sorted((cache_dir / SKIPPED_DIR).glob("*.json")):
            if record.stem not in present:
                skipped.append(json.loads(record.read_text(encoding="utf-8")))
    rate = frontend.sample_rate
    totals = {
        split: {"pieces": len(e), "hours": round(sum(p["n_samples"] for p in e) / rate / 3600, 4)}
        for split, e in splits.items()
    }
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "frontend": frontend.to_dict(),
        "splits": splits,
        "totals": totals,
        "skipped": skipped,
    }


def write_index(cache_dir: str | Path) -> dict[str, Any]:
    """Rebuild ``index.json`` from the piece folders and replace it atomically."""
    index = build_index(cache_dir)
    _write_text_atomic(Path(cache_dir) / INDEX_NAME, _json_text(index))
    return index


# --------------------------------------------------------------------------------------------
# Preparing a whole cache
# --------------------------------------------------------------------------------------------


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

    def summary(self) -> str:
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
            lines += [f"  {s.kind:9s} {s.split:10s} {s.source}: {s.reason}" for s in self.skipped]
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
    """
    from tqdm import tqdm

    started = time.perf_counter()
    cache_dir = Path(cache_dir)
    ensure_cache_frontend(cache_dir, frontend)
    if shard is not None:
        pieces = shard_of(pieces, *shard)
    report = PrepareReport(workers=max(1, workers))
    todo = []
    for piece in pieces:
        if piece_done(cache_dir, piece):
            report.existing += 1
        else:
            todo.append(piece)
    todo.sort(key=_size_key)  # longest first: the pool's last task is a short one
    report.workers = min(report.workers, max(1, len(todo)))  # the processes actually used
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
            report.skipped.append(skipped)
            bar.write(f"skipped ({skipped.kind}) {skipped.source}: {skipped.reason}")
        bar.update()
        bar.set_postfix(hours=f"{report.audio_seconds / 3600:.2f}", skipped=len(report.skipped))
        if time.monotonic() - last_index > index_every_s:
            write_index(cache_dir)
            last_index = time.monotonic()

    if report.workers == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            mel_frontend = MelFrontend(frontend)
            for piece in todo:
                account(prepare_piece(piece, cache_dir, mel_frontend, options))
        finally:
            torch.set_num_threads(threads)
    else:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # fork after torch is loaded can deadlock
        init = (frontend.to_dict(), str(cache_dir), options)
        with context.Pool(report.workers, initializer=_worker_init, initargs=init) as pool:
            for result in pool.imap_unordered(_worker_run, todo):
                account(result)
    bar.close()
    write_index(cache_dir)
    report.skipped.sort(key=lambda s: s.source)
    report.wall_seconds = time.perf_counter() - started
    return report


def merge_caches(sources: Sequence[str | Path], dest: str | Path) -> int:
    """Merge caches (e.g. shards prepared on several machines) into ``dest``; returns pieces added.

    Piece folders are hard-linked when possible (same file system), copied otherwise, each
    under a temporary name and renamed into place; pieces already in ``dest`` are kept.
    Every source must have been made with the same frontend.
    """
    dest = Path(dest)
    added = 0
    for source in sources:
        source = Path(source)
        frontend = read_cache_frontend(source)
        if frontend is None:
            raise DataError(f"{source}: not an audiogen cache (no {FRONTEND_NAME})")
        ensure_cache_frontend(dest, frontend)
        for split in SPLITS:
            if not (source / split).is_dir():
                continue
            for child in sorted((source / split).iterdir()):
                target = dest / split / child.name
                if child.name.startswith(".") or not (child / "meta.json").is_file() or target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f"{TMP_PREFIX}{child.name}.{os.getpid()}")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(child, tmp, copy_function=_link_or_copy)
                os.replace(tmp, target)
                added += 1
        for record in sorted((source / SKIPPED_DIR).glob("*.json")) if (source / SKIPPED_DIR).is_dir() else []:
            (dest / SKIPPED_DIR).mkdir(exist_ok=True)
            if not (dest / SKIPPED_DIR / record.name).exists():
                _write_text_atomic(dest / SKIPPED_DIR / record.name, record.read_text(encoding="utf-8"))
    write_index(dest)
    return added


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)  # cache files are never modified in place, so sharing inodes is safe
    except OSError:
        shutil.copy2(src, dst)
    return dst


# --------------------------------------------------------------------------------------------
# Reading the cache
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PieceEntry:
    """One prepared piece: ``n_samples`` of audio at the cache's rate, ``n_frames`` = 1 + n_samples // hop."""

    name: str
    split: str
    n_samples: int
    n_frames: int
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    audio_dtype: str = "int16"


class Cache:
    """A prepared cache opened from its index; arrays are memory-mapped on first use.

    Use :func:`open_cache`. Only pieces listed in ``index.json`` are visible, so pieces a running
    preparation is adding appear at its next index update.
    """

    def __init__(self, root: Path, index: dict[str, Any]):
        self.root = root
        self.index = index
        self.frontend = FrontendConfig(**index["frontend"])
        self._pieces = {
            split: [
                PieceEntry(
                    name=e["name"],
                    split=e["split"],
                    n_samples=int(e["n_samples"]),
                    n_frames=int(e["n_frames"]),
                    metadata=dict(e.get("metadata", {})),
                    audio_dtype=e.get("audio_dtype", "int16"),
                )
                for e in entries
            ]
            for split, entries in index["splits"].items()
        }
        self._maps: dict[tuple[str, str, str], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        # memory maps must not be pickled into DataLoader workers (that would copy the data)
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if self._pieces.get(s)]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return list(self.index.get("skipped", []))

    def pieces(self, split: str) -> list[PieceEntry]:
        """The pieces of a split, sorted by name (empty list for a split with no pieces)."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
        return list(self._pieces.get(split, []))

    def seconds(self, split: str) -> float:
        return sum(p.n_samples for p in self.pieces(split)) / self.frontend.sample_rate

    def path(self, entry: PieceEntry) -> Path:
        return self.root / entry.split / entry.name

    def _map(self, entry: PieceEntry, what: str) -> np.ndarray:
        key = (entry.split, entry.name, what)
        if key not in self._maps:
            path = self.path(entry) / f"{what}.npy"
            try:
                self._maps[key] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise DataError(f"{path}: cannot read cache file ({err})") from err
        return self._maps[key]

    def load_mel(self, entry: PieceEntry) -> np.ndarray:
        """Memory-mapped log-mel (n_mels, n_frames) float32 (read-only)."""
        return self._map(entry, "mel")

    def load_audio(self, entry: PieceEntry) -> np.ndarray:
        """Audio (n_samples,) float32: memory-mapped when stored as float32, else converted."""
        raw = self._map(entry, "audio")
        return raw if raw.dtype == np.float32 else raw.astype(np.float32) / INT16_SCALE

    def audio_window(self, entry: PieceEntry, start: int, length: int) -> np.ndarray:
        """Samples [start, start + length) as float32, zero-padded past the end of the piece."""
        raw = self._map(entry, "audio")
        out = np.zeros(length, dtype=np.float32)
        part = raw[max(start, 0) : max(start + length, 0)]
        offset = max(-start, 0)
        if raw.dtype == np.float32:
            out[offset : offset + len(part)] = part
        else:
            out[offset : offset + len(part)] = part.astype(np.float32) / INT16_SCALE
        return out

    def mel_window(self, entry: PieceEntry, start: int, frames: int) -> np.ndarray:
        """Frames [start, start + frames) as float32 (n_mels, frames), padded with log-silence."""
        mel = self._map(entry, "mel")
        out = np.full((mel.shape[0], frames), self.frontend.log_silence, dtype=np.float32)
        part = mel[:, max(start, 0) : max(start + frames, 0)]
        offset = max(-start, 0)
        out[:, offset : offset + part.shape[1]] = part
        return out


def open_cache(cache_dir: str | Path, expected_frontend: FrontendConfig | None = None) -> Cache:
    """Open a prepared cache.

    Args:
        expected_frontend: when given, a cache made with another frontend is refused.

    Raises:
        DataError: the folder is missing, has no index, or holds no pieces.
        FrontendMismatchError: the cache's frontend differs from ``expected_frontend``.
    """
    root = Path(cache_dir)
    hint = f"build it with `audiogen-prepare --maestro ROOT --out {root}` (or --audio-dir DIR)"
    if not root.is_dir():
        raise DataError(f"{root}: cache folder not found; {hint}")
    path = root / INDEX_NAME
    if not path.is_file():
        raise DataError(f"{root}: no {INDEX_NAME} (empty or not a cache); {hint}")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if index.get("format") != CACHE_FORMAT or not index.get("frontend"):
        raise DataError(f"{path}: not an {CACHE_FORMAT} index")
    if index.get("version") != CACHE_VERSION:
        raise DataError(f"{path}: cache version {index.get('version')}, this code reads {CACHE_VERSION}; rebuild it")
    cache = Cache(root, index)
    if not any(cache.pieces(s) for s in SPLITS):
        raise DataError(f"{root}: the cache holds no pieces; {hint}")
    if expected_frontend is not None:
        check_same_frontend(expected_frontend, cache.frontend, f"cache {root}")
    return cache


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


class SegmentDataset(torch.utils.data.Dataset):
    """Random aligned windows of log-mel and audio from one split of a cache.

    Item ``i`` is a window chosen by a generator seeded with (seed, epoch, i): a piece drawn with
    probability proportional to its frame count, then a start frame uniform over the positions
    where the window's audio lies inside the piece. So any sampler's order (seeded, resumed,
    split across ranks) fixes the data exactly; :meth:`set_epoch` draws new windows.

    ``ds[i]`` is ``{"mel": (n_mels, segment_frames) float32, "audio": (segment_frames * hop,)
    float32}`` (no "audio" when ``with_audio`` is False). Mel frame k of the window is frame
    ``start + k`` of the piece's log-mel, centred on audio sample ``(start + k) * hop``, and the
    audio starts at sample ``start * hop``. Pieces shorter than a window are padded (mel with the
    frontend's log-silence, audio with zeros).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        segment_frames: int,
        with_audio: bool = True,
        seed: int = 0,
        length: int | None = None,
        expected_frontend: FrontendConfig | None = None,
    ):
        if segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
        self.cache = open_cache(cache_dir, expected_frontend)
        self.entries = self.cache.pieces(split)
        if not self.entries:
            raise DataError(f"{cache_dir}: no pieces in split {split!r}")
        self.split = split
        self.segment_frames = segment_frames
        self.with_audio = with_audio
        self.seed = seed
        self.epoch = 0
        self.hop = self.cache.frontend.hop_length
        self._cumulative = np.cumsum([e.n_frames for e in self.entries], dtype=np.int64)
        total = int(self._cumulative[-1])
        self.length = length if length is not None else max(1, total // segment_frames)
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")

    def set_epoch(self, epoch: int) -> None:
        """Choose the windows of another epoch (cheap; call before reading items)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def window(self, index: int) -> tuple[int, int]:
        """(piece position in ``self.entries``, start frame) of item ``index`` this epoch."""
        rng = np.random.default_rng([self.seed % 2**63, self.epoch, index])
        position = int(np.searchsorted(self._cumulative, rng.integers(0, self._cumulative[-1]), side="right"))
        entry = self.entries[position]
        # the audio of the window, (start + segment) * hop samples, must fit inside the piece
        last_start = entry.n_samples // self.hop - self.segment_frames
        start = int(rng.integers(0, last_start + 1)) if last_start > 0 else 0
        return position, start

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} windows")
        index %= self.length
        position, start = self.window(index)
        entry = self.entries[position]
        item = {"mel": torch.from_numpy(self.cache.mel_window(entry, start, self.segment_frames))}
        if self.with_audio:
            audio = self.cache.audio_window(entry, start * self.hop, self.segment_frames * self.hop)
            item["audio"] = torch.from_numpy(audio)
        return item


class FullPieceDataset(torch.utils.data.Dataset):
    """Whole pieces of a split (or their first ``max_frames`` frames), for validation and test.

    ``ds[i]`` is ``{"mel": (n_mels, F) float32, "audio": (F * hop,) float32, "name": str}`` with
    F = the piece's frame count (capped at ``max_frames``); the audio is zero-padded to F * hop
    samples so that it lines up with the mel as in :class:`SegmentDataset`.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        max_frames: int | None = None,
        expected_frontend: FrontendConfig | None = None,
    ):
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
        self.cache = open_cache(cache_dir, expected_frontend)
        self.entries = self.cache.pieces(split)
        self.split = split
        self.max_frames = max_frames
        self.hop = self.cache.frontend.hop_length

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        frames = entry.n_frames if self.max_frames is None else min(entry.n_frames, self.max_frames)
        return {
            "mel": torch.from_numpy(self.cache.mel_window(entry, 0, frames)),
            "audio": torch.from_numpy(self.cache.audio_window(entry, 0, frames * self.hop)),
            "name": entry.name,
        }
