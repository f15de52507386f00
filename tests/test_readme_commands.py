"""Every command the README shows must run as written after its quick start, in a fresh shell.

The quick start makes a virtual environment and never activates it, so a command has to name the
venv's programs (`.venv/bin/generate`), and the scripts, configs and options it names must exist.
The commands are read from the README's shell code blocks; the quick start itself is what CI runs.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# programs a fresh shell has without the venv (Debian base, and what the quick start calls first)
SYSTEM_PROGRAMS = {"python3", "apt-get", "bash", "cd", "mkdir", "ls", "cat", "echo", "export", "head", "du"}
VENV_PROGRAMS = {"python", "pip", "accelerate", "ruff", "tensorboard"}  # installed with the project's extras


def shell_commands(markdown: str) -> list[str]:
    """The commands of fenced ```bash / ```sh blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", markdown, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
            commands += [part.strip() for part in re.split(r"&&|\|\||;|\|", line) if part.strip()]
    return commands


def console_scripts() -> set[str]:
    from importlib.metadata import distribution

    return {ep.name for ep in distribution("audiogen").entry_points if ep.group == "console_scripts"}


COMMANDS = shell_commands(README.read_text())


def test_the_readme_has_commands():
    assert any(c.startswith(".venv/bin/generate") for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_names_programs_that_exist_after_the_quick_start(command):
    words = shlex.split(command)
    program = words[0]
    if program.startswith(".venv/bin/"):
        name = program.removeprefix(".venv/bin/")
        assert name in console_scripts() | VENV_PROGRAMS, f"{program} is not installed by the quick start"
    else:
        assert program in SYSTEM_PROGRAMS, (f"{program!r} is not on a fresh shell's PATH after the quick start "
                                            f"(the venv is not activated): write .venv/bin/{program}")


@pytest.mark.parametrize("command", [c for c in COMMANDS if re.search(r"(tools/|train_)\S+\.py|configs/", c)])
def test_scripts_and_configs_a_command_names_exist(command):
    for word in shlex.split(command):
        value = word.split("=", 1)[-1]
        if re.fullmatch(r"(tools/\S+\.(py|sh)|train_\w+\.py|configs/\S+\.yaml)", value):
            assert (ROOT / value).is_file(), f"{command}: {value} does not exist"


def _help(argv: list[str]) -> str:
    return subprocess.run([*argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120).stdout


def _option_groups(words: list[str]) -> list[tuple[list[str], list[str]]]:
    """(the argv whose --help lists them, the options used) for each program a command runs.

    ``accelerate launch [ITS OPTIONS] SCRIPT [THE SCRIPT'S OPTIONS]`` is two programs.
    """
    program = words[0].removeprefix(".venv/bin/")
    if program == "accelerate":
        script = next(i for i, w in enumerate(words) if w.endswith(".py"))
        return [([str(Path(sys.executable).parent / "accelerate"), "launch"], words[2:script]),
                ([sys.executable, words[script]], words[script + 1:])]
    if program == "python":
        return [([sys.executable, words[1]], words[2:])]
    subcommand = [w for w in words[1:2] if not w.startswith("-")]
    return [([str(Path(sys.executable).parent / program), *subcommand], words[1 + len(subcommand):])]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith((".venv/bin/generate", ".venv/bin/audiogen",
                                                                           ".venv/bin/accelerate launch",
                                                                           ".venv/bin/python tools/"))])
def test_every_option_a_command_uses_is_in_its_help(command):
    for argv, used in _option_groups(shlex.split(command)):
        text = _help(argv)
        assert text, f"{command}: {' '.join(argv)} --help printed nothing"
        for option in (w.split("=")[0] for w in used if w.startswith("--")):
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), f"{command}: {option} is not an option"
