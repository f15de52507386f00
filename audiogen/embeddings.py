"""Embeddings of audio sets: the embedders (by name), embedding file sets and clips, the cache, .npz files.

An embedder turns mono audio at its sample rate into (P, d) float32 vectors, one per patch
(:class:`Embedder`). :data:`EMBEDDERS` names each one; :func:`make_embedder` builds it by name,
so a new embedding is one entry there (its heavy imports stay inside its factory).

An :class:`EmbeddedSet` holds one (P_i, d) array per file or clip and the piece each came from:
clips cut from one recording are not independent, so intervals resample pieces
(:mod:`audiogen.intervals`). By default every file is its own piece.

Embeddings of file sets (:func:`embed_files`) are cached per file under a key made of the
file's content SHA-256 and the embedder's identity (model, weights SHA-256, framing, sample
rate, resampler), so scoring the same folder again decodes nothing. A cache that cannot be
written (full or read-only disk) is warned about once and the run goes on without it. Decoding
and resampling run in worker processes; a file that fails to decode stops the run with an
error naming it. Every file written here gets the mode any new file gets (0666 less the umask).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from audiogen.audio import AUDIO_SUFFIXES, RESAMPLER, AudioError, load_audio, publish_file
from audiogen.download import default_cache_dir, sha256_file

AUDIO_EXTENSIONS = AUDIO_SUFFIXES  # one list, in audiogen.audio
NOT_COMPARABLE_NOTE = (
    "mel embedding: weight-free statistics of audiogen's log-mel frames; NOT comparable to published FAD"
)
# Bump when the embedding code changes what it computes, so old cache entries stop matching.
EMBEDDING_CODE_VERSION = 1

# ---------------------------------------------------------------------------------------------
# Embedders


class Embedder(Protocol):
    """What :func:`embed_files` needs: mono audio at ``sample_rate`` → (P, dim) float32."""

    name: str
    dim: int
    sample_rate: int

    def identity(self) -> dict: ...

    def embed(self, audio: np.ndarray) -> np.ndarray: ...


class MelEmbedder:
    """Weight-free embedding: mean and standard deviation of log-mel frames per patch.

    Each patch of the framing (0.975 s every 0.96 s by default) is turned into audiogen's
    log-mel frames (:class:`audiogen.frontend.MelFrontend`) and summarised by the per-band
    mean and standard deviation over its frames: a (2 * n_mels)-d vector. It needs no
    download, so it works everywhere, and it is *not comparable to published FAD*.

    Args:
        frontend_config: audio settings; default :class:`audiogen.frontend.FrontendConfig`.
        framing: a framing name from :data:`audiogen.vggish.FRAMINGS` (same seconds; the
            google-reference peak normalisation applies too).
        device: torch device.
        batch_size: patches per frontend call.
    """

    name = "mel"
    comparable_to_published = False

    def __init__(
        self,
        frontend_config: Any = None,
        framing: str = "torchvggish",
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        import torch

        from audiogen.frontend import FrontendConfig, MelFrontend
        from audiogen.vggish import get_framing

        self.config = frontend_config or FrontendConfig()
        self.device = torch.device(device)
        self.frontend = MelFrontend(self.config).to(self.device)
        self.framing = get_framing(framing)
        self.sample_rate = self.config.sample_rate
        self.dim = 2 * self.config.n_mels
        self.batch_size = batch_size

    def identity(self) -> dict:
        return {
            "model": self.name,
            "weights_sha256": None,
            "frontend": self.config.to_dict(),
            "framing": self.framing.name,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "comparable_to_published": False,
            "note": NOT_COMPARABLE_NOTE,
        }

    def embed(self, audio: np.ndarray) -> np.ndarray:
        import torch

        segments = self.framing.segments(audio, self.sample_rate)
        out = np.zeros((segments.shape[0], self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, segments.shape[0], self.batch_size):
                chunk = torch.from_numpy(np.array(segments[start : start + self.batch_size], dtype=np.float32))
                log_mel = self.frontend(chunk.to(self.device))  # (b, n_mels, F)
                mean, std = log_mel.mean(dim=-1), log_mel.std(dim=-1, correction=0)
                out[start : start + chunk.shape[0]] = torch.cat([mean, std], dim=-1).cpu().numpy()
        return out


def _vggish_embedder(weights: str | Path | None, framing: str, device: str, batch_size: int) -> Embedder:
    from audiogen.vggish import VGGishEmbedder

    return VGGishEmbedder.from_weights(weights, framing=framing, device=device, batch_size=batch_size)


def _mel_embedder(weights: str | Path | None, framing: str, device: str, batch_size: int) -> Embedder:
    return MelEmbedder(framing=framing, device=device, batch_size=batch_size)


def _transcriber_embedder(weights: str | Path | None, framing: str, device: str, batch_size: int) -> Embedder:
    from audiogen.transcriber_embedding import TranscriberEmbedder

    return TranscriberEmbedder(weights, framing=framing, device=device)  # weights: a transcriber folder


class EmbedderFactory(Protocol):
    """Builds one embedding by name; ``weights`` is that embedding's checkpoint (None: its default)."""

    def __call__(self, weights: str | Path | None, framing: str, device: str, batch_size: int) -> Embedder: ...


# Every embedding the commands offer, by the name ``--embedding`` takes. A new one is one entry
# here: a factory whose heavy imports happen inside it, so listing the names stays cheap.
EMBEDDERS: dict[str, EmbedderFactory] = {"vggish": _vggish_embedder, "mel": _mel_embedder,
                                         "transcriber": _transcriber_embedder}


def make_embedder(
    embedding: str = "vggish",
    weights: str | Path | None = None,
    framing: str = "torchvggish",
    device: str = "cpu",
    batch_size: int = 64,
) -> Embedder:
    """Build an embedder by its :data:`EMBEDDERS` name; ``vggish`` resolves its weights (clear error when missing)."""
    try:
        factory = EMBEDDERS[embedding]
    except KeyError:
        raise ValueError(f"unknown embedding {embedding!r}; choose one of {', '.join(EMBEDDERS)}") from None
    return factory(weights=weights, framing=framing, device=device, batch_size=batch_size)


def embedder_key(identity: dict) -> str:
    """A short stable hash of everything that determines an embedding (cache folder name)."""
    payload = dict(identity, resampler=RESAMPLER, code_version=EMBEDDING_CODE_VERSION)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------------
# File sets


def list_audio_files(source: str | Path) -> list[Path]:
    """The audio files of a set: a folder (searched recursively), a list file, or one audio file.

    A list file has one path per line; relative paths are relative to the list file's folder;
    blank lines and lines starting with ``#`` are skipped.

    Raises:
        FileNotFoundError: the source does not exist.
        ValueError: the set is empty.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise ValueError(f"{source}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
        return files
    if source.suffix.lower() in AUDIO_EXTENSIONS:
        return [source]
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{source}: neither an audio file nor a text list of files") from err
    files = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line).expanduser()
            files.append(path if path.is_absolute() else source.parent / path)
    if not files:
        raise ValueError(f"{source}: the list file names no audio files")
    return files


@dataclass
class EmbeddedSet:
    """Embeddings of a set of files or clips, one (P_i, d) array each, with provenance.

    ``pieces`` names the piece (source recording) each entry came from, so that intervals can
    resample pieces: clips cut from one recording share a piece. None: every entry is its own
    piece (files of a folder). ``decoded`` and ``cached`` count how many files were decoded or
    taken from the cache.
    """

    source: str
    names: list[str]
    embeddings: list[np.ndarray]
    identity: dict | None
    decoded: int = 0
    cached: int = 0
    pieces: list[str] | None = None

    def __post_init__(self) -> None:
        if self.pieces is not None and len(self.pieces) != len(self.names):
            raise ValueError(f"{self.source}: {len(self.pieces)} piece names for {len(self.names)} entries")

    @property
    def num_files(self) -> int:
        return len(self.names)

    @property
    def num_embeddings(self) -> int:
        return int(sum(e.shape[0] for e in self.embeddings))

    @property
    def piece_of_entry(self) -> list[str]:
        """The piece of every entry (its name when no pieces were given)."""
        return list(self.names) if self.pieces is None else list(self.pieces)

    @property
    def num_pieces(self) -> int:
        return len(set(self.piece_of_entry))

    def stacked(self) -> np.ndarray:
        """All embeddings (N, d) float64."""
        return np.concatenate([np.asarray(e, dtype=np.float64) for e in self.embeddings])

    def by_piece(self) -> list[np.ndarray]:
        """One (n_p, d) float64 array per piece, its entries' embeddings in order; pieces in order of first entry."""
        groups: dict[str, list[np.ndarray]] = {}
        for piece, embeddings in zip(self.piece_of_entry, self.embeddings, strict=True):
            groups.setdefault(piece, []).append(np.asarray(embeddings, dtype=np.float64))
        return [np.concatenate(arrays) for arrays in groups.values()]

    def summary(self) -> dict:
        return {
            "source": self.source,
            "files": self.num_files,
            "pieces": self.num_pieces,
            "embeddings": self.num_embeddings,
            "decoded": self.decoded,
            "from_cache": self.cached,
        }


def write_temporary(path: Path, write: Callable[[BinaryIO], object], suffix: str) -> str:
    """Write through ``write`` into a new temporary file beside ``path``; returns its name.

    The caller publishes it with :func:`audiogen.audio.publish_file` (which gives it the mode
    any new file gets, not mkstemp's 0600) or unlinks it. Nothing is left behind on failure.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None:  # a write to an open handle names no file: name the one being written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_atomically(path: str | Path, write: Callable[[BinaryIO], object], suffix: str = ".part") -> None:
    """Write a file so a reader never sees half of it; its mode follows the umask like any new file."""
    path = Path(path)
    tmp = write_temporary(path, write, suffix)
    try:
        publish_file(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EmbeddingCache:
    """Per-file embeddings on disk: ``root/<embedder key>/<sha[:2]>/<content sha256>.npy``.

    A cache must never fail the command it speeds up: the first write the disk refuses (full,
    read-only, not a folder) sets :attr:`failure` and every later :meth:`put` does nothing.
    """

    def __init__(self, root: str | Path, identity: dict) -> None:
        self.root = Path(root)
        self.folder = self.root / embedder_key(identity)
        self.failure: str | None = None  # why writing stopped, once it has

    def _path(self, content_sha256: str) -> Path:
        return self.folder / content_sha256[:2] / f"{content_sha256}.npy"

    def get(self, content_sha256: str) -> np.ndarray | None:
        path = self._path(content_sha256)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed and overwritten

    def put(self, content_sha256: str, embeddings: np.ndarray) -> bool:
        """Store one file's embeddings; False when the disk refused this or an earlier write."""
        if self.failure is not None:
            return False
        path = self._path(content_sha256)
        array = np.asarray(embeddings, dtype=np.float32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda handle: np.save(handle, array))
        except OSError as err:
            self.failure = err.strerror or str(err)
            return False
        return True


def warn_on_stderr(message: str) -> None:
    """The default warning channel of :func:`embed_files`: one line, kept clear of progress bars."""
    from tqdm import tqdm

    tqdm.write(f"warning: {message}", file=sys.stderr)


def default_embedding_cache_dir() -> Path:
    return default_cache_dir() / "fad-embeddings"


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _hash_job(path: str) -> tuple[str, str | None, str | None]:
    """Worker: (path, content SHA-256 or None, error reason or None)."""
    try:
        return path, sha256_file(path), None
    except FileNotFoundError:
        return path, None, "file not found"
    except IsADirectoryError:
        return path, None, "is a directory, not an audio file"
    except OSError as err:
        return path, None, f"cannot read ({err.strerror or err})"


def _decode_job(job: tuple[str, int]) -> tuple[str, np.ndarray | None, str | None]:
    """Worker: decode and resample; errors come back as text (AudioError does not pickle)."""
    path, sample_rate = job
    try:
        audio, _ = load_audio(path, sample_rate=sample_rate)
        return path, audio, None
    except AudioError as err:
        return path, None, err.reason
    except Exception as err:  # resampler or allocation failures still name the file
        return path, None, f"decoding failed ({type(err).__name__}: {err})"


def _map(fn: Callable, jobs: list, workers: int):
    """Ordered lazy map, in worker processes when there is more than one job and worker."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    import multiprocessing

    # spawn, not fork: the parent holds torch's thread pools, which fork does not copy safely
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap(fn, jobs, chunksize=1)


def embed_files(
    files: Sequence[str | Path],
    embedder: Embedder,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    desc: str = "embedding",
    source: str = "",
    warn: Callable[[str], None] = warn_on_stderr,
) -> EmbeddedSet:
    """Embed every file; each is decoded to mono at ``embedder.sample_rate`` (soxr HQ).

    Args:
        files: audio paths.
        embedder: :class:`audiogen.vggish.VGGishEmbedder`, :class:`MelEmbedder`, ...
        workers: decoding processes; default :func:`default_workers`; 1 decodes in-process.
        cache_dir: embedding cache root; default :func:`default_embedding_cache_dir`.
        use_cache: read and write the cache.
        progress: tqdm bars on stderr.
        desc: progress bar label.
        source: recorded in the result (the folder or list the files came from).
        warn: called once, with one line, when the cache cannot be written (the run goes on
            without caching: a full or read-only disk under the cache never fails it).

    Raises:
        AudioError: a file is missing, undecodable, or shorter than one patch (named).

    With ``workers > 1`` the decoders are *spawned* processes, so a script calling this must
    keep its top-level code under ``if __name__ == "__main__":``.
    """
    from tqdm import tqdm

    workers = default_workers() if workers is None else workers
    paths = [str(f) for f in files]
    identity = embedder.identity()
    cache = EmbeddingCache(cache_dir or default_embedding_cache_dir(), identity) if use_cache else None
    results: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    if cache is not None:
        hash_bar = tqdm(total=len(paths), desc=f"{desc}: hashing", unit="file", disable=None if progress else True)
        with hash_bar:
            for path, digest, error in _map(_hash_job, paths, workers):
                if error is not None:
                    raise AudioError(path, error)
                hashes[path] = digest
                hit = cache.get(digest)
                if hit is not None and hit.ndim == 2 and hit.shape[1] == embedder.dim:
                    results[path] = hit
                hash_bar.update(1)
    cached = len(results)
    todo = [p for p in dict.fromkeys(paths) if p not in results]
    bar = tqdm(total=len(todo), desc=desc, unit="file", disable=None if progress and todo else True)
    with bar:
        for path, audio, error in _map(_decode_job, [(p, embedder.sample_rate) for p in todo], workers):
            if error is not None:
                raise AudioError(path, error)
            embeddings = embedder.embed(audio)
            if embeddings.shape[0] == 0:
                seconds = audio.shape[0] / embedder.sample_rate
                need = embedder.framing.segment_seconds  # type: ignore[attr-defined]
                raise AudioError(path, f"too short: {seconds:.3f} s, one {embedder.name} patch needs {need:.3f} s")
            results[path] = embeddings
            if cache is not None and cache.failure is None and not cache.put(hashes[path], embeddings):
                warn(f"embedding cache {cache.root}: cannot write ({cache.failure}); going on without caching")
            bar.update(1)
    return EmbeddedSet(
        source=source,
        names=paths,
        embeddings=[results[p] for p in paths],
        identity=identity,
        decoded=len(todo),
        cached=cached,
    )


def embed_arrays(
    clips: Sequence[np.ndarray],
    sample_rate: int,
    embedder: Embedder,
    source: str = "",
    progress: bool = False,
    pieces: Sequence[str] | None = None,
) -> EmbeddedSet:
    """Embed in-memory mono clips (resampled to ``embedder.sample_rate`` with soxr HQ).

    Args:
        pieces: the piece each clip was cut from (clips of one piece share it); None: each clip its own.
    """
    from tqdm import tqdm

    from audiogen.audio import resample

    embeddings = []
    for clip in tqdm(clips, desc=source or "embedding", unit="clip", disable=None if progress else True):
        audio = resample(np.asarray(clip, dtype=np.float32), sample_rate, embedder.sample_rate)
        emb = embedder.embed(audio)
        if emb.shape[0] == 0:
            raise ValueError(f"{source}: a clip of {len(clip) / sample_rate:.3f} s is shorter than one patch")
        embeddings.append(emb)
    return EmbeddedSet(
        source=source,
        names=[f"{source}/{i}" for i in range(len(clips))],
        embeddings=embeddings,
        identity=embedder.identity(),
        decoded=len(clips),
        pieces=None if pieces is None else list(pieces),
    )


# ---------------------------------------------------------------------------------------------
# .npz files of embeddings (``audiogen-fad embed``)


def npz_metadata_path(npz: str | Path) -> Path:
    """The sidecar JSON describing an embeddings .npz: ``OUT.npz.json``."""
    return Path(str(npz) + ".json")


def save_npz(embedded: EmbeddedSet, out: str | Path) -> dict[str, str]:
    """Write one float32 array per file keyed by its basename without extension, plus the sidecar.

    Returns:
        key → file path.

    Raises:
        ValueError: two inputs share a basename (their keys would collide).
    """
    keys: dict[str, str] = {}
    for name in embedded.names:
        key = Path(name).stem
        if key in keys:
            raise ValueError(f"two inputs have the same basename {key!r}: {keys[key]} and {name}")
        keys[key] = name
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {key: np.asarray(e, dtype=np.float32) for key, e in zip(keys, embedded.embeddings, strict=True)}
    meta_data: dict[str, Any] = {"embedding": embedded.identity, "resampler": RESAMPLER, "files": keys}
    if embedded.pieces is not None:  # only when clips share pieces: otherwise every file is its own
        meta_data["pieces"] = dict(zip(keys, embedded.pieces, strict=True))
    meta = json.dumps(meta_data, indent=2) + "\n"
    meta_path = npz_metadata_path(out)
    # both are written in full before either is renamed, so a full disk leaves neither half-done
    staged = [(write_temporary(out, lambda handle: np.savez(handle, **arrays), ".npz.part"), out)]
    try:
        staged.append((write_temporary(meta_path, lambda handle: handle.write(meta.encode()), ".json.part"), meta_path))
        for tmp, target in staged:
            publish_file(tmp, target)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    return keys


def load_npz(path: str | Path) -> EmbeddedSet:
    """Read an .npz written by :func:`save_npz` (the sidecar, if present, gives the identity)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            arrays = [np.asarray(data[k]) for k in names]
    except Exception as err:
        raise ValueError(f"{path}: not a readable .npz of embeddings ({err})") from err
    if not names:
        raise ValueError(f"{path}: holds no embeddings")
    dims = {a.shape[1] if a.ndim == 2 else None for a in arrays}
    if len(dims) != 1 or None in dims:
        raise ValueError(
            f"{path}: every array must be (n_patches, d) with one d, got shapes {sorted({a.shape for a in arrays})}"
        )
    meta: dict = {}
    meta_path = npz_metadata_path(path)
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{meta_path}: unreadable metadata ({err})") from err
    piece_of_key = meta.get("pieces") or {}
    pieces = [str(piece_of_key.get(k, k)) for k in names] if piece_of_key else None
    return EmbeddedSet(source=str(path), names=names, embeddings=arrays, identity=meta.get("embedding"),
                       pieces=pieces)
