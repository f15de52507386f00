"""Kernel Audio Distance (KAD): a distribution-free distance between two sets of embeddings.

KAD (Chung et al. 2025, the ``kadtk`` toolkit) is the unbiased estimate of the squared maximum
mean discrepancy (MMD²) under a Gaussian RBF kernel, a characteristic kernel, so it is zero only
when the two distributions are the same, with no Gaussian assumption (FAD compares only means
and covariances). The estimate is unbiased: it does not grow with fewer clips, as FAD does, and
can be slightly negative when the sets are close. Like kadtk, the kernel's bandwidth is the median
pairwise distance within the reference set and the value is scaled by 100 for readability.
"""

from __future__ import annotations

import numpy as np

KAD_SCALE = 100.0  # kadtk's SCALE_FACTOR


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances (N, M) between rows of ``a`` (N, D) and ``b`` (M, D)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)  # rounding can make a tiny negative


def median_bandwidth(reference: np.ndarray) -> float:
    """The median pairwise distance between distinct rows of ``reference`` (N, D), at least 1e-6."""
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
    if len(reference) < 2 or len(test) < 2:
        raise ValueError(f"KAD needs at least 2 embeddings a set, got {len(reference)} and {len(test)}")
    if reference.shape[1] != test.shape[1]:
        raise ValueError(f"KAD: embeddings of {reference.shape[1]} and {test.shape[1]} dimensions")
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
