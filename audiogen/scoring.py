"""Scoring two embedded sets: FAD, KAD, their intervals over pieces, FAD∞, and the flags a reader must see.

:func:`score_sets` gives the JSON-ready report of ``audiogen-fad score`` and of every row of
``tools/fad_benchmark.py``. Its ``flags`` name what makes a number untrustworthy, so that every
report (console, markdown, JSON) can show them beside the number (:func:`flag_lines`):

- ``interval_excludes_estimate``: the bootstrap interval leaves out the estimate it is about
  (too few pieces or embeddings for the resampled sets to resemble the real ones);
- ``negative_fad_inf``: FAD∞ below 0, which a distance cannot be (the 1/N line does not hold);
- ``singular_covariance``: a side has no more embeddings than dimensions, so its covariance is
  singular and FAD strongly biased upward;
- ``one_piece``: a side holds one piece, so its interval resamples that piece's embeddings,
  which are not independent (the interval is too narrow).
"""

from __future__ import annotations

import math

from audiogen.audio import RESAMPLER
from audiogen.distances import PieceKernelSums, fad_from_embeddings, fad_inf
from audiogen.embeddings import NOT_COMPARABLE_NOTE, EmbeddedSet
from audiogen.intervals import EMBEDDING, bootstrap_distances, resampling_units

INTERVAL_EXCLUDES_ESTIMATE = "interval_excludes_estimate"
NEGATIVE_FAD_INF = "negative_fad_inf"
SINGULAR_COVARIANCE = "singular_covariance"
ONE_PIECE = "one_piece"
FLAGS = (INTERVAL_EXCLUDES_ESTIMATE, NEGATIVE_FAD_INF, SINGULAR_COVARIANCE, ONE_PIECE)
METRIC_NAMES = {"fad": "FAD", "kad": "KAD"}
INTERVAL_EXCLUSION_CAUSES = {
    # a resample repeats pieces, so holds fewer distinct ones, and FAD grows as sets shrink
    "fad": "FAD's upward bias in resamples (they repeat pieces) outweighs its spread, or there are too few "
           "pieces for a bootstrap; the interval does not describe this estimate (compare FAD∞ and KAD)",
    "kad": "too few pieces or embeddings for the bootstrap to describe it",
}


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


def _number_or_none(value: float) -> float | None:
    """JSON has no NaN: an interval that could not be computed is null."""
    return None if value is None or not math.isfinite(value) else float(value)


def _flag(code: str, about: str, message: str) -> dict:
    return {"flag": code, "about": about, "message": message}


def report_flags(report: dict) -> list[dict]:
    """The flags (module docstring) of a :func:`score_sets` report, from its numbers alone.

    Returns:
        ``{"flag": code, "about": "fad" | "kad" | "fad_inf" | "background" | "eval", "message": one line}``
        dicts, in the order of :data:`FLAGS`.
    """
    flags = []
    level = f"{report['bootstrap']['level'] * 100:g}%"
    for metric, name in METRIC_NAMES.items():
        value, ci = report.get(metric), report.get(f"{metric}_ci")
        if value is None or ci is None or None in ci:
            continue
        if not ci[0] <= value <= ci[1]:
            flags.append(_flag(INTERVAL_EXCLUDES_ESTIMATE, metric,
                               f"{name} {value:.4g} lies outside its own {level} interval {ci[0]:.4g}–{ci[1]:.4g}: "
                               + INTERVAL_EXCLUSION_CAUSES[metric]))
    inf = report.get("fad_inf")
    if inf is not None and inf < 0:
        flags.append(_flag(NEGATIVE_FAD_INF, "fad_inf",
                           f"FAD∞ {inf:.4g} is negative, which a distance cannot be: the line against 1/N "
                           "does not hold for these few embeddings"))
    for side in ("background", "eval"):
        count = report[side]["embeddings"]
        if count <= report["dim"]:
            flags.append(_flag(SINGULAR_COVARIANCE, side,
                               f"{side} has {count} embeddings for {report['dim']} dimensions: its covariance is "
                               "singular; FAD is finite but strongly biased upward (use more audio)"))
    for side in ("background", "eval"):
        if report["bootstrap"]["unit"][side] == EMBEDDING:
            flags.append(_flag(ONE_PIECE, side,
                               f"{side} is one piece: its interval resamples that piece's embeddings, which are "
                               "not independent, so the interval is too narrow"))
    return flags


FLAG_LABELS = {INTERVAL_EXCLUDES_ESTIMATE: "{about} outside its CI", NEGATIVE_FAD_INF: "FAD∞ < 0",
               SINGULAR_COVARIANCE: "singular covariance ({about})", ONE_PIECE: "one piece ({about})"}


def flag_label(flag: dict) -> str:
    """A few words for a table cell: ``FAD outside its CI``, ``singular covariance (eval)``, ..."""
    return FLAG_LABELS[flag["flag"]].format(about=METRIC_NAMES.get(flag["about"], flag["about"]))


def flag_lines(flags: list[dict], prefix: str = "flag") -> list[str]:
    """One console line per flag: ``flag (code): message``."""
    return [f"{prefix} ({f['flag']}): {f['message']}" for f in flags]


def score_sets(
    background: EmbeddedSet,
    evaluation: EmbeddedSet,
    n_bootstrap: int = 200,
    level: float = 0.95,
    fad_inf_steps: int = 25,
    seed: int = 0,
) -> dict:
    """FAD and KAD with their intervals over pieces, FAD∞, and flags, between two embedded sets.

    Returns:
        the JSON-ready report: ``fad``, ``fad_ci``, ``kad``, ``kad_ci``, ``kad_bandwidth``,
        ``bootstrap`` (draws, level, the unit and unit count per side), ``fad_inf``,
        ``fad_inf_fit``, per-side summaries, the embedding's identity, ``flags``
        (:func:`report_flags`) and ``warnings`` (other notes).

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
    with _small_matrix_blas(dim):
        value = fad_from_embeddings(bg, ev)
        bg_units, ev_units = resampling_units(background.by_piece()), resampling_units(evaluation.by_piece())
        kernel_sums = PieceKernelSums.from_pieces(bg_units.groups, ev_units.groups)
        kad_value = kernel_sums.kad()
        boot = bootstrap_distances(bg_units, ev_units, n=n_bootstrap, level=level, seed=seed,
                                   kernel_sums=kernel_sums)
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
    fad_boot, kad_boot = boot["fad"], boot["kad"]
    report = {
        "fad": value,
        "fad_ci": [_number_or_none(fad_boot.low), _number_or_none(fad_boot.high)],
        "fad_ci_level": level,
        "kad": kad_value,
        "kad_ci": [_number_or_none(kad_boot.low), _number_or_none(kad_boot.high)],
        "kad_bandwidth": kernel_sums.bandwidth,
        "bootstrap": {"n": n_bootstrap, "level": level, "unit": fad_boot.unit, "units": fad_boot.units},
        "fad_inf": inf_value,
        "fad_inf_fit": inf_fit,
        "background": background.summary(),
        "eval": evaluation.summary(),
        "dim": dim,
        "embedding_model": identity.get("model"),
        "weights_sha256": identity.get("weights_sha256"),
        "framing": identity.get("framing"),
        "resampler": RESAMPLER,
        "embedding": identity,
        "comparable_to_published_fad": comparable,
        "warnings": warnings,
    }
    report["flags"] = report_flags(report)
    return report
