"""Thin command-line layer: each subcommand parses arguments and calls the library.

``audiogen generate|prepare|fad ...`` dispatches to the same functions as the console scripts
``generate``, ``audiogen-prepare`` and ``audiogen-fad``; ``encode``, ``decode`` and ``morph``
(the VAE as a codec, and morphs between clips) live only here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

SUBCOMMANDS = {  # name: "module:function"
    "generate": "audiogen.cli.generate:main",
    "prepare": "audiogen.cli.prepare:main",
    "fad": "audiogen.cli.fad:main",
    "encode": "audiogen.cli.codec:encode_main",
    "decode": "audiogen.cli.codec:decode_main",
    "morph": "audiogen.cli.codec:morph_main",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        names = "|".join(SUBCOMMANDS)
        print(f"usage: audiogen {{{names}}} [options]  (audiogen SUBCOMMAND --help for each)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, function = SUBCOMMANDS[argv[0]].split(":")
    return getattr(importlib.import_module(module), function)(argv[1:])


def one_line_errors(prog: str, run: Callable[[], int]) -> int:
    """Run a command; errors users can cause end in one line and status 2, never a traceback."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        from audiogen.audio import AudioError
        from audiogen.checkpoint import CheckpointError
        from audiogen.config import ConfigError
        from audiogen.frontend import FrontendMismatchError

        if isinstance(err, (ValueError, OSError, AudioError, CheckpointError, ConfigError, FrontendMismatchError)):
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 2
        raise
