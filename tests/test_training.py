"""The shared loop on a toy task: resume is exact, NaN steps are skipped, data order is fixed."""

import json

import pytest
import torch
from torch import nn

from audiogen.checkpoint import load_state_dict
from audiogen.config import ConfigError, apply_overrides, from_dict
from audiogen.training import (
    OptimConfig,
    Task,
    TrainConfig,
    TrainingStopped,
    global_batch_indices,
    latest_checkpoint,
    train,
)


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n=40):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


class ToyTask(Task):
    ema_network = "net"

    def __init__(self, nan_at=(), dropout=0.2):
        torch.manual_seed(1)
        self.networks = {"net": nn.Sequential(nn.Dropout(dropout), nn.Linear(4, 1))}
        self.nan_at = set(nan_at)

    def train_step(self, batch, ctx):
        pred = ctx.networks["net"](batch["x"]).squeeze(-1)
        loss = ((pred - batch["y"]) ** 2).mean()
        if ctx.step in self.nan_at:
            loss = loss * float("nan")
        ctx.backward(loss)
        ctx.optimizer_step("net")
        return {"toy/mse": loss.item()}

    def validate(self, ctx):
        return {"val/loss": float(ctx.networks["net"][1].weight.sum().abs())}

    def export(self, ctx):
        return {"net": ctx.networks["net"]}


def run(tmp_path, steps, resume=False, task=None, lr=1e-2, **cfg):
    from accelerate import Accelerator

    config = TrainConfig(batch_size=8, max_steps=steps, log_every=1, val_every=5, ckpt_every=3, seed=3, **cfg)
    task = task or ToyTask()
    state = train(task, ToyData(), [], config, OptimConfig(lr=lr, betas=(0.9, 0.99)), tmp_path,
                  Accelerator(cpu=True), resume=resume)
    return task, state


def test_resume_is_exact(tmp_path):
    straight, _ = run(tmp_path / "a", 12)
    run(tmp_path / "b", 6)
    resumed, state = run(tmp_path / "b", 12, resume=True)
    assert state.step == 12
    for p, q in zip(straight.networks["net"].parameters(), resumed.networks["net"].parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    losses = lambda d: [r["toy/mse"] for r in map(json.loads, open(d / "metrics.jsonl")) if "toy/mse" in r]  # noqa: E731
    assert losses(tmp_path / "a") == pytest.approx(losses(tmp_path / "b"), abs=1e-6)
    ema_a = load_state_dict(latest_checkpoint(tmp_path / "a") / "ema.safetensors")
    ema_b = load_state_dict(latest_checkpoint(tmp_path / "b") / "ema.safetensors")
    assert all(torch.allclose(ema_a[k], ema_b[k], atol=1e-6) for k in ema_a)
    assert (tmp_path / "a" / "best" / "net.safetensors").exists()


def test_training_reduces_loss(tmp_path):
    run(tmp_path, 30, task=ToyTask(dropout=0.0), lr=0.2, ema_decay=None)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    mse = [r["toy/mse"] for r in rows if "toy/mse" in r]
    assert sum(mse[-5:]) < 0.5 * sum(mse[:5])


def test_nan_step_skipped_then_run_stops(tmp_path):
    task, state = run(tmp_path / "skip", 6, task=ToyTask(nan_at={2}))
    assert state.step == 6 and state.skipped_steps == 1
    warnings = [json.loads(line) for line in open(tmp_path / "skip" / "metrics.jsonl") if "warning" in line]
    assert len(warnings) == 1
    with pytest.raises(TrainingStopped, match="in a row"):
        run(tmp_path / "stop", 10, task=ToyTask(nan_at=set(range(4, 100))), max_bad_steps=3)
    # the last good checkpoint (step 3) is intact and loadable
    last = latest_checkpoint(tmp_path / "stop")
    assert last.name == "step-0000003"
    assert load_state_dict(last / "net.safetensors")


def test_global_batches_are_disjoint_across_ranks_and_cover_epochs():
    seen = []
    for step in range(5):
        _, idx = global_batch_indices(step, 0, 1, 8, 40, seed=0)
        seen += idx
    assert sorted(seen) == list(range(40))  # one epoch, each sample once
    _, again = global_batch_indices(2, 0, 1, 8, 40, seed=0)
    assert again == seen[16:24]


def test_wall_time_budget_stops_with_a_checkpoint_and_an_export(tmp_path):
    _, state = run(tmp_path, 1000, max_minutes=1e-9)
    assert state.step == 1  # log_every=1: the budget is checked after every step
    assert latest_checkpoint(tmp_path).name == "step-0000001"
    assert (tmp_path / "best" / "net.safetensors").exists()
    with pytest.raises(ValueError, match="max_minutes"):
        TrainConfig(max_minutes=0)


def test_set_overrides_parse_values_and_keep_words():
    data = apply_overrides({"train": {"batch_size": 8}}, [
        "train.batch_size=16", "train.mixed_precision=no", "train.max_minutes=2.5",
        "train.early_stop_patience=null",
    ])
    cfg = from_dict(TrainConfig, data["train"])
    assert cfg.batch_size == 16 and cfg.mixed_precision == "no" and cfg.max_minutes == 2.5
    assert cfg.early_stop_patience is None
    assert apply_overrides({}, ["a.b=true", "a.c=off"]) == {"a": {"b": True, "c": "off"}}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.batch_size"])
