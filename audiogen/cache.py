"""The prepared cache: its layout, the index rebuilt from piece folders, merging, and reading it.

Layout::

    CACHE/frontend.yaml                 the resolved FrontendConfig
    CACHE/index.json                    pieces per split with metadata, skipped pieces
    CACHE/<split>/<name>/audio.npy      (T,) int16 (scale 1/32768) or float32
    CACHE/<split>/<name>/mel.npy        (n_mels, 1 + T // hop) float32 log-mel
    CACHE/<split>/<name>/meta.json      the index entry of this piece
    CACHE/skipped/<name>.json           why a piece was skipped (removed once it succeeds)

A piece exists once its folder exists: :mod:`audiogen.preparation` fills the folder under a
temporary name and renames it in one ``os.replace``. ``index.json`` is rebuilt from the piece
folders, so shards written on several machines merge by copying the piece folders into one cache
and re-indexing (:func:`merge_caches`). :func:`open_cache` gives a :class:`Cache` whose arrays are
memory-mapped on first use.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiogen.frontend import FrontendConfig, check_same_frontend
from audiogen.sources import SPLITS, DataError

CACHE_FORMAT = "audiogen-cache"
CACHE_VERSION = 1
INDEX_NAME = "index.json"
FRONTEND_NAME = "frontend.yaml"
SKIPPED_DIR = "skipped"
AUDIO_DTYPES = ("int16", "float32")
INT16_SCALE = 32768.0  # int16 audio is stored as round(x * 32768), read back as q / 32768
TMP_PREFIX = ".tmp-"


def write_text_atomic(path: Path, text: str) -> None:
    # the pid keeps two processes (shards sharing a cache) from writing the same temporary file
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a partial file behind
        raise


def json_text(data: Any) -> str:
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
        write_text_atomic(cache_dir / FRONTEND_NAME, frontend_to_yaml(config))
    else:
        check_same_frontend(config, found, f"cache {cache_dir}")


def piece_dir(cache_dir: str | Path, split: str, name: str) -> Path:
    return Path(cache_dir) / split / name


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
    write_text_atomic(Path(cache_dir) / INDEX_NAME, json_text(index))
    return index


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
                write_text_atomic(dest / SKIPPED_DIR / record.name, record.read_text(encoding="utf-8"))
    write_index(dest)
    return added


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)  # cache files are never modified in place, so sharing inodes is safe
    except OSError:
        shutil.copy2(src, dst)
    return dst


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
