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
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
