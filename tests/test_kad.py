"""KAD against an independent computation, the properties that make it worth having, and its kernel sums per
piece (what the bootstrap over pieces re-weights) against the KAD of the repeated pieces written out."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from audiogen import distances
from audiogen.distances import PieceKernelSums, kad, median_bandwidth


def _kad_by_loops(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² written out pair by pair, with the median heuristic done by hand."""
    distances = [math.dist(a, b) for a, b in itertools.combinations(x.tolist(), 2)]
    sigma = float(np.median(distances))

    def k(a, b):
        return math.exp(-math.dist(a, b) ** 2 / (2 * sigma**2))

    xx = [k(a, b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j]
    yy = [k(a, b) for i, a in enumerate(y) for j, b in enumerate(y) if i != j]
    xy = [k(a, b) for a in x for b in y]
    return 100 * (sum(xx) / len(xx) + sum(yy) / len(yy) - 2 * sum(xy) / len(xy))


def test_matches_a_pair_by_pair_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 4)), rng.normal(0.5, 1.3, size=(7, 4))
    assert kad(x, y) == pytest.approx(_kad_by_loops(x, y), rel=1e-9, abs=1e-12)


def test_near_zero_for_one_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(300, 8))
    same = kad(reference, rng.normal(size=(300, 8)))
    shifted = [kad(reference, rng.normal(shift, 1.0, size=(300, 8))) for shift in (0.25, 0.5, 1.0)]
    assert abs(same) < 0.1 * shifted[0]
    assert shifted == sorted(shifted)


def test_unbiased_where_the_plain_estimate_is_not():
    # Same distribution, few samples: the mean of the unbiased estimate stays near 0
    rng = np.random.default_rng(2)
    values = [kad(rng.normal(size=(5, 3)), rng.normal(size=(5, 3))) for _ in range(400)]
    assert abs(np.mean(values)) < 3 * np.std(values) / math.sqrt(len(values))


def test_sees_a_difference_that_mean_and_covariance_miss():
    # Same mean and variance per dimension, different shape: FAD's Gaussian statistics agree, KAD does not
    rng = np.random.default_rng(3)
    gaussian = rng.normal(size=(400, 1))
    two_peaks = rng.choice([-1.0, 1.0], size=(400, 1)) + 0.05 * rng.normal(size=(400, 1))
    two_peaks /= two_peaks.std()
    assert kad(gaussian, two_peaks) > 5 * abs(kad(gaussian, rng.normal(size=(400, 1))))


def test_bandwidth_is_the_reference_median_and_bad_sets_are_refused():
    points = np.array([[0.0], [1.0], [3.0]])  # distances 1, 2, 3
    assert median_bandwidth(points) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least 2"):
        kad(points[:1], points)
    with pytest.raises(ValueError, match="dimensions"):
        kad(points, np.zeros((3, 2)))


# --- kernel sums per piece, as the bootstrap over pieces uses them -------------------------------


def _resampled_kad_by_loops(x_pieces, y_pieces, x_counts, y_counts, sigma) -> float:
    """KAD of the sets with piece p repeated counts[p] times, over pairs of different original embeddings."""
    def repeated(pieces, counts):  # (embedding, its original index) for every copy
        originals = [(row, (p, i)) for p, piece in enumerate(pieces) for i, row in enumerate(piece.tolist())]
        return [(row, key) for row, key in originals for _ in range(int(counts[key[0]]))]

    def k(a, b):
        return math.exp(-math.dist(a, b) ** 2 / (2 * sigma**2))

    xs, ys = repeated(x_pieces, x_counts), repeated(y_pieces, y_counts)
    xx = [k(a, b) for a, ka in xs for b, kb in xs if ka != kb]
    yy = [k(a, b) for a, ka in ys for b, kb in ys if ka != kb]
    xy = [k(a, b) for a, _ in xs for b, _ in ys]
    return 100 * (sum(xx) / len(xx) + sum(yy) / len(yy) - 2 * sum(xy) / len(xy))


def test_kernel_sums_give_kad_and_the_kad_of_repeated_pieces(monkeypatch):
    rng = np.random.default_rng(4)
    x_pieces = [rng.normal(size=(n, 3)) for n in (3, 1, 4, 2)]
    y_pieces = [rng.normal(0.4, 1.2, size=(n, 3)) for n in (2, 5, 1)]
    sums = PieceKernelSums.from_pieces(x_pieces, y_pieces)
    assert sums.kad() == pytest.approx(kad(np.concatenate(x_pieces), np.concatenate(y_pieces)), rel=1e-9)
    # a few rows at a time, so chunks end at piece boundaries and every piece falls in one chunk
    monkeypatch.setattr(distances, "KERNEL_CHUNK_ELEMENTS", 7)
    chunked = PieceKernelSums.from_pieces(x_pieces, y_pieces)
    np.testing.assert_allclose(chunked.within_reference, sums.within_reference, rtol=1e-12)
    np.testing.assert_allclose(chunked.across, sums.across, rtol=1e-12)
    x_counts, y_counts = np.array([2, 0, 1, 1]), np.array([0, 3, 0])
    expected = _resampled_kad_by_loops(x_pieces, y_pieces, x_counts, y_counts, sums.bandwidth)
    assert sums.kad(x_counts, y_counts) == pytest.approx(expected, rel=1e-9)


def test_bandwidth_of_a_large_reference_uses_a_fixed_subset():
    reference = np.random.default_rng(5).normal(size=(400, 2))
    assert median_bandwidth(reference, max_points=100) == median_bandwidth(reference, max_points=100)
    assert median_bandwidth(reference, max_points=100) == pytest.approx(median_bandwidth(reference), rel=0.1)
