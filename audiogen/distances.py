"""Distances between two sets of embeddings: Fréchet statistics, FAD, FAD∞ and KAD.

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
the population value — strongly biased upward — so reports flag it.

FAD∞ (Gui et al. 2024, "Adapting Fréchet Audio Distance for generative music evaluation"):
FAD is biased upward by roughly c / N for N evaluation embeddings, so FAD is computed on random
subsets of the evaluation set of several sizes N, a line is fitted against 1 / N, and its
intercept (N → ∞) is reported; the background set is used whole, as in fadtk.

KAD (kernel audio distance; Chung et al. 2025, the ``kadtk`` toolkit) is the unbiased estimate
of the squared maximum mean discrepancy (MMD²) under a Gaussian RBF kernel, a characteristic
kernel, so it is zero only when the two distributions are the same, with no Gaussian assumption
(FAD compares only means and covariances). The estimate is unbiased: it does not grow with fewer
clips, as FAD does, and can be slightly negative when the sets are close. Like kadtk, the
kernel's bandwidth is the median pairwise distance within the reference set and the value is
scaled by 100 for readability. :class:`PieceKernelSums` holds the kernel summed over pairs of
pieces, so a bootstrap over pieces (:mod:`audiogen.intervals`) re-weights sums instead of
recomputing kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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


# ---------------------------------------------------------------------------------------------
# KAD

KAD_SCALE = 100.0  # kadtk's SCALE_FACTOR
# The median heuristic needs every pairwise distance of the reference: above this many rows a
# fixed subset is used, so memory stays near 70 MB (the median of 4.5 M distances moves little).
MAX_BANDWIDTH_POINTS = 3000
# Kernel rows computed at once (float64 elements, 32 MB), so large sets never hold an N x M matrix.
KERNEL_CHUNK_ELEMENTS = 1 << 22


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances (N, M) between rows of ``a`` (N, D) and ``b`` (M, D)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)  # rounding can make a tiny negative


def median_bandwidth(reference: np.ndarray, max_points: int = MAX_BANDWIDTH_POINTS) -> float:
    """The median pairwise distance between distinct rows of ``reference`` (N, D), at least 1e-6.

    Above ``max_points`` rows, the median over a fixed random subset of ``max_points`` rows (seed 0).
    """
    reference = np.asarray(reference, dtype=np.float64)
    if len(reference) > max_points:
        reference = reference[np.sort(np.random.default_rng(0).choice(len(reference), max_points, replace=False))]
    d2 = squared_distances(reference, reference)
    upper = d2[np.triu_indices(len(reference), k=1)]
    return max(float(np.median(np.sqrt(upper))), 1e-6)


def kad(reference: np.ndarray, test: np.ndarray, bandwidth: float | None = None) -> float:
    """KAD between a reference set (N, D) and a test set (M, D) of embeddings, N, M >= 2.

    Args:
        bandwidth: the RBF kernel's length scale; default: :func:`median_bandwidth` of ``reference``.

    Returns:
        100 × the unbiased MMD² estimate: k(x, x') over distinct reference pairs plus k(y, y') over
        distinct test pairs, minus twice the mean k(x, y).
    """
    reference, test = np.asarray(reference, dtype=np.float64), np.asarray(test, dtype=np.float64)
    _check_kad_sets(reference, test)
    sigma = median_bandwidth(reference) if bandwidth is None else bandwidth
    gamma = 1.0 / (2.0 * sigma**2)
    n, m = len(reference), len(test)
    k_xx = np.exp(-gamma * squared_distances(reference, reference))
    k_yy = np.exp(-gamma * squared_distances(test, test))
    k_xy = np.exp(-gamma * squared_distances(reference, test))
    # distinct pairs only: the diagonal (k = 1) is what makes the plain estimate biased
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(KAD_SCALE * (within_x + within_y - 2.0 * k_xy.mean()))


def _check_kad_sets(reference: np.ndarray, test: np.ndarray) -> None:
    if len(reference) < 2 or len(test) < 2:
        raise ValueError(f"KAD needs at least 2 embeddings a set, got {len(reference)} and {len(test)}")
    if reference.shape[1] != test.shape[1]:
        raise ValueError(f"KAD: embeddings of {reference.shape[1]} and {test.shape[1]} dimensions")


def _piece_starts(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _kernel_piece_sums(a: np.ndarray, a_sizes: np.ndarray, b: np.ndarray, b_sizes: np.ndarray,
                       gamma: float) -> np.ndarray:
    """(P, Q): the RBF kernel between rows of ``a`` (N, D) and ``b`` (M, D), summed over each pair of pieces.

    Rows of a piece are consecutive; ``a_sizes`` (P,) and ``b_sizes`` (Q,) are the pieces' row counts (>= 1).
    """
    a_starts, b_starts = _piece_starts(a_sizes), _piece_starts(b_sizes)
    out = np.empty((len(a_sizes), len(b_sizes)))
    rows_per_chunk = max(1, KERNEL_CHUNK_ELEMENTS // len(b))
    first = 0
    while first < len(a_sizes):  # chunks of whole pieces, so each chunk's rows reduce to its pieces
        last = first + 1
        while last < len(a_sizes) and a_starts[last] + a_sizes[last] - a_starts[first] <= rows_per_chunk:
            last += 1
        rows = a[a_starts[first] : a_starts[last - 1] + a_sizes[last - 1]]
        kernel = np.exp(-gamma * squared_distances(rows, b))  # (rows, M)
        by_column_piece = np.add.reduceat(kernel, b_starts, axis=1)  # (rows, Q)
        out[first:last] = np.add.reduceat(by_column_piece, a_starts[first:last] - a_starts[first], axis=0)
        first = last
    return out


@dataclass(frozen=True)
class PieceKernelSums:
    """The RBF kernel of KAD summed over every pair of pieces, within and across two sets.

    With these sums, KAD for any number of copies of each piece (a bootstrap draw) costs a few
    (P, P) products instead of new kernels. Attributes: ``within_reference`` (P, P),
    ``within_test`` (Q, Q), ``across`` (P, Q); ``reference_sizes`` (P,) and ``test_sizes`` (Q,)
    the embeddings per piece; ``bandwidth`` the kernel's length scale.
    """

    within_reference: np.ndarray
    within_test: np.ndarray
    across: np.ndarray
    reference_sizes: np.ndarray
    test_sizes: np.ndarray
    bandwidth: float

    @classmethod
    def from_pieces(
        cls, reference: Sequence[np.ndarray], test: Sequence[np.ndarray], bandwidth: float | None = None
    ) -> PieceKernelSums:
        """Sums from one (n_p, D) array per piece on each side; bandwidth: default the reference's median."""
        ref_pieces = [np.asarray(p, dtype=np.float64) for p in reference if len(p)]
        test_pieces = [np.asarray(p, dtype=np.float64) for p in test if len(p)]
        if not ref_pieces or not test_pieces:
            raise ValueError("KAD needs at least 2 embeddings a set, got an empty set")
        x, y = np.concatenate(ref_pieces), np.concatenate(test_pieces)
        _check_kad_sets(x, y)
        sigma = median_bandwidth(x) if bandwidth is None else bandwidth
        gamma = 1.0 / (2.0 * sigma**2)
        x_sizes = np.array([len(p) for p in ref_pieces])
        y_sizes = np.array([len(p) for p in test_pieces])
        return cls(
            within_reference=_kernel_piece_sums(x, x_sizes, x, x_sizes, gamma),
            within_test=_kernel_piece_sums(y, y_sizes, y, y_sizes, gamma),
            across=_kernel_piece_sums(x, x_sizes, y, y_sizes, gamma),
            reference_sizes=x_sizes,
            test_sizes=y_sizes,
            bandwidth=sigma,
        )

    def kad(self, reference_counts: np.ndarray | None = None, test_counts: np.ndarray | None = None) -> float:
        """KAD with piece p of each side taken ``counts[p]`` times (default: once each, the plain KAD).

        Pairs of an embedding with a copy of itself are left out, as the plain estimate leaves out
        the diagonal: counting them (k = 1) would bias a resampled KAD upward. NaN when a side
        has no two distinct embeddings.
        """
        c = np.ones(len(self.reference_sizes)) if reference_counts is None else np.asarray(reference_counts, float)
        e = np.ones(len(self.test_sizes)) if test_counts is None else np.asarray(test_counts, float)
        within_x = _mean_over_distinct_pairs(self.within_reference, self.reference_sizes, c)
        within_y = _mean_over_distinct_pairs(self.within_test, self.test_sizes, e)
        across = c @ self.across @ e / ((c @ self.reference_sizes) * (e @ self.test_sizes))
        return float(KAD_SCALE * (within_x + within_y - 2.0 * across))


def _mean_over_distinct_pairs(sums: np.ndarray, sizes: np.ndarray, counts: np.ndarray) -> float:
    """Mean kernel over pairs of distinct embeddings, each embedding of piece p weighted ``counts[p]``."""
    # an embedding of piece p weighs c_p: the weighted sum over all pairs is c^T S c; its pairs with
    # itself (k = 1) weigh sum_p c_p^2 n_p, both in the sum and in the count of pairs
    self_pairs = float((counts**2) @ sizes)
    total = float(counts @ sizes)
    pairs = total**2 - self_pairs
    if pairs <= 0:
        return float("nan")
    return (float(counts @ sums @ counts) - self_pairs) / pairs
