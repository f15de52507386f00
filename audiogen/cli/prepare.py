"""``audiogen-prepare``: build the mel/audio cache that training reads.

The work is done by :mod:`audiogen.preparation` (and :mod:`audiogen.sources`, :mod:`audiogen.maestro`,
:mod:`audiogen.cache`); this module only parses arguments and reports.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

DESCRIPTION = """\
Prepare a cache of memory-mapped audio and log-mel per piece (per split) for training.

  audiogen-prepare --maestro ROOT --out CACHE [--config configs/audio/default.yaml] [--workers N] [--shard I/N]
  audiogen-prepare --audio-dir DIR --out CACHE ...      any folder of audio, split 80/10/10 by file
  audiogen-prepare --merge CACHE_A CACHE_B ... --out CACHE
  audiogen-prepare --reindex --out CACHE

MAESTRO: the root holds maestro-v3.0.0.json/.csv (or v2/v1); audio listed as .wav may be a .flac
beside it and vice versa. Resumable: a rerun skips finished pieces, and a run killed at any
moment leaves no half-written piece (each is written under a temporary name and renamed).
Shards: --shard I/N (0 <= I < N) takes a disjoint, deterministic subset. Shards may write into
one shared CACHE folder (the index is rebuilt from the piece folders; run --reindex once all are
done), or into separate folders merged with --merge (piece folders are hard-linked or copied).
Corrupt, missing, silent and too-short files are skipped and reported.
Exit status: 0 when nothing was skipped, 1 when some pieces were skipped, 2 for usage errors.
"""


def _shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected I/N, got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise argparse.ArgumentTypeError(f"need 0 <= I < N, got {text!r}")
    return index, count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiogen-prepare", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
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
    parser.add_argument("--min-seconds", type=float, default=1.0, help="skip shorter files (default 1 s)")
    parser.add_argument("--silence-db", type=float, default=-60.0, help="skip files peaking below (dBFS, default -60)")
    parser.add_argument("--audio-dtype", choices=["int16", "float32"], default="int16", help="stored audio type")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2)
        return int(exit_.code or 0)
    if args.workers < 1:
        print("error: --workers must be >= 1", file=sys.stderr)
        return 2

    from audiogen.cache import merge_caches, write_index
    from audiogen.config import ConfigError
    from audiogen.frontend import FrontendMismatchError
    from audiogen.maestro import list_maestro
    from audiogen.preparation import PrepareOptions, prepare_cache
    from audiogen.sources import DataError, list_audio_dir

    try:
        if args.reindex:
            index = write_index(args.out)
            print(f"{args.out}: index rebuilt: {index['totals']}, {len(index['skipped'])} skipped")
            return 1 if index["skipped"] else 0
        if args.merge:
            added = merge_caches(args.merge, args.out)
            index = write_index(args.out)
            print(f"{args.out}: merged {added} pieces: {index['totals']}, {len(index['skipped'])} skipped")
            return 1 if index["skipped"] else 0
        frontend = _load_frontend(args.config)
        options = PrepareOptions(
            min_seconds=args.min_seconds, silence_dbfs=args.silence_db, audio_dtype=args.audio_dtype
        )
        pieces = list_maestro(args.maestro, args.metadata) if args.maestro else list_audio_dir(args.audio_dir)
        if not pieces:
            print("error: no pieces found", file=sys.stderr)
            return 2
        report = prepare_cache(
            pieces,
            args.out,
            frontend,
            workers=args.workers,
            options=options,
            shard=args.shard,
            progress=not args.no_progress,
        )
    except (DataError, ConfigError, FrontendMismatchError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"cache: {args.out}")
    return 1 if report.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
