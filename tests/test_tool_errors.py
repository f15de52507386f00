"""tools/*.py as users type them (subprocesses): every bad input ends in one line naming the
option, file or split, with exit status 2, before any work; a full disk under an output ends
in one line with status 3 and leaves nothing half-written (wash_scan, fad_benchmark and
vocoder_quality are tried on a real full tmpfs); every --help shows its defaults.

The corpus (:func:`corpus`) holds 73 bad inputs: 7 for wash_scan, 8 for make_demo_dataset, 11
for vocoder_quality, 12 for fad_benchmark, 7 for bench, 7 for bench_vocoder, 7 for latent_rate, 7 for
surprise_band, 7 for mel_sharpening. ``audiogen-fad``'s
own corpus is in test_fad_cli.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from helpers import make_piano_maestro, piano_like

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("wash_scan", "make_demo_dataset", "vocoder_quality", "fad_benchmark", "bench", "bench_vocoder",
         "latent_rate", "surprise_band", "mel_sharpening")
SR = 22050


def refusal(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The one stderr line of a refusal with exit status 2 (no usage synopsis, no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and ": error: " in lines[0], result.stderr
    assert all(fragment in lines[0] for fragment in fragments), (fragments, lines[0])
    return lines[0]


def assert_help_shows_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option that takes a value says its default in --help (flags are off unless given)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                assert_help_shows_defaults(sub)
            continue
        if not action.option_strings or action.required or action.nargs == 0 or action.help == argparse.SUPPRESS:
            continue
        text = action.help % {"default": action.default} if "%(default)" in (action.help or "") else action.help
        assert "default" in (text or "") or "(required)" in (text or ""), (parser.prog, action.option_strings, text)
        shown = action.default if isinstance(action.default, list) else [] if action.default is None else [
            action.default]
        assert all(str(value) in text for value in shown), (parser.prog, action.option_strings, text)


def tool(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / f"{name}.py"), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd or ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tool_inputs")
    (root / "audio").mkdir()
    for i in range(2):
        sf.write(root / "audio" / f"piece{i}.flac", piano_like(2.0, SR, seed=i), SR)
    (root / "corrupt").mkdir()
    (root / "corrupt" / "text.flac").write_text("not audio at all\n" * 40)
    (root / "empty").mkdir()
    (root / "a_file.txt").write_text("a file, not a folder\n")
    maestro = make_piano_maestro(root / "maestro", {"train": 1, "test": 1}, seconds=2.0)
    return {"root": root, "audio": root / "audio", "corrupt": root / "corrupt", "empty": root / "empty",
            "file": root / "a_file.txt", "maestro": maestro, "missing": root / "nowhere", "out": root / "out"}


def corpus(p: dict[str, Path]) -> list[tuple[str, list[str], list[str]]]:
    """(tool, its arguments, fragments the error line must hold) for every bad input tried."""
    F, out, missing = p["file"], str(p["out"]), str(p["missing"])
    fb = ["--embedding", "mel", "--bootstrap", "5", "--reference", str(p["maestro"]), "--seconds", "1", "--out", out]
    vq = ["--cache", str(p["cache"]), "--seconds", "1", "--out", out]
    bv = ["--models", "griffin_lim", "--seconds", "1", "--runs", "1"]
    demo = ["--out", out, "--no-progress"]
    lr = ["--data", str(p["cache"])]
    ms = ["--reference", str(p["maestro"]), "--split", "test"]
    return [
        ("wash_scan", [missing], [missing, "no such file"]),
        ("wash_scan", [str(p["empty"])], [str(p["empty"]), "no audio files"]),
        ("wash_scan", [str(p["maestro"]), "--split", "bogus"], ["--split 'bogus'", "its splits: test, train"]),
        ("wash_scan", [str(p["audio"]), "--sample-rate", "0"], ["argument --sample-rate:", "'0'"]),
        ("wash_scan", [str(p["audio"]), "--sample-rate", "x"], ["argument --sample-rate:", "'x'"]),
        ("wash_scan", [str(p["audio"]), "--json", str(p["empty"])], ["--json", "is a folder"]),
        ("wash_scan", [str(p["corrupt"])], ["text.flac", "not readable"]),
        ("make_demo_dataset", [*demo, "--hours", "0"], ["argument --hours:", "'0'"]),
        ("make_demo_dataset", [*demo, "--hours", "nan"], ["argument --hours:", "finite"]),
        ("make_demo_dataset", [*demo, "--workers", "0"], ["argument --workers:", "'0'"]),
        ("make_demo_dataset", [*demo, "--midi-dir", missing], [missing, "MIDI folder not found"]),
        ("make_demo_dataset", [*demo, "--midi-dir", str(p["empty"])], ["--midi-dir", "no MIDI files"]),
        ("make_demo_dataset", [*demo, "--midi-dir", str(p["maestro"]), "--metadata", missing + ".csv"],
         [missing + ".csv", "not found"]),
        ("make_demo_dataset", [*demo, "--metadata", str(p["maestro"] / "maestro-v3.0.0.csv")],
         ["--metadata needs --midi-dir"]),
        ("make_demo_dataset", ["--out", str(F), "--midi-dir", str(p["maestro"])], ["--out", "not a folder"]),
        ("vocoder_quality", ["--cache", missing, "--out", out], [missing, "not found"]),
        ("vocoder_quality", ["--cache", str(p["empty"]), "--out", out], [str(p["empty"]), "index.json"]),
        ("vocoder_quality", [*vq, "--split", "bogus"], ["unknown split 'bogus'"]),
        ("vocoder_quality", [*vq, "--seconds", "0"], ["argument --seconds:", "'0'"]),
        ("vocoder_quality", [*vq, "--seconds", "0.5"], ["argument --seconds:", ">= 1"]),
        ("vocoder_quality", [*vq, "--vocoder", "x"], ["--vocoder 'x'", "NAME=DIR"]),
        ("vocoder_quality", [*vq, "--vocoder", f"x={missing}"], [missing, "not found"]),
        ("vocoder_quality", [*vq, "--threads", "0"], ["argument --threads:", "'0'"]),
        ("vocoder_quality", [*vq, "--griffin-lim-iters", "0"], ["argument --griffin-lim-iters:", "'0'"]),
        ("vocoder_quality", [*vq, "--model", missing], [missing, "not found"]),
        ("vocoder_quality", [*vq, "--out", str(F)], ["--out", "not a folder"]),
        ("fad_benchmark", [*fb, "--reference", missing], [missing, "no such file"]),
        ("fad_benchmark", [*fb, "--reference", str(p["empty"])], [str(p["empty"]), "no audio files"]),
        ("fad_benchmark", [*fb, "--split", "bogus"], ["--split 'bogus'", "its splits: test, train"]),
        ("fad_benchmark", [*fb, "--num", "1"], ["argument --num:", ">= 2"]),
        ("fad_benchmark", [*fb, "--seconds", "0.5"], ["argument --seconds:", ">= 1"]),
        ("fad_benchmark", [*fb, "--bootstrap", "0"], ["argument --bootstrap:", "'0'"]),
        ("fad_benchmark", [*fb, "--griffin-lim-iters", "0"], ["argument --griffin-lim-iters:", "'0'"]),
        ("fad_benchmark", [*fb, "--keep-clips", "-1"], ["argument --keep-clips:", "'-1'"]),
        ("fad_benchmark", [*fb, "--long-seconds", "0.5"], ["--long-seconds 0.5", "shorter than one --seconds"]),
        ("fad_benchmark", [*fb, "--temperature", "0"], ["argument --temperature:", "'0'"]),
        ("fad_benchmark", [*fb, "--device", "bogus"], ["--device 'bogus'", "not a torch device"]),
        ("fad_benchmark", [*fb, "--out", str(F)], ["--out", "not a folder"]),
        ("bench", ["--quick", "--json", out + ".json", "--threads", "0"], ["argument --threads:", "'0'"]),
        ("bench", ["--quick", "--json", out + ".json", "--runs", "0"], ["argument --runs:", "'0'"]),
        ("bench", ["--quick", "--json", out + ".json", "--only", "bogus"], ["unknown section(s) ['bogus']"]),
        ("bench", ["--quick"], ["--json OUT.json is required"]),
        ("bench", ["--quick", "--json", str(p["empty"])], ["--json", "is a folder"]),
        ("bench", ["--quick", "--json", out + ".json", "--md", str(p["empty"])], ["--md", "is a folder"]),
        ("bench", ["--quick", "--json", out + ".json", "--plot", str(F)], ["--plot", "not a folder"]),
        ("bench_vocoder", [*bv, "--models", "bogus"], ["argument --models:", "'bogus'"]),
        ("bench_vocoder", [*bv, "--seconds", "0"], ["argument --seconds:", "'0'"]),
        ("bench_vocoder", [*bv, "--runs", "0"], ["argument --runs:", "'0'"]),
        ("bench_vocoder", [*bv, "--threads", "0"], ["argument --threads:", "'0'"]),
        ("bench_vocoder", [*bv, "--train-step", "--batch-size", "0"], ["argument --batch-size:", "'0'"]),
        ("bench_vocoder", [*bv, "--train-step", "--segment-frames", "4"], ["argument --segment-frames:", ">= 8"]),
        ("bench_vocoder", [*bv, "--json", str(p["empty"])], ["argument --json:", "is a folder"]),
        ("latent_rate", ["--data", missing], [missing, "not found"]),
        ("latent_rate", ["--data", str(p["empty"])], [str(p["empty"]), "index.json"]),
        ("latent_rate", [*lr, "--split", "bogus"], ["--split 'bogus'", "its splits:"]),
        ("latent_rate", [*lr, "--windows", "0"], ["argument --windows:", "'0'"]),
        ("latent_rate", [*lr, "--seconds", "nan"], ["argument --seconds:", "finite"]),
        ("latent_rate", [*lr, "--model", missing], [missing, "not found"]),
        ("latent_rate", [*lr, "--json", str(p["empty"])], ["--json", "is a folder"]),
        ("surprise_band", ["--data", missing], [missing, "not found"]),
        ("surprise_band", ["--data", str(p["empty"])], [str(p["empty"]), "index.json"]),
        ("surprise_band", [*lr, "--split", "bogus"], ["--split 'bogus'", "its splits:"]),
        ("surprise_band", [*lr, "--seconds", "0"], ["argument --seconds:", "'0'"]),
        ("surprise_band", [*lr, "--quantiles", "0.9,0.1"], ["argument --quantiles:", "0.9,0.1"]),
        ("surprise_band", [*lr, "--model", missing], [missing, "not found"]),
        ("surprise_band", [*lr, "--json", str(p["empty"])], ["--json", "is a folder"]),
        ("mel_sharpening", ["--reference", missing], [missing, "no such file"]),
        ("mel_sharpening", [*ms, "--split", "bogus"], ["--split 'bogus'", "its splits: test, train"]),
        ("mel_sharpening", [*ms, "--num", "1"], ["argument --num:", "'1'"]),
        ("mel_sharpening", [*ms, "--strengths", "0,x"], ["argument --strengths:", "'0,x'"]),
        ("mel_sharpening", [*ms, "--bins", "4"], ["argument --bins:", "'4'"]),
        ("mel_sharpening", [*ms, "--model", missing], [missing, "not found"]),
        ("mel_sharpening", [*ms, "--json", str(p["empty"])], ["--json", "is a folder"]),
    ]


@pytest.fixture(scope="module")
def paths(inputs, tiny_cache) -> dict[str, Path]:
    return {**inputs, "cache": tiny_cache}


CASES = corpus({key: Path(f"/{key}") for key in ("file", "out", "missing", "maestro", "cache", "empty", "audio",
                                                  "corrupt")})


def test_corpus_size():
    counts = {name: sum(case[0] == name for case in CASES) for name in TOOLS}
    assert counts == {"wash_scan": 7, "make_demo_dataset": 8, "vocoder_quality": 11, "fad_benchmark": 12,
                      "bench": 7, "bench_vocoder": 7, "latent_rate": 7, "surprise_band": 7,
                      "mel_sharpening": 7}


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c[0]}:{' '.join(c[1][-2:])}" for c in CASES])
def test_each_bad_input_is_refused_in_one_line_with_status_2(paths, index):
    name, args, fragments = corpus(paths)[index]
    result = tool(name, *args)
    refusal(result, f"{name}: error: ", *fragments)
    assert not paths["out"].exists()  # refused before any output was made


def mounted_full_tmpfs(path: Path) -> Path:
    """A 64 KiB tmpfs at ``path`` filled until ENOSPC (root only; the caller unmounts)."""
    import errno

    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with open(path / "filler", "wb") as handle:
            while True:
                handle.write(bytes(4096))
                handle.flush()
    except OSError as err:
        assert err.errno == errno.ENOSPC
    return path


@pytest.fixture
def full_disk(tmp_path):
    folder = mounted_full_tmpfs(tmp_path / "full")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_ends_wash_scan_in_one_line_with_status_3(inputs, full_disk):
    result = tool("wash_scan", str(inputs["audio"]), "--json", str(full_disk / "w.json"))
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"wash_scan: error: no space left on the device writing " \
                                                     f"{full_disk / 'w.json'}"
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no half-written file


def test_a_full_disk_ends_fad_benchmark_in_one_line_with_status_3(inputs, models, full_disk):
    out = full_disk / "report"
    result = tool("fad_benchmark", "--reference", str(inputs["audio"]), "--model", str(models["model"]),
                  "--vocoder", str(models["vocoder"]), "--seconds", "1", "--num", "2", "--bootstrap", "5",
                  "--embedding", "mel", "--keep-clips", "0", "--griffin-lim-iters", "2", "--out", str(out))
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines() == ["fad_benchmark: error: no space left on the device"]
    assert not out.exists() or not list(out.iterdir())  # no part of a picture, report or clip left behind


@pytest.fixture
def vocoder_quality_on_a_full_disk(tiny_cache, full_disk) -> tuple[subprocess.CompletedProcess, Path]:
    out = full_disk / "report"
    return tool("vocoder_quality", "--cache", str(tiny_cache), "--seconds", "1", "--griffin-lim-iters", "2",
                "--out", str(out)), out


def test_a_full_disk_ends_vocoder_quality_with_status_3_and_an_error_line(vocoder_quality_on_a_full_disk):
    result, out = vocoder_quality_on_a_full_disk
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert errors == [result.stderr.strip().splitlines()[-1]]
    assert errors[0].startswith("vocoder_quality: error: no space left on the device")
    assert not list(out.glob("*.part")) and not list(out.glob(".*"))  # nothing half-written


def test_a_full_disk_ends_vocoder_quality_in_one_line(vocoder_quality_on_a_full_disk):
    result, _ = vocoder_quality_on_a_full_disk
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "tools"))  # bench imports bench_vocoder from beside it
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return module


@pytest.mark.parametrize("name", TOOLS)
def test_help_shows_every_default(name):
    assert_help_shows_defaults(load_tool(name).build_parser())
    shown = tool(name, "--help")
    assert shown.returncode == 0 and "default" in shown.stdout, shown.stderr
