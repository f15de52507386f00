"""`audiogen transcribe AUDIO... --out DIR`: piano audio to MIDI with the bundled (or a given) transcriber.

Writes ``DIR/<stem>.mid`` for each input (notes, velocities; 120 bpm, 960 ticks a second) and
prints one line per file: notes found, seconds of audio, speed in × real time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from audiogen.cli import EXIT_OK, EXIT_PARTIAL, add_version_option, one_line_errors
from audiogen.cli.arguments import OneLineParser, non_negative_float


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def build_parser(prog: str = "audiogen transcribe") -> argparse.ArgumentParser:
    from audiogen.transcriber import DEFAULT_FRAME_THRESHOLD, DEFAULT_MIN_GAP, DEFAULT_ONSET_THRESHOLD

    p = OneLineParser(
        prog=prog, description="Transcribe piano recordings to MIDI: DIR/<stem>.mid for each AUDIO file.",
        epilog="Every input and output is checked before any work: a missing input, two inputs with one stem, or "
               "an existing output without --force is refused in one line (status 2) and nothing is written. An "
               "input that cannot be decoded is skipped and named; the others are written (status 1). Each MIDI "
               "file appears whole or not at all. Exit status: 0 all written, 1 some skipped, 2 a bad option or "
               "input, 3 the machine failed (disk full, out of memory), 130 interrupted.")
    p.add_argument("audio", nargs="+", metavar="AUDIO",
                   help="audio files (WAV, FLAC, OGG, ...; any rate, mixed to mono)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the MIDI files (made if missing)")
    p.add_argument("--force", action="store_true", help="replace MIDI files that exist (default: refuse them)")
    p.add_argument("--model", metavar="DIR",
                   help="transcriber folder (RUN/best of train_transcriber.py) (default: the bundled one)")
    p.add_argument("--onset-threshold", type=_probability, default=DEFAULT_ONSET_THRESHOLD,
                   help="onset probability that starts a note (default: %(default)s)")
    p.add_argument("--frame-threshold", type=_probability, default=DEFAULT_FRAME_THRESHOLD,
                   help="frame probability that keeps a note sounding (default: %(default)s)")
    p.add_argument("--min-gap", type=non_negative_float, default=DEFAULT_MIN_GAP, metavar="SECONDS",
                   help="shortest time between two onsets of one key; a closer one is taken for the same attack "
                        "(default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to run; auto takes CUDA when there is one (default: %(default)s)")
    add_version_option(p)
    return p


def planned_outputs(inputs: list[str], out_dir: Path, force: bool) -> list[Path]:
    """DIR/<stem>.mid for each input, refusing (ValueError) what cannot be done before any work."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: is a file, not a folder")
    outputs, seen = [], {}
    for name in inputs:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"{name}: {'is a folder, not an audio file' if path.is_dir() else 'file not found'}")
        target = out_dir / f"{path.stem}.mid"
        if target in seen:
            raise ValueError(f"{name} and {seen[target]} would both write {target}; transcribe them separately")
        seen[target] = name
        if target.exists() and not force:
            raise ValueError(f"{target}: exists; add --force to replace it")
        outputs.append(target)
    return outputs


def run(args: argparse.Namespace) -> int:
    from audiogen.audio import AudioError, load_audio
    from audiogen.cli.generate import prepare_device, sigterm_as_interrupt
    from audiogen.frontend import FrontendConfig, MelFrontend
    from audiogen.transcriber import bundled_transcriber_dir, load_transcriber, transcribe_audio
    from audiogen.transcription import write_midi

    outputs = planned_outputs(args.audio, Path(args.out), args.force)
    device = prepare_device(args.device)
    model, saved = load_transcriber(args.model or bundled_transcriber_dir(), device)
    frontend = MelFrontend(FrontendConfig(**(saved.get("frontend") or {})))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    skipped = 0
    with sigterm_as_interrupt():
        for name, target in zip(args.audio, outputs, strict=True):
            try:
                audio, rate = load_audio(name, frontend.config.sample_rate)
            except AudioError as err:
                print(f"skipped {err}", file=sys.stderr)
                skipped += 1
                continue
            started = time.perf_counter()
            notes, _ = transcribe_audio(model, frontend, audio, args.onset_threshold, args.frame_threshold,
                                        args.min_gap)
            write_midi(notes, target)
            seconds = len(audio) / rate
            speed = seconds / max(time.perf_counter() - started, 1e-9)
            print(f"{target}: {len(notes)} notes from {seconds:.1f} s of audio ({speed:.0f}x real time)")
    if skipped:
        print(f"{skipped} of {len(args.audio)} inputs skipped", file=sys.stderr)
    return EXIT_PARTIAL if skipped else EXIT_OK


def main(argv: list[str] | None = None, prog: str = "audiogen transcribe") -> int:
    args = build_parser(prog).parse_args(argv)
    return one_line_errors(prog, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
