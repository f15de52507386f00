"""`audiogen listen`: serve a blind listening test of real and generated clips, or report its results.

    audiogen listen --real DIR --generated DIR --db results.sqlite [--port 8000] [--host 127.0.0.1]
    audiogen listen --report results.sqlite [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

from audiogen.cli import EXIT_OK, add_version_option, one_line_errors
from audiogen.cli.arguments import int_at_least, non_negative_int, positive_float, positive_int


def build_parser(prog: str = "audiogen listen") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Serve a local web page of blind, randomised trials of real and generated clips "
        "(a 1-5 opinion score and a real-or-generated answer per clip, each stored in SQLite as it is given; "
        "listeners resume by name), or print the report of a results database.")
    p.add_argument("--real", metavar="DIR", help="folder of real clips (WAV/FLAC, searched recursively)")
    p.add_argument("--generated", metavar="DIR", help="folder of generated clips (WAV/FLAC)")
    p.add_argument("--db", metavar="FILE", help="results database (SQLite), created if missing, resumed if not")
    p.add_argument("--port", type=non_negative_int, default=8000, help="port to serve on; 0 picks a free one "
                   "(default: 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine "
                   "only; 0.0.0.0 for the local network)")
    p.add_argument("--trials", type=positive_int, help="clips per listener, half from each set where both have "
                   "enough (default: every clip)")
    p.add_argument("--seconds", type=positive_float, help="play only the first SECONDS of each clip "
                   "(default: whole clips)")
    p.add_argument("--report", metavar="FILE", help="print the MOS of each set and the rates at which listeners "
                   "were fooled, with intervals, from this results database (instead of serving)")
    p.add_argument("--json", action="store_true", help="with --report: print the report as JSON")
    p.add_argument("--draws", type=int_at_least(100), default=10000, help="with --report: bootstrap draws "
                   "(default: 10000)")
    p.add_argument("--seed", type=int, default=0, help="with --report: seed of the bootstrap (default: 0)")
    add_version_option(p)
    return p


SERVE_OPTIONS = ("real", "generated", "db", "port", "host", "trials", "seconds")
REPORT_OPTIONS = ("json", "draws", "seed")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One mode at a time, with what it needs (argparse's one-line error and status 2 otherwise)."""

    def given(names: tuple[str, ...]) -> list[str]:
        return [f"--{name}" for name in names if getattr(args, name) != parser.get_default(name)]

    if args.report is not None:
        if given(SERVE_OPTIONS):
            parser.error(f"--report reads a results database; it takes no {', '.join(given(SERVE_OPTIONS))}")
        return
    missing = [f"--{name}" for name in ("real", "generated", "db") if getattr(args, name) is None]
    if missing:
        parser.error(f"serving a test needs {', '.join(missing)} (or --report FILE for a report)")
    if given(REPORT_OPTIONS):
        parser.error(f"{', '.join(given(REPORT_OPTIONS))}: only with --report")


def report(args: argparse.Namespace) -> int:
    from audiogen.listening import format_report, load_answers, summarize

    summary = summarize(load_answers(args.report), draws=args.draws, seed=args.seed)
    if args.json:
        print(json.dumps(dict(summary, db=str(args.report)), indent=2))
    else:
        print("\n".join(format_report(summary, str(args.report))))
    return EXIT_OK


def serve(args: argparse.Namespace) -> int:
    from audiogen.cli.generate import sigterm_as_interrupt
    from audiogen.listening import ListeningSession, find_clips, split_trials
    from audiogen.listening_web import bind_socket, serve

    real, generated = find_clips(args.real, "real"), find_clips(args.generated, "generated")
    session = ListeningSession(real, generated, args.db, trials=args.trials, seconds=args.seconds)
    sock = bind_socket(args.host, args.port)
    per_listener = sum(split_trials(args.trials, len(real), len(generated)))

    def announce(url: str) -> None:
        print(f"audiogen listen: {len(real)} real and {len(generated)} generated clips, {per_listener} trials per "
              f"listener; answers go to {args.db}")
        print(f"open {url} in a browser (Ctrl-C stops; listeners resume where they stopped)", flush=True)

    with sigterm_as_interrupt():  # uvicorn hands the signal back after its shutdown: status 130, as Ctrl-C
        serve(session, sock, announce)
    return EXIT_OK


def main(argv: list[str] | None = None, prog: str = "audiogen listen") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return one_line_errors(prog, lambda: report(args) if args.report is not None else serve(args))


if __name__ == "__main__":
    sys.exit(main())
