"""Where pieces come from: the :class:`SourcePiece` a cache is prepared from, folders of audio, splits and shards.

:func:`list_audio_dir` turns any folder of audio files into pieces with a deterministic 80/10/10
split by file (:func:`split_for_key`); :mod:`audiogen.maestro` does the same for a MAESTRO root
with its official splits. :func:`shard_of` picks a disjoint, stable subset for ``--shard``.

This module never imports models (data flows one way).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation", "test")
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".aiff", ".aif", ".mp3")


class DataError(ValueError):
    """Bad metadata, a missing or inconsistent cache, or an unusable data folder."""


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
