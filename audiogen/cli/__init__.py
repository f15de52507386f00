"""Thin command-line layer: each subcommand parses arguments and calls the library.

``audiogen generate|prepare|fad ...`` dispatches to the same functions as the console scripts
``generate``, ``audiogen-prepare`` and ``audiogen-fad``.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "generate": "audiogen.cli.generate",
    "prepare": "audiogen.cli.prepare",
    "fad": "audiogen.cli.fad",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        names = "|".join(SUBCOMMANDS)
        print(f"usage: audiogen {{{names}}} [options]  (audiogen SUBCOMMAND --help for each)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]])
    return module.main(argv[1:])
