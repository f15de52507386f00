"""Choose how hard the log-mel of generated clips is sharpened, on real music of one split.

    python tools/mel_sharpening.py --reference DIR [--split validation] [--model DIR] [--num 60]
        [--seconds 10] [--strengths 0,0.2,0.35,0.5,0.65,0.8] [--bins 5] [--seed 0] [--write]
        [--json OUT]

Generates ``--num`` clips of ``--seconds`` from seeds as ``generate`` samples them (the model's
surprise band and the wash guard on), decodes each clip's log-mel once and vocodes it sharpened
at every strength of ``--strengths`` (:mod:`audiogen.mel_sharpening`). Each set is scored against
a background of the reference's real clips, cut as ``tools/fad_benchmark.py`` cuts them (half of
the split's pieces; the other half's clips are the ``real`` row): FAD and KAD on the weight-free
mel embedding, chroma entropy, onsets a second and tonal ratio. The strength with the lowest sum
of FAD and KAD, each as a multiple of the least sharpened set's, is chosen; ``--write`` writes it
into the model folder as ``mel_sharpening.json``, which ``generate`` then uses, and
``audiogen export-onnx --force`` carries to the onnxruntime path.
Exit status 0; 2 on bad input (named in one line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiogen.cli.arguments import OneLineParser, int_at_least, positive_float

PROG = "mel_sharpening"
TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:  # fad_benchmark.py, whose clips these are, sits beside this file
    sys.path.insert(0, str(TOOLS))
SHOWN = ("fad", "kad", "chroma_entropy", "onsets_per_second", "tonal_ratio")
CHOSEN_BY = "lowest FAD/FAD(least) + KAD/KAD(least), least: the least sharpened set"


def strength_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not all(0 <= v < 10 for v in values):
        raise argparse.ArgumentTypeError(f"strengths must lie in 0 ... 10, got {text!r}")
    return tuple(sorted(set(values)))


def odd_bins(text: str) -> int:
    value = int_at_least(3)(text)
    if value % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be odd, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True,
                        help="real audio: a MAESTRO-layout folder (its --split) or a folder of audio files")
    parser.add_argument("--split", default="validation", help="the reference's split (default: %(default)s)")
    parser.add_argument("--model", default=None, help="an exported spectrogram model folder (default: the bundled one)")
    parser.add_argument("--vocoder", default=None, help="an exported vocoder folder (default: the bundled one)")
    parser.add_argument("--num", type=int_at_least(2), default=60,
                        help="clips generated, and at most this many real clips a side (default: %(default)s)")
    parser.add_argument("--seconds", type=positive_float, default=10.0, help="clip length (default: %(default)s)")
    parser.add_argument("--strengths", type=strength_list, default="0,0.2,0.35,0.5,0.65,0.8",
                        help="the strengths tried, comma-separated (default: %(default)s)")
    parser.add_argument("--bins", type=odd_bins, default=5,
                        help="the neighbourhood in mel bands, odd (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="of the clip choice, and the first clip's (default: %(default)s)")
    parser.add_argument("--write", action="store_true", help="write the chosen sharpening into the model folder")
    parser.add_argument("--json", default=None, help="also write the figures here (default: not written)")
    return parser


def cost(row: dict[str, float], base: dict[str, float]) -> float:
    """What the choice minimises: FAD and KAD, each as a multiple of the least sharpened set's
    (``base``), added. FAD alone runs on to strengths whose KAD has turned worse again (it is a
    biased estimate at 100 clips a set; KAD is not, but is noisier)."""
    return row["fad"] / max(base["fad"], 1e-9) + row["kad"] / max(base["kad"], 1e-9)


def score(clips, pieces, background, embedder, sample_rate: int, name: str) -> dict[str, float]:
    from audiogen.descriptors import describe_clip, summarize
    from audiogen.embeddings import embed_arrays
    from audiogen.scoring import score_sets

    embedded = embed_arrays(clips, sample_rate, embedder, source=name, progress=False, pieces=pieces)
    scores = score_sets(background, embedded, n_bootstrap=2)
    described = summarize([describe_clip(c, sample_rate) for c in clips])
    return {"fad": scores["fad"], "kad": scores["kad"],
            **{key: described[key] for key in SHOWN[2:]}}


def choose(args: argparse.Namespace) -> int:
    import torch
    from fad_benchmark import reference_files, split_reference
    from tqdm import tqdm

    from audiogen.cli.arguments import check_output_file
    from audiogen.embeddings import embed_arrays, make_embedder, write_atomically
    from audiogen.generation import load_generator, pretrained_dir
    from audiogen.mel_sharpening import SHARPENING_FILE, MelSharpening, sharpen

    check_output_file("--json", args.json)
    files, selection = reference_files(Path(args.reference), args.split)
    if not files:
        raise ValueError(f"--reference {args.reference}: no audio ({selection})")
    model = Path(args.model) if args.model else pretrained_dir("spec")
    if model.is_dir() and not (model / "prior.safetensors").exists():
        raise ValueError(f"--model {model}: no prior in this folder (only drawn latents are sharpened)")
    generator = load_generator(model, args.vocoder)
    generator.wash_guard = True
    sample_rate = generator.sample_rate
    background, real, _ = split_reference(files, sample_rate, args.seconds, args.num, args.seed)
    if len(background) < 2 or len(real) < 2:
        raise ValueError(f"--reference {args.reference}: too little audio for two sets of {args.seconds:g} s clips")
    embedder = make_embedder("mel")
    background_set = embed_arrays(background.clips, sample_rate, embedder, source="background", progress=False,
                                  pieces=background.pieces)
    samples = int(round(args.seconds * sample_rate))
    mels = []
    with torch.inference_mode():
        for i in tqdm(range(args.num), desc="generating", unit="clip", file=sys.stderr):
            latents = list(generator.latents(samples, seed=args.seed + i))
            mels.append(torch.cat(list(generator.mels(latents)), dim=-1).cpu().numpy())
    floor = generator.frontend.config.log_silence
    rows = {"real": score(real.clips, real.pieces, background_set, embedder, sample_rate, "real")}
    names = [f"generated/{i}" for i in range(args.num)]
    for strength in tqdm(args.strengths, desc="strengths", unit="strength", file=sys.stderr):
        sharpening = MelSharpening(strength, args.bins)
        clips = [generator.vocode(sharpen(mel, sharpening, floor))[:samples] for mel in mels]
        rows[f"{strength:g}"] = score(clips, names, background_set, embedder, sample_rate, f"strength {strength:g}")
    base = rows[f"{args.strengths[0]:g}"]
    chosen = min(args.strengths, key=lambda s: cost(rows[f"{s:g}"], base))
    report = {"model": args.model or "bundled", "reference": str(args.reference), "split": args.split,
              "clips": args.num, "real_clips": len(real), "background_clips": len(background),
              "seconds": args.seconds, "embedding": "mel", "chosen_by": CHOSEN_BY,
              "sharpening": MelSharpening(chosen, args.bins).to_dict(),
              "rows": {name: {key: round(float(row[key]), 4) for key in SHOWN} for name, row in rows.items()}}
    print(f"{model}: {args.num} generated clips of {args.seconds:g} s against {len(background)} real clips "
          f"of {args.split} ({len(real)} more are the real row); mel embedding")
    print(f"{'strength':>9} " + " ".join(f"{key:>17}" for key in SHOWN))
    for name, row in report["rows"].items():
        print(f"{name:>9} " + " ".join(f"{row[key]:>17.3f}" for key in SHOWN))
    print(f"chosen: strength {chosen:g} over {args.bins} mel bands ({CHOSEN_BY})")
    text = json.dumps(report, indent=1) + "\n"
    if args.write:
        write_atomically(model / SHARPENING_FILE, lambda handle: handle.write(text.encode()))
        print(f"wrote {model / SHARPENING_FILE}")
    if args.json:
        write_atomically(args.json, lambda handle: handle.write(text.encode()))
    return 0


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    args = build_parser().parse_args(argv)
    return one_line_errors(PROG, lambda: choose(args))


if __name__ == "__main__":
    sys.exit(main())
