"""``audiogen-prepare``: build the mel/audio cache that training reads.

The work is done by :mod:`audiogen.preparation` (and :mod:`audiogen.sources`, :mod:`audiogen.maestro`,
:mod:`audiogen.cache`); this module only parses arguments and reports.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from audiogen.audio import AUDIO_SUFFIXES
from audiogen.cli import (
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    NO_SPACE,
    add_version_option,
    one_line_errors,
)

if TYPE_CHECKING:  # the library is imported when a command runs, so that --help stays fast
    from audiogen.maestro import MaestroListing
    from audiogen.sources import SourcePiece, SplitFractions

PROG = "audiogen-prepare"
MAX_WARNINGS = 10  # repeated-row warnings printed one by one; the rest are counted
DESCRIPTION = f"""\
Prepare a cache of memory-mapped audio and log-mel per piece (per split) for training.

  audiogen-prepare --maestro ROOT --out CACHE [--config configs/audio/default.yaml] [--workers N] [--shard I/N]
  audiogen-prepare --audio-dir DIR --out CACHE [--val-fraction 0.1] [--test-fraction 0.1] ...
  audiogen-prepare --merge CACHE_A CACHE_B ... --out CACHE
  audiogen-prepare --reindex --out CACHE

MAESTRO: the root holds maestro-v3.0.0.json/.csv (or v2/v1) and the year folders; audio listed
as .wav may be a .flac beside it and vice versa. Each audio file is prepared once: a repeated
row is reported and dropped, and a file listed in two splits goes to the split of its first row.
Rows are numbered as a spreadsheet shows them (the header is row 1).
--audio-dir: every file ending in {' '.join(AUDIO_SUFFIXES)} under DIR,
following links to folders; a file's split comes from a hash of its path (80/10/10 unless
--val-fraction / --test-fraction say otherwise), so adding files never moves others. Dangling
links, unreadable files and second paths to one recording are reported as skipped.
Resumable: a rerun skips finished pieces, and a run killed at any moment leaves no half-written
piece (each is written under a temporary name and renamed); a full disk stops the run the same
way, and a rerun once there is room continues.
Shards: --shard I/N (0 <= I < N) takes a disjoint, deterministic subset. Shards may write into
one shared CACHE folder (the index is rebuilt from the piece folders; run --reindex once all are
done), or into separate folders merged with --merge (piece folders are hard-linked or copied).
Corrupt, missing, silent and too-short files are skipped and reported.
Skipped pieces are listed once each (past 10 of a kind, counted; all are in CACHE/index.json).
Exit status: 0 when nothing was skipped, 1 when some pieces were skipped, 2 for a bad option or
input (one line), 3 when the disk is full or memory runs out, 130 when interrupted.
"""


def _shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected I/N, got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise argparse.ArgumentTypeError(f"need 0 <= I < N, got {text!r}")
    return index, count


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--maestro", metavar="ROOT", help="MAESTRO root (metadata + audio)")
    source.add_argument("--audio-dir", metavar="DIR", help="any folder of audio files")
    source.add_argument("--merge", nargs="+", metavar="CACHE", help="merge these caches into --out")
    source.add_argument("--reindex", action="store_true", help="only rebuild --out's index.json")
    parser.add_argument("--out", required=True, metavar="CACHE", help="cache folder")
    parser.add_argument("--metadata", help="MAESTRO metadata file (default: found in ROOT)")
    parser.add_argument("--config", help="frontend YAML (default: the built-in defaults = configs/audio/default.yaml)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--shard", type=_shard, metavar="I/N", help="prepare only shard I of N (0-based)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="--audio-dir: share of files for validation (default 0.1, in steps of 0.01)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        metavar="F",
        help="--audio-dir: share of files for test (default 0.1, in steps of 0.01)",
    )
    parser.add_argument("--min-seconds", type=float, default=1.0, help="skip shorter files (default 1 s)")
    parser.add_argument("--silence-db", type=float, default=-60.0, help="skip files peaking below (dBFS, default -60)")
    parser.add_argument("--audio-dtype", choices=["int16", "float32"], default="int16", help="stored audio type")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_version_option(parser)
    return parser


def _load_frontend(path: str | None):
    from audiogen.config import from_dict, read_yaml
    from audiogen.frontend import FrontendConfig

    if path is None:
        return FrontendConfig()
    data = read_yaml(path)
    # a trainer config carries the frontend in its own section; an audio config is the frontend
    section = data.get("frontend") if isinstance(data.get("frontend"), dict) else data
    return from_dict(FrontendConfig, section, path)


def warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _split_fractions(args: argparse.Namespace) -> SplitFractions:
    from audiogen.sources import DataError, SplitFractions

    given = {"validation": args.val_fraction, "test": args.test_fraction}
    if args.maestro and any(v is not None for v in given.values()):
        raise DataError("--val-fraction and --test-fraction apply to --audio-dir only (MAESTRO has official splits)")
    defaults = SplitFractions()
    try:
        return SplitFractions(**{k: getattr(defaults, k) if v is None else v for k, v in given.items()})
    except DataError as err:
        named = {"validation": "--val-fraction", "test": "--test-fraction"}
        option = named.get(str(err).split()[0], "--val-fraction + --test-fraction")
        raise DataError(f"{option}: {err}") from None


def empty_split_warning(pieces: list[SourcePiece], fractions: SplitFractions, folder: str) -> str | None:
    """One line when validation or test gets no file of an --audio-dir folder, with the options that fill them."""
    from audiogen.sources import fractions_that_fill_every_split

    usable = [p for p in pieces if p.problem is None]
    empty = [s for s in ("validation", "test") if not any(p.split == s for p in usable)]
    if not usable or not empty:
        return None
    train = sum(p.split == "train" for p in usable)
    line = (
        f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty: {train} of the "
        f"{len(usable)} files of {folder} fell in train (the split is by a hash of each path, "
        f"{100 - fractions.percent('validation') - fractions.percent('test')}/{fractions.percent('validation')}/"
        f"{fractions.percent('test')})"
    )
    better = fractions_that_fill_every_split([p.key for p in usable], fractions)
    if better is None:
        return line + "; too few files to split: validation and training will see the same music"
    return line + f"; --val-fraction {better.validation:.2f} --test-fraction {better.test:.2f} gives each split a file"


def missing_audio_line(listing: MaestroListing) -> str:
    """The one line for a MAESTRO folder none of whose listed audio is there."""
    from audiogen.maestro import find_audio_root

    line = (
        f"{len(listing.missing)} of {len(listing.pieces)} audio files listed in {listing.metadata} are missing "
        f"under {listing.root} (e.g. {listing.missing[0]}); is --maestro the folder that holds the year folders?"
    )
    found = find_audio_root(listing.root, listing.missing[0])
    return line + (f" They are under {found}: pass --maestro {found}" if found is not None else "")


def _list_pieces(args: argparse.Namespace) -> list[SourcePiece]:
    """The pieces to prepare, with one warning line per problem of the listing; refuses an empty one."""
    from audiogen.maestro import read_maestro_listing
    from audiogen.sources import DataError, list_audio_dir

    fractions = _split_fractions(args)
    if args.audio_dir:
        pieces = list_audio_dir(args.audio_dir, fractions)
        if not pieces:
            raise DataError(f"{args.audio_dir}: no audio files in this folder")
        note = empty_split_warning(pieces, fractions, args.audio_dir)
        if note:
            warn(note)
        return pieces
    listing = read_maestro_listing(args.maestro, args.metadata)
    if not listing.pieces:
        raise DataError(f"{listing.metadata}: lists no pieces")
    if len(listing.missing) == len(listing.pieces):
        raise DataError(missing_audio_line(listing))
    for line in listing.repeats[:MAX_WARNINGS]:
        warn(line)
    if len(listing.repeats) > MAX_WARNINGS:
        warn(f"... and {len(listing.repeats) - MAX_WARNINGS} more repeated rows in {listing.metadata}")
    if listing.missing:
        warn(
            f"{len(listing.missing)} of {len(listing.pieces)} audio files listed in {listing.metadata} are "
            f"missing under {listing.root}; they are listed as skipped below"
        )
    return listing.pieces


def _complete_pieces(cache_dir: str) -> int:
    from audiogen.cache import build_index

    try:
        return sum(len(entries) for entries in build_index(cache_dir)["splits"].values())
    except (OSError, ValueError):
        return 0


def run(args: argparse.Namespace) -> int:
    from audiogen.cache import merge_caches, write_index
    from audiogen.preparation import PrepareOptions, prepare_cache

    if args.workers < 1:
        raise ValueError("--workers must be >= 1")
    if args.reindex:
        index = write_index(args.out)
        print(f"{args.out}: index rebuilt: {index['totals']}, {len(index['skipped'])} skipped")
        return EXIT_PARTIAL if index["skipped"] else EXIT_OK
    if args.merge:
        added = merge_caches(args.merge, args.out)
        index = write_index(args.out)
        print(f"{args.out}: merged {added} pieces: {index['totals']}, {len(index['skipped'])} skipped")
        return EXIT_PARTIAL if index["skipped"] else EXIT_OK
    frontend = _load_frontend(args.config)
    options = PrepareOptions(min_seconds=args.min_seconds, silence_dbfs=args.silence_db, audio_dtype=args.audio_dtype)
    pieces = _list_pieces(args)
    try:
        report = prepare_cache(
            pieces,
            args.out,
            frontend,
            workers=args.workers,
            options=options,
            shard=args.shard,
            progress=not args.no_progress,
        )
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise
        print(
            f"{PROG}: error: no space left on the device writing {Path(args.out)}: {_complete_pieces(args.out)} "
            "pieces are complete in the cache; free some space and rerun the same command to continue",
            file=sys.stderr,
        )
        return EXIT_ENVIRONMENT
    print(report.summary(args.out))
    print(f"cache: {args.out}")
    return EXIT_PARTIAL if report.skipped else EXIT_OK


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exit_:  # --help, --version (0) or a usage error (2)
        return EXIT_USAGE if exit_.code not in (0, None) else EXIT_OK
    return one_line_errors(prog, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
