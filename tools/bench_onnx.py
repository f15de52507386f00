"""PyTorch against onnxruntime on the same input: vocoder, VAE decoder (30 s each) and the prior's step.

    python tools/bench_onnx.py                              # exports the bundled models to a temp folder first
    python tools/bench_onnx.py --graphs onnx/ --repeats 9   # graphs of an earlier `audiogen export-onnx --out onnx/`
    python tools/bench_onnx.py --threads 1 2 --json onnx-bench.json

For each thread count a fresh worker process runs with ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``
and torch's thread count set to it, and onnxruntime's intra-op threads set to it too (no
spinning; one inter-op thread). Each network gets the whole input in one call both ways (no
chunking: the runtimes are compared, not :func:`audiogen.vocoder.vocode`'s chunk layout); one
warm-up call each, then ``--repeats`` timed calls alternating PyTorch and onnxruntime, so that
load from other jobs on a shared machine falls on both alike. Reported per row: median (min–max)
seconds of each runtime, the ratio of the medians (PyTorch / onnxruntime, above 1 means
onnxruntime is faster), the largest output difference between the two, and the 1-minute load
average. PyTorch runs under ``torch.inference_mode``.

The prior's one-step function (when the graphs have one) is timed over 100 frames fed one call
at a time, against ``LatentPrior.advance``; on one thread both ways, as ``generate`` samples
(:func:`audiogen.priors.one_thread`: its matrices are too small to split), in the first worker only.

Graph by graph, on the same input; ``tools/bench.py --only generate`` times whole ``generate`` runs on
both runtimes side by side (what a user waits for: imports, loading, the streamed chunks, the file).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def summarize(seconds: list[float]) -> dict[str, float]:
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds)}


def time_alternating(first: Callable[[], Any], second: Callable[[], Any], repeats: int) -> tuple[list, list]:
    """Seconds of ``repeats`` calls of each, interleaved, after one warm-up call of each."""
    first(), second()
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return a, b


def worker(graphs: Path, threads: int, seconds: float, repeats: int, prior: bool) -> list[dict[str, Any]]:
    """Time both runtimes on the vocoder and the VAE decoder in this process (threads already set)."""
    import numpy as np
    import torch

    from audiogen.generation import load_vae, load_vocoder
    from audiogen.onnx_generation import ort_session

    torch.set_num_threads(threads)
    manifest = json.loads((graphs / "manifest.json").read_text())
    vae, _ = load_vae(source_dir(manifest, "model"))  # the very models the graphs were exported from
    vocoder = load_vocoder(source_dir(manifest, "vocoder"))
    frame_rate = manifest["frontend"]["sample_rate"] / manifest["frontend"]["hop_length"]
    generator = torch.Generator().manual_seed(0)
    latent_frames = round(seconds * frame_rate / vae.time_ratio)
    latents = torch.randn(1, vae.latent_dim, latent_frames, generator=generator)
    with torch.inference_mode():
        mel = vae.decode(latents)  # a mel the decoder really makes, so the vocoder sees plausible input
    cases = [("vocoder", vocoder, mel, "mel", 1), ("vae_decoder", vae.decode, latents, "latents", vae.time_ratio)]
    rows = []
    for name, network, tensor, input_name, mel_frames_per_frame in cases:
        session = ort_session(graphs / manifest["graphs"][name]["file"], threads)
        feed = {input_name: tensor.numpy()}

        def run_torch(network=network, tensor=tensor):
            with torch.inference_mode():
                return network(tensor)

        def run_ort(session=session, feed=feed):
            return session.run(None, feed)[0]

        difference = float(np.abs(run_ort() - run_torch().numpy()).max())
        load = os.getloadavg()[0]
        torch_s, ort_s = time_alternating(run_torch, run_ort, repeats)
        rows.append({
            "graph": name, "threads": threads, "input_shape": list(tensor.shape),
            "input_seconds": tensor.shape[-1] * mel_frames_per_frame / frame_rate,
            "torch_s": summarize(torch_s), "onnxruntime_s": summarize(ort_s),
            "ratio_torch_over_ort": statistics.median(torch_s) / statistics.median(ort_s),
            "max_abs_difference": difference, "load_avg_1min": load, "repeats": repeats,
        })  # fmt: skip
    if prior and "prior_step" in manifest["graphs"]:
        rows.append(time_prior_steps(graphs / manifest["graphs"]["prior_step"]["file"], repeats))
    return rows


def source_dir(manifest: dict[str, Any], name: str) -> Path:
    """The model folder a graph folder was exported from (``bundled``: the one shipped with audiogen)."""
    from audiogen.generation import pretrained_dir

    folder = manifest["sources"][name]["dir"]
    return pretrained_dir("spec" if name == "model" else "vocoder") if folder == "bundled" else Path(folder)


PRIOR_STEPS = 100  # frames per timed call: one frame costs well under a millisecond


def time_prior_steps(path: Path, repeats: int) -> dict[str, Any]:
    """PyTorch's LatentPrior.advance against the prior_step graph, PRIOR_STEPS frames per timed call, one thread."""
    import numpy as np
    import torch

    from audiogen.generation import load_prior, load_vae
    from audiogen.onnx_generation import ort_session
    from audiogen.priors import one_thread

    manifest = json.loads((path.parent / "manifest.json").read_text())
    model_dir = source_dir(manifest, "model")
    prior = load_prior(model_dir, load_vae(model_dir)[0].latent_dim)
    session = ort_session(path, 1)
    state_shape = manifest["graphs"]["prior_step"]["inputs"][1]["shape"]
    frame = np.zeros((1, prior.latent_dim), dtype=np.float32)
    torch_state, ort_state = prior.begin(None), np.zeros((1, *state_shape[1:]), dtype=np.float32)

    def run_torch():
        with one_thread(torch.device("cpu")):
            for _ in range(PRIOR_STEPS):
                prior.advance(torch_state, torch.from_numpy(frame))

    def run_ort():
        nonlocal ort_state
        for _ in range(PRIOR_STEPS):
            _, ort_state = session.run(None, {"frame": frame, "state": ort_state})

    load = os.getloadavg()[0]
    torch_s, ort_s = time_alternating(run_torch, run_ort, repeats)
    return {"graph": "prior_step", "threads": 1, "input_shape": [PRIOR_STEPS, 1, prior.latent_dim],
            "input_seconds": None, "torch_s": summarize(torch_s), "onnxruntime_s": summarize(ort_s),
            "ratio_torch_over_ort": statistics.median(torch_s) / statistics.median(ort_s),
            "max_abs_difference": None, "load_avg_1min": load, "repeats": repeats}


def run_worker(graphs: Path, threads: int, seconds: float, repeats: int, prior: bool,
               wait_policy: str | None = None) -> list[dict[str, Any]]:
    """:func:`worker` in a fresh process whose thread environment says ``threads`` (and ``OMP_WAIT_POLICY``)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--graphs", str(graphs),
           "--threads", str(threads), "--seconds", str(seconds), "--repeats", str(repeats),
           *(["--prior"] if prior else [])]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker with {threads} thread(s) failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def format_rows(rows: list[dict[str, Any]]) -> str:
    def span(s: dict[str, float]) -> str:
        return f"{s['median']:.3f} s ({s['min']:.3f}–{s['max']:.3f})"

    lines = ["| graph | input | threads | PyTorch | onnxruntime | PyTorch / onnxruntime | max abs diff | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        what = (f"{PRIOR_STEPS} frames, one call each" if r["input_seconds"] is None
                else f"{r['input_seconds']:.0f} s {tuple(r['input_shape'])}")
        diff = "" if r["max_abs_difference"] is None else f"{r['max_abs_difference']:.1e}"
        lines.append(f"| {r['graph']} | {what} | {r['threads']} | {span(r['torch_s'])} | {span(r['onnxruntime_s'])} "
                     f"| {r['ratio_torch_over_ort']:.2f}× | {diff} | {r['load_avg_1min']:.2f} |")
    return "\n".join(lines)


def export_bundled(folder: Path) -> Path:
    out = folder / "onnx"
    done = subprocess.run([sys.executable, "-m", "audiogen", "export-onnx", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"audiogen export-onnx failed: {done.stderr.strip()}")
    return out


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    p = argparse.ArgumentParser(prog="bench_onnx.py", description=__doc__.split("\n")[0])
    p.add_argument("--graphs", type=Path, help="folder of `audiogen export-onnx` (default: export the bundled models)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    p.add_argument("--seconds", type=float, default=30.0, help="input length in seconds of audio (default 30)")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per runtime and row (default 7)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--omp-wait-policy", choices=["active", "passive"],
                   help="OMP_WAIT_POLICY for PyTorch's OpenMP threads (default: inherited; onnxruntime has its own "
                        "pool, set to no spinning). PASSIVE stops idle threads spinning, which on busy cores "
                        "is what makes PyTorch's 2-thread runs slow")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--prior", action="store_true", help=argparse.SUPPRESS)  # a worker times the prior step too
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.graphs, args.threads[0], args.seconds, args.repeats, args.prior)))
        return 0
    return one_line_errors(p.prog, lambda: _bench(args))


def _bench(args: argparse.Namespace) -> int:
    if args.repeats < 1 or args.seconds <= 0 or min(args.threads) < 1:
        raise ValueError("--repeats, --seconds and --threads must be positive")
    if args.graphs is not None and not (args.graphs / "manifest.json").exists():
        raise ValueError(f"{args.graphs}: no manifest.json (not a folder of audiogen export-onnx)")
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        graphs = args.graphs or export_bundled(Path(tmp))
        rows = [row for i, n in enumerate(args.threads)
                for row in run_worker(graphs, n, args.seconds, args.repeats, i == 0, args.omp_wait_policy)]
    policy = args.omp_wait_policy or os.environ.get("OMP_WAIT_POLICY", "unset (libgomp: active for a while)")
    for row in rows:
        row["omp_wait_policy"] = policy
    print(f"OMP_WAIT_POLICY for PyTorch: {policy}; onnxruntime: intra-op spinning off")
    print(format_rows(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
