"""A real trainer (`train_spec.py`, tiny VAE/GAN) killed with SIGKILL mid-run resumes exactly.

One run is stopped cleanly at N/2, then resumed and killed five times (two kills placed by a hook
at the worst moments of a checkpoint write, three at seeded random moments), then resumed to N.
After every kill, ``checkpoints/latest`` must name a complete checkpoint; at the end, the weights,
EMA, optimiser state and every logged loss must equal those of an uninterrupted run of N steps.
The VAE draws posterior noise each step, so the RNG state must survive the resumes too.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from audiogen.checkpoint import load_state_dict

ROOT = Path(__file__).resolve().parents[1]
STEPS = 24  # N; the clean stop is at N / 2; room for three random kills of <= 4 steps each
SETTINGS = [
    "--config", "configs/spec/tiny.yaml",
    "--set", f"train.max_steps={STEPS}",
    "--set", "train.ckpt_every=1",  # a checkpoint every step: most kills land near or inside one
    "--set", "train.val_every=12",  # validations (best/ exports) at N/2 and N
    "--set", "train.log_every=1",
    "--set", "train.keep_checkpoints=2",
    "--cpu",
]  # fmt: skip
NETWORKS = ("vae", "disc", "ema")

# Runs the trainer with a hook that kills the process at a chosen point of a checkpoint write:
#   CRASH=inside:K   after the first weights file of checkpoint K (its folder is half written)
#   CRASH=pointer:K  after checkpoint K's folder is renamed into place, before `latest` names it
HOOKED_TRAINER = """
import os, runpy, signal, sys
import audiogen.training as training

where, step = os.environ["CRASH"].split(":")
name = f"step-{int(step):07d}"

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if where == "inside":
    save = training.save_state_dict
    def save_state_dict(state, path):
        save(state, path)
        if os.path.basename(os.path.dirname(str(path))) == ".tmp-" + name:
            die()
    training.save_state_dict = save_state_dict
else:
    write = training.atomic_write_text
    def atomic_write_text(path, text):
        if os.path.basename(str(path)) == "latest" and text.strip() == name:
            die()
        write(path, text)
    training.atomic_write_text = atomic_write_text
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def trainer_env() -> dict[str, str]:
    # one thread: the same float reductions in every run (and no fight over the 2 shared cores)
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def command(cache: Path, run_dir: Path, *extra: str, hook: Path | None = None) -> list[str]:
    prefix = [sys.executable] + ([str(hook)] if hook else [])
    return [*prefix, "train_spec.py", *SETTINGS, "--data", str(cache), "--out", str(run_dir), *extra]


def run_to_end(cmd: list[str], log: Path) -> subprocess.CompletedProcess:
    with open(log, "a") as handle:
        result = subprocess.run(cmd, cwd=ROOT, env=trainer_env(), stdout=handle, stderr=handle, timeout=300)
    assert result.returncode == 0, log.read_text()[-3000:]
    return result


def run_until_hook_kills(cmd: list[str], crash: str, log: Path) -> None:
    with open(log, "a") as handle:
        result = subprocess.run(cmd, cwd=ROOT, env=dict(trainer_env(), CRASH=crash), stdout=handle,
                                stderr=handle, timeout=300)
    assert result.returncode == -signal.SIGKILL, (crash, log.read_text()[-3000:])


def metric_lines(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_until_killed(cmd: list[str], run_dir: Path, new_lines: int, delay: float, log: Path) -> bool:
    """Start a run, wait until it has logged ``new_lines`` more lines (so it is training, past
    start-up), wait ``delay`` seconds more and SIGKILL it; True when it was still running."""
    with open(log, "a") as handle:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=trainer_env(), stdout=handle, stderr=handle,
                                start_new_session=True)
        try:
            target = metric_lines(run_dir) + new_lines
            deadline = time.monotonic() + 120
            while proc.poll() is None and metric_lines(run_dir) < target and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(delay)
            alive = proc.poll() is None
            if alive:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return alive and proc.returncode == -signal.SIGKILL


def latest_step(run_dir: Path) -> int:
    return int((run_dir / "checkpoints" / "latest").read_text().strip().removeprefix("step-"))


def check_latest_is_complete(run_dir: Path) -> int:
    """``latest`` names a whole checkpoint: every file present and readable; returns its step."""
    folder = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    expected = {f"{n}.safetensors" for n in NETWORKS} | {"optim.pt", "state.json"}
    assert {p.name for p in folder.iterdir()} == expected, folder
    for name in NETWORKS:
        assert load_state_dict(folder / f"{name}.safetensors")
    extra = torch.load(folder / "optim.pt", map_location="cpu", weights_only=True)
    assert set(extra) == {"optimizers", "schedulers", "rng"}
    state = json.loads((folder / "state.json").read_text())
    assert folder.name == f"step-{state['step']:07d}"
    return state["step"]


def losses_by_step(run_dir: Path) -> dict[int, dict[str, float]]:
    """The training losses logged for each step; a step logged again after a resume keeps its
    last record (the run that went on from it)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "val/loss" not in record:
            out[record["step"]] = {k: v for k, v in record.items() if k != "time"}
    return out


def seconds_per_step(run_dir: Path) -> float:
    """Mean wall time of a step (checkpoint included) in an uninterrupted run."""
    times = {r["step"]: r["time"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
             if "val/loss" not in r}
    return (times[STEPS] - times[1]) / (STEPS - 1)


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


def flatten(tree, prefix=""):
    """Tensors and numbers of a nested optimiser state dict, by path."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flatten(sub, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in flatten(sub, f"{prefix}/{i}").items()}
    return {prefix: tree}


@pytest.fixture(scope="module")
def reference(tiny_cache, tmp_path_factory) -> Path:
    """An uninterrupted run of N steps."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    run_to_end(command(tiny_cache, run_dir), run_dir.parent / "log.txt")
    return run_dir


def test_killed_run_resumes_from_complete_checkpoints_to_the_same_weights(tiny_cache, reference, tmp_path):
    run_dir, log = tmp_path / "run", tmp_path / "log.txt"
    hook = tmp_path / "hooked_trainer.py"
    hook.write_text(HOOKED_TRAINER)
    resume = command(tiny_cache, run_dir, "--resume")
    rows = losses_by_step(reference)
    step_seconds = seconds_per_step(reference)

    # N/2 steps, stopped cleanly, then resumed below
    run_to_end(command(tiny_cache, run_dir, "--max-steps", str(STEPS // 2)), log)
    assert check_latest_is_complete(run_dir) == STEPS // 2

    # killed after the first weights file of the next checkpoint: that folder is half written
    # under its temporary name, and `latest` still names the previous, complete one
    step = latest_step(run_dir) + 1
    run_until_hook_kills(command(tiny_cache, run_dir, "--resume", hook=hook), f"inside:{step}", log)
    half = run_dir / "checkpoints" / f".tmp-step-{step:07d}"
    assert half.is_dir() and len(list(half.iterdir())) == 1
    assert check_latest_is_complete(run_dir) == step - 1

    crashes = 1
    rng = random.Random(20240607)  # fixed seed: the same kill moments on every run of the test
    for round_ in range(3):
        if round_ == 1:
            # killed between renaming the checkpoint folder into place and pointing `latest` at it
            step = latest_step(run_dir) + 1
            run_until_hook_kills(command(tiny_cache, run_dir, "--resume", hook=hook), f"pointer:{step}", log)
            assert (run_dir / "checkpoints" / f"step-{step:07d}" / "state.json").is_file()
            assert check_latest_is_complete(run_dir) == step - 1
            crashes += 1
        before = latest_step(run_dir)
        # a random moment: 1-2 logged steps after the restart, then up to one step's time more
        killed = run_until_killed(resume, run_dir, rng.randint(1, 2), rng.uniform(0, 1) * step_seconds, log)
        assert killed, f"round {round_}: the run ended before the kill (started at step {before})"
        crashes += 1
        assert before <= check_latest_is_complete(run_dir) < STEPS

    run_to_end(resume, log)
    assert crashes == 5
    assert check_latest_is_complete(run_dir) == STEPS
    assert (log.read_text().count("resumed from")) == 6  # every restart continued a checkpoint

    # the same losses at every step ...
    resumed_rows = losses_by_step(run_dir)
    assert sorted(resumed_rows) == list(range(1, STEPS + 1))
    for step in rows:
        assert resumed_rows[step] == pytest.approx(rows[step], rel=1e-6, abs=1e-7), step
    # ... the same weights, EMA and optimiser state, and the same exported model
    final = f"checkpoints/step-{STEPS:07d}"
    for name in NETWORKS:
        a = load_state_dict(reference / final / f"{name}.safetensors")
        b = load_state_dict(run_dir / final / f"{name}.safetensors")
        assert max_difference(a, b) <= 1e-6, name
    assert max_difference(load_state_dict(reference / "best" / "vae.safetensors"),
                          load_state_dict(run_dir / "best" / "vae.safetensors")) <= 1e-6
    opt_a = flatten(torch.load(reference / final / "optim.pt", weights_only=True))
    opt_b = flatten(torch.load(run_dir / final / "optim.pt", weights_only=True))
    assert opt_a.keys() == opt_b.keys()
    for key, value in opt_a.items():
        if torch.is_tensor(value):
            assert torch.allclose(value.double(), opt_b[key].double(), rtol=1e-5, atol=1e-7), key
        else:
            assert value == opt_b[key], key
    state_a = json.loads((reference / final / "state.json").read_text())
    state_b = json.loads((run_dir / final / "state.json").read_text())
    for key in ("step", "best_val", "evals_since_best", "skipped_steps"):
        assert state_a[key] == pytest.approx(state_b[key], rel=1e-6), key
