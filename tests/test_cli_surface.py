"""The command line as users meet it: versions, the subcommand list, names as typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import audiogen
from audiogen.cli import SUBCOMMANDS

BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", ["audiogen", "generate", "audiogen-prepare", "audiogen-fad"])
def test_every_console_script_says_its_version(script):
    result = _run(str(BIN / script), "--version")
    assert result.returncode == 0
    assert result.stdout.strip().endswith(audiogen.__version__)


def test_help_lists_every_subcommand_with_a_line_and_an_unknown_one_is_named():
    listing = _run(str(BIN / "audiogen"), "--help")
    assert listing.returncode == 0
    for name in SUBCOMMANDS:
        assert any(line.split()[:1] == [name] and len(line.split()) > 2 for line in listing.stdout.splitlines()), name
    wrong = _run(str(BIN / "audiogen"), "generat")
    assert wrong.returncode == 2 and "unknown subcommand 'generat'" in wrong.stderr


@pytest.mark.parametrize("name", ["generate", "prepare", "fad", "encode", "info"])
def test_a_subcommand_names_itself_as_typed(name):
    result = _run(str(BIN / "audiogen"), name, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: audiogen {name}")
