"""tools/bench.py on tiny sizes: every section's library function runs and writes the documented
keys; the markdown and the plots come out of the results. No timing assertions."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("audiogen_bench", ROOT / "tools" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(bench):
    """Settings small enough for a test: one timed run, seconds of audio, one or two steps."""
    return dataclasses.replace(
        bench.settings_for(quick=True, threads=1),
        runs=2,
        warmup=0,
        mel_seconds=1.0,
        prepare_pieces=3,
        prepare_piece_seconds=1.5,
        prepare_workers=(1,),
        vocoder_seconds=0.5,
        vocoder_scaling=("default", "griffin_lim"),
        vocoder_lengths=(0.25, 0.5),
        spec_lengths=(0.5, 1.0),
        prior_seconds=0.5,
        long_runs=1,
        train_steps_tiny=2,
        train_warmup=1,
        fad_audio_seconds=2.0,
        fad_clips=20,
        fad_embeddings_per_clip=3,
        fad_dim=8,
    )


@pytest.fixture(scope="module")
def results(bench, tiny, tmp_path_factory):
    """One pass through the in-process sections (the subprocess ones are checked separately)."""
    work = tmp_path_factory.mktemp("bench")
    out, cache = bench.bench_frontend(tiny, work / "frontend")
    out |= bench.bench_vocoder_scaling(tiny)
    _, spec_dir, vocoder_dir = bench.generator_models(work)
    out |= bench.bench_spec(tiny, spec_dir, vocoder_dir)
    tiny_configs = tuple(c for c in bench.TRAIN_CONFIGS if "tiny" in c[0])
    out |= bench.bench_training(tiny, cache, work / "train", configs=tiny_configs)
    out |= bench.bench_fad(tiny)
    out |= bench.machine_info(tiny, "random")
    return out


def check_spread(r: dict, prefix: str) -> None:
    low, median, high = r[f"{prefix}.min"], r[f"{prefix}.median"], r[f"{prefix}.max"]
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in (low, median, high)), prefix
    assert low <= median <= high, prefix


def test_sections_write_documented_keys(results):
    for prefix in [
        "frontend.mel.xrt_per_core",
        "prepare.workers_1.wall_s",
        "prepare.workers_1.hours_per_core_hour",
        "scaling.vocoder.default.0.5s",
        "scaling.vocoder.griffin_lim.0.25s",
        "spec.prior_0.5s.xrt",
        "spec.mel_1s.xrt",
        "spec.pipeline_0.5s.seconds",
        "fad.embed_mel.xrt",
        "fad.embed_vggish.xrt",
        "fad.embed_vggish.patches_per_s",
        "fad.score_1000.fad_s",
        "fad.score_1000.report_s",
    ]:
        check_spread(results, prefix)
    for name in ("vocoder_tiny", "vae_tiny", "prior_tiny"):
        for figure in ("steps_per_s", "samples_per_s", "audio_s_per_s", "step_s"):
            check_spread(results, f"train.{name}.cpu.{figure}")
        assert results[f"train.{name}.cpu.params"] > 0
        # samples per second is steps per second times the batch
        batch = results[f"train.{name}.cpu.batch_size"]
        assert results[f"train.{name}.cpu.samples_per_s.median"] == pytest.approx(
            batch * results[f"train.{name}.cpu.steps_per_s.median"]
        )
    assert results["models"] == "random"


def test_results_are_flat_numbers_except_named_strings(results):
    strings = {k for k, v in results.items() if isinstance(v, str)}
    assert strings <= {"models"} | {k for k in results if k.startswith("meta.")}
    for key, value in results.items():
        if key not in strings:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), key
    json.loads(json.dumps(results))  # JSON-ready


def test_vocoder_worker_measures_params_speed_and_memory(bench, tmp_path, monkeypatch):
    import bench_vocoder  # tools/ is on sys.path once bench is imported

    monkeypatch.setattr(bench_vocoder, "piano_like_audio", bench_vocoder.piano_like_audio)  # undone after
    saved = 0.5 * bench_vocoder.piano_like_audio(0.5, 22050)  # recognisably not the function's output
    np.save(tmp_path / "signal.npy", saved)
    row = bench.measure_vocoder_worker(
        "piano_cpu", seconds=0.5, runs=1, threads=1, signal=tmp_path / "signal.npy"
    )
    assert row["params"] > 1e6 and row["xrt_median"] > 0 and row["peak_rss_mb"] > 0
    assert "gpu" not in row or row["gpu"]["xrt_median"] > 0
    # the worker reads the saved clip instead of synthesising it; other requests still synthesise
    assert np.array_equal(bench_vocoder.piano_like_audio(0.5, 22050), saved)
    assert len(bench_vocoder.piano_like_audio(0.25, 22050)) == int(0.25 * 22050)


def test_run_process_reports_wall_time_memory_and_failures(bench, tmp_path):
    import resource

    ballast = bytearray(400 * 2**20)  # make this process clearly bigger than the children
    ballast[:: 2**12] = b"x" * len(range(0, len(ballast), 2**12))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 > 400
    small_wall, small = bench.run_process([sys.executable, "-c", "x = bytearray(80 * 2**20)"], tmp_path)
    _, large = bench.run_process([sys.executable, "-c", "x = bytearray(160 * 2**20)"], tmp_path)
    # the children's own peaks (interpreter + buffer), not this process's 400 MB
    assert small_wall > 0 and 80 < small < 160 and 160 < large < 240
    assert large - small == pytest.approx(80, abs=10)
    del ballast
    with pytest.raises(RuntimeError, match="boom"):
        bench.run_process([sys.executable, "-c", "raise SystemExit('boom')"], tmp_path)


def test_markdown_tables_are_well_formed(bench, results):
    text = bench.render_markdown(results)
    for heading in ("Frontend and preparation", "Spectrogram generator", "Training", "FAD"):
        assert f"#### {heading}" in text
    assert "Vocoders" not in text and "`generate`" not in text  # not measured, not shown
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:  # every row of a table has the header's number of cells
            assert len({line.count("|") for line in rows}) == 1, rows
    training = text.split("#### Training")[1].split("####")[0]
    assert "vae_tiny" in training and "| – |" not in training  # every training figure was filled in


def test_markdown_shows_vocoder_and_generate_rows(bench):
    r = {
        "vocoder.audio_seconds": 30.0,
        "vocoder.default.params": 2.8e6,
        "vocoder.default.cpu_seconds_per_call": 0.2,
        "vocoder.default.peak_rss_mb": 300.0,
        "vocoder.default.inference_mb": 30.0,
        "vocoder.default.load_avg": 0.5,
        "meta.generate_runtime": "onnxruntime",
    }
    r |= bench.summarize("vocoder.default.xrt_cpu", [100.0, 90.0, 110.0])
    r |= bench.summarize("generate.30s.wall_s", [1.0, 0.9, 1.1])
    r |= bench.summarize("generate.torch.30s.wall_s", [3.0, 2.9, 3.1])
    r |= bench.summarize("generate.30s.torch_over_onnxruntime", [3.0, 2.8, 3.3])
    r |= bench.summarize("generate.unguarded.30s.wall_s", [0.8, 0.7, 0.9])
    r |= bench.summarize("generate.30s.guard_over_unguarded", [1.25, 1.2, 1.3])
    text = bench.render_markdown(r)
    assert "30 s: 0.80 (0.70–0.90) s without it, 1.25 (1.20–1.30)× with it" in text
    assert "| default | 2.80 M | 100.0 (90.0–110.0) |" in text
    assert "| 30 s | onnxruntime | 1.00 (0.90–1.10) |" in text and "| 3.00 (2.80–3.30) |" in text
    assert "| 30 s | torch | 3.00 (2.90–3.10) |" in text


def test_generate_section_times_both_runtimes_in_one_run(bench, tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    settings = dataclasses.replace(tiny, generate_lengths=(1.0,), generate_runs=1)
    r = bench.bench_generate(settings, None, None, tmp_path)  # the bundled models, whose graphs ship
    assert r["meta.generate_runtime"] == "onnxruntime"
    for prefix in ("generate.1s.wall_s", "generate.torch.1s.wall_s", "generate.1s.cpu_per_wall",
                   "generate.1s.torch_over_onnxruntime", "generate.unguarded.1s.wall_s",
                   "generate.1s.guard_over_unguarded", "generate.load_s", "generate.torch.load_s",
                   "generate.first_audio_after_load_s", "generate.torch.stdout_first_audio_s"):
        assert r[f"{prefix}.min"] <= r[f"{prefix}.median"] <= r[f"{prefix}.max"], prefix
    ratio = r["generate.torch.1s.wall_s.median"] / r["generate.1s.wall_s.median"]
    assert r["generate.1s.torch_over_onnxruntime.median"] == pytest.approx(ratio)  # one run: the ratio of its walls
    text = bench.render_markdown(r)
    assert "| 1 s | onnxruntime |" in text and "| 1 s | torch |" in text


def test_plots_are_written(bench, results, tmp_path):
    written = bench.save_plots(results, tmp_path / "plots")
    assert {p.name for p in written} == {
        "generation_vs_length.png",
        "vocoder_vs_length.png",
        "prepare_vs_workers.png",
    }
    assert all(p.stat().st_size > 1000 for p in written)


def test_cli_refuses_unknown_sections(bench, tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--only", "bogus", "--json", str(tmp_path / "x.json")])
    assert "bogus" in capsys.readouterr().err
