"""Training you can watch: a real run logged to TensorBoard, read back from its event files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from audiogen.config import ConfigError
from audiogen.trackers import flat_hparams, parse_log_with, scalar_values

ROOT = Path(__file__).resolve().parents[1]


def test_log_with_names_are_checked():
    assert parse_log_with(None) == [] and parse_log_with("") == []
    with pytest.raises(ConfigError, match="unknown tracker 'mlflow'"):
        parse_log_with("tensorboard,mlflow")


def test_a_tracker_that_is_not_installed_is_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(ConfigError, match="wandb is not installed"):
        parse_log_with("wandb")


def test_config_is_flattened_to_scalars_and_records_to_numbers():
    flat = flat_hparams({"optim": {"lr": 1e-3, "betas": [0.9, 0.99]}, "task": "prior", "x": None})
    assert flat == {"optim/lr": 1e-3, "optim/betas": "[0.9, 0.99]", "task": "prior", "x": "None"}
    assert scalar_values({"step": 5, "time": 1.5, "val/loss": 0.25, "best": True, "warning": "w"}) == {
        "time": 1.5, "val/loss": 0.25}


def test_tensorboard_gets_losses_validation_pictures_and_audio(tiny_cache, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "voc"
    result = subprocess.run(
        [sys.executable, "train_vocoder.py", "--config", "configs/vocoder/tiny.yaml", "--data", str(tiny_cache),
         "--out", str(run_dir), "--set", "train.log_with=tensorboard"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    event_files = list(run_dir.rglob("events.out.tfevents.*"))
    assert event_files, "no TensorBoard event file under the run folder"
    events = EventAccumulator(str(event_files[0].parent), size_guidance={"images": 0, "audio": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert "val/loss" in tags["scalars"]
    assert any(tag.startswith("lr/") for tag in tags["scalars"])
    assert any("/" in tag and not tag.startswith(("val/", "lr/", "grad_norm/")) for tag in tags["scalars"])  # a loss
    steps = [event.step for event in events.Scalars("val/loss")]
    assert steps == sorted(steps) and steps[-1] == 4  # the tiny config validates at steps 2 and 4
    assert tags["images"], "validation spectrograms were not logged"
    assert tags["audio"], "validation audio was not logged"
    assert (run_dir / "metrics.jsonl").stat().st_size > 0  # the JSONL record stays


def test_an_unknown_tracker_is_one_line_before_training(tiny_cache, tmp_path):
    result = subprocess.run(
        [sys.executable, "train_vocoder.py", "--config", "configs/vocoder/tiny.yaml", "--data", str(tiny_cache),
         "--out", str(tmp_path / "voc"), "--set", "train.log_with=mlflow"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("choose from tensorboard, wandb")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "voc" / "checkpoints").exists()
