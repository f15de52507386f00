"""Transcriber accuracy and speed on held-out rendered piano: note onset F1 (mir_eval, 50 ms).

    python tools/transcriber_eval.py --cache data/cache --midi-dir data/demo [--split test] \\
        [--pieces 30] [--seconds 30] [--model DIR] [--json REPORT.json] [--sweep]

Each of the first ``--pieces`` pieces of the cache's split (sorted by name) gives one excerpt of
``--seconds`` from its middle; its reference notes are the piece's MIDI shifted by the demo
renderer's trim (:func:`audiogen.transcription.rendered_notes`). The transcriber hears the
excerpt's audio (frontend, network and decoding all timed: the speed is audio seconds per wall
second, "× real time", on the threads torch is given), and its notes are scored against the
reference on onset and pitch (offsets ignored), pooled over all excerpts' notes.

``--sweep`` also scores onset thresholds 0.2 … 0.8, and each with minimum gaps of 0 … 100 ms
between two onsets of one key, on the same probabilities (for choosing the defaults on the
validation split, never on test).

Exit status (:mod:`audiogen.cli`): 0 done; 2 a bad option or input, named in one line before
any work (a missing folder, a split it lacks); 3 the disk is full.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from audiogen.cli.arguments import OneLineParser, float_at_least, positive_int

PROG = "transcriber_eval"
SWEEP = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
GAP_SWEEP = (0.0, 0.05, 0.08, 0.1)  # seconds


def build_parser() -> argparse.ArgumentParser:
    from audiogen.cli import add_version_option

    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="prepared cache (audiogen-prepare --out)")
    p.add_argument("--midi-dir", required=True, help="MAESTRO-layout folder with each piece's MIDI (data/demo)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"],
                   help="split to score (default: %(default)s)")
    p.add_argument("--pieces", type=positive_int, default=30, help="pieces, first by name (default: %(default)s)")
    p.add_argument("--seconds", type=float_at_least(1.0), default=30.0,
                   help="excerpt length from each piece's middle (default: %(default)s)")
    p.add_argument("--model", help="transcriber folder (default: the bundled one)")
    p.add_argument("--onset-threshold", type=float, default=None, help="(default: the CLI's)")
    p.add_argument("--frame-threshold", type=float, default=None, help="(default: the CLI's)")
    p.add_argument("--min-gap", type=float, default=None, help="(default: the CLI's)")
    p.add_argument("--sweep", action="store_true", help="also score onset thresholds " + ", ".join(map(str, SWEEP)))
    p.add_argument("--json", help="write the report here as JSON")
    add_version_option(p)
    return p


def excerpt(cache, entry, labels, seconds: float) -> tuple[np.ndarray, object]:
    """(audio (T,), reference notes in seconds of the excerpt) from the middle of a piece."""
    rate = cache.frontend.sample_rate
    length = min(int(seconds * rate), entry.n_samples)
    start = (entry.n_samples - length) // 2
    notes = labels.notes(entry).between(start / rate, (start + length) / rate)
    return cache.audio_window(entry, start, length), notes


def evaluate(args: argparse.Namespace) -> dict:
    import torch

    from audiogen.cache import open_cache
    from audiogen.frontend import FrontendConfig, MelFrontend, check_same_frontend
    from audiogen.transcriber import (
        DEFAULT_FRAME_THRESHOLD,
        DEFAULT_MIN_GAP,
        DEFAULT_ONSET_THRESHOLD,
        bundled_transcriber_dir,
        load_transcriber,
        transcribe_audio,
    )
    from audiogen.transcription import NoteLabels, decode_notes, note_scores, pooled_scores

    cache = open_cache(args.cache)
    entries = cache.pieces(args.split)[: args.pieces]
    if not entries:
        raise ValueError(f"{args.cache}: no pieces in split {args.split!r}")
    if not Path(args.midi_dir).is_dir():
        raise ValueError(f"--midi-dir {args.midi_dir}: folder not found")
    model_dir = args.model or bundled_transcriber_dir()
    model, saved = load_transcriber(model_dir)
    frontend_config = FrontendConfig(**(saved.get("frontend") or {}))
    check_same_frontend(frontend_config, cache.frontend, f"cache {args.cache}")
    frontend = MelFrontend(frontend_config)
    onset_t = DEFAULT_ONSET_THRESHOLD if args.onset_threshold is None else args.onset_threshold
    frame_t = DEFAULT_FRAME_THRESHOLD if args.frame_threshold is None else args.frame_threshold
    min_gap = DEFAULT_MIN_GAP if args.min_gap is None else args.min_gap
    labels = NoteLabels(args.midi_dir)
    per_clip, probs_kept, audio_seconds, wall = [], [], 0.0, 0.0
    for entry in entries:
        audio, reference = excerpt(cache, entry, labels, args.seconds)
        started = time.perf_counter()
        notes, probs = transcribe_audio(model, frontend, audio, onset_t, frame_t, min_gap)
        wall += time.perf_counter() - started
        audio_seconds += len(audio) / frontend_config.sample_rate
        per_clip.append((note_scores(reference, notes), len(reference), len(notes)))
        if args.sweep:
            probs_kept.append((reference, {k: probs[k].numpy() for k in ("onset", "frame", "velocity")}))
    report = {
        "model": str(model_dir), "split": args.split, "pieces": len(entries), "seconds": args.seconds,
        "audio_seconds": round(audio_seconds, 1), "reference_notes": sum(n for _, n, _ in per_clip),
        "onset_threshold": onset_t, "frame_threshold": frame_t, "min_gap": min_gap,
        **pooled_scores(per_clip),
        "clip_f1_mean": float(np.mean([s["f1"] for s, _, _ in per_clip])),
        "x_real_time": round(audio_seconds / max(wall, 1e-9), 1), "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if args.sweep:
        rate = frontend_config.frame_rate
        report["sweep"] = {}
        for threshold in SWEEP:
            clips = []
            for reference, p in probs_kept:
                notes = decode_notes(p["onset"], p["frame"], p["velocity"], rate, threshold, frame_t, min_gap)
                clips.append((note_scores(reference, notes), len(reference), len(notes)))
            report["sweep"][str(threshold)] = pooled_scores(clips)
        report["gap_sweep"] = {}
        for threshold in SWEEP:
            for gap in GAP_SWEEP:
                clips = []
                for reference, p in probs_kept:
                    notes = decode_notes(p["onset"], p["frame"], p["velocity"], rate, threshold, frame_t, gap)
                    clips.append((note_scores(reference, notes), len(reference), len(notes)))
                report["gap_sweep"][f"{threshold}/{gap}"] = pooled_scores(clips)
    return report


def checked_run(args: argparse.Namespace) -> int:
    report = evaluate(args)
    print(f"{report['split']}: {report['pieces']} pieces x {report['seconds']:g} s ({report['reference_notes']} "
          f"notes): onset F1 {report['f1']:.3f} (precision {report['precision']:.3f}, recall "
          f"{report['recall']:.3f}) at onset threshold {report['onset_threshold']}, min gap {report['min_gap']} s; "
          f"{report['x_real_time']:.0f}x real time on {report['threads']} thread(s)")
    for threshold, scores in report.get("sweep", {}).items():
        print(f"  onset threshold {threshold}: F1 {scores['f1']:.3f} (P {scores['precision']:.3f}, "
              f"R {scores['recall']:.3f})")
    for key, scores in report.get("gap_sweep", {}).items():
        print(f"  onset threshold / min gap (s) {key}: F1 {scores['f1']:.3f} (P {scores['precision']:.3f}, "
              f"R {scores['recall']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    args = build_parser().parse_args(argv)
    return one_line_errors(PROG, lambda: checked_run(args))


if __name__ == "__main__":
    sys.exit(main())
