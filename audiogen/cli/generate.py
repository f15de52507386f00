"""`generate --seconds 30 --out clip.wav`: piano music from the bundled (or given) models."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

MAX_SECONDS = 3 * 3600  # longer requests are almost certainly a typo (and fill a disk)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="generate",
        description="Generate piano music. Without options: 30 s from the bundled models to clip.wav.",
    )
    p.add_argument("--seconds", type=float, default=30.0, help="clip length in seconds (default 30)")
    p.add_argument("--out", default="clip.wav",
                   help="output file (.wav 16-bit, or .flac); '-' writes WAV to standard output; "
                        "with --num, a pattern like 'take-{i}.wav' or a name that gets -000, -001, ...")
    p.add_argument("--seed", type=int, help="random seed (same seed, same file); default: a fresh one, printed")
    p.add_argument("--num", type=int, default=1, help="number of clips (default 1)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature: lower is calmer, higher busier (default 1.0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run")
    p.add_argument("--model", help="spectrogram model folder (RUN/best of the prior stage); default: bundled")
    p.add_argument("--vocoder", help="vocoder folder (RUN/best of train_vocoder.py); default: bundled")
    p.add_argument("--like", help="an audio file to make a variation of (the clip continues from it)")
    p.add_argument("--variation", type=float, default=0.3, help="how far from --like to move, 0..1 (default 0.3)")
    p.add_argument("--threads", type=int,
                   help="CPU threads (default: OMP_NUM_THREADS when set, else all cores, or 1 when the load "
                        "average says the cores are busy)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def output_names(out: str, num: int) -> list[str]:
    """The file name of each clip: ``out`` itself for one clip, else numbered names."""
    if num == 1:
        return [out]
    if "{i" in out:
        return [out.format(i=i) for i in range(num)]
    path = Path(out)
    return [str(path.with_name(f"{path.stem}-{i:03d}{path.suffix or '.wav'}")) for i in range(num)]


def default_threads() -> int:
    """All cores on an idle machine, one on a busy one.

    Every parallel region waits for its slowest thread, so when other processes already keep
    the cores busy, two threads made `generate` three times slower than one (docs/benchmarks.md).
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cores - 0.5
    except OSError:  # no load average on this platform
        busy = False
    return 1 if busy else cores


def prepare_device(choice: str, threads: int | None = None) -> str:
    """The torch device for ``--device auto|cpu|cuda``, with torch's CPU threads set."""
    import torch

    device = "cuda" if choice == "auto" and torch.cuda.is_available() else choice
    device = "cpu" if device == "auto" else device
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if threads is not None:
        torch.set_num_threads(threads)
    elif device == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(default_threads())
    return device


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad arguments before any model is loaded (ValueError with one clear line)."""
    import math

    if not math.isfinite(args.seconds) or args.seconds <= 0:
        raise ValueError(f"--seconds must be a positive number, got {args.seconds}")
    if args.seconds > MAX_SECONDS:
        raise ValueError(f"--seconds {args.seconds:g} is over the limit of {MAX_SECONDS} s (3 hours)")
    if args.num < 1 or args.num > 10_000:
        raise ValueError(f"--num must be between 1 and 10000, got {args.num}")
    if args.temperature is None:
        from audiogen.generation import DEFAULT_TEMPERATURE

        args.temperature = DEFAULT_TEMPERATURE
    if not math.isfinite(args.temperature) or args.temperature < 0 or args.temperature > 10:
        raise ValueError(f"--temperature must be between 0 and 10, got {args.temperature}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if not 0 <= args.variation <= 1:
        raise ValueError(f"--variation must be between 0 and 1, got {args.variation}")
    if args.out == "-":
        if args.num != 1:
            raise ValueError("--out - writes one clip; use a file pattern with --num")
        return
    for name in output_names(args.out, args.num):
        suffix = Path(name).suffix.lower()
        if suffix not in (".wav", ".flac"):
            raise ValueError(f"{name}: output must end in .wav or .flac")
        parent = Path(name).parent
        if not parent.is_dir():
            raise ValueError(f"{name}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise ValueError(f"{name}: folder {parent} is not writable")


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    args = build_parser().parse_args(argv)

    def run() -> int:
        check_arguments(args)
        return _run(args)

    return one_line_errors("generate", run)


def _run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from audiogen.audio import load_audio
    from audiogen.generation import load_generator, write_clip

    generator = load_generator(args.model, args.vocoder, device=prepare_device(args.device, args.threads))
    like_audio = load_audio(args.like, generator.sample_rate)[0] if args.like else None
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    log = sys.stderr
    if args.seed is None:
        print(f"seed {seed} (pass --seed {seed} to make the same clip again)", file=log)
    names = ["-"] if args.out == "-" else output_names(args.out, args.num)
    total = int(round(args.seconds * generator.sample_rate))
    for index, name in enumerate(names):
        clip_seed = seed + index
        prefix = generator.variation_of(like_audio, args.variation, clip_seed) if like_audio is not None else None
        chunks = generator.stream(args.seconds, clip_seed, args.temperature, prefix=prefix)
        show = not args.quiet and args.seconds >= 20
        with tqdm(total=total, unit="sample", unit_scale=True, disable=not show, file=log,
                  desc=f"clip {index + 1}/{len(names)}", leave=False) as bar:
            target = sys.stdout.buffer if name == "-" else name
            write_clip(chunks, target, generator.sample_rate, progress=bar)
        if name != "-":
            print(f"wrote {name} ({args.seconds:g} s, {generator.sample_rate} Hz, seed {clip_seed})", file=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
