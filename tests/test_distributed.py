"""Both trainers on two CPU processes (``accelerate launch``, gloo), against one process.

Every run goes through a small wrapper that records, per rank, the dataset items the loader
reads, the losses of each step and every write under the run folder and the cache (Python's
audit hooks see ``open`` for writing, ``mkdir``, ``rename``, ``rmtree``), then runs the trainer
script unchanged. Checked: the ranks read disjoint halves of exactly the single-process batch
of each step; only rank 0 writes; the logged losses (the mean over ranks) agree with a
one-process run of the same global batch; a distributed run resumes to the same losses and weights.

Tolerances, measured on this config: the vocoder has no randomness in its step, so two
processes (gradients averaged by DDP's all-reduce) agree with one to float32 rounding: 4e-7
relative on every logged value; asserted at 1e-5. The VAE draws posterior noise, and each rank
draws from its own generator (seed + rank), so the second half of the batch gets other noise
than in one process: losses agree to 2.6e-3 relative, the VAE's gradient norm to 2.3e-2; asserted
at 1e-2 and 1e-1. A distributed run and its resumed twin are bitwise equal; asserted at 1e-6.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audiogen.checkpoint import load_state_dict

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")
STEPS = 4
COMMON = ["--set", f"train.max_steps={STEPS}", "--set", "train.ckpt_every=1", "--set", "train.keep_checkpoints=4",
          "--set", "train.log_every=1", "--set", "train.val_every=2", "--set", "train.val_seconds=0.5"]
TASKS = {
    "vocoder": ("train_vocoder.py", "configs/vocoder/tiny.yaml"),
    "spec": ("train_spec.py", "configs/spec/tiny.yaml"),
}

RECORDER = """
import json, os, runpy, sys

rank = int(os.environ.get("RANK", "0"))
record = open(os.path.join(os.environ["RECORD_DIR"], f"rank{rank}.jsonl"), "a", buffering=1)
watched = [os.path.realpath(p) for p in os.environ["RECORD_WATCH"].split(os.pathsep)]
WRITES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.link", "os.symlink",
          "os.truncate", "shutil.copyfile", "shutil.move"}

def emit(**fields):
    record.write(json.dumps(fields) + "\\n")

def watched_path(path):
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False
    path = os.path.realpath(os.fsdecode(path))
    return any(path == w or path.startswith(w + os.sep) for w in watched)

def audit(event, args):
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if mode else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing and watched_path(path):
            emit(kind="write", event=event, path=os.fsdecode(path))
    elif event in WRITES and any(watched_path(a) for a in args):
        emit(kind="write", event=event, path=[os.fsdecode(a) for a in args if watched_path(a)][0])

import audiogen.datasets as datasets
import audiogen.tasks as tasks

read_item = datasets.SegmentDataset.__getitem__
def getitem(self, index):
    emit(kind="item", epoch=self.epoch, index=index)
    return read_item(self, index)
datasets.SegmentDataset.__getitem__ = getitem

def recording(step_fn):
    def train_step(self, batch, ctx):
        logs = step_fn(self, batch, ctx)
        emit(kind="losses", step=ctx.step + 1, losses=logs)
        return logs
    return train_step
for task in (tasks.VocoderTask, tasks.SpecVAETask):
    task.train_step = recording(task.train_step)

sys.addaudithook(audit)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(processes: int, task: str, cache: Path, run_dir: Path, record_dir: Path, *extra: str) -> str:
    """Run a trainer on ``processes`` CPU processes under the recorder; returns its output."""
    script, config = TASKS[task]
    record_dir.mkdir(parents=True, exist_ok=True)
    recorder = record_dir.parent / "recorder.py"
    recorder.write_text(RECORDER)
    trainer = [str(recorder), script, "--config", config, "--data", str(cache), "--out", str(run_dir), *COMMON,
               *extra]
    if processes == 1:
        cmd = [sys.executable, *trainer]
    else:
        # the shipped two-process CPU config (torchrun-style launcher, gloo); see docs/training.md
        cmd = [str(ACCELERATE), "launch", "--config_file", "configs/accelerate/cpu_2proc.yaml",
               "--num_processes", str(processes), "--main_process_port", str(free_port()), *trainer]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RECORD_DIR=str(record_dir),
               RECORD_WATCH=os.pathsep.join([str(run_dir), str(cache)]))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:  # a hung process group (e.g. a rank waiting on a dead peer)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output[-4000:]
    return output


def records(record_dir: Path, rank: int) -> list[dict]:
    path = record_dir / f"rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def items_by_step(record_dir: Path, rank: int) -> dict[int, list[tuple[int, int]]]:
    """The (epoch, index) items each step of a rank read (the loader reads a step's items just
    before its training step; one micro-batch per step here)."""
    out, pending = {}, []
    for r in records(record_dir, rank):
        if r["kind"] == "item":
            pending.append((r["epoch"], r["index"]))
        elif r["kind"] == "losses":
            out[r["step"]], pending = pending, []
    return out


def logged(run_dir: Path) -> dict[int, dict[str, float]]:
    """Training records of metrics.jsonl by step (``time`` and learning rates left out)."""
    out: dict[int, dict[str, float]] = {}
    for record in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()):
        if "val/loss" not in record:
            assert record["step"] not in out, f"step {record['step']} logged twice"
            out[record["step"]] = {k: v for k, v in record.items() if k not in ("step", "time")}
    return out


def relative_differences(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> dict[str, float]:
    assert a.keys() == b.keys()
    worst: dict[str, float] = {}
    for step in a:
        assert a[step].keys() == b[step].keys(), step
        for key, value in a[step].items():
            rel = abs(value - b[step][key]) / max(abs(value), 1e-12)
            worst[key] = max(worst.get(key, 0.0), rel)
    return worst


@pytest.fixture(scope="module")
def runs(tiny_cache, tmp_path_factory):
    """Each trainer for STEPS steps on one process and on two; the VAE's two-process run also
    resumed from its checkpoint at STEPS / 2 (a copy of the run folder as a run stopped there
    leaves it)."""
    base = tmp_path_factory.mktemp("distributed")
    out = {"cache": tiny_cache}
    for task in TASKS:
        for processes in (1, 2):
            name = f"{task}-{processes}"
            output = launch(processes, task, tiny_cache, base / name, base / f"{name}-rec")
            out[name] = (base / name, base / f"{name}-rec", output)
    straight = base / "spec-2"
    resumed = base / "spec-2-resumed"
    shutil.copytree(straight, resumed, ignore=shutil.ignore_patterns("best", "val"))
    half = STEPS // 2
    for folder in (resumed / "checkpoints").glob("step-*"):
        if int(folder.name.removeprefix("step-")) > half:
            shutil.rmtree(folder)
    (resumed / "checkpoints" / "latest").write_text(f"step-{half:07d}\n")
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    (resumed / "metrics.jsonl").write_text("".join(f"{x}\n" for x in lines if json.loads(x)["step"] <= half))
    output = launch(2, "spec", tiny_cache, resumed, base / "spec-2-resumed-rec", "--resume")
    out["spec-2-resumed"] = (resumed, base / "spec-2-resumed-rec", output)
    return out


@pytest.mark.parametrize("task", TASKS)
def test_two_ranks_read_disjoint_halves_of_the_single_process_batches(runs, task):
    _, single, _ = runs[f"{task}-1"]
    _, double, output = runs[f"{task}-2"]
    assert json.loads((runs[f"{task}-2"][0] / "best" / "provenance.json").read_text())["processes"] == 2
    one = items_by_step(single, 0)
    rank0, rank1 = items_by_step(double, 0), items_by_step(double, 1)
    assert sorted(one) == sorted(rank0) == sorted(rank1) == list(range(1, STEPS + 1))
    for step in one:
        assert len(rank0[step]) == len(rank1[step]) == len(one[step]) // 2 >= 1
        assert not set(rank0[step]) & set(rank1[step]), step
        assert rank0[step] + rank1[step] == one[step], step  # rank r takes slice r of the global batch
    distinct = {item for step in one for item in one[step]}
    assert len(distinct) > 2  # the batches move through the data


@pytest.mark.parametrize("task", TASKS)
def test_only_the_main_process_writes(runs, task):
    run_dir, record_dir, output = runs[f"{task}-2"]
    writes = [r["path"] for r in records(record_dir, 1) if r["kind"] == "write"]
    assert writes == []
    main = [r["path"] for r in records(record_dir, 0) if r["kind"] == "write"]
    assert any(p.endswith("metrics.jsonl") for p in main)  # the recorder sees what rank 0 writes
    assert any("/checkpoints/" in p for p in main) and any("best" in Path(p).name for p in main)
    assert not [p for p in main if Path(p).resolve().is_relative_to(runs["cache"].resolve())]  # data is read-only
    assert output.count("done: step") == 1
    assert sorted(logged(run_dir)) == list(range(1, STEPS + 1))  # one record per step, not one per rank
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step-*")) == [
        f"step-{s:07d}" for s in range(1, STEPS + 1)]


@pytest.mark.parametrize("task, losses_rtol, grad_rtol", [("vocoder", 1e-5, 1e-5), ("spec", 1e-2, 1e-1)])
def test_logged_losses_agree_with_one_process(runs, task, losses_rtol, grad_rtol):
    single_dir, _, _ = runs[f"{task}-1"]
    double_dir, double_rec, _ = runs[f"{task}-2"]
    single, double = logged(single_dir), logged(double_dir)
    worst = relative_differences(single, double)
    for key, rel in worst.items():
        limit = grad_rtol if key.startswith("grad_norm/") else losses_rtol
        assert rel <= limit, (key, rel, worst)
    # what is logged is the mean of the two ranks' own losses (each on its half of the batch)
    per_rank = [{r["step"]: r["losses"] for r in records(double_rec, rank) if r["kind"] == "losses"} for rank in (0, 1)]
    for step, values in double.items():
        for key in per_rank[0][step]:
            assert values[key] == pytest.approx((per_rank[0][step][key] + per_rank[1][step][key]) / 2, rel=1e-6)
    if task == "vocoder":  # and the weights after STEPS steps are the same
        final = f"checkpoints/step-{STEPS:07d}/generator.safetensors"
        a, b = load_state_dict(single_dir / final), load_state_dict(double_dir / final)
        assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)


def test_distributed_run_resumes_to_the_same_losses_and_weights(runs):
    straight, _, _ = runs["spec-2"]
    resumed, record_dir, output = runs["spec-2-resumed"]
    assert f"resumed from {resumed / 'checkpoints' / f'step-{STEPS // 2:07d}'} at step {STEPS // 2}" in output
    assert sorted(items_by_step(record_dir, 1)) == list(range(STEPS // 2 + 1, STEPS + 1))
    a, b = logged(straight), logged(resumed)
    assert a.keys() == b.keys()
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-7), step
    final = f"checkpoints/step-{STEPS:07d}"
    for name in ("vae", "disc", "ema"):
        x = load_state_dict(straight / final / f"{name}.safetensors")
        y = load_state_dict(resumed / final / f"{name}.safetensors")
        assert all(torch.allclose(x[k], y[k], rtol=1e-6, atol=1e-7) for k in x), name
