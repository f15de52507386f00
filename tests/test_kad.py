"""KAD against an independent computation, and the properties that make it worth having."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from audiogen.distances import kad, median_bandwidth


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
