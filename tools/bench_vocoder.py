"""Vocoder speed figures: × real time on CPU, parameters and peak memory, plus Griffin-Lim.

Each model is measured in a fresh subprocess (so its peak resident memory is its own) on the
log-mel of the same synthetic piano-like clip: one warm-up call, then the median, min and max
of ``--runs`` timed calls of the generator's forward pass (weight norm folded away,
``torch.inference_mode``), with ``torch.set_num_threads(--threads)``. × real time is audio
seconds / wall seconds, so "min" is the slowest run. The 1-minute load average is recorded with
every row: on a shared machine other jobs slow the figures down.

    python tools/bench_vocoder.py                          # default, V2, V3, istft, Griffin-Lim
    python tools/bench_vocoder.py --models hifigan_v1 --runs 3
    python tools/bench_vocoder.py --train-step --models default hifigan_v3
    python tools/bench_vocoder.py --json out.json

The measuring functions (:func:`measure_vocoder_speed`, :func:`measure_model`,
:func:`measure_train_step`) are importable.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

PROG = "bench_vocoder"
ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs" / "vocoder"
DEFAULT_MODELS = ["default", "hifigan_v2", "hifigan_v3", "istft", "griffin_lim"]
ALL_MODELS = ["default", "hifigan_v1", "hifigan_v2", "hifigan_v3", "istft", "griffin_lim"]


def piano_like_audio(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Decaying harmonic notes, four per second: a stand-in for piano audio (float32, peak 0.5)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    out = np.zeros_like(t)
    for start in np.arange(0, seconds, 0.25):
        f0 = 55 * 2 ** (rng.integers(0, 60) / 12)
        # each note is cut 8 s after its onset, where its envelope is e^-20 (far below float32
        # resolution of the mix): half the work of running every note to the end of the clip
        first, last = np.searchsorted(t, start), np.searchsorted(t, start + 8.0)
        local = t[first:last] - start
        env = np.exp(-local * 2.5)
        for k in range(1, 9):
            if f0 * k < sample_rate / 2:
                out[first:last] += env * np.sin(2 * np.pi * f0 * k * local) / k**1.5
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def measure_vocoder_speed(
    fn: Callable[[torch.Tensor], torch.Tensor],
    mel: torch.Tensor,
    audio_seconds: float,
    runs: int = 5,
    warmup: int = 1,
) -> dict[str, float]:
    """Time ``fn(mel)`` under ``torch.inference_mode``: warm-up calls, then ``runs`` timed calls.

    Returns:
        wall seconds per call (median/min/max), × real time (``audio_seconds`` / seconds; its
        "min" is the slowest call), and the median process CPU seconds per call (with one
        thread, the compute a call needs whatever else the machine runs).
    """
    times, cpu_times = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            fn(mel)
        for _ in range(runs):
            start, cpu_start = time.perf_counter(), time.process_time()
            fn(mel)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    median = statistics.median(times)
    return {
        "cpu_seconds_median": statistics.median(cpu_times),
        "seconds_median": median,
        "seconds_min": min(times),
        "seconds_max": max(times),
        "xrt_median": audio_seconds / median,
        "xrt_min": audio_seconds / max(times),
        "xrt_max": audio_seconds / min(times),
        "runs": runs,
    }


def _load(name: str):
    """(callable mel → audio, parameter count, frontend) for a config name or "griffin_lim"."""
    from audiogen.config import from_dict, read_yaml
    from audiogen.frontend import FrontendConfig, MelFrontend
    from audiogen.vocoder import build_vocoder, vocoder_config_from_dict

    if name == "griffin_lim":
        frontend = MelFrontend(FrontendConfig())
        return (lambda mel: frontend.griffin_lim(mel, n_iter=32)), 0, frontend
    data = read_yaml(CONFIG_DIR / f"{name}.yaml")
    frontend = MelFrontend(from_dict(FrontendConfig, data.get("frontend") or {}, "frontend"))
    model = build_vocoder(vocoder_config_from_dict(data["model"]), frontend.config)
    params = model.num_parameters()
    model.eval().remove_weight_norm()
    return model, params, frontend


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_model(name: str, seconds: float = 30.0, runs: int = 5, threads: int = 2, chunked: bool = False) -> dict:
    """Speed, parameters and memory of one model (run it in a fresh process for peak memory).

    Args:
        name: a config in configs/vocoder (without .yaml) or "griffin_lim".
        chunked: time :func:`audiogen.vocoder.vocode` (the chunked inference path) instead of
            one forward call on the whole clip.
    """
    torch.set_num_threads(threads)
    fn, params, frontend = _load(name)
    audio = torch.from_numpy(piano_like_audio(seconds, frontend.config.sample_rate))
    mel = frontend(audio).unsqueeze(0)  # (1, n_mels, F)
    if chunked:
        from audiogen.vocoder import vocode

        model = fn
        fn = lambda m: vocode(model, m)  # noqa: E731
    rss_before = _rss_mb()
    result = measure_vocoder_speed(fn, mel, audio_seconds=len(audio) / frontend.config.sample_rate, runs=runs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {
        "model": name + (" (vocode, chunked)" if chunked else ""),
        "params": params,
        **result,
        "peak_rss_mb": peak,
        "inference_mb": max(0.0, peak - rss_before),
        "threads": threads,
        "audio_seconds": len(audio) / frontend.config.sample_rate,
        "load_avg_1min": os.getloadavg()[0],
    }


def measure_train_step(name: str, batch_size: int = 16, segment_frames: int = 32, steps: int = 3, threads: int = 2):
    """Seconds per GAN training step (discriminator step, then generator step with mel L1,
    LSGAN and feature matching) on random segments, with the config's discriminators.

    This times the networks and losses alone, not the data pipeline or the training loop.
    """
    from audiogen.config import from_dict, read_yaml
    from audiogen.discriminators import DiscriminatorConfig, build_discriminators
    from audiogen.frontend import FrontendConfig, MelFrontend
    from audiogen.losses import MelL1Loss, discriminator_loss, feature_matching_loss, generator_adversarial_loss
    from audiogen.vocoder import build_vocoder, vocoder_config_from_dict

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = read_yaml(CONFIG_DIR / f"{name}.yaml")
    frontend = MelFrontend(from_dict(FrontendConfig, data.get("frontend") or {}, "frontend"))
    generator = build_vocoder(vocoder_config_from_dict(data["model"]), frontend.config).train()
    params = generator.num_parameters()
    discs = build_discriminators(from_dict(DiscriminatorConfig, data["discriminator"], "discriminator")).train()
    opt_g = torch.optim.AdamW(generator.parameters(), 2e-4, betas=(0.8, 0.99))
    opt_d = torch.optim.AdamW(discs.parameters(), 2e-4, betas=(0.8, 0.99))
    mel_loss = MelL1Loss(frontend)
    hop = frontend.config.hop_length
    audio = torch.from_numpy(piano_like_audio(batch_size * segment_frames * hop / frontend.config.sample_rate + 1,
                                              frontend.config.sample_rate))  # fmt: skip
    real = audio[: batch_size * segment_frames * hop].view(batch_size, 1, -1)
    mel = frontend(real[:, 0])[..., :segment_frames]
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        fake = generator(mel)
        scores, _ = discs(torch.cat([real, fake.detach()]))
        loss_d = discriminator_loss([s[:batch_size] for s in scores], [s[batch_size:] for s in scores])
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        scores, fmaps = discs(torch.cat([real, fake]))
        real_maps = [[m[:batch_size] for m in maps] for maps in fmaps]
        fake_maps = [[m[batch_size:] for m in maps] for maps in fmaps]
        loss_g = (
            generator_adversarial_loss([s[batch_size:] for s in scores])
            + 2 * feature_matching_loss(real_maps, fake_maps)
            + 45 * mel_loss(fake, real)
        )
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if i:  # the first step is a warm-up
            times.append(time.perf_counter() - start)
    return {
        "model": name,
        "batch_size": batch_size,
        "segment_frames": segment_frames,
        "params": params,
        "disc_params": sum(p.numel() for p in discs.parameters()),
        "step_seconds_median": statistics.median(times),
        "step_seconds_min": min(times),
        "step_seconds_max": max(times),
        "threads": threads,
        "load_avg_1min": os.getloadavg()[0],
    }


def _in_subprocess(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False, cwd=ROOT
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"benchmark of {args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed_table(rows: list[dict]) -> str:
    lines = [
        "| model | params | × real time, median (min–max) | s per call | CPU s per call | peak RSS MB (inference MB)"
        " | load |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        speed = f"{r['xrt_median']:.1f} ({r['xrt_min']:.1f}–{r['xrt_max']:.1f})"
        memory = f"{r['peak_rss_mb']:.0f} ({r['inference_mb']:.0f})"
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | {speed} | {r['seconds_median']:.3f}"
            f" | {r['cpu_seconds_median']:.3f} | {memory}"
            f" | {r['load_avg_1min']:.1f} |"
        )
    return "\n".join(lines)


def step_table(rows: list[dict]) -> str:
    lines = [
        "| model | G params | D params | batch × frames | s per step, median (min–max) | load |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['disc_params'] / 1e6:.2f} M | "
            f"{r['batch_size']} × {r['segment_frames']} | {r['step_seconds_median']:.2f} "
            f"({r['step_seconds_min']:.2f}–{r['step_seconds_max']:.2f}) | {r['load_avg_1min']:.1f} |"
        )
    return "\n".join(lines)


# 4 frames (1,024 samples at hop 256) fail in the discriminators' reflection padding of the default
# config; 8 is the smallest power of two that trains.
MIN_SEGMENT_FRAMES = 8


def build_parser() -> argparse.ArgumentParser:
    from audiogen.cli.arguments import OneLineParser, check_output_file, int_at_least, positive_float, positive_int

    def json_file(text: str) -> Path:
        try:
            check_output_file("--json", text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return Path(text)

    parser = OneLineParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", choices=ALL_MODELS, default=DEFAULT_MODELS, metavar="MODEL",
        help=f"from {', '.join(ALL_MODELS)} (default: {' '.join(DEFAULT_MODELS)})",
    )
    parser.add_argument(
        "--seconds", type=positive_float, default=30.0, help="audio length to vocode, s (default: %(default)s)"
    )
    parser.add_argument(
        "--runs", type=positive_int, default=5, help="timed runs after one warm-up (default: %(default)s)"
    )
    parser.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads (default: %(default)s)")
    parser.add_argument("--chunked", action="store_true", help="also time vocode() (chunked) for each model")
    parser.add_argument("--train-step", action="store_true", help="time GAN training steps instead")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="with --train-step (default: %(default)s)")
    parser.add_argument(
        "--segment-frames", type=int_at_least(MIN_SEGMENT_FRAMES), default=32,
        help=f"with --train-step, at least {MIN_SEGMENT_FRAMES} (default: %(default)s)",
    )
    parser.add_argument("--json", type=json_file, help="write the rows here as JSON (default: not written)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    return parser


def measure(args: argparse.Namespace) -> int:
    if args.one:
        if args.train_step:
            row = measure_train_step(args.one, args.batch_size, args.segment_frames, args.runs, args.threads)
        else:
            row = measure_model(args.one, args.seconds, args.runs, args.threads, chunked=args.chunked)
        print(json.dumps(row))
        return 0

    common = ["--seconds", str(args.seconds), "--runs", str(args.runs), "--threads", str(args.threads)]
    rows = []
    for name in args.models:
        if args.train_step:
            if name == "griffin_lim":
                continue
            extra = ["--train-step", "--batch-size", str(args.batch_size), "--segment-frames", str(args.segment_frames)]
            rows.append(_in_subprocess(["--one", name, *common, *extra]))
        else:
            rows.append(_in_subprocess(["--one", name, *common]))
            if args.chunked and name != "griffin_lim":
                rows.append(_in_subprocess(["--one", name, *common, "--chunked"]))
        print(f"measured {rows[-1]['model']}", file=sys.stderr)
    print(step_table(rows) if args.train_step else speed_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    args = build_parser().parse_args(argv)
    return one_line_errors(PROG, lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
