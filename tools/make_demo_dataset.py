#!/usr/bin/env python
"""Build a MAESTRO-layout demo dataset by rendering MIDI with FluidSynth (no download).

Examples:
    # music21's bundled public-domain scores (Bach chorales, a few piano pieces): always works
    python tools/make_demo_dataset.py --out data/demo21

    # real MAESTRO performances as MIDI, keeping their official splits, capped at 8 hours
    python tools/make_demo_dataset.py --midi-dir ../shared/data/maestro-midi \\
        --metadata ../shared/data/maestro-midi/maestro-midi.csv --hours 8 --out data/demo

Output: DIR/maestro-v3.0.0.csv plus the MIDI files and mono 16-bit FLACs at 44.1 kHz, each
normalised to -1 dBFS, rendered through the General MIDI acoustic grand piano of FluidR3_GM
(Debian packages `fluidsynth` and `fluid-soundfont-gm`). Rerunning keeps finished FLACs.
Exit status: 0 when every chosen piece rendered, 1 when some failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (MAESTRO layout)")
    parser.add_argument("--midi-dir", help="MIDI collection to render (default: music21's corpus)")
    parser.add_argument("--metadata", help="MAESTRO-layout CSV/JSON of --midi-dir (splits are kept)")
    parser.add_argument("--hours", type=float, help="cap on total rendered hours, all splits kept")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel renders")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.metadata and not args.midi_dir:
        parser.error("--metadata needs --midi-dir")
    if args.hours is not None and args.hours <= 0:
        parser.error("--hours must be positive")

    from audiogen.demo_data import RenderError, build_demo_dataset, describe_trimming
    from audiogen.sources import DataError

    try:
        report = build_demo_dataset(
            args.out,
            midi_dir=args.midi_dir,
            metadata=args.metadata,
            hours=args.hours,
            workers=args.workers,
            progress=not args.no_progress,
        )
    except (RenderError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    hours = sum(r.duration for r in report.records) / 3600
    print(f"wrote {len(report.records)} pieces ({hours:.2f} h) and {report.csv_path}")
    if report.trimmed:
        print(describe_trimming(report.trimmed))
    for name, reason in report.failed:
        print(f"failed: {name}: {reason}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
