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
Exit status: 0 when every chosen piece rendered, 1 when some failed (each listed), 2 for a bad
option or input (named in one line), 3 when FluidSynth or its SoundFont is missing or the disk is full.
"""

from __future__ import annotations

import argparse
import os
import sys

from audiogen.cli.arguments import OneLineParser, check_output_folder, positive_float, positive_int

PROG = "make_demo_dataset"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (MAESTRO layout)")
    parser.add_argument("--midi-dir", help="MIDI collection to render (default: music21's corpus)")
    parser.add_argument(
        "--metadata", help="MAESTRO-layout CSV/JSON of --midi-dir, whose splits are kept (default: a maestro*.csv "
        "in --midi-dir, else an 80/10/10 split by file name)"
    )
    parser.add_argument(
        "--hours", type=positive_float, help="cap on total rendered hours, all splits kept (default: no cap)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=os.cpu_count() or 1, help="parallel renders (default: %(default)s, "
        "the CPU count)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def check_sources(args: argparse.Namespace) -> None:
    """Refuse an output that is a file and a MIDI folder with nothing to render, before rendering."""
    from audiogen.demo_data import midi_dir_candidates

    check_output_folder("--out", args.out)
    if args.midi_dir is not None and not midi_dir_candidates(args.midi_dir, args.metadata):
        raise ValueError(f"--midi-dir {args.midi_dir}: no MIDI files (.mid, .midi) and no MAESTRO metadata rows")


def render(args: argparse.Namespace) -> int:
    from audiogen.cli import EXIT_ENVIRONMENT, EXIT_PARTIAL
    from audiogen.demo_data import RenderError, build_demo_dataset, describe_trimming

    check_sources(args)  # a DataError (a ValueError) names the folder or file: status 2
    try:
        report = build_demo_dataset(
            args.out,
            midi_dir=args.midi_dir,
            metadata=args.metadata,
            hours=args.hours,
            workers=args.workers,
            progress=not args.no_progress,
        )
    except RenderError as err:  # FluidSynth or its SoundFont is missing: the machine, not the options
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    hours = sum(r.duration for r in report.records) / 3600
    print(f"wrote {len(report.records)} pieces ({hours:.2f} h) and {report.csv_path}")
    if report.trimmed:
        print(describe_trimming(report.trimmed))
    for name, reason in report.failed:
        print(f"failed: {name}: {reason}")
    return EXIT_PARTIAL if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.metadata and not args.midi_dir:
        parser.error("--metadata needs --midi-dir")
    return one_line_errors(PROG, lambda: render(args))


if __name__ == "__main__":
    sys.exit(main())
