"""Music metrics of audio through the transcriber: what was played, not how the spectrum looks.

Each clip is transcribed (:mod:`audiogen.transcriber`) and its notes measured:

- **notes per second**: note onsets per second of audio;
- **polyphony**: mean number of keys sounding in the frames where at least one sounds;
- **pitch range**: semitones between the 5th and 95th percentile of the pitches played (0 with
  fewer than 2 notes), so one stray note does not set it;
- **pitch-class histogram**: share of notes on each of the 12 pitch classes (C = 0); sets are
  compared by the Jensen-Shannon distance of their pooled histograms (bits, 0 … 1);
- **IOI entropy** (rhythmic entropy, bits): the entropy of the histogram of inter-onset intervals
  between successive onset times (onsets within 30 ms are one chord) in 24 log-spaced bins from
  20 ms to 4 s; even playing has a low one, free or random timing a high one;
- **velocity spread**: standard deviation of the note velocities (MIDI units).

A set of clips is compared with a reference set metric by metric: the difference of the set
means (set − reference) with a 95 % bootstrap interval that resamples **pieces** on both sides
(clips of one piece are not independent), so an interval holding 0 means the metric cannot tell
the set from the reference at this size; the distance is its absolute value. The pitch-class
histograms are compared by the Jensen-Shannon distance of the pooled histograms, whose
resampled values are biased upward (resampling repeats pieces and adds noise to both
histograms): its interval may lie above its estimate, and is flagged when it does.

Nothing here reads files; :class:`MusicMeter` holds a loaded transcriber.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from audiogen.transcription import Notes

SCALARS = ("notes_per_second", "polyphony", "pitch_range", "ioi_entropy", "velocity_spread")
CHORD_SECONDS = 0.03  # onsets closer than this are one event for the inter-onset intervals
IOI_BINS = np.geomspace(0.02, 4.0, 25)  # 24 bins; intervals outside are clipped into the end bins
POLYPHONY_RATE = 100.0  # frames per second at which sounding notes are counted


def clip_metrics(notes: Notes, seconds: float) -> dict[str, Any]:
    """The metrics of one clip's notes (times in seconds of a clip ``seconds`` long)."""
    count = len(notes)
    histogram = np.bincount(notes.pitches % 12, minlength=12).astype(np.float64) if count else np.zeros(12)
    frames = max(int(np.ceil(seconds * POLYPHONY_RATE)), 1)
    sounding = np.zeros(frames)
    for on, off in zip(notes.onsets, notes.offsets, strict=True):
        a, b = int(on * POLYPHONY_RATE), int(np.ceil(off * POLYPHONY_RATE))
        sounding[max(a, 0):min(max(b, a + 1), frames)] += 1
    times = np.unique(notes.onsets)
    events = times[np.concatenate([[True], np.diff(times) >= CHORD_SECONDS])] if len(times) else times
    iois = np.clip(np.diff(events), IOI_BINS[0], IOI_BINS[-1] * 0.999)
    ioi_counts = np.histogram(iois, IOI_BINS)[0].astype(np.float64)
    return {
        "notes": count,
        "notes_per_second": count / seconds if seconds > 0 else 0.0,
        "polyphony": float(sounding[sounding > 0].mean()) if (sounding > 0).any() else 0.0,
        "pitch_range": float(np.subtract(*np.percentile(notes.pitches, [95, 5]))) if count >= 2 else 0.0,
        "ioi_entropy": _entropy_bits(ioi_counts),
        "velocity_spread": float(np.std(notes.velocities)) if count else 0.0,
        "pitch_class_counts": histogram.tolist(),
    }


def _entropy_bits(counts: np.ndarray) -> float:
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def set_summary(per_clip: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means of the scalar metrics over clips, and the pooled pitch-class histogram (shares)."""
    counts = np.sum([c["pitch_class_counts"] for c in per_clip], axis=0) if per_clip else np.zeros(12)
    total = counts.sum()
    return {"clips": len(per_clip), "notes": int(sum(c["notes"] for c in per_clip)),
            **{k: float(np.mean([c[k] for c in per_clip])) if per_clip else 0.0 for k in SCALARS},
            "pitch_class_histogram": (counts / total).tolist() if total else [0.0] * 12}


def _piece_groups(pieces: Sequence[str]) -> list[np.ndarray]:
    names: dict[str, list[int]] = {}
    for index, piece in enumerate(pieces):
        names.setdefault(piece, []).append(index)
    return [np.asarray(v) for v in names.values()]


def _differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Set - reference for each scalar metric, and the pitch-class JS distance (>= 0)."""
    from audiogen.descriptors import jensen_shannon_distance

    out = {k: a[k] - b[k] for k in SCALARS}
    ha, hb = a["pitch_class_histogram"], b["pitch_class_histogram"]
    out["pitch_class_js"] = jensen_shannon_distance(ha, hb) if sum(ha) and sum(hb) else float("nan")
    return out


def compare_sets(clips: Sequence[dict[str, Any]], pieces: Sequence[str], reference: Sequence[dict[str, Any]],
                 reference_pieces: Sequence[str], n_bootstrap: int = 200, level: float = 0.95,
                 seed: int = 0) -> dict[str, Any]:
    """Each metric's distance of a set to the reference set, with a bootstrap interval over pieces.

    Args:
        clips, reference: :func:`clip_metrics` of each clip of the two sets.
        pieces, reference_pieces: the piece each clip was cut from (one name per clip).

    Returns:
        ``{"summary": set_summary(clips), "difference": {metric: set - reference}, "distance":
        {metric: |difference|}, "interval": {metric: [low, high] of the difference},
        "interval_excludes_estimate": [metrics]}``; metrics are :data:`SCALARS` and
        ``pitch_class_js`` (whose difference is the JS distance itself).
    """
    summary, ref_summary = set_summary(clips), set_summary(reference)
    difference = _differences(summary, ref_summary)
    groups, ref_groups = _piece_groups(pieces), _piece_groups(reference_pieces)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in difference}
    for _ in range(n_bootstrap):
        pick = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        ref_pick = np.concatenate([ref_groups[i] for i in rng.integers(0, len(ref_groups), len(ref_groups))])
        drawn = _differences(set_summary([clips[i] for i in pick]), set_summary([reference[i] for i in ref_pick]))
        for k, v in drawn.items():
            draws[k].append(v)
    tail = (1 - level) / 2 * 100
    interval = {k: [float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail))]
                if np.isfinite(v).any() else [float("nan")] * 2 for k, v in draws.items()}
    outside = [k for k, (low, high) in interval.items() if not low <= difference[k] <= high]
    return {"summary": summary, "difference": difference, "distance": {k: abs(v) for k, v in difference.items()},
            "interval": interval, "interval_excludes_estimate": outside}


class MusicMeter:
    """Transcribes clips with a loaded transcriber and measures their notes.

    Args:
        model_dir: a transcriber folder (None: the bundled one).
        device: torch device.
    """

    def __init__(self, model_dir: Any = None, device: str = "cpu"):
        from audiogen.frontend import FrontendConfig, MelFrontend
        from audiogen.transcriber import bundled_transcriber_dir, load_transcriber

        self.model_dir = model_dir or bundled_transcriber_dir()
        self.model, saved = load_transcriber(self.model_dir, device)
        self.frontend = MelFrontend(FrontendConfig(**(saved.get("frontend") or {})))
        self.sample_rate = self.frontend.config.sample_rate

    def measure(self, audio: np.ndarray) -> dict[str, Any]:
        """:func:`clip_metrics` of one clip of mono audio at :attr:`sample_rate`."""
        from audiogen.transcriber import transcribe_audio

        notes, _ = transcribe_audio(self.model, self.frontend, audio)
        return clip_metrics(notes, len(audio) / self.sample_rate)

    def measure_clips(self, clips: Sequence[np.ndarray], label: str) -> list[dict[str, Any]]:
        """:meth:`measure` of each clip, with a progress bar named ``label``."""
        from tqdm import tqdm

        return [self.measure(c) for c in tqdm(clips, desc=f"transcribing: {label}", unit="clip", disable=None)]


def music_meter(model_dir: Any = None, device: str = "cpu") -> tuple[MusicMeter | None, str | None]:
    """(a meter, None), or (None, why) when no folder is given and no transcriber is bundled.

    A folder that is given and cannot be loaded raises (:class:`audiogen.checkpoint.CheckpointError`).
    """
    from audiogen.transcriber import bundled_transcriber_dir

    if model_dir is None and not (bundled_transcriber_dir() / "transcriber.safetensors").is_file():
        return None, f"no transcriber is bundled ({bundled_transcriber_dir()}): music metrics left out"
    return MusicMeter(model_dir, device), None


LABELS = {"notes_per_second": "notes/s", "polyphony": "polyphony", "pitch_range": "pitch range",
          "ioi_entropy": "IOI entropy", "velocity_spread": "velocity spread", "pitch_class_js": "pitch-class JS"}


def music_table(background: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines: each set's metric means, then each row's distance to the background with its interval.

    Args:
        background: :func:`set_summary` of the background set.
        rows: report rows; those with a ``"music"`` entry (:func:`compare_sets`) are shown.
    """
    shown = [r for r in rows if r.get("music")]
    names = list(SCALARS)
    lines = ["Music metrics through the transcriber (`audiogen.music_metrics`; means over clips). Notes/s: onsets per "
             "second; polyphony: keys sounding when any sounds; pitch range: semitones, 5th-95th percentile; IOI "
             "entropy: bits over 24 log-spaced inter-onset bins; velocity spread: standard deviation (MIDI units).",
             "", "| set | " + " | ".join(LABELS[k] for k in names) + " |", "|---|" + "---:|" * len(names),
             "| background | " + " | ".join(f"{background[k]:.2f}" for k in names) + " |"]
    lines += [f"| {r['name']} | " + " | ".join(f"{r['music']['summary'][k]:.2f}" for k in names) + " |"
              for r in shown]
    keys = [*names, "pitch_class_js"]
    lines += ["", "Each row minus the background per metric (difference of the means; pitch classes: Jensen-Shannon "
              "distance of the pooled histograms, bits), with its 95 % bootstrap interval over pieces; an interval "
              "holding 0 cannot tell the row from the background; * marks an interval that leaves out its estimate "
              "(the JS distance's upward bias in resamples).", "",
              "| row | " + " | ".join(LABELS[k] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for r in shown:
        music = r["music"]
        outside = set(music.get("interval_excludes_estimate", []))
        cells = [f"{music['difference'][k]:+.3g} [{music['interval'][k][0]:.3g}, {music['interval'][k][1]:.3g}]"
                 + ("*" if k in outside else "") for k in keys]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return lines

