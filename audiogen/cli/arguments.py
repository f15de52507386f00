"""Argument types shared by the commands: a bad number is refused by argparse, naming its option.

argparse turns an :class:`argparse.ArgumentTypeError` raised by a ``type=`` function into
``PROG: error: argument --OPTION: MESSAGE`` and exit status 2 (``EXIT_USAGE``), before any
work or heavy import starts. Each function here takes the text the user typed and returns the
value, or raises with a message that says what was expected and repeats what was typed.
:class:`OneLineParser` prints that line alone, as every other refusal is printed.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, ``PROG: error: MESSAGE``, and status 2.

    argparse prints the whole usage synopsis above the error (ten lines for ``audiogen-fad
    score``); every other refusal of the commands is one line, so this one is too (``--help``
    still shows the usage). Subparsers made by ``add_subparsers`` are of this class as well.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(text: str, kind: type[int] | type[float]) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    # nan passes every comparison below as False, and inf is no size or count anyone means
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A ``type=`` for integers ``>= minimum`` (e.g. 3 subset sizes for a line fit)."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"  # argparse names the type in some messages
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def float_at_least(minimum: float) -> Callable[[str], float]:
    """A ``type=`` for finite numbers ``>= minimum`` (e.g. clips of at least one embedding patch)."""

    def parse(text: str) -> float:
        value = _number(text, float)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum:g}, got {text!r}")
        return value

    parse.__name__ = f"number >= {minimum:g}"
    return parse


def positive_float(text: str) -> float:
    """A finite number ``> 0`` (seconds, hours, temperatures)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number ``>= 0`` (0 meaning "off" where the help says so)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """A number strictly between 0 and 1 (a confidence level: 0 and 1 give empty or unbounded intervals)."""
    value = _number(text, float)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {text!r}")
    return value


def resolve_device(name: str, option: str = "--device") -> str:
    """The torch device a ``--device`` value names ("auto": cuda when there is one, else cpu).

    Raises:
        ValueError: naming ``option``, for a name torch does not know or CUDA this machine lacks.
    """
    import torch  # only here: parsing the other options stays light

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"{option} {name!r}: not a torch device (cpu, cuda, cuda:1, ... or auto)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option} {name!r}: no CUDA device on this machine (use cpu or auto)")
    return name


def check_output_file(option: str, path: str | Path | None, force: bool = True) -> None:
    """Refuse an output file that names an existing folder, or an existing file without ``force``
    (no-clobber), before any work is spent on it."""
    if path is not None and Path(path).is_dir():
        raise ValueError(f"{option} {path}: is a folder; name the file to write")
    if path is not None and not force and os.path.lexists(path):
        raise ValueError(f"{option} {path}: already exists; pass --force to replace it")


def check_output_folder(option: str, path: str | Path | None) -> None:
    """Refuse an output folder that names an existing file, before any work is spent on it."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise ValueError(f"{option} {path}: exists and is not a folder")
