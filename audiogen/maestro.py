"""MAESTRO metadata: read ``maestro-v*.csv`` / ``.json`` (v1, v2, v3) and list a root's pieces with the official splits.

v1/v2 JSON is a list of rows, v3 JSON is column-oriented; :func:`list_maestro` accepts ``.flac``
beside a listed ``.wav`` and vice versa. Messages name rows as a user finds them: a CSV row as a
spreadsheet numbers it (the header is row 1, the first data row is row 2), an entry of a v1/v2
JSON list counting from 1, a v3 JSON row by its id.

One audio file is one piece: a row naming a file an earlier row names (the same name, or the
``.flac``/``.wav`` twin of it) is dropped and reported, and when the two rows give different
splits the first row's split wins (so a recording never trains and tests at once).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiogen.sources import SPLITS, DataError, SourcePiece, missing_reason

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
    row: str = field(default="", compare=False, repr=False)  # "row 3", "entry 3", "row id '2'": for messages


def _parse_year(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def row_numbering(path: str | Path) -> str:
    """How the row labels of a metadata file count, for messages: a CSV's as a spreadsheet shows them."""
    return " (the header is row 1)" if Path(path).suffix.lower() == ".csv" else ""


def _record_from_row(row: dict[str, Any], label: str, path: Path) -> MaestroRecord:
    where = f"{path} {label}{row_numbering(path)}"
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
        row=label,
    )


def _json_rows(data: Any, path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(label, row) from MAESTRO JSON: a list of row objects (v1, v2) or ``{column: {row: value}}`` (v3)."""
    if isinstance(data, list):
        if not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a list of row objects")
        return [(f"entry {i + 1} (counting from 1)", row) for i, row in enumerate(data)]
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        row_ids: list[str] = []
        for column in data.values():
            for rid in column:
                if rid not in row_ids:
                    row_ids.append(rid)
        # pandas writes row labels as "0", "1", ...: keep the numeric order, not the string order
        row_ids.sort(key=lambda r: (0, int(r)) if str(r).isdigit() else (1, str(r)))
        return [(f"row id {rid!r}", {col: values.get(rid) for col, values in data.items()}) for rid in row_ids]
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
            # as a spreadsheet numbers them: the header is row 1, the first data row is row 2
            rows = [(f"row {i + 2}", row) for i, row in enumerate(csv.DictReader(handle))]
    else:
        raise DataError(f"{path}: expected a .csv or .json MAESTRO metadata file")
    return [_record_from_row(row, label, path) for label, row in rows]


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


def find_audio_root(root: str | Path, audio_filename: str) -> Path | None:
    """A sub-folder of ``root`` that holds ``audio_filename`` (the folder to pass instead), or None."""
    root = Path(root)
    children = sorted(c for c in root.iterdir() if c.is_dir()) if root.is_dir() else []
    return next((c for c in children if resolve_audio_path(c, audio_filename) is not None), None)


@dataclass(frozen=True)
class MaestroListing:
    """The pieces of a MAESTRO root, one per audio file, and what was wrong with the metadata.

    Attributes:
        pieces: in metadata order; a missing file is still a piece (with a ``problem``), so that
            preparation reports it as skipped.
        repeats: one line per dropped row, naming it and the earlier row it repeats.
        missing: the audio files (as listed) found neither as listed nor as their twin, once each.
    """

    metadata: Path
    root: Path
    pieces: list[SourcePiece]
    repeats: list[str]
    missing: list[str]


def _repeat_line(record: MaestroRecord, first: MaestroRecord, path: Path) -> str:
    same = (
        record.audio_filename
        if record.audio_filename == first.audio_filename
        else (f"{record.audio_filename} (the same file as {first.audio_filename})")
    )
    if record.split == first.split:
        return f"{path}: {record.row} repeats {first.row}{row_numbering(path)}: {same} in {record.split}; prepared once"
    return (
        f"{path}: {record.row} lists {same} in {record.split}, {first.row} in {first.split}{row_numbering(path)}: "
        f"prepared once, in {first.split} (the first row wins)"
    )


def read_maestro_listing(root: str | Path, metadata: str | Path | None = None) -> MaestroListing:
    """The pieces of a MAESTRO root with the official splits, each audio file once, in metadata order.

    A listed file that exists neither as listed nor as its ``.flac``/``.wav`` twin is still
    returned (with the listed path) so that preparation reports it as missing.
    """
    root = Path(root)
    meta_path = Path(metadata) if metadata is not None else find_maestro_metadata(root)
    pieces, repeats, missing = [], [], []
    first_rows: dict[str, MaestroRecord] = {}  # the file a row names (its real path, else its name) → first row
    for record in read_maestro_metadata(meta_path):
        found = resolve_audio_path(root, record.audio_filename)
        identity = os.path.realpath(found) if found is not None else record.audio_filename
        if identity in first_rows:
            repeats.append(_repeat_line(record, first_rows[identity], meta_path))
            continue
        first_rows[identity] = record
        path = found or root / record.audio_filename
        problem = None
        if found is None:
            missing.append(record.audio_filename)
            problem = ("missing", f"{missing_reason(path)} (nor as its .flac/.wav twin)")
        info = {
            "composer": record.canonical_composer,
            "title": record.canonical_title,
            "year": record.year,
            "duration": record.duration,
            "source": record.audio_filename,
            "midi_filename": record.midi_filename,
        }
        piece = SourcePiece(key=record.audio_filename, path=path, split=record.split, metadata=info, problem=problem)
        pieces.append(piece)
    return MaestroListing(metadata=meta_path, root=root, pieces=pieces, repeats=repeats, missing=missing)


def list_maestro(root: str | Path, metadata: str | Path | None = None) -> list[SourcePiece]:
    """The pieces of :func:`read_maestro_listing` (each audio file once, official splits, metadata order)."""
    return read_maestro_listing(root, metadata).pieces
