"""Training runs keep a true record: one live trainer per run folder, a resume that neither
duplicates metrics nor silently changes the config, sizes checked before the first step, a full
disk that loses no checkpoint, and every bad input refused in one line.

Resuming exactly after kills is tests/test_crash_resume.py's; a cache of another frontend is
tests/test_reliability.py's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import make_piano_maestro

from audiogen.checkpoint import load_state_dict
from audiogen.config import ConfigError, apply_overrides, from_dict, parse_yaml, read_yaml
from audiogen.training import OptimConfig, TrainConfig, _log, latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
VOCODER = ["--config", "configs/vocoder/tiny.yaml", "--cpu"]
SPEC = ["--config", "configs/spec/tiny.yaml", "--cpu"]


def env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def trainer(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env())


def last_line(stderr: str) -> str:
    """The error line a refusal ends with (a progress bar may come before it), never a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines, stderr
    return lines[-1]


def one_line(stderr: str) -> str:
    """The whole of stderr, which must be one line."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def training_steps(run_dir: Path) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "val/loss" not in r]


@pytest.fixture
def train_here(capsys):
    """Run a trainer in this process (as its script would): (exit status, stdout, stderr)."""
    from audiogen.tasks import run_trainer

    def run(task: str, *args: str | Path | int) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run_trainer(task, [str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def metric_lines(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


# ------------------------------------------------------------------------------ one trainer per folder


def test_a_live_trainer_holds_its_run_folder_and_a_killed_ones_lock_is_taken_over(tiny_cache, tmp_path, train_here):
    run_dir = tmp_path / "run"
    common = [*VOCODER, "--data", tiny_cache, "--out", run_dir, "--set", "train.log_every=1",
              "--set", "train.ckpt_every=2", "--set", "train.val_every=1000"]
    first = subprocess.Popen([sys.executable, "train_vocoder.py", *map(str, common), "--max-steps", "100000"],
                             cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and (metric_lines(run_dir) < 5 or latest_checkpoint(run_dir) is None):
            assert time.monotonic() < deadline, "the first trainer did not start training"
            time.sleep(0.05)
        assert first.poll() is None
        holder = json.loads((run_dir / "trainer.lock").read_text())
        assert holder["pid"] == first.pid
        for extra in ([], ["--resume"]):  # a fresh start and a resume are both refused
            code, _, err = train_here("vocoder", *common, "--max-steps", "100000", *extra)
            assert code == 2, err
            line = one_line(err)
            assert "another trainer" in line and f"pid {first.pid}" in line and str(run_dir) in line
        assert first.poll() is None  # the refusals left the live trainer alone
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed_at = max(training_steps(run_dir))
    checkpoint = int(latest_checkpoint(run_dir).name.removeprefix("step-"))
    assert (run_dir / "trainer.lock").exists()  # a kill -9 leaves the file; its flock died with it
    resumed = trainer("train_vocoder.py", *common, "--resume", "--max-steps", checkpoint + 2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"took over the stale lock of pid {first.pid}" in resumed.stdout
    assert not (run_dir / "trainer.lock").exists()  # a clean exit removes it
    # the killed run's rows past the checkpoint are gone: each step logged once, in order
    assert killed_at >= checkpoint
    assert training_steps(run_dir) == list(range(1, checkpoint + 3))


def test_two_processes_under_accelerate_launch_agree_on_a_held_lock(tiny_cache, tmp_path):
    from audiogen.training import acquire_run_lock, release_run_lock

    run_dir = tmp_path / "run"
    lock = acquire_run_lock(run_dir)  # held by this process: alive for the whole launch
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file",
             "configs/accelerate/cpu_2proc.yaml", "--num_processes", "2", "--main_process_port", str(port),
             "train_vocoder.py", *map(str, VOCODER), "--data", str(tiny_cache), "--out", str(run_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env(), start_new_session=True)
    finally:
        release_run_lock(lock)
    # both ranks stop with the usage status (none waits for the other, none aborts), and the main
    # process alone says why; the launcher (torchrun) then reports the failed ranks in its own words,
    # and may stop the second rank (SIGTERM, -15) once the first has exited
    assert result.returncode != 0
    codes = re.findall(r"exitcode\s*:\s*(-?\d+)", result.stderr)
    assert "2" in codes and set(codes) <= {"2", "-15"}, result.stderr[-3000:]
    refusals = [line for line in (result.stdout + result.stderr).splitlines() if "another trainer" in line]
    assert len(refusals) == 1 and f"pid {os.getpid()}" in refusals[0], result.stderr[-3000:]
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()


def test_a_run_folder_that_holds_checkpoints_needs_resume(tiny_cache, tmp_path, train_here):
    run_dir = tmp_path / "run"
    assert train_here("vocoder", *VOCODER, "--data", tiny_cache, "--out", run_dir, "--max-steps", 2)[0] == 0
    before = (run_dir / "metrics.jsonl").read_bytes()
    code, _, err = train_here("vocoder", *VOCODER, "--data", tiny_cache, "--out", run_dir, "--max-steps", 2)
    assert code == 2
    assert "already holds a run" in one_line(err) and "--resume" in one_line(err)
    assert (run_dir / "metrics.jsonl").read_bytes() == before


# ------------------------------------------------------------------------------ resume keeps the record true


def test_resume_refuses_a_changed_config_unless_asked_and_records_what_changed(tiny_cache, tmp_path, train_here):
    run_dir = tmp_path / "run"
    base = [*VOCODER, "--data", tiny_cache, "--out", run_dir]
    assert train_here("vocoder", *base, "--max-steps", 2)[0] == 0
    saved = (run_dir / "config.yaml").read_bytes()
    refused = {
        "optim.lr": ["--set", "optim.lr=1e-4"],
        "train.batch_size": ["--set", "train.batch_size=4"],
        "model.num_layers": ["--set", "model.num_layers=2"],
    }
    for key, extra in refused.items():
        code, _, err = train_here("vocoder", *base, "--resume", "--max-steps", 4, *extra)
        assert code == 2, (key, err)
        line = one_line(err)
        assert key in line and "--allow-config-change" in line, line
        assert "train.max_steps" not in line.split(" in ")[1].split(";")[0]  # a safe key is not named
        assert (run_dir / "config.yaml").read_bytes() == saved
    # a safe change goes through and is recorded
    code, out, err = train_here("vocoder", *base, "--resume", "--max-steps", 4)
    assert code == 0, err[-2000:]
    assert "resuming at step 2 with train.max_steps 2 -> 4" in out
    changes = [json.loads(line) for line in (run_dir / "config-changes.jsonl").read_text().splitlines()]
    assert changes == [{"step": 2, "time": changes[0]["time"], "changes": {"train.max_steps": [2, 4]}}]
    assert read_yaml(run_dir / "config.yaml")["train"]["max_steps"] == 4
    # an unsafe change asked for explicitly: trained with and recorded
    code, _, err = train_here("vocoder", *base, "--resume", "--max-steps", 6, "--set", "optim.lr=5e-4",
                              "--allow-config-change")
    assert code == 0, err[-2000:]
    last = json.loads((run_dir / "config-changes.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 4 and last["changes"]["optim.lr"] == [0.0002, 0.0005]
    assert read_yaml(run_dir / "config.yaml")["optim"]["lr"] == 0.0005


def test_resuming_a_spec_run_with_a_vocoder_config_is_refused_in_one_line(tiny_cache, tmp_path, train_here):
    run_dir = tmp_path / "vae"
    assert train_here("vae", *SPEC, "--data", tiny_cache, "--out", run_dir, "--max-steps", 2)[0] == 0
    code, _, err = train_here("vocoder", *VOCODER, "--data", tiny_cache, "--out", run_dir, "--resume")
    assert code == 2
    line = one_line(err)
    assert "task 'vae' -> 'vocoder'" in line and "model.kind" in line


def test_resume_without_a_checkpoint_says_it_starts_at_step_0(tiny_cache, tmp_path, train_here):
    run_dir = tmp_path / "run"
    code, out, err = train_here("vocoder", *VOCODER, "--data", tiny_cache, "--out", run_dir, "--resume",
                                "--max-steps", 2)
    assert code == 0, err[-2000:]
    assert f"{run_dir}: no checkpoint to resume from; starting at step 0" in out
    assert training_steps(run_dir) == [1, 2]


# ------------------------------------------------------------------------------ numbers in every spelling


def test_numbers_are_read_in_every_spelling_in_files_and_overrides(tmp_path):
    for spelling, value in [("1e-4", 1e-4), ("5e-4", 5e-4), ("1.0e-4", 1e-4), ("1E-4", 1e-4), ("+2e-3", 2e-3),
                            ("0.0001", 1e-4), ("1", 1.0)]:
        data = apply_overrides({}, [f"optim.lr={spelling}"])
        assert from_dict(OptimConfig, data["optim"]).lr == pytest.approx(value), spelling
        path = tmp_path / "optim.yaml"
        path.write_text(f"lr: {spelling}\n")
        assert from_dict(OptimConfig, read_yaml(path)).lr == pytest.approx(value), spelling
    # an integer setting takes a float spelling only when it is exactly an integer
    assert from_dict(TrainConfig, apply_overrides({}, ["max_steps=1e3"])).max_steps == 1000
    assert from_dict(TrainConfig, parse_yaml("max_steps: 2e4\nbatch_size: 8")).max_steps == 20000
    for bad in ("batch_size=2.5", "batch_size=1e-1", "batch_size=two", "max_steps=.inf"):
        with pytest.raises(ConfigError, match="expected an integer"):
            from_dict(TrainConfig, apply_overrides({}, [bad]))
    # words stay words
    assert parse_yaml("a: e3\nb: 1e\nc: no") == {"a": "e3", "b": "1e", "c": False}


# ------------------------------------------------------------------------------ honest ends


@pytest.fixture(scope="module")
def cache_without_validation(tmp_path_factory) -> Path:
    from audiogen.frontend import FrontendConfig
    from audiogen.maestro import list_maestro
    from audiogen.preparation import prepare_cache

    root = make_piano_maestro(tmp_path_factory.mktemp("maestro"), {"train": 2}, seconds=2.0)
    cache = tmp_path_factory.mktemp("cache")
    prepare_cache(list_maestro(root), cache, FrontendConfig(), workers=1, progress=False)
    return cache


def test_a_cache_without_validation_pieces_is_refused_before_training(cache_without_validation, tmp_path,
                                                                     train_here):
    run_dir = tmp_path / "run"
    for task, settings in (("vocoder", VOCODER), ("vae", SPEC)):
        code, out, err = train_here(task, *settings, "--data", cache_without_validation, "--out", run_dir)
        assert code == 2
        assert "validation split is empty" in one_line(err)
        assert not run_dir.exists() and "model in" not in out


def test_max_steps_0_claims_no_model(tiny_cache, tmp_path, train_here):
    run_dir = tmp_path / "run"
    code, out, err = train_here("vocoder", *VOCODER, "--data", tiny_cache, "--out", run_dir, "--max-steps", 0)
    assert code == 0, err[-2000:]
    assert "no model exported" in out and "best" not in out
    assert not (run_dir / "best").exists()
    # a run that did export names the model with its step
    code, out, _ = train_here("vocoder", *VOCODER, "--data", tiny_cache, "--out", tmp_path / "b", "--max-steps", 2)
    assert "best model (step 2, val/loss" in out and str(tmp_path / "b" / "best") in out


# ------------------------------------------------------------------------------ sizes before the first step


def peak_rss_of(cmd: list[str]) -> tuple[subprocess.CompletedProcess, int, float]:
    """Run ``cmd`` in a fresh interpreter that reports its child's peak RSS (bytes) and wall time."""
    wrapper = ("import json, resource, subprocess, sys, time; t = time.time(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(json.dumps([r.returncode, r.stdout, r.stderr, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, time.time() - t]))")
    out = subprocess.run([sys.executable, "-c", wrapper, *map(str, cmd)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=env())
    code, stdout, stderr, peak, seconds = json.loads(out.stdout)
    return subprocess.CompletedProcess(cmd, code, stdout, stderr), peak, seconds


def test_a_window_longer_than_every_training_piece_is_refused(tiny_cache, tmp_path, train_here):
    run_dir = tmp_path / "run"
    code, _, err = train_here("vocoder", *VOCODER, "--data", tiny_cache, "--out", run_dir,
                              "--set", "train.segment_frames=100000")
    assert code == 2
    line = one_line(err)
    assert "train.segment_frames 100000" in line and "longest training piece" in line
    assert not run_dir.exists()


def test_a_step_too_big_for_the_machine_is_refused_in_seconds_with_little_memory(tiny_cache, tmp_path):
    run_dir = tmp_path / "run"
    result, peak, seconds = peak_rss_of([sys.executable, "train_vocoder.py", *VOCODER, "--data", tiny_cache,
                                         "--out", run_dir, "--set", "train.batch_size=100000000"])
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert "train.batch_size 100000000" in line and "GiB per training step" in line and "available" in line
    assert peak < 1.5 * 2**30 and seconds < 120, (peak, seconds)
    assert not run_dir.exists()


def test_the_memory_probe_scales_and_leaves_the_task_as_it_was(tiny_cache):
    from accelerate import Accelerator

    from audiogen.tasks import VocoderTask, _synthetic_batch, load_trainer_config
    from audiogen.training import step_memory_estimate

    config = load_trainer_config(ROOT / "configs/vocoder/tiny.yaml")
    torch.manual_seed(0)
    task = VocoderTask(config)
    weights = {k: v.clone() for k, v in task.networks["generator"].state_dict().items()}
    rng = torch.get_rng_state()
    accelerator = Accelerator(cpu=True)

    def estimate(frames: int, batch: int) -> int:
        return step_memory_estimate(task, _synthetic_batch(config, accelerator.device), frames, 1, batch,
                                    accelerator, config.optim, ema=True)

    small, longer, wider = estimate(64, 2), estimate(4096, 2), estimate(64, 200)
    assert longer > 20 * small and wider > 20 * small
    assert 50 < (longer - estimate(64, 2)) / (estimate(128, 2) - small) < 80  # linear in the window, ~(4096-64)/64
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, weights[k]) for k, v in task.networks["generator"].state_dict().items())
    assert all(p.grad is None for net in task.networks.values() for p in net.parameters())


# ------------------------------------------------------------------------------ a full disk


@pytest.fixture
def small_disk(tmp_path):
    """Mounts a tmpfs of a chosen size (root only); yields the mount function."""
    mounts = []

    def mount(kib: int) -> Path:
        target = tmp_path / f"disk{len(mounts)}"
        target.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(target)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip()})")
        mounts.append(target)
        return target

    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    for target in mounts:
        subprocess.run(["umount", str(target)], check=False)


def folder_kib(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) // 1024


def test_a_full_disk_during_training_ends_in_one_line_and_keeps_the_last_checkpoint(tiny_cache, tmp_path, small_disk,
                                                                                     train_here):
    # the size of one checkpoint of this config, from a run on the ordinary disk
    probe = tmp_path / "probe"
    settings = [*VOCODER, "--data", tiny_cache, "--set", "train.ckpt_every=1", "--set", "train.val_every=1000"]
    assert train_here("vocoder", *settings, "--out", probe, "--max-steps", 1)[0] == 0
    checkpoint_kib = folder_kib(latest_checkpoint(probe))
    # room for the config, the log and one checkpoint, not for a second one beside it
    disk = small_disk(checkpoint_kib * 3 // 2 + 64)
    run_dir = disk / "run"
    result = trainer("train_vocoder.py", *settings, "--out", run_dir, "--max-steps", 1000)
    assert result.returncode == 3, result.stderr[-2000:]
    line = last_line(result.stderr)
    assert line.startswith("train_vocoder.py: error: no space left on the device") and "step-0000002" in line, line
    last = latest_checkpoint(run_dir)
    assert last is not None and last.name == "step-0000001"
    for name in ("generator", "disc", "ema"):
        assert load_state_dict(last / f"{name}.safetensors")
    assert torch.load(last / "optim.pt", weights_only=True)["optimizers"]
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))  # the half checkpoint is gone, its space free
    # and the run resumes from it once there is room
    shutil.copytree(run_dir, tmp_path / "moved", ignore=shutil.ignore_patterns("trainer.lock"))
    code, _, err = train_here("vocoder", *settings, "--out", tmp_path / "moved", "--resume", "--max-steps", 2)
    assert code == 0, err[-2000:]
    assert training_steps(tmp_path / "moved") == [1, 2]


def test_a_metrics_write_on_a_full_disk_leaves_the_log_whole(small_disk):
    disk = small_disk(64)
    _log(disk, {"step": 1, "loss": 0.5})
    before = (disk / "metrics.jsonl").read_bytes()
    with open(disk / "filler", "wb", buffering=0) as handle, pytest.raises(OSError):
        while True:
            handle.write(b"\0" * 4096)
    with pytest.raises(OSError, match="No space") as caught:
        _log(disk, {"step": 2, "loss": 0.25, "padding": "x" * 8192})
    assert caught.value.filename == str(disk / "metrics.jsonl")
    assert (disk / "metrics.jsonl").read_bytes() == before


# ------------------------------------------------------------------------------ bad inputs, one line each


def bad_inputs(tmp_path: Path, cache: Path, spec: bool) -> dict[str, tuple[list[str], str]]:
    """Name → (arguments, a fragment of the one line), for one trainer."""
    config = "configs/spec/tiny.yaml" if spec else "configs/vocoder/tiny.yaml"
    (tmp_path / "bad.yaml").write_text("train: {batch_size: 2\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "empty_cache").mkdir(exist_ok=True)
    other = "configs/vocoder/tiny.yaml" if spec else "configs/spec/tiny.yaml"

    def run(*extra: str, cfg: str = config, data: Path = cache) -> list[str]:
        return ["--config", cfg, "--data", str(data), "--out", str(tmp_path / "run"), "--cpu", *extra]

    cases = {
        "missing config": (run(cfg=str(tmp_path / "nope.yaml")), "config file not found"),
        "bad YAML": (run(cfg=str(tmp_path / "bad.yaml")), "not valid YAML"),
        "YAML list": (run(cfg=str(tmp_path / "list.yaml")), "expected a mapping"),
        "unknown key": (run("--set", "train.bogus=1"), "bogus"),
        "--set without =": (run("--set", "train.batch_size"), "expected key=value"),
        "--set bad YAML": (run("--set", "train.batch_size=[1"), "not a YAML value"),
        "--set a word for a number": (run("--set", "optim.lr=fast"), "optim.lr"),
        "--set a fraction for an int": (run("--set", "train.batch_size=2.5"), "train.batch_size"),
        "--set into a value": (run("--set", "train.batch_size.x=1"), "not a section"),
        "missing data folder": (run(data=tmp_path / "no-cache"), "cache folder not found"),
        "data is a file": (run(data=tmp_path / "bad.yaml"), "cache folder not found"),
        "data folder not a cache": (run(data=tmp_path / "empty_cache"), "no index.json"),
        "negative --max-steps": (run("--max-steps", "-1"), "max_steps"),
        "log_every 0": (run("--set", "train.log_every=0"), "log_every"),
        "one beta": (run("--set", "optim.betas=[0.9]"), "optim.betas"),
        "negative learning rate": (run("--set", "optim.lr=-1e-4"), "lr must be positive"),
        "ema_decay above 1": (run("--set", "train.ema_decay=2"), "ema_decay"),
        "negative num_workers": (run("--set", "train.num_workers=-1"), "num_workers"),
        "val_seconds 0": (run("--set", "train.val_seconds=0"), "val_seconds"),
        "a negative loss weight": (run("--set", "loss_weights.adv/feat=-1"), "loss_weights"),
        "batch not divisible by grad_accum": (run("--set", "train.grad_accum=3"), "grad_accum"),
        "missing init_from": (run("--set", f"init_from={tmp_path / 'no-model'}"), "no-model"),
        "--allow-config-change alone": (run("--allow-config-change"), "--allow-config-change"),
        "--out inside a file": (["--config", config, "--data", str(cache), "--out", str(tmp_path / "bad.yaml" / "run"),
                                 "--cpu"], "bad.yaml"),
        "the other trainer's config": (run(cfg=other), "belongs to"),
    }
    if spec:
        prior = "configs/spec/tiny_prior.yaml"
        cases["missing vae_dir"] = (run("--set", f"vae_dir={tmp_path / 'no-vae'}", cfg=prior), "no-vae")
        cases["prior without vae_dir"] = (run("--set", "vae_dir=null", cfg=prior), "needs vae_dir")
        cases["a model that cannot be built"] = (run("--set", "model.channels=[8, 12]"), "model")
    else:
        cases["unknown vocoder kind"] = (run("--set", "model.kind=nope"), "nope")
    return cases


@pytest.mark.parametrize("task", ["vocoder", "vae"])
def test_every_bad_input_to_the_trainers_ends_in_one_line(task, tiny_cache, tmp_path, capsys):
    from audiogen.tasks import run_trainer

    prog = "train_spec.py" if task == "vae" else "train_vocoder.py"
    cases = bad_inputs(tmp_path, tiny_cache, spec=task == "vae")
    for name, (args, fragment) in cases.items():
        code = run_trainer(task, args)
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        line = one_line(err)
        assert line.startswith(f"{prog}: error: ") and fragment in line, (name, line)
        assert not (tmp_path / "run").exists(), name
    assert len(cases) >= 26


def test_a_bad_input_ends_in_one_line_as_users_run_it(tiny_cache, tmp_path):
    for script in ("train_vocoder.py", "train_spec.py"):
        result = trainer(script, "--config", tmp_path / "nope.yaml", "--data", tiny_cache, "--out", tmp_path / "r")
        assert result.returncode == 2
        assert one_line(result.stderr) == f"{script}: error: {tmp_path / 'nope.yaml'}: config file not found"
