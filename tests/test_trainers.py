"""End to end on test-made data: both trainers as users run them, then generate from the result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def run(*args, check=True):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def metrics(run_dir):
    return [json.loads(line) for line in open(run_dir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    """Tiny vocoder, VAE and prior runs on the tiny cache (a few steps each)."""
    out = tmp_path_factory.mktemp("runs")
    run("train_vocoder.py", "--config", "configs/vocoder/tiny.yaml", "--data", tiny_cache, "--out", out / "voc")
    run("train_spec.py", "--config", "configs/spec/tiny.yaml", "--data", tiny_cache, "--out", out / "vae")
    run("train_spec.py", "--config", "configs/spec/tiny_prior.yaml", "--data", tiny_cache, "--out", out / "prior",
        "--set", f"vae_dir={out / 'vae' / 'best'}")
    run("train_spec.py", "--config", "configs/spec/tiny_flow_prior.yaml", "--data", tiny_cache, "--out", out / "flow",
        "--set", f"vae_dir={out / 'vae' / 'best'}")
    run("train_spec.py", "--config", "configs/spec/tiny_token_prior.yaml", "--data", tiny_cache, "--out", out / "token",
        "--set", f"vae_dir={out / 'vae' / 'best'}")
    return out


def test_vocoder_run_writes_model_metrics_and_validation(trained):
    voc = trained / "voc"
    assert (voc / "best" / "vocoder.safetensors").exists() and (voc / "best" / "config.yaml").exists()
    rows = metrics(voc)
    assert any("mel/l1" in r for r in rows) and any("val/mel_l1" in r for r in rows)
    val = sorted((voc / "val").iterdir())[-1]
    assert list(val.glob("*.png")) and list(val.glob("*.wav"))
    provenance = json.loads((voc / "best" / "provenance.json").read_text())
    assert provenance["task"] == "vocoder" and provenance["step"] > 0


def test_spec_runs_write_vae_and_prior(trained):
    assert (trained / "vae" / "best" / "vae.safetensors").exists()
    prior = trained / "prior" / "best"
    assert (prior / "prior.safetensors").exists() and (prior / "vae.safetensors").exists()
    assert any("val/prior_nll" in r for r in metrics(trained / "prior"))
    assert list((trained / "prior" / "val").glob("*/sample.png"))


def test_flow_prior_run_exports_and_generates(trained, tmp_path):
    flow = trained / "flow"
    rows = metrics(flow)
    assert any("prior/flow_mse" in r for r in rows) and any("val/prior_flow_mse" in r for r in rows)
    assert not any("prior/nll" in r for r in rows)  # not a likelihood: it is not logged as one
    models = ["--model", flow / "best", "--vocoder", trained / "voc" / "best"]
    for name in ("a.wav", "b.wav"):
        run("-m", "audiogen.cli.generate", "--seconds", "2", "--seed", "3", "--out", tmp_path / name, *models)
    audio, sr = sf.read(tmp_path / "a.wav", dtype="int16")
    assert sr == 22050 and audio.shape == (2 * 22050,) and np.abs(audio).max() > 0
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_token_prior_run_exports_its_fitted_codebooks_and_generates(trained, tmp_path):
    from safetensors.torch import load_file

    token = trained / "token"
    rows = metrics(token)
    assert any("prior/token_ce" in r for r in rows) and any("val/prior_token_ce" in r for r in rows)
    weights = load_file(token / "best" / "prior.safetensors")
    step = json.loads((token / "best" / "provenance.json").read_text())["step"]
    assert int(weights["codebooks.updates"]) == min(step, 3)  # one update a step for codebook_steps, then frozen
    assert weights["codebooks.words"].abs().sum() > 0 and torch_unique_rows(weights["codebooks.words"][0]) > 1
    models = ["--model", token / "best", "--vocoder", trained / "voc" / "best"]
    for name in ("a.wav", "b.wav"):
        run("-m", "audiogen.cli.generate", "--seconds", "2", "--seed", "3", "--out", tmp_path / name, *models)
    audio, sr = sf.read(tmp_path / "a.wav", dtype="int16")
    assert sr == 22050 and audio.shape == (2 * 22050,) and np.abs(audio).max() > 0
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_latent_rate_reports_the_token_priors_codebooks(trained, tiny_cache, tmp_path):
    token = trained / "token" / "best"
    result = run("tools/latent_rate.py", "--data", tiny_cache, "--model", token, "--split", "train", "--windows", 2,
                 "--seconds", 1, "--json", tmp_path / "rate.json")
    report = json.loads((tmp_path / "rate.json").read_text())
    assert report["codebook_bits_per_frame"] == 8  # 2 codebooks of 16 words
    assert report["kl_bits_per_frame"] > 0 and report["codebook_mel_l1"] > 0 and 0 < report["codebook_use"] <= 1
    assert "bits a frame" in result.stdout and "through the codebooks" in result.stdout
    plain = run("tools/latent_rate.py", "--data", tiny_cache, "--model", trained / "vae" / "best", "--split", "train",
                "--windows", 2, "--seconds", 1)
    assert "through the codebooks" not in plain.stdout


def torch_unique_rows(words) -> int:
    return len({tuple(row.tolist()) for row in words})


def test_generate_from_trained_models_is_exact_and_repeatable(trained, tmp_path):
    models = ["--model", trained / "prior" / "best", "--vocoder", trained / "voc" / "best"]
    for name in ("a.wav", "b.wav"):
        run("-m", "audiogen.cli.generate", "--seconds", "2.5", "--seed", "7", "--out", tmp_path / name, *models)
    a, sr = sf.read(tmp_path / "a.wav", dtype="int16")
    assert sr == 22050 and a.shape == (int(2.5 * 22050),)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    peak = np.abs(a.astype(np.float64)).max() / 32768
    assert 0.85 < peak < 0.9  # normalised to -1 dBFS, no clipping
    run("-m", "audiogen.cli.generate", "--seconds", "2.5", "--seed", "8", "--out", tmp_path / "c.wav", *models)
    assert (tmp_path / "c.wav").read_bytes() != (tmp_path / "a.wav").read_bytes()


def test_train_refuses_unknown_config_keys(tiny_cache, tmp_path):
    result = run("train_vocoder.py", "--config", "configs/vocoder/tiny.yaml", "--data", tiny_cache, "--out",
                 tmp_path, "--set", "train.bogus=1", check=False)
    assert result.returncode == 2 and "bogus" in result.stderr and "Traceback" not in result.stderr



def first_step_losses(config_path, cache, run_dir, bf16):
    """The first logged training losses of a tiny config through the real loop, in process.

    CPU runs are fp32 by policy (``tasks._train``), so for bf16 the accelerator's training-step
    autocast is replaced by CPU bf16 autocast, the region a bf16 GPU run computes in.
    """
    import dataclasses

    import torch
    from accelerate import Accelerator

    from audiogen.datasets import FullPieceDataset, SegmentDataset
    from audiogen.tasks import SpecVAETask, VocoderTask, load_trainer_config
    from audiogen.training import train

    config = load_trainer_config(ROOT / config_path)
    torch.manual_seed(config.train.seed)
    task = {"vocoder": VocoderTask, "vae": SpecVAETask}[config.task](config)
    dataset = SegmentDataset(cache, "train", segment_frames=config.train.segment_frames,
                             with_audio=config.task == "vocoder", seed=config.train.seed)
    val_items = [FullPieceDataset(cache, "validation", max_frames=32)[0]]
    cfg = dataclasses.replace(config.train, max_steps=2, log_every=1, val_every=2)
    accelerator = Accelerator(cpu=True)
    if bf16:
        accelerator.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    train(task, dataset, val_items, cfg, config.optim, run_dir, accelerator)
    rows = metrics(run_dir)
    assert any("val/loss" in r for r in rows)
    return next(r for r in rows if r["step"] == 1)


@pytest.mark.parametrize("config_path", ["configs/vocoder/tiny.yaml", "configs/spec/tiny.yaml"])
def test_bf16_autocast_path_trains(config_path, tiny_cache, tmp_path):
    # the generator, discriminators and losses under bf16 autocast: they must run, stay finite
    # and near float32, and really compute in bf16 (the losses differ from float32's)
    fp32 = first_step_losses(config_path, tiny_cache, tmp_path / "fp32", bf16=False)
    bf16 = first_step_losses(config_path, tiny_cache, tmp_path / "bf16", bf16=True)
    assert all(np.isfinite(v) for v in bf16.values())
    reconstruction = "mel/l1" if "mel/l1" in fp32 else "rec/l1"
    assert bf16[reconstruction] == pytest.approx(fp32[reconstruction], rel=0.05)
    assert bf16[reconstruction] != fp32[reconstruction]


def test_init_from_starts_a_run_from_an_exported_model(trained):
    import torch

    from audiogen.checkpoint import load_state_dict
    from audiogen.config import ConfigError
    from audiogen.frontend import FrontendMismatchError
    from audiogen.tasks import SpecVAETask, VocoderTask, init_from_export, load_trainer_config

    exported = trained / "voc" / "best"
    config = load_trainer_config(ROOT / "configs/vocoder/tiny.yaml", [f"init_from={exported}"])
    task = VocoderTask(config)
    init_from_export(task, config)
    saved = load_state_dict(exported / "vocoder.safetensors")
    loaded = task.networks["generator"].state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)

    wider = load_trainer_config(ROOT / "configs/vocoder/tiny.yaml", [f"init_from={exported}", "model.dim=24"])
    with pytest.raises(ConfigError, match="does not fit"):
        init_from_export(VocoderTask(wider), wider)
    other_frontend = load_trainer_config(ROOT / "configs/vocoder/tiny.yaml",
                                         [f"init_from={exported}", "frontend.n_mels=64"])
    with pytest.raises(FrontendMismatchError):
        init_from_export(VocoderTask(other_frontend), other_frontend)
    vae = load_trainer_config(ROOT / "configs/spec/tiny.yaml", [f"init_from={exported}"])
    with pytest.raises(ValueError, match="no vae.safetensors"):  # a vocoder folder is no VAE
        init_from_export(SpecVAETask(vae), vae)


def test_init_from_run_records_it_in_provenance_not_in_the_exported_config(trained, tiny_cache, tmp_path):
    import yaml

    exported = trained / "voc" / "best"
    run("train_vocoder.py", "--config", "configs/vocoder/tiny.yaml", "--data", tiny_cache,
        "--out", tmp_path / "ft", "--set", f"init_from={exported}", "--max-steps", "2")
    best = tmp_path / "ft" / "best"
    assert json.loads((best / "provenance.json").read_text())["init_from"] == str(exported.resolve())
    # the export's config stays a usable config once the folder it started from is gone
    assert yaml.safe_load((best / "config.yaml").read_text())["init_from"] is None
