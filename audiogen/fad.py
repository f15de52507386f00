"""Fréchet Audio Distance: statistics, FAD∞, bootstrap intervals, and embedding of file sets.

FAD (Kilgour et al. 2019) between two sets of embeddings is the Fréchet distance between the
Gaussians fitted to them::

    FAD = ||mu_b - mu_e||^2 + Tr(S_b + S_e - 2 (S_b S_e)^(1/2))

computed here in float64 with unbiased (n - 1) covariances. ``Tr((S_b S_e)^(1/2))`` is taken
from the eigenvalues of the symmetric positive semi-definite matrix ``S_b^(1/2) S_e S_b^(1/2)``,
which has the same eigenvalues as ``S_b S_e``; both square roots come from ``eigh`` with
negative round-off eigenvalues clipped at 0. Unlike ``scipy.linalg.sqrtm`` of the non-symmetric
product this never returns complex values and stays accurate when a covariance is singular.

Fewer embeddings than dimensions (n <= d): a covariance has rank at most n - 1 and is
singular. The distance above is still well defined and finite (it is the Fréchet distance
between the two degenerate Gaussians) and is computed exactly, but it is a poor estimate of
the population value — strongly biased upward — so reports carry a warning.

FAD∞ (Gui et al. 2024, "Adapting Fréchet Audio Distance for generative music evaluation"):
FAD is biased upward by roughly c / N for N evaluation embeddings, so FAD is computed on random
subsets of the evaluation set of several sizes N, a line is fitted against 1 / N, and its
intercept (N → ∞) is reported; the background set is used whole, as in fadtk.

Bootstrap interval: files are resampled with replacement on each side (embeddings of one file
are correlated, so the file is the unit; a side with a single file falls back to its
embeddings) and the percentile interval of the FAD values is reported. It describes FAD at
these set sizes, bias included; a resample repeats some files, so it has fewer distinct ones
and its FAD runs a little high: the interval sits slightly above the point estimate.

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
from dataclasses import dataclass, field
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
# Fréchet distance


def embedding_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d), float64, of embeddings (n, d) with n >= 2."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (n, d), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings for a covariance, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or Inf")
    mu = x.mean(axis=0)
    centered = x - mu
    sigma = centered.T @ centered / (x.shape[0] - 1)
    return mu, sigma


def _weighted_stats(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of rows of ``x`` repeated ``weights`` times (integer counts)."""
    # Bootstrap draws leave about a third of the rows at weight 0: drop them, and form the
    # covariance as Y^T Y with Y = (x - mu) sqrt(w), which numpy computes as one symmetric
    # rank-k update (about half the work of the general product).
    used = weights > 0
    x, weights = x[used], weights[used].astype(np.float64)
    n = float(weights.sum())
    mu = weights @ x / n
    scaled = (x - mu) * np.sqrt(weights)[:, None]
    sigma = scaled.T @ scaled / (n - 1.0)
    return mu, sigma


def _clip_eigenvalues(values: np.ndarray) -> np.ndarray:
    """Zero the eigenvalues that are round-off of a PSD matrix (negative, or below d·eps·max).

    A singular covariance (fewer embeddings than dimensions) has exact zeros that come out of
    ``eigh`` as ±1e-15; their square roots (~3e-8 each, times up to d of them) would otherwise
    add a visible error to the trace.
    """
    tol = values.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(values).max(initial=0.0)), 1e-300)
    return np.where(values > tol, values, 0.0)


def sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by ``eigh``."""
    sym = (matrix + matrix.T) / 2.0
    values, vectors = np.linalg.eigh(sym)
    return (vectors * np.sqrt(_clip_eigenvalues(values))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr((sigma1 sigma2)^(1/2))`` for PSD matrices, via the symmetric form."""
    root = sqrtm_psd(sigma1)
    middle = root @ sigma2 @ root
    values = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    return float(np.sqrt(_clip_eigenvalues(values)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64, clipped at 0.

    Args:
        mu1, mu2: means (d,).
        sigma1, sigma2: covariances (d, d), symmetric positive semi-definite.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    # round-off can make identical distributions come out at -1e-13
    return max(float(value), 0.0)


def fad_from_embeddings(background: np.ndarray, evaluation: np.ndarray) -> float:
    """FAD between two embedding sets (n_b, d) and (n_e, d)."""
    return frechet_distance(*embedding_stats(background), *embedding_stats(evaluation))


@dataclass
class FadInfResult:
    """FAD∞: intercept of FAD against 1/N; ``slope`` is the bias coefficient c in FAD ≈ FAD∞ + c/N."""

    value: float
    slope: float
    r2: float
    ns: list[int]
    fads: list[float]

    def to_dict(self) -> dict:
        return {"fad_inf": self.value, "slope": self.slope, "r2": self.r2, "ns": self.ns, "fads": self.fads}


def fad_inf(
    background: np.ndarray,
    evaluation: np.ndarray,
    n_min: int | None = None,
    n_max: int | None = None,
    steps: int = 25,
    seed: int = 0,
) -> FadInfResult:
    """Extrapolate FAD to an infinite evaluation set (Gui et al. 2024).

    Args:
        background: (n_b, d) embeddings, used whole.
        evaluation: (n_e, d) embeddings, subsampled without replacement.
        n_min: smallest subset; default ``min(500, n_e // 2)`` (500 as in fadtk), at least 2.
        n_max: largest subset; default n_e.
        steps: subset sizes, evenly spaced from n_min to n_max.
        seed: random subsets are drawn from ``np.random.default_rng(seed)``.

    Raises:
        ValueError: fewer than 3 distinct subset sizes are possible.
    """
    evaluation = np.asarray(evaluation, dtype=np.float64)
    n_eval = evaluation.shape[0]
    n_max = n_eval if n_max is None else min(n_max, n_eval)
    n_min = max(2, min(500, n_eval // 2)) if n_min is None else max(2, n_min)
    ns = sorted({int(round(n)) for n in np.linspace(n_min, n_max, steps)})
    if len(ns) < 3 or n_min >= n_max:
        raise ValueError(f"FAD∞ needs at least 3 subset sizes; {n_eval} evaluation embeddings are too few")
    mu_b, sigma_b = embedding_stats(background)
    rng = np.random.default_rng(seed)
    fads = []
    for n in ns:
        subset = evaluation[rng.choice(n_eval, size=n, replace=False)]
        fads.append(frechet_distance(mu_b, sigma_b, *embedding_stats(subset)))
    xs = 1.0 / np.asarray(ns, dtype=np.float64)
    ys = np.asarray(fads)
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = ys - (slope * xs + intercept)
    total = ((ys - ys.mean()) ** 2).sum()
    r2 = 1.0 - float((residual**2).sum() / total) if total > 0 else 1.0
    return FadInfResult(value=float(intercept), slope=float(slope), r2=r2, ns=ns, fads=[float(f) for f in fads])


@dataclass
class BootstrapResult:
    """Percentile bootstrap interval of FAD; ``unit`` per side is "file" or "embedding"."""

    low: float
    high: float
    level: float
    n: int
    unit: dict[str, str]
    values: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "level": self.level, "n": self.n, "unit": self.unit}


def _resample_weights(sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-embedding counts for one bootstrap draw of groups of the given sizes."""
    counts = rng.multinomial(len(sizes), np.full(len(sizes), 1.0 / len(sizes)))
    return np.repeat(counts, sizes).astype(np.float64)


def bootstrap_fad(
    background: Sequence[np.ndarray],
    evaluation: Sequence[np.ndarray],
    n: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Bootstrap confidence interval of FAD, resampling files (groups of embeddings).

    Args:
        background, evaluation: one (n_i, d) array per file.
        n: bootstrap draws.
        level: coverage of the percentile interval.
        seed: ``np.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    sides = {}
    for label, groups in (("background", background), ("eval", evaluation)):
        arrays = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
        x = np.concatenate(arrays)
        # centring once keeps the weighted sums well conditioned; the mean is added back below
        mean = x.mean(axis=0)
        if len(arrays) >= 2:
            sizes, unit = np.array([a.shape[0] for a in arrays]), "file"
        else:
            sizes, unit = np.ones(x.shape[0], dtype=int), "embedding"
        sides[label] = (x - mean, mean, sizes, unit)
    values = np.empty(n)
    for i in range(n):
        stats = []
        for label in ("background", "eval"):
            x, mean, sizes, _ = sides[label]
            mu, sigma = _weighted_stats(x, _resample_weights(sizes, rng))
            stats.append((mu + mean, sigma))
        values[i] = frechet_distance(*stats[0], *stats[1])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return BootstrapResult(
        low=float(low),
        high=float(high),
        level=level,
        n=n,
        unit={"background": sides["background"][3], "eval": sides["eval"][3]},
        values=values,
    )


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


EMBEDDINGS = ("vggish", "mel")


def make_embedder(
    embedding: str = "vggish",
    weights: str | Path | None = None,
    framing: str = "torchvggish",
    device: str = "cpu",
    batch_size: int = 64,
) -> Embedder:
    """Build an embedder by name; ``vggish`` resolves its weights (clear error when missing)."""
    if embedding == "vggish":
        from audiogen.vggish import VGGishEmbedder

        return VGGishEmbedder.from_weights(weights, framing=framing, device=device, batch_size=batch_size)
    if embedding == "mel":
        return MelEmbedder(framing=framing, device=device, batch_size=batch_size)
    raise ValueError(f"unknown embedding {embedding!r}; choose one of {', '.join(EMBEDDINGS)}")


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
    """Embeddings of a set of files, one (P_i, d) array per file, with provenance.

    ``decoded`` and ``cached`` count how many files were decoded or taken from the cache.
    """

    source: str
    names: list[str]
    embeddings: list[np.ndarray]
    identity: dict | None
    decoded: int = 0
    cached: int = 0

    @property
    def num_files(self) -> int:
        return len(self.names)

    @property
    def num_embeddings(self) -> int:
        return int(sum(e.shape[0] for e in self.embeddings))

    def stacked(self) -> np.ndarray:
        """All embeddings (N, d) float64."""
        return np.concatenate([np.asarray(e, dtype=np.float64) for e in self.embeddings])

    def summary(self) -> dict:
        return {
            "source": self.source,
            "files": self.num_files,
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
    clips: Sequence[np.ndarray], sample_rate: int, embedder: Embedder, source: str = "", progress: bool = False
) -> EmbeddedSet:
    """Embed in-memory mono clips (resampled to ``embedder.sample_rate`` with soxr HQ)."""
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
    meta = json.dumps({"embedding": embedded.identity, "resampler": RESAMPLER, "files": keys}, indent=2) + "\n"
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
    identity = None
    meta_path = npz_metadata_path(path)
    if meta_path.is_file():
        try:
            identity = json.loads(meta_path.read_text()).get("embedding")
        except (OSError, ValueError) as err:
            raise ValueError(f"{meta_path}: unreadable metadata ({err})") from err
    return EmbeddedSet(source=str(path), names=names, embeddings=arrays, identity=identity)


# ---------------------------------------------------------------------------------------------
# Scoring


def _comparable_identity(identity: dict | None) -> dict | None:
    return None if identity is None else {k: v for k, v in identity.items() if k != "note"}


def check_same_embedding(a: EmbeddedSet, b: EmbeddedSet) -> None:
    """Refuse to compare sets embedded with different models, weights or framings."""
    ia, ib = _comparable_identity(a.identity), _comparable_identity(b.identity)
    if ia is not None and ib is not None and ia != ib:
        diffs = [f"{k}: {ia.get(k)!r} vs {ib.get(k)!r}" for k in sorted(set(ia) | set(ib)) if ia.get(k) != ib.get(k)]
        raise ValueError(f"{a.source} and {b.source} were embedded differently ({'; '.join(diffs)})")
    dims = {e.shape[1] for e in a.embeddings + b.embeddings}
    if len(dims) != 1:
        raise ValueError(f"{a.source} and {b.source} have different embedding sizes {sorted(dims)}")


def check_score_settings(n_bootstrap: int, level: float, fad_inf_steps: int) -> None:
    """Refuse settings that cannot give an interval or a FAD∞ fit, before any work."""
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap: a bootstrap interval needs at least 2 draws, got {n_bootstrap}")
    if not 0 < level < 1:
        raise ValueError(f"level: an interval's coverage must be between 0 and 1 (exclusive), got {level}")
    if fad_inf_steps < 3:
        raise ValueError(f"fad_inf_steps: FAD∞ fits a line to at least 3 subset sizes, got {fad_inf_steps}")


def _small_matrix_blas(dim: int):
    """Single-threaded BLAS/LAPACK for small matrices (d <= 512), when threadpoolctl is present.

    A 128x128 ``eigh`` takes ~4 ms on one thread but 20-150 ms when OpenBLAS spreads it over
    threads that compete with torch's OpenMP pool; the bootstrap calls it hundreds of times.
    """
    from contextlib import nullcontext

    if dim > 512:
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed depends on it
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def score_sets(
    background: EmbeddedSet,
    evaluation: EmbeddedSet,
    n_bootstrap: int = 200,
    level: float = 0.95,
    fad_inf_steps: int = 25,
    seed: int = 0,
) -> dict:
    """FAD, its bootstrap interval and FAD∞ between two embedded sets, as a JSON-ready report.

    Raises:
        ValueError: the sets were embedded differently or are too small, or a setting is out of
            range (``n_bootstrap`` < 2, ``level`` outside (0, 1), ``fad_inf_steps`` < 3).
    """
    check_score_settings(n_bootstrap, level, fad_inf_steps)
    check_same_embedding(background, evaluation)
    identity = background.identity or evaluation.identity or {"model": "unknown"}
    bg, ev = background.stacked(), evaluation.stacked()
    dim = bg.shape[1]
    warnings = []
    for label, x in (("background", bg), ("eval", ev)):
        if x.shape[0] < 2:
            raise ValueError(f"the {label} set has {x.shape[0]} embedding(s); FAD needs at least 2")
        if x.shape[0] <= dim:
            warnings.append(
                f"{label} has {x.shape[0]} embeddings for {dim} dimensions: its covariance is singular; "
                "FAD is finite but strongly biased upward (use more audio)"
            )
    with _small_matrix_blas(dim):
        value = fad_from_embeddings(bg, ev)
        boot = bootstrap_fad(background.embeddings, evaluation.embeddings, n=n_bootstrap, level=level, seed=seed)
        try:
            inf = fad_inf(bg, ev, steps=fad_inf_steps, seed=seed)
            inf_value, inf_fit = inf.value, inf.to_dict()
        except ValueError as err:
            inf_value, inf_fit = None, {"error": str(err)}
            warnings.append(str(err))
    comparable = bool(identity.get("comparable_to_published", False))
    if not comparable:
        warnings.append(
            NOT_COMPARABLE_NOTE if identity.get("model") == "mel" else "embedding model unknown (npz without metadata)"
        )
    return {
        "fad": value,
        "fad_ci": [boot.low, boot.high],
        "fad_ci_level": level,
        "bootstrap": boot.to_dict(),
        "fad_inf": inf_value,
        "fad_inf_fit": inf_fit,
        "background": background.summary(),
        "eval": evaluation.summary(),
        "embedding_model": identity.get("model"),
        "weights_sha256": identity.get("weights_sha256"),
        "framing": identity.get("framing"),
        "resampler": RESAMPLER,
        "embedding": identity,
        "comparable_to_published_fad": comparable,
        "warnings": warnings,
    }
