"""Search audio files for the broadband "wash" a drifting generator falls into.

    python tools/wash_scan.py FILE_OR_DIR... [--split test] [--json OUT]

A folder with a MAESTRO-layout CSV is read for its ``--split`` (default: every split); any
other folder gives all its audio files. For each file it prints the wash windows
(:func:`audiogen.descriptors.wash_windows`: 6-s windows of sounding audio whose median tonal
ratio is below 0.5) and ends with one line: how many files, how many hours, how many flagged.
Exit status 0 whatever it finds; 2 on bad input.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def files_of(sources: list[str], split: str | None) -> list[Path]:
    from audiogen.fad import list_audio_files

    out: list[Path] = []
    for source in map(Path, sources):
        csvs = sorted(source.glob("maestro*.csv")) if source.is_dir() else []
        if csvs:
            with open(csvs[0], newline="") as handle:
                out += [source / r["audio_filename"] for r in csv.DictReader(handle) if split in (None, r["split"])]
        else:
            out += list_audio_files(source)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="audio files or folders")
    parser.add_argument("--split", default=None, help="MAESTRO split of a folder with a CSV (default: all)")
    parser.add_argument("--sample-rate", type=int, default=22050, help="rate the audio is read at (default 22050)")
    parser.add_argument("--json", default=None, help="write every file's wash windows here")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from audiogen.audio import AudioError, load_audio
    from audiogen.descriptors import wash_windows

    try:
        files = files_of(args.sources, args.split)
    except (OSError, ValueError) as err:
        print(f"wash_scan: error: {err}", file=sys.stderr)
        return 2
    if not files:
        print("wash_scan: error: no audio files found", file=sys.stderr)
        return 2
    found, seconds = {}, 0.0
    for path in tqdm(files, desc="scanning", unit="file", disable=None):
        try:
            audio, rate = load_audio(path, sample_rate=args.sample_rate)
        except AudioError as err:
            print(f"wash_scan: error: {err}", file=sys.stderr)
            return 2
        seconds += len(audio) / rate
        windows = wash_windows(audio, rate)
        found[str(path)] = windows
        if windows:
            spans = ", ".join(f"{a:.0f}-{b:.0f} s ({r:.2f})" for a, b, r in windows[:6])
            tqdm.write(f"{path}: wash at {spans}{' ...' if len(windows) > 6 else ''}")
    flagged = sum(bool(w) for w in found.values())
    print(f"{len(files)} files, {seconds / 3600:.2f} h: {flagged} with a wash window")
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
