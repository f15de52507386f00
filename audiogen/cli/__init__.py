"""Thin command-line layer: each subcommand parses arguments and calls the library.

``audiogen generate|prepare|fad ...`` dispatches to the same functions as the console scripts
``generate``, ``audiogen-prepare`` and ``audiogen-fad``; ``encode``, ``decode`` and ``morph``
(the VAE as a codec, and morphs between clips) live only here.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import inspect
import sys
from collections.abc import Callable

# One exit status convention for every user-facing command (console scripts, train_*.py, tools/*.py).
EXIT_OK = 0
EXIT_PARTIAL = 1  # finished, but some inputs were skipped (each listed); what was written is whole
EXIT_USAGE = 2  # a bad option or input file, named in one line; nothing was written (argparse uses 2 too)
EXIT_ENVIRONMENT = 3  # the machine failed the command: disk full, out of memory; nothing half-written
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM; nothing half-written
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

SUBCOMMANDS = {  # name: ("module:function", what it does, in one line)
    "generate": ("audiogen.cli.generate:main", "generate piano music from the bundled (or given) models"),
    "prepare": ("audiogen.cli.prepare:main", "turn MAESTRO or a folder of audio into a training cache"),
    "fad": ("audiogen.cli.fad:main", "Frechet Audio Distance: embed audio sets and score them"),
    "encode": ("audiogen.cli.codec:encode_main", "compress audio to VAE latents (.npz)"),
    "decode": ("audiogen.cli.codec:decode_main", "turn latents (.npz) back into audio"),
    "morph": ("audiogen.cli.codec:morph_main", "morph between two clips through the latent space"),
    "app": ("audiogen.cli.app:main", "a browser page to generate, vary, morph and encode (needs the app extra)"),
    "info": ("audiogen.cli.info:main", "print a generated clip's provenance: seed, models, how to make it again"),
    "listen": ("audiogen.cli.listen:main", "serve a blind listening test of real and generated clips; report MOS"),
    "transcribe": ("audiogen.cli.transcribe:main", "transcribe piano audio to MIDI files with the bundled transcriber"),
    "export-onnx": ("audiogen.cli.export_onnx:main", "write the vocoder and the VAE and prior stages as ONNX graphs"),
}


def version_line(prog: str) -> str:
    from audiogen import __version__

    return f"audiogen {__version__}" if prog == "audiogen" else f"{prog} (audiogen) {__version__}"


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """``--version`` on a console script's parser, printing the same line as ``audiogen --version``."""
    parser.add_argument("--version", action="version", version=version_line(parser.prog))


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: audiogen SUBCOMMAND [options]   (audiogen SUBCOMMAND --help for its options)", "",
             "subcommands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += ["", "  --version  print the version and exit"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":
        print(version_line("audiogen"))
        return EXIT_OK
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return EXIT_OK if argv else EXIT_USAGE
    if argv[0] not in SUBCOMMANDS:
        print(f"audiogen: error: unknown subcommand {argv[0]!r}; choose from {', '.join(SUBCOMMANDS)}",
              file=sys.stderr)
        return EXIT_USAGE
    module, function = SUBCOMMANDS[argv[0]][0].split(":")
    command = getattr(importlib.import_module(module), function)
    if "prog" in inspect.signature(command).parameters:  # its help and errors name it as typed
        return command(argv[1:], prog=f"audiogen {argv[0]}")
    return command(argv[1:])


def one_line_errors(prog: str, run: Callable[[], int]) -> int:
    """Run a command; errors end in one line and the status of the convention above, never a traceback."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"{prog}: error: out of memory", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except BrokenPipeError:
        return quiet_broken_pipe()
    except Exception as err:
        # Every error users can cause is a ValueError (the project's own errors derive from it:
        # AudioError, ConfigError, CheckpointError, DataError, ...) or an OSError; nothing is
        # imported here, so a one-line error costs no torch import.
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            where = f" writing {err.filename}" if err.filename else ""
            print(f"{prog}: error: no space left on the device{where}", file=sys.stderr)
            return EXIT_ENVIRONMENT
        if isinstance(err, (ValueError, OSError)):
            print(f"{prog}: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        raise


def quiet_broken_pipe() -> int:
    """The reader of our standard output went away (``cmd | head``): stop quietly, status 0.

    Standard output is pointed at /dev/null so the interpreter's final flush cannot raise again
    and print "Exception ignored ... BrokenPipeError" on the way out.
    """
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OK
