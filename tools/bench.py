"""Every speed and memory figure of audiogen in one run: a flat JSON, a markdown table, plots.

    python tools/bench.py --quick --json bench.json                 # CI smoke run, under 2 minutes
    python tools/bench.py --json bench.json --md bench.md --plot bench-plots   # full, under 20 minutes
    python tools/bench.py --only vocoder,fad --json part.json       # some sections only

What is measured (docs/benchmarks.md explains every key):

- ``frontend``: log-mel extraction speed (× real time on one thread) and the preparation of a
  synthetic MAESTRO-layout set (44.1 kHz FLAC, so decoding and resampling are included) with 1
  and 2 worker processes (hours of audio per hour per worker, and wall seconds).
- ``vocoder``: every vocoder config plus Griffin-Lim (32 iterations): parameters, × real time
  for 30 s of audio (:func:`bench_vocoder.measure_model`, each model in a fresh process so its
  peak memory is its own), on the GPU too when there is one; and the time of
  :func:`audiogen.vocoder.vocode` (the chunked path ``generate`` uses) against clip length.
- ``spec``: the spectrogram generator (latent prior → VAE decoder, mel only) and the whole
  in-process pipeline (with the vocoder) against clip length, 10 s to 10 minutes.
- ``generate``: the ``generate`` command as users run it, cold (a new process: imports, model
  loading, generation, file written), wall time, CPU time per wall second and peak resident memory,
  30 s, 1 and 10 minutes, with ``--threads`` set; on onnxruntime and on PyTorch alternated run by run
  where ``generate`` can use onnxruntime, with PyTorch's time over onnxruntime's per run.
- ``train``: steps and samples per second of both trainers' tiny and CPU configs, through the
  real training loop (:func:`audiogen.training.train`) on a prepared cache.
- ``fad``: embedding throughput (mel statistics; VGGish with random weights in torchvggish's
  layout) and the time to score 1,000 clips' embeddings against 1,000 others.

Models: ``--model`` and ``--vocoder`` when given (the bundled one for the other), else the bundled
ones (``audiogen/pretrained/``) when they exist, else random-weight models
built from configs/spec/piano_cpu.yaml, configs/spec/piano_cpu_prior.yaml and
configs/vocoder/piano_cpu.yaml (key ``models``: ``bundled`` or ``random``; speed does not depend
on the weights, except through what a random prior happens to sample).

Every timed figure is the median of several runs after a warm-up, written as three keys
``<figure>.median``, ``<figure>.min`` and ``<figure>.max`` (for × real time and rates, ``min`` is
the slowest run). The 1-minute load average is written beside each group (``<group>.load_avg``)
and at the start and end (``meta.load_avg_1min.*``): on a shared machine other jobs slow the
figures down, and a load above the core count plus a half marks them as noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROG = "bench"
TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
if str(TOOLS) not in sys.path:  # bench_vocoder.py sits beside this file
    sys.path.insert(0, str(TOOLS))

SECTIONS = ("frontend", "vocoder", "spec", "generate", "train", "fad")
SLOW_VOCODERS = ("hifigan_v1", "istft")
VOCODERS = ("default", "piano_cpu", "hifigan_v1", "hifigan_v2", "hifigan_v3", "istft", "griffin_lim")
# (key name, config file): the tiny and the CPU configs of both trainers (the prior is stage 2 of
# train_spec.py); the prior configs get a random VAE of their stage-1 config.
TRAIN_CONFIGS = (
    ("vocoder_tiny", "configs/vocoder/tiny.yaml"),
    ("vocoder_piano_cpu", "configs/vocoder/piano_cpu.yaml"),
    ("vae_tiny", "configs/spec/tiny.yaml"),
    ("vae_piano_cpu", "configs/spec/piano_cpu.yaml"),
    ("prior_tiny", "configs/spec/tiny_prior.yaml"),
    ("prior_piano_cpu", "configs/spec/piano_cpu_prior.yaml"),
)
PRIOR_VAE_CONFIG = {"prior_tiny": "configs/spec/tiny.yaml", "prior_piano_cpu": "configs/spec/piano_cpu.yaml"}
GENERATOR_CONFIGS = {
    "vae": "configs/spec/piano_cpu.yaml",
    "prior": "configs/spec/piano_cpu_prior.yaml",
    "vocoder": "configs/vocoder/piano_cpu.yaml",
}


@dataclass(frozen=True)
class Settings:
    """Sizes and repeat counts of one benchmark run (see :func:`settings_for`)."""

    quick: bool
    threads: int = 2  # torch intra-op threads for inference and training figures
    runs: int = 5  # timed repeats per figure, after ``warmup`` untimed ones
    warmup: int = 1
    mel_seconds: float = 60.0
    prepare_pieces: int = 16
    prepare_piece_seconds: float = 60.0
    prepare_sample_rate: int = 44100  # MAESTRO's rate: preparation resamples, as it will there
    prepare_workers: tuple[int, ...] = (1, 2)
    prepare_runs: int = 3
    vocoders: tuple[str, ...] = VOCODERS
    vocoder_seconds: float = 30.0
    slow_vocoder_runs: int = 3  # HiFi-GAN V1 and iSTFTNet vocode at about real time: fewer repeats
    vocoder_scaling: tuple[str, ...] = ("default", "hifigan_v3", "griffin_lim")
    vocoder_lengths: tuple[float, ...] = (5.0, 10.0, 20.0, 40.0)
    scaling_runs: int = 3
    spec_lengths: tuple[float, ...] = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
    prior_seconds: float = 30.0  # the prior alone (its share of the mel-only time)
    long_runs: int = 3  # repeats for lengths of 2 minutes and more
    generate_lengths: tuple[float, ...] = (30.0, 60.0, 600.0)  # 60 s: issue 16's CPU-per-wall goal
    generate_runs: int = 3
    train_steps_tiny: int = 20
    train_steps_cpu: int = 8
    train_warmup: int = 2
    fad_audio_seconds: float = 60.0
    fad_clips: int = 1000
    fad_embeddings_per_clip: int = 10  # a 10 s clip gives 10 VGGish patches
    fad_dim: int = 128


def settings_for(quick: bool, threads: int = 2) -> Settings:
    """The full run's settings, or ``--quick``'s: fewer repeats, shorter audio, no 10-minute
    ``generate`` and no HiFi-GAN V1 (it vocodes at about real time)."""
    if not quick:
        return Settings(quick=False, threads=threads)
    return Settings(
        quick=True,
        threads=threads,
        runs=3,
        mel_seconds=20.0,
        prepare_pieces=4,
        prepare_piece_seconds=12.0,
        prepare_runs=1,
        vocoders=tuple(v for v in VOCODERS if v != "hifigan_v1"),
        vocoder_seconds=2.0,
        slow_vocoder_runs=3,
        vocoder_scaling=("default", "griffin_lim"),
        vocoder_lengths=(2.0, 5.0, 10.0),
        scaling_runs=2,
        spec_lengths=(10.0, 30.0),
        prior_seconds=10.0,
        long_runs=1,
        generate_lengths=(30.0,),
        generate_runs=2,
        train_steps_tiny=5,
        train_steps_cpu=2,
        train_warmup=1,
        fad_audio_seconds=10.0,
        fad_clips=1000,
    )


# --------------------------------------------------------------------------------------------
# Timing helpers


def load_avg() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def time_calls(fn: Callable[[], Any], runs: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summarize(prefix: str, values: list[float]) -> dict[str, float]:
    """``{prefix.median, prefix.min, prefix.max}`` of a list of figures."""
    return {
        f"{prefix}.median": float(statistics.median(values)),
        f"{prefix}.min": float(min(values)),
        f"{prefix}.max": float(max(values)),
    }


def rates(amount: float, seconds: list[float]) -> list[float]:
    """Amount per second for each timed run (× real time when ``amount`` is audio seconds)."""
    return [amount / max(s, 1e-12) for s in seconds]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# Synthetic data


def synthetic_piano(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Piano-like float32 audio (peak 0.5): four decaying harmonic notes per second.

    Each note is synthesised over its first 1.5 s only (it has decayed by 30 dB by then), so
    making minutes of audio takes a fraction of a second.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    out = np.zeros(n, dtype=np.float64)
    length = int(1.5 * sample_rate)
    t = np.arange(length) / sample_rate
    envelope = np.exp(-4.6 * t)
    for start in range(0, n, sample_rate // 4):
        f0 = 55.0 * 2 ** (rng.integers(12, 60) / 12)
        note = np.zeros(length)
        for k in range(1, 7):
            if f0 * k < sample_rate / 2:
                note += np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k**1.5
        stop = min(n, start + length)
        out[start:stop] += (envelope * note)[: stop - start]
    out += 1e-3 * rng.standard_normal(n)
    return (0.5 * out / max(np.abs(out).max(), 1e-9)).astype(np.float32)


def make_maestro_set(root: Path, pieces: int, seconds: float, sample_rate: int, distinct: int = 2) -> Path:
    """A MAESTRO-layout folder of FLAC pieces: all but two in train, one validation, one test.

    Only ``distinct`` different clips are synthesised and written under several names: the cost
    of preparing a piece does not depend on which notes it holds.
    """
    import soundfile as sf

    from audiogen.maestro import MaestroRecord, write_maestro_csv

    root.mkdir(parents=True, exist_ok=True)
    (root / "2018").mkdir(exist_ok=True)
    clips = [synthetic_piano(seconds, sample_rate, seed=i) for i in range(max(1, min(distinct, pieces)))]
    records = []
    for i in range(pieces):
        split = "validation" if i == pieces - 2 else "test" if i == pieces - 1 else "train"
        stem = f"2018/bench-{i:03d}"
        sf.write(root / f"{stem}.flac", clips[i % len(clips)], sample_rate)
        records.append(
            MaestroRecord("Bench", f"Piece {i}", split, 2018, f"{stem}.midi", f"{stem}.flac", seconds)
        )
    write_maestro_csv(records, root / "maestro-v3.0.0.csv")
    return root


# --------------------------------------------------------------------------------------------
# Frontend and preparation


def bench_frontend(s: Settings, work: Path) -> tuple[dict[str, Any], Path]:
    """Mel extraction speed and preparation throughput; returns (figures, a prepared cache)."""
    from audiogen.frontend import FrontendConfig, MelFrontend
    from audiogen.maestro import list_maestro
    from audiogen.preparation import compute_log_mel, prepare_cache

    out: dict[str, Any] = {"frontend.load_avg": load_avg()}
    config = FrontendConfig()
    frontend = MelFrontend(config)
    audio = synthetic_piano(s.mel_seconds, config.sample_rate)
    with torch_threads(1):
        times = time_calls(lambda: compute_log_mel(frontend, audio), s.runs, s.warmup)
    out |= summarize("frontend.mel.xrt_per_core", rates(s.mel_seconds, times))
    out["frontend.mel.audio_seconds"] = s.mel_seconds

    source = make_maestro_set(
        work / "maestro", s.prepare_pieces, s.prepare_piece_seconds, s.prepare_sample_rate
    )
    pieces = list_maestro(source)
    cache = None
    for workers in s.prepare_workers:
        walls, throughput = [], []
        for run in range(s.prepare_runs):
            cache = work / f"cache-w{workers}-{run}"
            report = prepare_cache(pieces, cache, config, workers=workers, progress=False)
            if report.prepared != len(pieces):
                raise RuntimeError(f"preparation wrote {report.prepared} of {len(pieces)} pieces")
            walls.append(report.wall_seconds)
            throughput.append(report.hours_per_core_hour)
        out |= summarize(f"prepare.workers_{workers}.wall_s", walls)
        out |= summarize(f"prepare.workers_{workers}.hours_per_core_hour", throughput)
    if any(w > 1 for w in s.prepare_workers):
        # the fixed cost of a worker pool (spawned processes importing torch and audiogen):
        # preparing two 1-second pieces is almost nothing else
        tiny = list_maestro(make_maestro_set(work / "maestro-tiny", 2, 1.0, s.prepare_sample_rate))
        walls = [
            prepare_cache(
                tiny, work / f"cache-tiny-{run}", config, workers=max(s.prepare_workers), progress=False
            ).wall_seconds
            for run in range(s.prepare_runs)
        ]
        out |= summarize("prepare.pool_startup_s", walls)
    out["prepare.audio_hours"] = s.prepare_pieces * s.prepare_piece_seconds / 3600
    out["prepare.pieces"] = s.prepare_pieces
    out["prepare.load_avg"] = load_avg()
    return out, cache


def prepared_cache(s: Settings, work: Path) -> Path:
    """A small prepared cache for the training figures when the frontend section is skipped."""
    from audiogen.frontend import FrontendConfig
    from audiogen.maestro import list_maestro
    from audiogen.preparation import prepare_cache

    source = make_maestro_set(
        work / "maestro", s.prepare_pieces, s.prepare_piece_seconds, s.prepare_sample_rate
    )
    cache = work / "cache"
    prepare_cache(list_maestro(source), cache, FrontendConfig(), workers=1, progress=False)
    return cache


# --------------------------------------------------------------------------------------------
# Vocoders


def use_saved_signal(path: Path) -> None:
    """Make ``bench_vocoder.piano_like_audio`` return the clip saved at ``path`` when asked for it.

    That function synthesises every note over the rest of the clip (about 10 s of CPU for a 30 s
    clip), and each vocoder is measured in a fresh process: the parent makes the clip once
    (:func:`bench_vocoders`) and the workers read it. The signal is the same array either way.
    """
    import bench_vocoder

    original = bench_vocoder.piano_like_audio
    saved = np.load(path)

    def piano_like_audio(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
        if seed == 0 and len(saved) == int(seconds * sample_rate):
            return saved.copy()
        return original(seconds, sample_rate, seed)

    bench_vocoder.piano_like_audio = piano_like_audio


def measure_vocoder_worker(
    name: str, seconds: float, runs: int, threads: int, signal: Path | None = None
) -> dict[str, Any]:
    """One vocoder's figures (run in a fresh process): CPU through bench_vocoder, then the GPU.

    Args:
        signal: a .npy of ``bench_vocoder.piano_like_audio(seconds, sample_rate)`` to reuse.
    """
    import bench_vocoder
    import torch
    from bench_vocoder import _load, measure_model, measure_vocoder_speed

    if signal is not None:
        use_saved_signal(signal)
    row = measure_model(name, seconds=seconds, runs=runs, threads=threads)
    if torch.cuda.is_available():
        fn, _, frontend = _load(name)
        device = torch.device("cuda")
        frontend.to(device)  # Griffin-Lim's closure holds this same module
        if isinstance(fn, torch.nn.Module):
            fn.to(device)
        audio = torch.from_numpy(bench_vocoder.piano_like_audio(seconds, frontend.config.sample_rate))
        audio = audio.to(device)
        mel = frontend(audio).unsqueeze(0)

        def synced(m: torch.Tensor) -> torch.Tensor:
            result = fn(m)
            torch.cuda.synchronize()  # kernels run asynchronously: time their completion
            return result

        torch.cuda.reset_peak_memory_stats()
        gpu = measure_vocoder_speed(
            synced, mel, audio_seconds=len(audio) / frontend.config.sample_rate, runs=runs, warmup=2
        )
        row["gpu"] = {
            **gpu,
            "peak_mb": torch.cuda.max_memory_allocated() / 2**20,
            "name": torch.cuda.get_device_name(),
        }
    return row


def _run_worker(args: list[str]) -> dict[str, Any]:
    # through the launcher, so that the worker's own peak RSS is its own (see LAUNCHER)
    _, result = run_launched([sys.executable, str(Path(__file__).resolve()), *args], ROOT, stdout=subprocess.PIPE)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_vocoders(s: Settings, work: Path) -> dict[str, Any]:
    """Params, × real time (CPU; GPU when present) and peak memory of each vocoder config."""
    from bench_vocoder import piano_like_audio

    from audiogen.frontend import FrontendConfig

    out: dict[str, Any] = {"vocoder.audio_seconds": s.vocoder_seconds}
    work.mkdir(parents=True, exist_ok=True)
    signal = work / "signal.npy"  # every config here uses the default frontend's sample rate
    np.save(signal, piano_like_audio(s.vocoder_seconds, FrontendConfig().sample_rate))
    for name in s.vocoders:
        row = _run_worker(
            [
                "--worker-vocoder",
                name,
                "--seconds",
                str(s.vocoder_seconds),
                "--runs",
                str(s.slow_vocoder_runs if name in SLOW_VOCODERS else s.runs),
                "--threads",
                str(s.threads),
                "--signal",
                str(signal),
            ]
        )
        key = f"vocoder.{name}"
        out[f"{key}.params"] = row["params"]
        out[f"{key}.xrt_cpu.median"] = row["xrt_median"]
        out[f"{key}.xrt_cpu.min"] = row["xrt_min"]
        out[f"{key}.xrt_cpu.max"] = row["xrt_max"]
        out[f"{key}.cpu_seconds_per_call"] = row["cpu_seconds_median"]
        out[f"{key}.peak_rss_mb"] = row["peak_rss_mb"]
        out[f"{key}.inference_mb"] = row["inference_mb"]
        out[f"{key}.load_avg"] = row["load_avg_1min"]
        if "gpu" in row:
            out[f"{key}.xrt_gpu.median"] = row["gpu"]["xrt_median"]
            out[f"{key}.xrt_gpu.min"] = row["gpu"]["xrt_min"]
            out[f"{key}.xrt_gpu.max"] = row["gpu"]["xrt_max"]
            out[f"{key}.gpu_peak_mb"] = row["gpu"]["peak_mb"]
        print(f"  vocoder {name}: {row['xrt_median']:.1f} x real time", file=sys.stderr)
    return out


def bench_vocoder_scaling(s: Settings) -> dict[str, Any]:
    """Seconds of :func:`audiogen.vocoder.vocode` (chunked, as ``generate`` runs it) against
    clip length; Griffin-Lim runs on the whole clip (it has no chunked path)."""
    import torch
    from bench_vocoder import _load

    from audiogen.vocoder import vocode

    out: dict[str, Any] = {"scaling.vocoder.load_avg": load_avg()}
    with torch_threads(s.threads), torch.inference_mode():
        for name in s.vocoder_scaling:
            fn, _, frontend = _load(name)
            call = fn if name == "griffin_lim" else (lambda m, model=fn: vocode(model, m))
            for i, seconds in enumerate(s.vocoder_lengths):
                mel = frontend(torch.from_numpy(synthetic_piano(seconds, frontend.config.sample_rate)))
                warmup = s.warmup if i == 0 else 0  # the first length warmed this model up
                times = time_calls(lambda mel=mel, call=call: call(mel), s.scaling_runs, warmup)
                out |= summarize(f"scaling.vocoder.{name}.{seconds:g}s", times)
    return out


# --------------------------------------------------------------------------------------------
# Models for the generator figures


def bundled_models_present() -> bool:
    from audiogen.generation import pretrained_dir

    return all((pretrained_dir(name) / "config.yaml").is_file() for name in ("spec", "vocoder"))


def _model_section(path: str) -> dict[str, Any]:
    from audiogen.config import read_yaml

    return read_yaml(ROOT / path)["model"]


def export_random_vae(config_path: str, out_dir: Path) -> Path:
    """A random-weight VAE model folder (what a prior trainer's ``vae_dir`` names)."""
    import torch

    from audiogen.checkpoint import export_model
    from audiogen.config import from_dict
    from audiogen.frontend import FrontendConfig
    from audiogen.spec import SpecVAE, SpecVAEConfig

    torch.manual_seed(0)
    model = _model_section(config_path)
    vae = SpecVAE.from_config(from_dict(SpecVAEConfig, model, "model"), FrontendConfig())
    return export_model(
        out_dir,
        {"vae": vae},
        {"task": "vae", "frontend": {}, "model": model},
        {"note": "random weights for benchmarks"},
    )


def export_random_generator(out_dir: Path) -> tuple[Path, Path]:
    """Random-weight spectrogram-model and vocoder folders from the CPU configs: (spec, vocoder)."""
    import torch

    from audiogen.checkpoint import export_model
    from audiogen.config import from_dict
    from audiogen.frontend import FrontendConfig
    from audiogen.priors import build_prior
    from audiogen.spec import SpecVAE, SpecVAEConfig
    from audiogen.vocoder import build_vocoder, vocoder_config_from_dict

    torch.manual_seed(0)
    frontend = FrontendConfig()
    vae_model = _model_section(GENERATOR_CONFIGS["vae"])
    prior_model = _model_section(GENERATOR_CONFIGS["prior"])
    vocoder_model = _model_section(GENERATOR_CONFIGS["vocoder"])
    vae = SpecVAE.from_config(from_dict(SpecVAEConfig, vae_model, "model"), frontend)
    prior = build_prior(prior_model, latent_dim=vae.latent_dim)
    vocoder = build_vocoder(vocoder_config_from_dict(vocoder_model), frontend)
    note = {"note": "random weights for benchmarks"}
    spec_dir = export_model(
        out_dir / "spec",
        {"vae": vae, "prior": prior},
        {"task": "prior", "frontend": {}, "model": prior_model, "vae_model": vae_model},
        note,
    )
    vocoder_dir = export_model(
        out_dir / "vocoder",
        {"vocoder": vocoder},
        {"task": "vocoder", "frontend": {}, "model": vocoder_model},
        note,
    )
    return spec_dir, vocoder_dir


def generator_models(work: Path, chosen: tuple[Path | None, Path | None] = (None, None)
                     ) -> tuple[str, Path | None, Path | None]:
    """The models ``spec`` and ``generate`` time: those of ``--model`` and ``--vocoder`` (the bundled one
    for the other) as ("MODEL", spec, vocoder); else ("bundled", None, None) when the package ships
    models; else ("random", spec, vocoder)."""
    if chosen != (None, None):
        from audiogen.generation import pretrained_dir

        spec_dir, vocoder_dir = chosen[0] or pretrained_dir("spec"), chosen[1] or pretrained_dir("vocoder")
        return str(spec_dir), spec_dir, vocoder_dir
    if bundled_models_present():
        return "bundled", None, None
    spec_dir, vocoder_dir = export_random_generator(work / "random-models")
    return "random", spec_dir, vocoder_dir


# --------------------------------------------------------------------------------------------
# The spectrogram generator


def sample_mel(generator: Any, seconds: float, seed: int = 0) -> int:
    """Sample a clip's mel (prior, then VAE decoder, streamed, as ``generate`` does); its frame count."""
    import torch

    samples = int(round(seconds * generator.sample_rate))
    with torch.inference_mode():
        return sum(mel.shape[-1] for mel in generator.mels(generator.latents(samples, seed)))


def sample_prior(generator: Any, seconds: float, seed: int = 0) -> int:
    """Only the prior's share of :func:`sample_mel`; returns the latent frame count."""
    import torch

    samples = int(round(seconds * generator.sample_rate))
    with torch.inference_mode():
        return sum(z.shape[-1] for z in generator.latents(samples, seed))


def bench_spec(s: Settings, spec_dir: Path | None, vocoder_dir: Path | None) -> dict[str, Any]:
    """Sampling speed of the spectrogram generator (mel only) and of the whole pipeline, by length."""
    from audiogen.generation import load_generator

    out: dict[str, Any] = {"spec.load_avg": load_avg()}
    with torch_threads(s.threads):
        generator = load_generator(spec_dir, vocoder_dir)
        times = time_calls(lambda: sample_prior(generator, s.prior_seconds), s.runs, s.warmup)
        out |= summarize(f"spec.prior_{s.prior_seconds:g}s.xrt", rates(s.prior_seconds, times))
        for seconds in s.spec_lengths:
            runs = s.runs if seconds < 120 else s.long_runs
            times = time_calls(lambda seconds=seconds: sample_mel(generator, seconds), runs, s.warmup)
            out |= summarize(f"spec.mel_{seconds:g}s.xrt", rates(seconds, times))
            out |= summarize(f"spec.mel_{seconds:g}s.seconds", times)
            warm = 0 if seconds >= 120 else s.warmup  # the short lengths before it warmed everything up
            times = time_calls(lambda seconds=seconds: generator.generate(seconds, seed=0), runs, warm)
            out |= summarize(f"spec.pipeline_{seconds:g}s.xrt", rates(seconds, times))
            out |= summarize(f"spec.pipeline_{seconds:g}s.seconds", times)
            print(
                f"  generator {seconds:g} s: mel {out[f'spec.mel_{seconds:g}s.xrt.median']:.1f}x, "
                f"pipeline {out[f'spec.pipeline_{seconds:g}s.xrt.median']:.1f}x real time",
                file=sys.stderr,
            )
    out["spec.load_avg_end"] = load_avg()
    return out


# --------------------------------------------------------------------------------------------
# The generate command


def generate_command() -> list[str]:
    """The ``generate`` console script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).parent / "generate"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "audiogen.cli.generate"]


# On Linux a child's peak RSS starts at its parent's size: the forked copy of the parent's memory
# counts until exec, and exec keeps the maximum. Children of this benchmark (a few hundred MB of
# torch and models) would all report at least that, so they are started by a small launcher
# process, which reports the wall time and peak RSS of its own child in a JSON file.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
with open(sys.argv[1], "w") as report:
    json.dump({"wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024,
               "cpu_s": usage.ru_utime + usage.ru_stime, "returncode": child.returncode}, report)
sys.exit(min(abs(child.returncode), 255))
"""


def run_launched(cmd: list[str], cwd: Path, stdout: Any = subprocess.DEVNULL) -> tuple[dict[str, float], Any]:
    """Run ``cmd`` through :data:`LAUNCHER`: ({wall_s, peak_rss_mb}, the CompletedProcess)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "usage.json"
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *cmd], cwd=cwd, stdout=stdout,
                              stderr=subprocess.PIPE, text=True, check=False)
        if proc.returncode or not report.is_file():
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(report.read_text()), proc


def run_process(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one process, from start to exit."""
    usage, _ = run_launched(cmd, cwd)
    return usage["wall_s"], usage["peak_rss_mb"]


WAV_HEADER_BYTES = 44  # RIFF/WAVE header of a PCM stream; what comes after it is audio
FIRST_AUDIO_BYTES = 4096  # "first audio": this many bytes of samples after the header (~0.09 s at 22 kHz)
LOAD_PROBE = """
import sys, time
start = time.perf_counter()
from audiogen.cli.generate import build_parser, load_models, model_hashes
args = build_parser().parse_args(sys.argv[1:])
load_models(args, *model_hashes(args))
print(time.perf_counter() - start)
"""


def time_to_first_audio(cmd: list[str], cwd: Path) -> float:
    """Seconds from starting ``cmd`` (which writes a WAV to standard output) to its first audio bytes.

    The process is stopped once they arrive (closing the pipe: ``generate`` ends quietly).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    got = 0
    try:
        while got < WAV_HEADER_BYTES + FIRST_AUDIO_BYTES:
            block = proc.stdout.read1(65536)
            if not block:
                raise RuntimeError(f"{' '.join(cmd)} ended before its first audio")
            got += len(block)
        return time.perf_counter() - start
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()


def time_to_load(options: list[str], cwd: Path) -> float:
    """Seconds a fresh process takes to import audiogen and load the generator ``generate`` would
    load with ``options`` (the runtime it picks, its models), making no audio."""
    out = subprocess.run([sys.executable, "-c", LOAD_PROBE, *options], cwd=cwd, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def generate_runtimes(spec_dir: Path | None, vocoder_dir: Path | None) -> list[str]:
    """The runtimes to time ``generate`` on: onnxruntime first where ``generate`` would pick it for
    these models (onnxruntime installed, graphs of these weights), then PyTorch."""
    from audiogen.generation import pretrained_dir
    from audiogen.onnx_generation import SourceIdentity, find_graphs, onnxruntime_available

    identities = (SourceIdentity.of(spec_dir or pretrained_dir("spec")),
                  SourceIdentity.of(vocoder_dir or pretrained_dir("vocoder")))
    return ["onnxruntime", "torch"] if onnxruntime_available() and find_graphs(*identities) else ["torch"]


def bench_generate(
    s: Settings, spec_dir: Path | None, vocoder_dir: Path | None, work: Path
) -> dict[str, Any]:
    """``generate`` as users run it, with ``--threads`` set, on each runtime it can use, alternated
    run by run so that both meet the same load: cold wall time (process start to file written), CPU
    time per wall second and peak memory; PyTorch's wall time over onnxruntime's, run by run; and
    for ``--out -``, the time to its first audio beside the time a fresh process takes to load the
    models (their difference: how soon sound follows the models being ready).

    Keys: ``generate.<L>s.*`` for the runtime ``generate`` picks by itself (``meta.generate_runtime``),
    ``generate.torch.<L>s.*`` for PyTorch beside it, ``generate.<L>s.torch_over_onnxruntime``."""
    runtimes = generate_runtimes(spec_dir, vocoder_dir)
    out: dict[str, Any] = {"generate.load_avg": load_avg(), "meta.generate_runtime": runtimes[0]}
    models = [] if spec_dir is None else ["--model", str(spec_dir), "--vocoder", str(vocoder_dir)]
    options = ["--threads", str(s.threads), *models]

    def prefix(runtime: str) -> str:
        return "generate." if runtime == runtimes[0] else f"generate.{runtime}."

    def command(seconds: float, runtime: str, guard: bool = True) -> list[str]:
        target = work / f"generate-{seconds:g}s-{runtime}{'' if guard else '-unguarded'}.wav"
        # --force: each run replaces the last one's file
        return [*generate_command(), "--seconds", f"{seconds:g}", "--seed", "0", "--quiet", "--force",
                "--runtime", runtime, "--out", str(target), *options, *([] if guard else ["--no-wash-guard"])]

    # The first process of the session pays for a cold page cache (torch's libraries from disk).
    first_wall, _ = run_process(command(s.generate_lengths[0], "torch"), work)
    out["generate.first_process_wall_s"] = first_wall
    for seconds in s.generate_lengths:
        walls: dict[str, list[float]] = {r: [] for r in runtimes}
        peaks, cpus = {r: [] for r in runtimes}, {r: [] for r in runtimes}
        unguarded: list[float] = []  # the picked runtime with --no-wash-guard: what the guard costs
        for _ in range(s.generate_runs):
            for runtime in runtimes:
                usage, _ = run_launched(command(seconds, runtime), work)
                walls[runtime].append(usage["wall_s"])
                peaks[runtime].append(usage["peak_rss_mb"])
                cpus[runtime].append(usage["cpu_s"] / usage["wall_s"])
            unguarded.append(run_launched(command(seconds, runtimes[0], guard=False), work)[0]["wall_s"])
        out |= summarize(f"generate.unguarded.{seconds:g}s.wall_s", unguarded)
        out |= summarize(f"generate.{seconds:g}s.guard_over_unguarded",
                         [g / u for g, u in zip(walls[runtimes[0]], unguarded, strict=True)])
        for runtime in runtimes:
            if not (work / f"generate-{seconds:g}s-{runtime}.wav").is_file():
                raise RuntimeError(f"generate --seconds {seconds:g} --runtime {runtime} wrote no file")
            key = f"{prefix(runtime)}{seconds:g}s"
            out |= summarize(f"{key}.wall_s", walls[runtime])
            out |= summarize(f"{key}.xrt", rates(seconds, walls[runtime]))
            out |= summarize(f"{key}.peak_rss_mb", peaks[runtime])
            out |= summarize(f"{key}.cpu_per_wall", cpus[runtime])
            print(f"  generate {seconds:g} s on {runtime}: {statistics.median(walls[runtime]):.2f} s wall",
                  file=sys.stderr)
        if len(runtimes) == 2:
            ratios = [t / o for t, o in zip(walls["torch"], walls["onnxruntime"], strict=True)]
            out |= summarize(f"generate.{seconds:g}s.torch_over_onnxruntime", ratios)
    firsts: dict[str, list[float]] = {r: [] for r in runtimes}
    loads: dict[str, list[float]] = {r: [] for r in runtimes}
    for _ in range(s.generate_runs):  # alternated, so all see the same load on the machine
        for runtime in runtimes:
            chosen = ["--runtime", runtime, *options]
            firsts[runtime].append(time_to_first_audio(
                [*generate_command(), "--seconds", "600", "--seed", "0", "--quiet", "--out", "-", *chosen], work))
            loads[runtime].append(time_to_load(["--seconds", "600", *chosen], work))
    for runtime in runtimes:
        key = prefix(runtime)
        out |= summarize(f"{key}stdout_first_audio_s", firsts[runtime])
        out |= summarize(f"{key}load_s", loads[runtime])
        after = [f - lo for f, lo in zip(firsts[runtime], loads[runtime], strict=True)]
        out |= summarize(f"{key}first_audio_after_load_s", after)
    out["generate.load_avg_end"] = load_avg()
    return out


# --------------------------------------------------------------------------------------------
# Training


class _Enough(Exception):
    """Raised from inside the training loop once enough steps are timed (skips validation)."""


def time_training(
    config_path: str | Path,
    cache: Path,
    work: Path,
    steps: int,
    warmup: int,
    overrides: list[str] | None = None,
    cpu: bool = True,
) -> dict[str, float]:
    """Time steps of the real training loop on ``cache``.

    The task's ``train_step`` is wrapped to note when each call starts and ends. A loop
    iteration (the time between two starts) covers data loading, the step (forward, backward,
    clipping, optimiser) and the EMA update; validation and checkpoints are pushed past the
    timed steps (they are periodic costs, amortised over ``val_every`` steps). The first
    ``warmup`` iterations (allocation, lazy initialisation) are left out.

    Returns:
        per-iteration seconds (``iteration_s``), the step alone (``step_s``), batch size,
        segment frames, parameter count.
    """
    import torch
    from accelerate import Accelerator

    from audiogen.datasets import SegmentDataset
    from audiogen.tasks import PriorTask, SpecVAETask, VocoderTask, load_trainer_config
    from audiogen.training import train

    never = 10**9
    config = load_trainer_config(
        config_path,
        [
            *(overrides or []),
            f"train.max_steps={never}",
            f"train.val_every={never}",
            f"train.ckpt_every={never}",
        ],
    )
    torch.manual_seed(0)
    task = {"vocoder": VocoderTask, "vae": SpecVAETask, "prior": PriorTask}[config.task](config)
    frames = config.train.segment_frames
    if config.task != "vocoder":  # as the trainer does: whole latent frames
        ratio = task.networks.get("vae", getattr(task, "vae", None)).time_ratio
        frames = max(ratio, frames // ratio * ratio)
    dataset = SegmentDataset(
        cache,
        "train",
        segment_frames=frames,
        with_audio=config.task == "vocoder",
        seed=config.train.seed,
        expected_frontend=config.frontend,
    )
    starts: list[float] = []
    ends: list[float] = []
    step = task.train_step

    def timed_step(batch: dict, ctx: Any) -> dict:
        starts.append(time.perf_counter())
        if len(starts) > warmup + steps:
            raise _Enough
        logs = step(batch, ctx)
        ends.append(time.perf_counter())
        return logs

    task.train_step = timed_step
    mixed = config.train.mixed_precision if not cpu else "no"
    accelerator = Accelerator(cpu=cpu, mixed_precision=mixed)
    with contextlib.suppress(_Enough), contextlib.redirect_stderr(io.StringIO()):  # no progress bar
        train(task, dataset, [], config.train, config.optim, work, accelerator)
    if len(starts) <= warmup + steps:
        raise RuntimeError(f"{config_path}: the loop stopped after {len(starts)} steps")
    iteration = np.diff(starts)[warmup:].tolist()
    return {
        "iteration_s": iteration,
        "step_s": [e - b for b, e in zip(starts[warmup:], ends[warmup:], strict=False)],
        "batch_size": config.train.batch_size,
        "segment_frames": frames,
        "params": sum(p.numel() for net in task.networks.values() for p in net.parameters()),
        "audio_seconds_per_sample": frames * config.frontend.hop_length / config.frontend.sample_rate,
    }


def bench_training(
    s: Settings, cache: Path, work: Path, configs: tuple = TRAIN_CONFIGS, device: str = "cpu"
) -> dict[str, Any]:
    """Steps and samples per second of each trainer config on ``device`` ("cpu" or "gpu").

    accelerate keeps one device and precision per process, so the GPU figures (in the config's
    mixed precision) are taken in a process of their own (:func:`run_benchmarks` starts it).
    """
    out: dict[str, Any] = {}
    vae_dirs: dict[str, Path] = {}
    with torch_threads(s.threads):
        for name, path in configs:
            overrides = []
            if name in PRIOR_VAE_CONFIG:
                vae_config = PRIOR_VAE_CONFIG[name]
                if vae_config not in vae_dirs:
                    vae_dirs[vae_config] = export_random_vae(vae_config, work / f"vae-{len(vae_dirs)}")
                overrides.append(f"vae_dir={vae_dirs[vae_config]}")
            steps = s.train_steps_tiny if "tiny" in name else s.train_steps_cpu
            key = f"train.{name}.{device}"
            out[f"{key}.load_avg"] = load_avg()
            r = time_training(
                ROOT / path,
                cache,
                work / f"run-{name}-{device}",
                steps,
                s.train_warmup,
                overrides,
                cpu=device == "cpu",
            )
            steps_per_s = rates(1.0, r["iteration_s"])
            out |= summarize(f"{key}.steps_per_s", steps_per_s)
            out |= summarize(f"{key}.samples_per_s", [x * r["batch_size"] for x in steps_per_s])
            out |= summarize(
                f"{key}.audio_s_per_s",
                [x * r["batch_size"] * r["audio_seconds_per_sample"] for x in steps_per_s],
            )
            out |= summarize(f"{key}.step_s", r["step_s"])
            out[f"{key}.batch_size"] = r["batch_size"]
            out[f"{key}.segment_frames"] = r["segment_frames"]
            out[f"{key}.params"] = r["params"]
            print(
                f"  train {name} ({device}): {out[f'{key}.steps_per_s.median']:.2f} steps/s", file=sys.stderr
            )
    return out


# --------------------------------------------------------------------------------------------
# FAD


def random_vggish(seed: int = 0) -> Any:
    """VGGish with random He-scaled weights loaded through torchvggish's key layout."""
    import torch

    from audiogen.vggish import VGGish

    with torch.device("meta"):
        layout = {k: tuple(v.shape) for k, v in VGGish().state_dict().items()}
        model = VGGish()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        scale = (2.0 / math.prod(shape[1:])) ** 0.5 if key.endswith("weight") else 0.05
        state[key] = torch.randn(shape, generator=gen) * scale
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def bench_fad(s: Settings) -> dict[str, Any]:
    """Embedding throughput (mel, VGGish) and the time to score 1,000 clips' embeddings."""
    from audiogen.distances import fad_from_embeddings
    from audiogen.embeddings import EmbeddedSet, MelEmbedder
    from audiogen.scoring import score_sets
    from audiogen.vggish import VGGishEmbedder

    out: dict[str, Any] = {"fad.load_avg": load_avg(), "fad.audio_seconds": s.fad_audio_seconds}
    with torch_threads(s.threads):
        mel = MelEmbedder()
        audio = synthetic_piano(s.fad_audio_seconds, mel.sample_rate)
        times = time_calls(lambda: mel.embed(audio), s.runs, s.warmup)
        out |= summarize("fad.embed_mel.xrt", rates(s.fad_audio_seconds, times))
        vggish = VGGishEmbedder(random_vggish(), weights_sha256="random")
        audio = synthetic_piano(s.fad_audio_seconds, vggish.sample_rate)
        patches = vggish.embed(audio).shape[0]
        times = time_calls(lambda: vggish.embed(audio), s.runs, s.warmup)
        out |= summarize("fad.embed_vggish.xrt", rates(s.fad_audio_seconds, times))
        out |= summarize("fad.embed_vggish.patches_per_s", rates(patches, times))

    rng = np.random.default_rng(0)
    shape = (s.fad_embeddings_per_clip, s.fad_dim)
    background = [rng.standard_normal(shape).astype(np.float32) for _ in range(s.fad_clips)]
    evaluation = [(0.2 + 1.1 * rng.standard_normal(shape)).astype(np.float32) for _ in range(s.fad_clips)]
    identity = {"model": "synthetic", "dim": s.fad_dim}
    sets = [
        EmbeddedSet(name, [f"{name}/{i}" for i in range(s.fad_clips)], embs, identity)
        for name, embs in (("background", background), ("eval", evaluation))
    ]
    bg, ev = sets[0].stacked(), sets[1].stacked()
    times = time_calls(lambda: fad_from_embeddings(bg, ev), s.runs, s.warmup)
    out |= summarize("fad.score_1000.fad_s", times)
    # numpy only (nothing lazy to warm up), and seconds per call: the quick run skips the warm-up
    times = time_calls(lambda: score_sets(*sets), max(1, s.runs // 2), 0 if s.quick else s.warmup)
    out |= summarize("fad.score_1000.report_s", times)
    out["fad.score_1000.clips"] = s.fad_clips
    out["fad.score_1000.embeddings_per_clip"] = s.fad_embeddings_per_clip
    return out


# --------------------------------------------------------------------------------------------
# Whole run, markdown and plots


def machine_info(s: Settings, models: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "models": models,
        "meta.quick": int(s.quick),
        "meta.threads": s.threads,
        "meta.runs": s.runs,
        "meta.cpu_count": os.cpu_count() or 0,
        "meta.torch": torch.__version__,
        "meta.python": platform.python_version(),
        "meta.machine": f"{platform.system()} {platform.machine()}",
        "meta.date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "meta.gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
    }
    return info


def run_benchmarks(s: Settings, work: Path, sections: tuple[str, ...] = SECTIONS,
                   models_chosen: tuple[Path | None, Path | None] = (None, None)) -> dict[str, Any]:
    """Run the chosen sections in a scratch folder (``models_chosen``: ``--model`` and ``--vocoder``
    for ``spec`` and ``generate``, see :func:`generator_models`); returns the flat results."""
    started = time.perf_counter()
    results: dict[str, Any] = {"meta.load_avg_1min.start": load_avg()}
    cache = None

    def note(section: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {section} (load {load_avg():.1f})", file=sys.stderr)

    if "frontend" in sections:
        note("frontend")
        figures, cache = bench_frontend(s, work / "frontend")
        results |= figures
    if "vocoder" in sections:
        note("vocoder")
        results |= bench_vocoders(s, work / "vocoder")
        results |= bench_vocoder_scaling(s)
    models, spec_dir, vocoder_dir = "none", None, None
    if "spec" in sections or "generate" in sections:
        models, spec_dir, vocoder_dir = generator_models(work, models_chosen)
    if "spec" in sections:
        note("spec")
        results |= bench_spec(s, spec_dir, vocoder_dir)
    if "generate" in sections:
        note("generate")
        results |= bench_generate(s, spec_dir, vocoder_dir, work)
    if "train" in sections:
        note("train")
        cache = cache or prepared_cache(s, work / "train-data")
        results |= bench_training(s, cache, work / "train")
        import torch

        if torch.cuda.is_available():
            results |= _run_worker(
                [
                    "--worker-train-gpu",
                    str(cache),
                    "--work",
                    str(work / "train-gpu"),
                    "--threads",
                    str(s.threads),
                    *(["--quick"] if s.quick else []),
                ]
            )
    if "fad" in sections:
        note("fad")
        results |= bench_fad(s)
    results |= machine_info(s, models)
    results["meta.load_avg_1min.end"] = load_avg()
    loads = [v for k, v in results.items() if "load_avg" in k and isinstance(v, float) and math.isfinite(v)]
    results["meta.load_avg_1min.max"] = max(loads)
    # the benchmark's own threads keep the load near the core count; half a process more means
    # other work competed for the cores, and the figures are noisy
    results["meta.noisy"] = int(max(loads) > (os.cpu_count() or 1) + 0.5)
    results["meta.wall_s"] = time.perf_counter() - started
    note("done")
    return results


def _spread(r: dict[str, Any], prefix: str, digits: int = 1) -> str:
    """``median (min–max)`` of a figure, or an en dash when it was not measured."""
    if f"{prefix}.median" not in r:
        return "–"
    median, low, high = (r[f"{prefix}.{x}"] for x in ("median", "min", "max"))
    return f"{median:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def _get(r: dict[str, Any], key: str, fmt: str = "{:.0f}") -> str:
    return fmt.format(r[key]) if key in r else "–"


def _params(n: float) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def _lengths(r: dict[str, Any], prefix: str, suffix: str) -> list[float]:
    """The clip lengths measured under ``prefix<L>s<suffix>``, sorted."""
    found = set()
    for key in r:
        if key.startswith(prefix) and key.endswith(suffix):
            middle = key[len(prefix) : -len(suffix)]
            if middle.endswith("s"):
                with contextlib.suppress(ValueError):
                    found.add(float(middle[:-1]))
    return sorted(found)


def render_markdown(r: dict[str, Any]) -> str:
    """The results as markdown tables (sections that were not run are left out)."""
    lines = [
        f"Machine: {r.get('meta.machine', '?')}, {r.get('meta.cpu_count', '?')} CPUs, "
        f"{r.get('meta.threads', '?')} torch threads, GPU: {r.get('meta.gpu', '?')}; torch "
        f"{r.get('meta.torch', '?')}; models: {r.get('models', '?')}; "
        f"{'quick' if r.get('meta.quick') else 'full'} run; load average "
        f"{r.get('meta.load_avg_1min.start', float('nan')):.1f} at the start, "
        f"{r.get('meta.load_avg_1min.end', float('nan')):.1f} at the end "
        f"(highest {r.get('meta.load_avg_1min.max', float('nan')):.1f}). "
        "Figures: median (min–max) of the timed runs after a warm-up.",
        "",
    ]
    if r.get("meta.noisy"):
        lines += [
            "**Noisy figures:** the load average rose above the core count + 0.5 during the run: other "
            "processes competed for the cores, and multi-threaded figures suffer most.",
            "",
        ]
    if "frontend.mel.xrt_per_core.median" in r:
        lines += [
            "#### Frontend and preparation",
            "",
            "| figure | median (min–max) | unit | load |",
            "|---|---:|---|---:|",
            f"| log-mel extraction, 1 thread | {_spread(r, 'frontend.mel.xrt_per_core', 0)} | × real time "
            f"| {_get(r, 'frontend.load_avg', '{:.1f}')} |",
        ]
        for w in sorted({int(k.split(".")[1].split("_")[1]) for k in r if k.startswith("prepare.workers_")}):
            lines.append(
                f"| preparation, {w} worker(s), {_get(r, 'prepare.pieces')} pieces "
                f"({_get(r, 'prepare.audio_hours', '{:.3f}')} h, 44.1 kHz FLAC) | "
                f"{_spread(r, f'prepare.workers_{w}.hours_per_core_hour', 0)} | h of audio per "
                f"worker-hour | {_get(r, 'prepare.load_avg', '{:.1f}')} |"
            )
            lines.append(
                f"| preparation wall time, {w} worker(s) | {_spread(r, f'prepare.workers_{w}.wall_s', 2)} "
                f"| s | |"
            )
        if "prepare.pool_startup_s.median" in r:
            lines.append(
                f"| of which starting the worker pool | {_spread(r, 'prepare.pool_startup_s', 2)} | s | |"
            )
        lines.append("")
    names = [n for n in VOCODERS if f"vocoder.{n}.params" in r]
    if names:
        gpu = any(f"vocoder.{n}.xrt_gpu.median" in r for n in names)
        lines += [
            f"#### Vocoders ({_get(r, 'vocoder.audio_seconds', '{:g}')} s of audio)",
            "",
            "| model | params | × real time, CPU | CPU s per call | peak RSS MB (inference MB) |"
            + (" × real time, GPU | GPU peak MB |" if gpu else "")
            + " load |",
            "|---|---:|---:|---:|---:|" + ("---:|---:|" if gpu else "") + "---:|",
        ]
        for n in names:
            k = f"vocoder.{n}"
            label = "Griffin-Lim (32 iterations)" if n == "griffin_lim" else n
            row = (
                f"| {label} | {_params(r[f'{k}.params'])} | {_spread(r, f'{k}.xrt_cpu')} | "
                f"{r[f'{k}.cpu_seconds_per_call']:.2f} | "
                f"{r[f'{k}.peak_rss_mb']:.0f} ({r[f'{k}.inference_mb']:.0f}) |"
            )
            if gpu:
                row += f" {_spread(r, f'{k}.xrt_gpu')} | {_get(r, f'{k}.gpu_peak_mb')} |"
            lines.append(row + f" {r[f'{k}.load_avg']:.1f} |")
        lines.append("")
    spec_lengths = _lengths(r, "spec.mel_", ".xrt.median")
    if spec_lengths:
        lines += [
            "#### Spectrogram generator and in-process pipeline",
            "",
            "Prior alone (latents only): "
            + ", ".join(
                f"{L:g} s {_spread(r, f'spec.prior_{L:g}s.xrt')}"
                for L in _lengths(r, "spec.prior_", ".xrt.median")
            )
            + " × real time.",
            "",
            "| clip | mel only (prior + VAE decoder), × real time | whole pipeline (+ vocoder), × real time "
            "| whole pipeline, s |",
            "|---|---:|---:|---:|",
        ]
        for L in spec_lengths:
            lines.append(
                f"| {L:g} s | {_spread(r, f'spec.mel_{L:g}s.xrt')} "
                f"| {_spread(r, f'spec.pipeline_{L:g}s.xrt')} "
                f"| {_spread(r, f'spec.pipeline_{L:g}s.seconds', 2)} |"
            )
        lines += [
            f"\nLoad average {_get(r, 'spec.load_avg', '{:.1f}')} at the start, "
            f"{_get(r, 'spec.load_avg_end', '{:.1f}')} at the end.",
            "",
        ]
    gen_lengths = _lengths(r, "generate.", ".wall_s.median")
    if gen_lengths:
        picked = r.get("meta.generate_runtime", "torch")
        beside = picked != "torch" and any(k.startswith("generate.torch.") for k in r)
        lines += [
            "#### `generate` (a new process each run: imports, loading, generation, file written)",
            "",
            "| clip | runtime | wall s | × real time | CPU s per wall s | peak RSS MB | PyTorch / onnxruntime |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for L in gen_lengths:
            rows = [(picked, f"generate.{L:g}s")] + ([("torch", f"generate.torch.{L:g}s")] if beside else [])
            for runtime, key in rows:
                ratio = _spread(r, f"generate.{L:g}s.torch_over_onnxruntime", 2) if runtime != "torch" else ""
                lines.append(
                    f"| {L:g} s | {runtime} | {_spread(r, f'{key}.wall_s', 2)} | {_spread(r, f'{key}.xrt')} | "
                    f"{_spread(r, f'{key}.cpu_per_wall', 2)} | {_spread(r, f'{key}.peak_rss_mb', 0)} | {ratio} |"
                )
        guard_costs = [f"{L:g} s: {_spread(r, f'generate.unguarded.{L:g}s.wall_s', 2)} s without it, "
                       f"{_spread(r, f'generate.{L:g}s.guard_over_unguarded', 2)}× with it"
                       for L in gen_lengths if f"generate.{L:g}s.guard_over_unguarded.median" in r]
        if guard_costs:
            lines += ["", f"The wash guard on {picked}, `--no-wash-guard` alternated with the runs above: "
                      + "; ".join(guard_costs) + "."]
        lines += [
            "\nFirst process of the run (cold page cache): "
            f"{_get(r, 'generate.first_process_wall_s', '{:.2f}')} s; "
            f"load average {_get(r, 'generate.load_avg', '{:.1f}')}.",
            "",
        ]
        for runtime, key in [(picked, "generate.")] + ([("torch", "generate.torch.")] if beside else []):
            lines += [
                f"`generate --out -` on {runtime}: first audio {_spread(r, f'{key}stdout_first_audio_s', 2)} s after "
                f"the process starts; a fresh process loads the models in {_spread(r, f'{key}load_s', 2)} s, so "
                f"sound follows the models being ready by {_spread(r, f'{key}first_audio_after_load_s', 2)} s.",
                "",
            ]
    train_keys = [
        (name, dev)
        for name, _ in TRAIN_CONFIGS
        for dev in ("cpu", "gpu")
        if f"train.{name}.{dev}.steps_per_s.median" in r
    ]
    if train_keys:
        lines += [
            "#### Training (the real loop on a prepared cache)",
            "",
            "| config | device | params | batch × frames | steps/s | samples/s | s per step (step alone) "
            "| load |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, dev in train_keys:
            k = f"train.{name}.{dev}"
            lines.append(
                f"| {name} | {dev} | {_params(r[f'{k}.params'])} | {r[f'{k}.batch_size']:.0f} × "
                f"{r[f'{k}.segment_frames']:.0f} | {_spread(r, f'{k}.steps_per_s', 2)} | "
                f"{_spread(r, f'{k}.samples_per_s', 1)} | {_spread(r, f'{k}.step_s', 3)} | "
                f"{r[f'{k}.load_avg']:.1f} |"
            )
        lines.append("")
    if "fad.embed_mel.xrt.median" in r:
        lines += [
            "#### FAD",
            "",
            "| figure | median (min–max) | unit |",
            "|---|---:|---|",
            f"| mel-statistics embedding | {_spread(r, 'fad.embed_mel.xrt', 0)} | × real time |",
            f"| VGGish embedding (random weights) | {_spread(r, 'fad.embed_vggish.xrt')} | × real time |",
            f"| VGGish embedding | {_spread(r, 'fad.embed_vggish.patches_per_s')} | patches/s |",
            f"| FAD of 1,000 vs 1,000 clips ({_get(r, 'fad.score_1000.embeddings_per_clip')} × 128-d each) "
            f"| {_spread(r, 'fad.score_1000.fad_s', 3)} | s |",
            "| full report (FAD, 200 bootstrap resamples, FAD∞) "
            f"| {_spread(r, 'fad.score_1000.report_s', 2)} | s |",
            f"\nLoad average {_get(r, 'fad.load_avg', '{:.1f}')}.",
            "",
        ]
    return "\n".join(lines)


def save_plots(r: dict[str, Any], out_dir: Path) -> list[Path]:
    """Scaling plots (PNG): generation and vocoder time against clip length, preparation time
    against workers. Plots whose figures were not measured are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from audiogen.plots import save_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def log_axes(ax: Any, xs: list[float]) -> None:
        """Log-log axes labelled in plain numbers, a tick at every measured length."""
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))

    def finish(fig: Any, ax: Any, name: str, xlabel: str, ylabel: str) -> None:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        save_figure(fig, out_dir / name, dpi=90)
        plt.close(fig)
        written.append(out_dir / name)

    def errorbar(
        ax: Any, xs: list[float], prefix: Callable[[float], str], label: str, marker: str = "o"
    ) -> None:
        med = np.array([r[f"{prefix(x)}.median"] for x in xs])
        low = med - np.array([r[f"{prefix(x)}.min"] for x in xs])
        high = np.array([r[f"{prefix(x)}.max"] for x in xs]) - med
        ax.errorbar(xs, med, yerr=[low, high], marker=marker, capsize=3, label=label)

    lengths = _lengths(r, "spec.mel_", ".seconds.median")
    if lengths:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        errorbar(ax, lengths, lambda x: f"spec.pipeline_{x:g}s.seconds", "whole pipeline, in process")
        errorbar(ax, lengths, lambda x: f"spec.mel_{x:g}s.seconds", "mel only (prior + VAE)")
        cli = _lengths(r, "generate.", ".wall_s.median")
        if cli:
            errorbar(ax, cli, lambda x: f"generate.{x:g}s.wall_s", "generate command (cold)", marker="s")
        ax.plot(lengths, lengths, "k--", lw=0.8, label="real time")
        log_axes(ax, lengths)
        ax.set_title("Generation time against clip length")
        finish(fig, ax, "generation_vs_length.png", "clip length (s)", "wall time (s)")
    models = sorted(
        {k.split(".")[2] for k in r if k.startswith("scaling.vocoder.") and k.endswith(".median")}
    )
    if models:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name in models:
            xs = _lengths(r, f"scaling.vocoder.{name}.", ".median")
            errorbar(ax, xs, lambda x, name=name: f"scaling.vocoder.{name}.{x:g}s", name)
        xs = _lengths(r, f"scaling.vocoder.{models[0]}.", ".median")
        ax.plot(xs, xs, "k--", lw=0.8, label="real time")
        log_axes(ax, xs)
        ax.set_title("Vocoder time against clip length (vocode, chunked)")
        finish(fig, ax, "vocoder_vs_length.png", "clip length (s)", "wall time (s)")
    workers = sorted({int(k.split(".")[1].split("_")[1]) for k in r if k.startswith("prepare.workers_")})
    if workers:
        fig, ax = plt.subplots(figsize=(6, 4))
        errorbar(ax, workers, lambda w: f"prepare.workers_{w}.wall_s", "wall time")
        if "prepare.pool_startup_s.median" in r:
            startup = r["prepare.pool_startup_s.median"]
            rest = [r[f"prepare.workers_{w}.wall_s.median"] - (startup if w > 1 else 0.0) for w in workers]
            ax.plot(workers, rest, "s--", label="wall time less the pool's start-up")
        ax.set_xticks(workers)
        ax.set_title(f"Preparing {r.get('prepare.audio_hours', 0) * 60:.0f} min of 44.1 kHz FLAC")
        finish(fig, ax, "prepare_vs_workers.png", "worker processes", "wall time (s)")
    return written


def build_parser() -> argparse.ArgumentParser:
    from audiogen.cli.arguments import OneLineParser, positive_float, positive_int

    parser = OneLineParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short run for CI (under 2 minutes)")
    parser.add_argument("--json", type=Path, help="write the flat results here (required)")
    parser.add_argument("--md", type=Path, help="write the markdown tables here, also printed (default: printed only)")
    parser.add_argument("--plot", type=Path, help="write the scaling plots (PNG) into this folder (default: no plots)")
    parser.add_argument("--only", help=f"comma-separated sections from {','.join(SECTIONS)} (default: all)")
    parser.add_argument(
        "--threads", type=positive_int, default=2, help="torch threads for the figures (default: %(default)s)"
    )
    parser.add_argument("--runs", type=positive_int,
                        help="timed repeats per figure, generate's cold runs too (default: 5, quick 3; generate 3, "
                             "quick 2)")
    parser.add_argument("--model", type=Path, help="spectrogram model folder that spec and generate time, e.g. one "
                                                   "with another prior (default: the bundled one, else random weights)")
    parser.add_argument("--vocoder", type=Path, help="vocoder folder for spec and generate (default: the bundled one, "
                                                     "else random weights)")
    parser.add_argument("--worker-vocoder", help=argparse.SUPPRESS)  # internal: one vocoder, JSON out
    parser.add_argument("--seconds", type=positive_float, default=30.0, help=argparse.SUPPRESS)
    parser.add_argument("--worker-train-gpu", type=Path, help=argparse.SUPPRESS)  # internal: a cache folder
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--signal", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.worker_vocoder and not args.worker_train_gpu:
        if args.json is None:
            parser.error("--json OUT.json is required")
        unknown = set(_sections(args)) - set(SECTIONS)
        if unknown:
            parser.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return one_line_errors(PROG, lambda: _run(args))


def _sections(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(x.strip() for x in args.only.split(",")) if args.only else SECTIONS


def _run(args: argparse.Namespace) -> int:
    from audiogen.cli.arguments import check_output_file, check_output_folder

    if args.worker_vocoder:
        print(
            json.dumps(
                measure_vocoder_worker(
                    args.worker_vocoder, args.seconds, args.runs or 5, args.threads, args.signal
                )
            )
        )
        return 0
    if args.worker_train_gpu:
        settings = settings_for(args.quick, args.threads)
        print(json.dumps(bench_training(settings, args.worker_train_gpu, args.work, device="gpu")))
        return 0
    # outputs are checked before minutes of measuring, not when the results are written
    check_output_file("--json", args.json)
    check_output_file("--md", args.md)
    check_output_folder("--plot", args.plot)
    for option, folder in (("--model", args.model), ("--vocoder", args.vocoder)):
        if folder is not None and not folder.is_dir():
            raise ValueError(f"{option} {folder}: no such model folder")
    sections = _sections(args)
    settings = settings_for(args.quick, args.threads)
    if args.runs:
        settings = dataclasses.replace(settings, runs=args.runs, generate_runs=args.runs)
    with tempfile.TemporaryDirectory(prefix="audiogen-bench-") as tmp:
        results = run_benchmarks(settings, Path(tmp), sections, (args.model, args.vocoder))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    table = render_markdown(results)
    print(table)
    if args.md:
        args.md.write_text(table + "\n")
    if args.plot:
        for path in save_plots(results, args.plot):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
