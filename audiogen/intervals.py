"""Bootstrap intervals of FAD and KAD that resample pieces, not clips.

Clips cut from one recording share its key, touch, tempo and room, so they are not independent
draws: resampling clips treats a set of 200 clips from 10 pieces as 200 observations and gives
an interval that is far too narrow. Here the unit is the piece: each draw takes as many pieces
as the side has, with replacement, on each side, with all of a drawn piece's embeddings, and
the same draws give both distances. A side with a single piece cannot be resampled that way;
it falls back to resampling its embeddings, and reports flag it.

The percentile interval describes the distance at these set sizes. FAD's bias included: a
resample repeats some pieces, so it has fewer distinct ones and its FAD runs a little high, and
the interval sits slightly above the point estimate (with few pieces it can leave the estimate
out, which reports flag). KAD's resampled values leave out pairs of an embedding with its own
copy (:meth:`audiogen.distances.PieceKernelSums.kad`), so it keeps no such bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from audiogen.distances import PieceKernelSums, frechet_distance

PIECE, EMBEDDING = "piece", "embedding"  # the resampled unit of a side


@dataclass
class BootstrapResult:
    """Percentile bootstrap interval of one distance; ``unit`` per side is "piece" or "embedding"."""

    low: float
    high: float
    level: float
    n: int
    unit: dict[str, str]
    units: dict[str, int]
    values: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "level": self.level, "n": self.n, "unit": self.unit,
                "units": self.units}

    def excludes(self, estimate: float) -> bool:
        """Whether ``estimate`` lies outside [low, high]."""
        return not self.low <= estimate <= self.high


@dataclass(frozen=True)
class ResamplingUnits:
    """What a bootstrap draws on one side: ``groups``, one (n_u, d) array per unit; ``unit``: what a unit is."""

    groups: list[np.ndarray]
    unit: str


def resampling_units(pieces: Sequence[np.ndarray]) -> ResamplingUnits:
    """The units a bootstrap draws: the pieces (n_p, d), or each embedding when there is one piece only."""
    arrays = [np.asarray(p, dtype=np.float64) for p in pieces if len(p)]
    if len(arrays) >= 2:
        return ResamplingUnits(arrays, PIECE)
    return ResamplingUnits([row[None, :] for row in np.concatenate(arrays)], EMBEDDING)


def weighted_stats(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of rows of ``x`` (N, d) repeated ``weights`` (N,) times."""
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


def draw_counts(num_units: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``num_units`` units is taken in one draw of ``num_units`` with replacement (P,)."""
    return rng.multinomial(num_units, np.full(num_units, 1.0 / num_units))


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of ``values`` (NaN draws left out; NaN when all are)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_distances(
    background: Sequence[np.ndarray] | ResamplingUnits,
    evaluation: Sequence[np.ndarray] | ResamplingUnits,
    n: int = 200,
    level: float = 0.95,
    seed: int = 0,
    kernel_sums: PieceKernelSums | None = None,
) -> dict[str, BootstrapResult]:
    """Bootstrap intervals of FAD (and of KAD when ``kernel_sums`` is given), resampling pieces.

    Args:
        background, evaluation: one (n_p, d) array per piece (a side of one piece resamples its
            embeddings), or the :func:`resampling_units` of each side.
        n: bootstrap draws.
        level: coverage of the percentile interval.
        seed: ``np.random.default_rng(seed)``.
        kernel_sums: KAD's kernel sums over the same resampling units
            (``PieceKernelSums.from_pieces`` of the ``groups`` of :func:`resampling_units` of each side).

    Returns:
        ``{"fad": ..., "kad": ...}`` (``"kad"`` only with ``kernel_sums``), from the same draws.
    """
    rng = np.random.default_rng(seed)
    sides = {}
    for label, pieces in (("background", background), ("eval", evaluation)):
        units = pieces if isinstance(pieces, ResamplingUnits) else resampling_units(pieces)
        x = np.concatenate(units.groups)
        # centring once keeps the weighted sums well conditioned; the mean is added back below
        mean = x.mean(axis=0)
        sides[label] = (x - mean, mean, np.array([len(g) for g in units.groups]), units.unit)
    if kernel_sums is not None and (len(kernel_sums.reference_sizes), len(kernel_sums.test_sizes)) != (
        len(sides["background"][2]), len(sides["eval"][2])):
        raise ValueError("kernel_sums were computed over other units than these sets' resampling units")
    fad_values, kad_values = np.empty(n), np.empty(n)
    for i in range(n):
        stats, counts = [], []
        for label in ("background", "eval"):
            x, mean, sizes, _ = sides[label]
            drawn = draw_counts(len(sizes), rng)
            mu, sigma = weighted_stats(x, np.repeat(drawn, sizes).astype(np.float64))
            stats.append((mu + mean, sigma))
            counts.append(drawn)
        fad_values[i] = frechet_distance(*stats[0], *stats[1])
        if kernel_sums is not None:
            kad_values[i] = kernel_sums.kad(*counts)
    unit = {label: side[3] for label, side in sides.items()}
    units = {label: len(side[2]) for label, side in sides.items()}
    results = {"fad": BootstrapResult(*percentile_interval(fad_values, level), level, n, unit, units, fad_values)}
    if kernel_sums is not None:
        results["kad"] = BootstrapResult(*percentile_interval(kad_values, level), level, n, unit, units, kad_values)
    return results
