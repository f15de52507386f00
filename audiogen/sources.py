"""Where pieces come from: the :class:`SourcePiece` a cache is prepared from, folders of audio, splits and shards.

:func:`list_audio_dir` turns any folder of audio files into pieces with a deterministic split by
file (:func:`split_for_key`, 80/10/10 unless :class:`SplitFractions` says otherwise);
:mod:`audiogen.maestro` does the same for a MAESTRO root with its official splits.
:func:`shard_of` picks a disjoint, stable subset for ``--shard``.

This module never imports models (data flows one way).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiogen.audio import AUDIO_SUFFIXES

SPLITS = ("train", "validation", "test")
SPLIT_BUCKETS = 100  # a file's split is decided by a hash bucket in [0, 100): fractions are whole percents


class DataError(ValueError):
    """Bad metadata, a missing or inconsistent cache, or an unusable data folder."""


@dataclass(frozen=True)
class SourcePiece:
    """A piece of audio to prepare: where it is, its split and its descriptive metadata.

    ``key`` is the path relative to the dataset root with ``/`` separators; it names the piece
    in the cache, decides ``--shard`` membership and (for ``--audio-dir``) the split.
    ``problem`` is ``(kind, reason)`` when listing already showed the piece unusable (a dangling
    link, an unreadable file or folder, a second path to a file or folder listed already), so
    that preparation reports it as skipped like a file it failed to decode.
    """

    key: str
    path: Path
    split: str
    metadata: dict[str, Any] = field(default_factory=dict)
    problem: tuple[str, str] | None = None

    @property
    def name(self) -> str:
        return piece_name(self.key)


def stable_hash(text: str) -> int:
    """A 64-bit hash of a string that is the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


@dataclass(frozen=True)
class SplitFractions:
    """Shares of a folder's files that go to validation and test (the rest trains), in whole percents.

    A file's split depends only on its relative path, so adding files never moves others.
    """

    validation: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        for name, value in (("validation", self.validation), ("test", self.test)):
            if not 0 <= value < 1 or abs(value * SPLIT_BUCKETS - round(value * SPLIT_BUCKETS)) > 1e-6:
                raise DataError(f"{name} fraction {value}: expected 0 <= F < 1 in steps of 0.01")
        if self.percent("validation") + self.percent("test") >= SPLIT_BUCKETS:
            raise DataError(f"fractions: validation {self.validation} + test {self.test} leave nothing to train on")

    def percent(self, split: str) -> int:
        return round(getattr(self, split) * SPLIT_BUCKETS)


def split_bucket(key: str) -> int:
    """The hash bucket in [0, 100) that decides a file's split (validation and test take the top buckets)."""
    return stable_hash("split:" + key) % SPLIT_BUCKETS


def split_for_key(key: str, fractions: SplitFractions = SplitFractions()) -> str:
    """Deterministic train/validation/test split of a file by its relative path (80/10/10 by default)."""
    test_from = SPLIT_BUCKETS - fractions.percent("test")
    validation_from = test_from - fractions.percent("validation")
    bucket = split_bucket(key)
    return "train" if bucket < validation_from else "validation" if bucket < test_from else "test"


def fractions_that_fill_every_split(keys: Iterable[str], fractions: SplitFractions) -> SplitFractions | None:
    """The smallest fractions, no smaller than ``fractions``, that give validation and test a file each.

    Returns:
        None when no fractions can (fewer than three distinct hash buckets among the keys, or the
        given fractions already leave too few files below them).
    """
    buckets = sorted({split_bucket(k) for k in keys}, reverse=True)
    if len(buckets) < 3:
        return None
    test = max(fractions.percent("test"), SPLIT_BUCKETS - buckets[0])
    below_test = [b for b in buckets if b < SPLIT_BUCKETS - test]
    if len(below_test) < 2:
        return None
    validation = max(fractions.percent("validation"), SPLIT_BUCKETS - test - below_test[0])
    if not any(b < SPLIT_BUCKETS - test - validation for b in below_test):
        return None
    return SplitFractions(validation=validation / SPLIT_BUCKETS, test=test / SPLIT_BUCKETS)


def piece_name(key: str) -> str:
    """A file-system-safe, unique, readable name for a piece from its relative path.

    The extension is dropped, separators become ``__`` and a short hash of the full key keeps
    names unique when two keys differ only in characters that were replaced.
    """
    stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace("/", "__")).strip("._")[:150]
    return f"{safe}-{stable_hash(key) & 0xFFFFFFFF:08x}"


def missing_reason(path: Path) -> str:
    """Why a listed file is not there, naming the target of a dangling symbolic link."""
    if path.is_symlink():
        return f"{path}: dangling symbolic link to {os.readlink(path)}"
    return f"{path}: file not found"


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass
class _Walk:
    """State of one :func:`list_audio_dir` walk: real paths walked, link targets listed, and what was found."""

    root_real: str
    walked: set[str] = field(default_factory=set)
    linked_files: dict[str, str] = field(default_factory=dict)  # real path → key of its first link
    found: list[tuple[str, Path, tuple[str, str] | None]] = field(default_factory=list)


def _is_audio_name(name: str) -> bool:
    return Path(name).suffix.lower() in AUDIO_SUFFIXES


def _scan(folder: Path, prefix: str, walk: _Walk) -> None:
    """Add the audio files under ``folder`` (keys start with ``prefix``) to ``walk.found``, sorted by name."""
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries)
    except OSError as err:
        if not prefix:
            raise DataError(f"{folder}: audio folder not readable ({err.strerror})") from err
        walk.found.append(
            (prefix.rstrip("/"), folder, ("unreadable", f"{folder}: folder not readable ({err.strerror})"))
        )
        return
    for name in names:
        if name.startswith("."):  # hidden files, e.g. macOS's "._take.flac" resource forks
            continue
        path, key = folder / name, prefix + name
        is_link = path.is_symlink()
        try:
            info = path.stat()  # follows links
        except FileNotFoundError:
            # a dangling link: one to audio, or without an extension (perhaps a folder), is reported
            if is_link and (_is_audio_name(name) or not Path(name).suffix):
                walk.found.append((key, path, ("missing", missing_reason(path))))
            continue
        except OSError as err:  # a link to itself (ELOOP), a target behind an unreadable folder
            if _is_audio_name(name) or not Path(name).suffix:
                walk.found.append((key, path, ("unreadable", f"{path}: {err.strerror}")))
            continue
        if stat.S_ISDIR(info.st_mode):
            real = os.path.realpath(path)
            # every folder is walked once by its real path: a link into the tree, to an ancestor
            # (a loop) or to a folder already walked would list the same recordings twice
            if real in walk.walked or (is_link and _within(real, walk.root_real)):
                reason = f"{path}: symbolic link to {real}, whose files are listed already (by their own path)"
                walk.found.append((key, path, ("duplicate", reason)))
                continue
            walk.walked.add(real)
            _scan(path, key + "/", walk)
        elif _is_audio_name(name):
            walk.found.append((key, path, _file_problem(path, key, info, is_link, walk)))


def _file_problem(path: Path, key: str, info: os.stat_result, is_link: bool, walk: _Walk) -> tuple[str, str] | None:
    if not stat.S_ISREG(info.st_mode):
        return "unreadable", f"{path}: not a regular file"
    if not os.access(path, os.R_OK):
        return "unreadable", f"{path}: permission denied"
    if is_link:
        real = os.path.realpath(path)
        if _within(real, walk.root_real):
            return "duplicate", f"{path}: symbolic link to {real}, which is listed already by its own path"
        first = walk.linked_files.setdefault(real, key)
        if first != key:
            return "duplicate", f"{path}: symbolic link to {real}, listed already as {first}"
    return None


def list_audio_dir(directory: str | Path, fractions: SplitFractions = SplitFractions()) -> list[SourcePiece]:
    """Every audio file under a folder (recursively, following links to folders), split by path, sorted.

    Files are those whose name ends in one of :data:`audiogen.audio.AUDIO_SUFFIXES`; hidden
    files are left out. Dangling links, files or folders that cannot be read, and second paths
    to a file or folder (a link into the tree, a link loop) are listed with a ``problem``, so
    preparation reports them as skipped; each recording is listed once, by its own path.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: audio folder not found")
    walk = _Walk(root_real=os.path.realpath(directory))
    walk.walked.add(walk.root_real)
    _scan(directory, "", walk)
    pieces = []
    for key, path, problem in sorted(walk.found, key=lambda found: found[0]):
        info = {"composer": "", "title": Path(key).stem, "year": None, "duration": None, "source": key}
        pieces.append(
            SourcePiece(key=key, path=path, split=split_for_key(key, fractions), metadata=info, problem=problem)
        )
    return pieces


def shard_of(pieces: Sequence[SourcePiece], index: int, count: int) -> list[SourcePiece]:
    """The pieces of shard ``index`` of ``count``: disjoint, covering, stable under list changes."""
    if count < 1 or not 0 <= index < count:
        raise DataError(f"shard {index}/{count}: need 0 <= I < N")
    return [p for p in pieces if stable_hash("shard:" + p.key) % count == index]
