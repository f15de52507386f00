"""`generate`, `audiogen encode|decode|morph` as users type them: bad input ends in one line and
status 2, nothing is left behind, nothing is clobbered, and `--like` reads only what it uses.

Every case runs the command in a subprocess. The corpus:

- broken model folders (copies of the bundled ones): config.yaml not YAML, a YAML list, empty,
  ``{}``, an unknown top-level key, not text, a shape that differs from the weights, settings that
  build no network; a weights file holding another network's weights or NaN (``--model``: 14,
  ``--vocoder``: 6);
- ``--out`` patterns: unknown or positional fields, unmatched braces, formats ``{i}`` cannot
  take, names that repeat (9);
- ``--seconds`` below one frame, 0, negative, nan, inf, over 3 hours (8);
- argparse's own refusals (a missing or mistyped value, an unknown choice, missing arguments) (6);
- an existing ``--out`` without ``--force``, for generate (also one of ``--num`` names), encode,
  decode and morph (5), and a folder in its place (1);
- kills: SIGTERM and SIGKILL while the clip is made (also with ``--force`` over an existing
  file), SIGTERM and SIGKILL while the output file is written;
- a reader that closes the pipe (``--out - | head -c 100``).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from helpers import piano_like

from audiogen.generation import pretrained_dir

ROOT = Path(__file__).resolve().parents[1]
SR = 22050


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, umask: int | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` as a user runs it (one thread, so runs side by side stay fast)."""
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})), preexec_fn=preexec)


def generate(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run_cli("audiogen.cli.generate", *args, **kwargs)


def audiogen(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run_cli("audiogen", *args, **kwargs)


def refused(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The one stderr line of a refusal with status 2; it holds every fragment."""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def tiny(models) -> list[str]:
    return ["--model", str(models["model"]), "--vocoder", str(models["vocoder"])]


# ------------------------------------------------------------------------------ broken model folders


def _edit_config(change):
    def make(folder: Path) -> None:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        change(config)
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    return make


def _text(text: str | bytes):
    def make(folder: Path) -> None:
        path = folder / "config.yaml"
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)

    return make


def _weights_of(source_folder: str, source: str, target: str):
    def make(folder: Path) -> None:
        shutil.copy(pretrained_dir(source_folder) / f"{source}.safetensors", folder / f"{target}.safetensors")

    return make


def _nan_weights(name: str):
    def make(folder: Path) -> None:
        from safetensors.torch import load_file, save_file

        state = load_file(folder / f"{name}.safetensors")
        key = next(k for k, v in state.items() if v.is_floating_point())
        state[key] = state[key].clone()
        state[key].view(-1)[0] = float("nan")
        save_file(state, folder / f"{name}.safetensors")

    return make


COMMON_CONFIG_CASES = {  # name -> (how to break the folder, fragments of the one line)
    "not_yaml": (_text("frontend: {sample_rate: 22050\nmodel: [\n"), ("config.yaml", "not valid YAML")),
    "yaml_list": (_text("- frontend\n- model\n"), ("config.yaml", "expected a mapping at the top level, got a list")),
    "empty": (_text(""), ("config.yaml", "empty")),
    "unknown_key": (_edit_config(lambda c: c.update(comment="mine")), ("config.yaml", "unknown top-level key",
                                                                         "'comment'")),
}
MODEL_CASES = {
    **COMMON_CONFIG_CASES,
    "empty_mapping": (_text("{}\n"), ("config.yaml", "no model section")),
    "not_text": (_text(b"\xff\xfe\x00\x81 binary"), ("config.yaml", "not a text file")),
    "prior_width_64": (_edit_config(lambda c: c["model"].update(width=64)),
                       ("prior.safetensors", "config.yaml", "has shape")),
    "vae_latent_dim_16": (_edit_config(lambda c: c["vae_model"].update(latent_dim=16)),
                          ("vae.safetensors", "config.yaml", "has shape")),
    "prior_width_negative": (_edit_config(lambda c: c["model"].update(width=-3)),
                             ("config.yaml", "model: width", "must be >= 1")),
    "vae_channels_short": (_edit_config(lambda c: c["vae_model"].update(channels=[64, 128])),
                           ("config.yaml", "vae_model: channels")),
    "vae_holds_prior": (_weights_of("spec", "prior", "vae"), ("vae.safetensors", "not the weights")),
    "vae_holds_vocoder": (_weights_of("vocoder", "vocoder", "vae"), ("vae.safetensors", "not the weights")),
    "prior_holds_vae": (_weights_of("spec", "vae", "prior"), ("prior.safetensors", "not the weights")),
    "vae_nan": (_nan_weights("vae"), ("vae.safetensors", "NaN or Inf")),
}
VOCODER_CASES = {
    **COMMON_CONFIG_CASES,
    "dim_128": (_edit_config(lambda c: c["model"].update(dim=128)),
                ("vocoder.safetensors", "config.yaml", "has shape")),
    "holds_vae": (_weights_of("spec", "vae", "vocoder"), ("vocoder.safetensors", "not the weights")),
}


def run_all(commands: dict[str, list[str]], **kwargs) -> dict[str, subprocess.CompletedProcess]:
    """``run_cli`` of many commands side by side (one thread each; they spend their time importing torch)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(run_cli, *command, **kwargs) for name, command in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def test_a_broken_model_folder_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    commands, expected = {}, {}
    for option, cases, bundled in (("--model", MODEL_CASES, "spec"), ("--vocoder", VOCODER_CASES, "vocoder")):
        for case, (make, fragments) in cases.items():
            folder = tmp_path / f"{option[2:]}-{case}"
            shutil.copytree(pretrained_dir(bundled), folder)
            make(folder)
            name = f"{option} {case}"
            commands[name] = ["audiogen.cli.generate", option, str(folder), "--seconds", "1", "--out",
                              str(out / "x.wav")]
            expected[name] = (str(folder), *fragments)  # the file is named with its folder
    assert len(commands) == 20
    for name, result in run_all(commands).items():
        try:
            refused(result, *expected[name])
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from None
    assert list(out.iterdir()) == []


def test_the_unbroken_copies_work(tmp_path):
    """The control: the copies the cases above break generate, so each refusal is the break's."""
    for name in ("spec", "vocoder"):
        shutil.copytree(pretrained_dir(name), tmp_path / name)
    result = generate("--model", str(tmp_path / "spec"), "--vocoder", str(tmp_path / "vocoder"), "--seconds", "0.5",
                      "--seed", "1", "--out", str(tmp_path / "x.wav"))
    assert result.returncode == 0, result.stderr
    assert sf.info(tmp_path / "x.wav").frames == SR // 2


def test_encode_refuses_a_broken_model_folder_too(tmp_path):
    folder = tmp_path / "spec"
    shutil.copytree(pretrained_dir("spec"), folder)
    _weights_of("spec", "prior", "vae")(folder)
    clip = tmp_path / "clip.wav"
    sf.write(clip, piano_like(1.0, SR), SR)
    refused(audiogen("encode", str(clip), "--out", str(tmp_path / "z.npz"), "--model", str(folder)),
            "vae.safetensors", "not the weights")


# ------------------------------------------------------------------------------ --out patterns

BAD_PATTERNS = {  # --out, --num, fragment
    "unknown_field": ("take-{i}{j}.wav", "2", "unknown field {j}"),
    "positional": ("take-{}.wav", "2", "unknown field {}"),
    "index": ("take-{0}.wav", "2", "unknown field {0}"),
    "unclosed": ("take-{i.wav", "2", "not a valid pattern"),
    "stray_close": ("take-}.wav", "2", "not a valid pattern"),
    "bad_format": ("take-{i:q}.wav", "2", "not a valid pattern"),
    "bad_conversion": ("take-{i!z}.wav", "2", "not a valid pattern"),
    "subscript": ("take-{i[0]}.wav", "2", "not a valid pattern"),
    "repeats": ("take-{i:.0e}.wav", "12", "gives two clips the same name"),
}


@pytest.mark.parametrize("case", BAD_PATTERNS)
def test_a_bad_out_pattern_is_refused_in_one_line(case, tmp_path):
    pattern, num, fragment = BAD_PATTERNS[case]
    result = generate("--out", pattern, "--num", num, cwd=tmp_path)
    refused(result, "--out", fragment)
    assert list(tmp_path.iterdir()) == []


def test_out_patterns():
    from audiogen.cli.generate import output_names

    assert output_names("take-{i:02d}.flac", 2) == ["take-00.flac", "take-01.flac"]
    assert output_names("take-{i}.wav", 1) == ["take-0.wav"]  # a pattern is one with any --num
    assert output_names("{{live}}-{i}.wav", 2) == ["{live}-0.wav", "{live}-1.wav"]
    assert output_names("{{live}}.wav", 2) == ["{live}-000.wav", "{live}-001.wav"]  # literal braces only
    assert output_names("{{live}}.wav", 1) == ["{live}.wav"]


# ------------------------------------------------------------------------------ --seconds

SECONDS = {
    "1e-9": "shorter than one frame",
    "0.005": "shorter than one frame",  # 110 samples: under one hop (256)
    "0": "--seconds must be a positive number",
    "-1": "--seconds must be a positive number",
    "nan": "--seconds must be a positive number",
    "inf": "--seconds must be a positive number",
    "-inf": "--seconds must be a positive number",
    "10801": "over the limit",
}


def test_seconds_without_a_frame_of_music_are_refused(models, tmp_path):
    # --seconds=VALUE: argparse would take -inf for an option
    commands = {value: ["audiogen.cli.generate", *tiny(models), f"--seconds={value}", "--out", str(tmp_path / "x.wav")]
                for value in SECONDS}
    for value, result in run_all(commands).items():
        try:
            refused(result, "--seconds", SECONDS[value])
        except AssertionError as err:
            raise AssertionError(f"--seconds {value}: {err}") from None
    assert list(tmp_path.iterdir()) == []


def test_one_frame_is_enough(models, tmp_path):
    result = generate(*tiny(models), "--seconds", "0.012", "--seed", "1", "--out", str(tmp_path / "x.wav"))
    assert result.returncode == 0, result.stderr
    assert sf.info(tmp_path / "x.wav").frames == round(0.012 * SR)


def test_morph_refuses_seconds_below_one_frame(models, tmp_path):
    clips = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for i, clip in enumerate(clips):
        sf.write(clip, piano_like(1.0, SR, seed=i), SR)
    result = audiogen("morph", *map(str, clips), "--out", str(tmp_path / "m.wav"), "--seconds", "1e-9", *tiny(models))
    refused(result, "--seconds 1e-09", "shorter than one frame")
    assert not (tmp_path / "m.wav").exists()


# ------------------------------------------------------------------------------ no clobbering


def test_an_existing_out_is_refused_and_replaced_only_with_force(models, tmp_path):
    out = tmp_path / "clip.wav"
    out.write_bytes(b"the user's own file")
    refused(generate(*tiny(models), "--seconds", "0.5", "--out", str(out)), "clip.wav", "already exists", "--force")
    assert out.read_bytes() == b"the user's own file"
    # one existing name among the --num names refuses them all, before any clip is made
    (tmp_path / "take-001.wav").write_bytes(b"mine too")
    refused(generate(*tiny(models), "--seconds", "0.5", "--num", "3", "--out", str(tmp_path / "take.wav")),
            "take-001.wav", "already exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav", "take-001.wav"]
    # --force replaces it, a read-only one too, with the mode a new file gets under the umask
    out.chmod(0o444)
    result = generate(*tiny(models), "--seconds", "0.5", "--seed", "2", "--out", str(out), "--force", umask=0o027)
    assert result.returncode == 0, result.stderr
    assert sf.info(out).frames == SR // 2 and (out.stat().st_mode & 0o777) == 0o640
    # a new file follows the umask (not mkstemp's 0600)
    new = tmp_path / "new.wav"
    assert generate(*tiny(models), "--seconds", "0.5", "--out", str(new), umask=0o022).returncode == 0
    assert (new.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav", "new.wav", "take-001.wav"]


def test_a_folder_in_place_of_out_is_refused_even_with_force(models, tmp_path):
    (tmp_path / "x.wav").mkdir()
    refused(generate(*tiny(models), "--seconds", "0.5", "--out", str(tmp_path / "x.wav"), "--force"), "is a folder")


def test_encode_decode_morph_refuse_an_existing_out_without_force(models, tmp_path):
    clip = tmp_path / "clip.wav"
    sf.write(clip, piano_like(1.0, SR), SR)
    z = tmp_path / "z.npz"
    assert audiogen("encode", str(clip), "--out", str(z), "--model", str(models["model"])).returncode == 0
    encoded = z.read_bytes()
    existing = tmp_path / "existing.wav"
    existing.write_bytes(b"keep me")
    commands = {
        "encode": ["encode", str(clip), "--out", str(z), "--model", str(models["model"])],
        "decode": ["decode", str(z), "--out", str(existing), *tiny(models)],
        "morph": ["morph", str(clip), str(clip), "--out", str(existing), *tiny(models)],
    }
    for command in commands.values():
        refused(audiogen(*command), "already exists", "--force")
    assert z.read_bytes() == encoded and existing.read_bytes() == b"keep me"
    for name, command in commands.items():
        result = audiogen(*command, "--force")
        assert result.returncode == 0, (name, result.stderr)
    assert sf.info(existing).frames == SR
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav", "existing.wav", "z.npz"]


# ------------------------------------------------------------------------------ kills leave nothing behind


def _open_files(pid: int) -> list[tuple[str, int]]:
    """(target, size) of each file the process has open."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.append((os.readlink(fd), os.stat(fd).st_size))
        except OSError:  # closed meanwhile
            pass
    return found


def _wait_for(proc: subprocess.Popen, condition, timeout: float = 120) -> list[tuple[str, int]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        files = _open_files(proc.pid)
        if condition(files):
            return files
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"timed out; open files {_open_files(proc.pid)}")


def _scratch_in(folder: Path):
    """An unnamed file under ``folder`` that has data in it: the float32 scratch."""
    return lambda files: any(t.startswith(str(folder)) and t.endswith("(deleted)") and size > 0 for t, size in files)


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="watches the process through /proc")


@needs_proc
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("force", [False, True], ids=["new", "force"])
def test_a_kill_while_the_clip_is_made_leaves_nothing_behind(sig, force, models, tmp_path):
    out_dir, temp = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    temp.mkdir()
    out = out_dir / "long.wav"
    if force:
        out.write_bytes(b"the previous take")
    command = [sys.executable, "-m", "audiogen.cli.generate", *tiny(models), "--seconds", "3600", "--seed", "1",
               "--out", str(out), "--quiet", *(["--force"] if force else [])]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(temp)))
    _wait_for(proc, _scratch_in(temp))  # the scratch exists, has samples in it and no name
    assert list(temp.iterdir()) == []
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and err.strip() == "generate: interrupted", (proc.returncode, err)
    else:
        assert proc.returncode == -signal.SIGKILL
    assert list(temp.iterdir()) == []  # no scratch stranded in the temp folder
    assert [p.name for p in out_dir.iterdir()] == (["long.wav"] if force else [])  # nor beside the output
    if force:
        assert out.read_bytes() == b"the previous take"  # nothing lost


SLOW_WRITER = """
import sys, time
import numpy as np
import soundfile
from audiogen.generation import write_clip

real_write = soundfile.SoundFile.write
def slow_write(self, data):  # the 16-bit pass of a long clip, slowed down so a kill lands in it
    real_write(self, data)
    print("writing", flush=True)
    time.sleep(0.5)
soundfile.SoundFile.write = slow_write
chunks = (np.full(22050, 0.1, np.float32) for _ in range(600))
write_clip(chunks, sys.argv[1], 22050, force=True)
"""


@needs_proc
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_kill_while_the_output_is_written_leaves_nothing_behind(sig, tmp_path):
    out_dir, temp = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    temp.mkdir()
    # SIGTERM handled as generate handles it
    script = ("from audiogen.cli.generate import sigterm_as_interrupt\ntry:\n    with sigterm_as_interrupt():\n" +
              "\n".join("        " + line for line in SLOW_WRITER.strip().splitlines()) +
              "\nexcept KeyboardInterrupt:\n    sys.exit(130)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(out_dir / "x.wav")], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, TMPDIR=str(temp)))
    assert proc.stdout.readline().strip() == "writing", proc.communicate()
    files = _open_files(proc.pid)
    # the output being written is a file without a name in the output folder
    assert any(t.startswith(str(out_dir)) and t.endswith("(deleted)") for t, _ in files), files
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
    assert list(out_dir.iterdir()) == [] and list(temp.iterdir()) == []


# ------------------------------------------------------------------------------ pipes


def test_a_reader_that_stops_early_ends_generate_quietly(models, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "audiogen.cli.generate", *tiny(models), "--seconds", "5",
                             "--seed", "1", "--out", "-"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, OMP_NUM_THREADS="1"))
    head = proc.stdout.read(100)  # `| head -c 100`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert head[:4] == b"RIFF" and len(head) == 100
    assert proc.returncode == 0, err
    assert err == "" and list(tmp_path.iterdir()) == []  # --seed given: nothing to say


def test_the_same_through_a_shell_pipe(models, tmp_path):
    command = (f"{sys.executable} -m audiogen.cli.generate {' '.join(tiny(models))} --seconds 5 --seed 1 --out - "
               "| head -c 100 > head.bin; echo ${PIPESTATUS[0]} > status")
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.stderr == "", result.stderr
    assert (tmp_path / "status").read_text().strip() == "0"
    assert (tmp_path / "head.bin").stat().st_size == 100


# ------------------------------------------------------------------------------ --like reads what it uses


def test_like_reads_only_the_seconds_it_uses(models, tmp_path):
    """A float WAV whose samples turn NaN after 60 s: a 1-s clip never reads them, a 90-s one does."""
    audio = np.tile(piano_like(10.0, SR), 12)  # 120 s
    audio[60 * SR:] = np.nan
    long = tmp_path / "long.wav"
    sf.write(long, audio, SR, subtype="FLOAT")
    out = tmp_path / "x.wav"
    result = generate(*tiny(models), "--like", str(long), "--seconds", "1", "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    refused(generate(*tiny(models), "--like", str(long), "--seconds", "90", "--out", str(tmp_path / "y.wav")),
            "long.wav", "NaN or Inf")


def test_like_on_the_head_of_a_file_is_like_on_the_whole_file(models):
    """The latents the clip keeps do not change when only the part it uses is read."""
    import torch

    from audiogen.audio import load_audio
    from audiogen.generation import load_generator

    generator = load_generator(models["model"], models["vocoder"])
    samples = 2 * SR
    whole = np.tile(piano_like(10.0, SR, seed=3), 3)
    head_seconds = generator.like_seconds(samples)
    assert head_seconds < 10
    head = whole[: math.ceil(head_seconds * SR)]
    keep = generator.latent_frames(samples)
    for amount in (0.0, 0.5):
        from_whole = generator.variation_of(whole, amount, seed=4)[..., :keep]
        from_head = generator.variation_of(head, amount, seed=4)[..., :keep]
        torch.testing.assert_close(from_head, from_whole, atol=1e-5, rtol=1e-5)
    # and load_audio reads just the frames asked for
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"like-{os.getpid()}.wav"
    try:
        sf.write(path, whole, SR)
        part, rate = load_audio(path, seconds=1.5)
        assert rate == SR and len(part) == int(1.5 * SR)
    finally:
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ usage errors

USAGE_ERRORS = {  # argv -> fragment; argparse's own refusals, one line too (no usage synopsis above)
    ("audiogen.cli.generate", "--seconds", "-inf"): "argument --seconds: expected one argument",
    ("audiogen.cli.generate", "--num", "two"): "argument --num: invalid int value",
    ("audiogen.cli.generate", "--device", "tpu"): "argument --device: invalid choice",
    ("audiogen", "encode"): "the following arguments are required: audio, --out",
    ("audiogen", "decode", "z.npz"): "the following arguments are required: --out",
    ("audiogen", "morph", "a.wav", "b.wav", "--out", "m.wav", "--at", "half"): "argument --at: invalid float value",
}


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=lambda argv: " ".join(argv[1:]))
def test_usage_errors_are_one_line(argv, tmp_path):
    refused(run_cli(*argv, cwd=tmp_path), USAGE_ERRORS[argv])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ help


def _parsers():
    from audiogen.cli.codec import decode_parser, encode_parser, morph_parser
    from audiogen.cli.generate import build_parser

    return {"generate": build_parser(), "encode": encode_parser(), "decode": decode_parser(), "morph": morph_parser()}


@pytest.mark.parametrize("command", ["generate", "encode", "decode", "morph"])
def test_every_option_states_its_default(command):
    parser = _parsers()[command]
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "version"):  # argparse's own
            text = action.help or ""
            assert "default" in text or "required" in text, (command, action.option_strings, text)
    help_text = parser.format_help()
    assert "--force" in help_text and "130" in help_text


def test_generate_help_says_where_scratch_lives_and_the_defaults_are_true():
    from audiogen.generation import DEFAULT_TEMPERATURE, load_generator

    result = generate("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "$TMPDIR" in text and "SIGKILL" in text and "--force" in text
    bundled = load_generator().default_temperature  # what generate samples at without --temperature
    assert f"the band's, {bundled:g} for the bundled model; else {DEFAULT_TEMPERATURE:g}," in text
    assert "(default: 30)" in text
