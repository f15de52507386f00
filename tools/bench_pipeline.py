"""Serial against pipelined generation, in one process and one run (issue 16's "every core").

    .venv/bin/python tools/bench_pipeline.py [--seconds 30 120 600] [--runs 3] [--threads 2]

For each clip length, the bundled models make the same clip with the stages one after another
(torch at ``--threads``) and on threads of their own (``Generator.pipelined``), alternating, and
the script prints the median (min–max) wall time of each, their ratio, and CPU seconds per wall
second; then the time each stage alone takes at one thread. Nothing is written.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from audiogen.cli import add_version_option, one_line_errors
from audiogen.cli.arguments import OneLineParser, positive_float, positive_int


def _timed(generator, seconds: float, pipelined: bool) -> tuple[float, float]:
    generator.pipelined = pipelined
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in generator.stream(seconds, seed=1):
        pass
    wall = time.perf_counter() - wall
    return wall, (time.process_time() - cpu) / wall


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def _stages(generator, seconds: float) -> str:
    import torch

    from audiogen.vocoder import vocode_stream

    torch.set_num_threads(1)
    start = time.perf_counter()
    latents = list(generator.latents(int(seconds * generator.sample_rate), seed=1))
    prior = time.perf_counter()
    mels = list(generator.mels(iter(latents)))
    vae = time.perf_counter()
    with torch.inference_mode():
        list(vocode_stream(generator.vocoder, iter(mels)))
    end = time.perf_counter()
    return f"prior {prior - start:.2f} s, VAE decoder {vae - prior:.2f} s, vocoder {end - vae:.2f} s"


def run(args: argparse.Namespace) -> int:
    import torch

    from audiogen.generation import load_generator

    generator = load_generator(device="cpu")
    print(f"{args.threads} torch threads for the serial chain; one a stage when pipelined")
    for seconds in args.seconds:
        torch.set_num_threads(args.threads)
        runs = {False: [], True: []}
        for _ in range(args.runs):
            for pipelined in (False, True):
                runs[pipelined].append(_timed(generator, seconds, pipelined))
        serial, piped = ([w for w, _ in runs[p]] for p in (False, True))
        ratio = statistics.median(p / s for p, s in zip(piped, serial, strict=True))
        print(f"{seconds:g} s: serial {_spread(serial)} s (CPU/wall {_spread([c for _, c in runs[False]])}), "
              f"pipelined {_spread(piped)} s (CPU/wall {_spread([c for _, c in runs[True]])}), ratio {ratio:.2f}")
        print(f"    one thread, each stage alone: {_stages(generator, seconds)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="bench_pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=positive_float, nargs="+", default=[30.0, 120.0, 600.0],
                        help="clip lengths (default: 30 120 600)")
    parser.add_argument("--runs", type=positive_int, default=3, help="timed runs of each (default: 3)")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads, serial (default: 2)")
    add_version_option(parser)
    args = parser.parse_args(argv)
    return one_line_errors("bench_pipeline", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
