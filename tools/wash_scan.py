"""Search audio files for the broadband "wash" a drifting generator falls into.

    python tools/wash_scan.py FILE_OR_DIR... [--split test] [--json OUT]

A folder with a MAESTRO-layout CSV is read for its ``--split`` (default: every split); any
other folder gives all its audio files. For each file it prints the wash windows
(:func:`audiogen.descriptors.wash_windows`: 6-s windows of sounding audio whose median tonal
ratio is below 0.5) and ends with one line: how many files, how many hours, how many flagged.
Exit status 0 whatever it finds; 2 on bad input (named in one line: a missing folder, a split the
CSV lacks, an unreadable file, a bad number); 3 when the disk is full.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from audiogen.cli.arguments import OneLineParser, check_output_file, positive_int

PROG = "wash_scan"


def files_of(sources: list[str], split: str | None) -> list[Path]:
    """The audio files of every source; a folder with a MAESTRO CSV gives its ``split`` (None: all).

    Raises:
        ValueError: a CSV has no row of ``split`` (its splits are named), or a source is empty.
        FileNotFoundError: a source does not exist.
    """
    from audiogen.embeddings import list_audio_files

    out: list[Path] = []
    for source in map(Path, sources):
        csvs = sorted(source.glob("maestro*.csv")) if source.is_dir() else []
        if csvs:
            with open(csvs[0], newline="") as handle:
                rows = list(csv.DictReader(handle))
            if rows and "audio_filename" not in rows[0]:
                raise ValueError(f"{csvs[0]}: no audio_filename column (not MAESTRO metadata)")
            chosen = [source / r["audio_filename"] for r in rows if split in (None, r.get("split"))]
            if not chosen:
                splits = sorted({r.get("split") or "?" for r in rows})
                raise ValueError(f"--split {split!r}: {csvs[0]} has no such rows (its splits: {', '.join(splits)})")
            out += chosen
        else:
            out += list_audio_files(source)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="audio files or folders")
    parser.add_argument(
        "--split", default=None, help="MAESTRO split of a folder with a CSV (default: every split)"
    )
    parser.add_argument(
        "--sample-rate", type=positive_int, default=22050, help="rate the audio is read at, Hz (default: %(default)s)"
    )
    parser.add_argument("--json", default=None, help="write every file's wash windows here (default: not written)")
    return parser


def scan(args: argparse.Namespace) -> int:
    check_output_file("--json", args.json)
    files = files_of(args.sources, args.split)

    from tqdm import tqdm

    from audiogen.audio import load_audio
    from audiogen.descriptors import wash_windows
    from audiogen.embeddings import write_atomically

    found, seconds = {}, 0.0
    for path in tqdm(files, desc="scanning", unit="file", disable=None):
        audio, rate = load_audio(path, sample_rate=args.sample_rate)  # AudioError names the file: status 2
        seconds += len(audio) / rate
        windows = wash_windows(audio, rate)
        found[str(path)] = windows
        if windows:
            spans = ", ".join(f"{a:.0f}-{b:.0f} s ({r:.2f})" for a, b, r in windows[:6])
            tqdm.write(f"{path}: wash at {spans}{' ...' if len(windows) > 6 else ''}")
    flagged = sum(bool(w) for w in found.values())
    print(f"{len(files)} files, {seconds / 3600:.2f} h: {flagged} with a wash window")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(found, indent=1) + "\n"
        write_atomically(args.json, lambda handle: handle.write(text.encode()))
    return 0


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    args = build_parser().parse_args(argv)
    return one_line_errors(PROG, lambda: scan(args))


if __name__ == "__main__":
    sys.exit(main())
