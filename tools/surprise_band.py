"""Measure a token prior's surprise on real music, and the band its sampler is kept in.

    python tools/surprise_band.py --data CACHE [--model DIR] [--split validation] [--seconds 120] [--write]

Reads the middle ``--seconds`` of every piece of the cache's ``--split``, encodes them with the
model's VAE and scores each token with the prior after the tokens before it
(:meth:`audiogen.token_prior.TokenPrior.surprises`); prints the per-token mean and the quantiles
of the sampler's moving average and of 10-s windows, and the band
(:func:`audiogen.surprise_band.band_of_surprises`: ``--quantiles`` of the moving average) and the
temperature it samples at (``--temperature``, the model's default while the band is on).
``--write`` writes it into the model folder as ``surprise_band.json``, which generate then uses
(:mod:`audiogen.surprise_band`); after that, ``audiogen export-onnx --force`` carries it to the
onnxruntime path. Exit status 0; 2 on bad input (named in one line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiogen.cli.arguments import OneLineParser, positive_float, positive_int

PROG = "surprise_band"
BAND_TEMPERATURE = 1.03


def quantile_pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH, got {text!r}") from None
    if not 0 <= low < high <= 1:
        raise argparse.ArgumentTypeError(f"need 0 <= LOW < HIGH <= 1, got {text!r}")
    return low, high


def quantiles_of(values, shown: tuple[float, ...]) -> dict[str, float]:
    import numpy as np

    return {str(q): round(float(v), 3) for q, v in zip(shown, np.quantile(values, shown), strict=True)}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a cache made by audiogen-prepare")
    parser.add_argument("--model", default=None, help="an exported token-prior folder (default: the bundled model)")
    parser.add_argument("--split", default="validation", help="cache split to read (default: %(default)s)")
    parser.add_argument("--seconds", type=positive_float, default=120.0,
                        help="the middle this many seconds of each piece (default: %(default)s)")
    parser.add_argument("--pieces", type=positive_int, default=None, help="at most this many pieces (default: all)")
    parser.add_argument("--quantiles", type=quantile_pair, default=None,
                        help="the band's edges as quantiles LOW,HIGH of the moving average (default: 0.25,0.75)")
    parser.add_argument("--temperature", type=positive_float, default=BAND_TEMPERATURE,
                        help="the temperature the band samples at, the model's default with it (default: "
                             "%(default)s, chosen with the bundled model's band on validation: docs/priors.md)")
    parser.add_argument("--write", action="store_true", help="write the band into the model folder")
    parser.add_argument("--json", default=None, help="also write the figures here (default: not written)")
    return parser


def measure(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from audiogen.cache import open_cache
    from audiogen.cli.arguments import check_output_file
    from audiogen.embeddings import write_atomically
    from audiogen.generation import load_prior, load_vae, pretrained_dir
    from audiogen.latents import encode_clip
    from audiogen.surprise_band import BAND_FILE, DEFAULT_QUANTILES, band_of_surprises, moving_average

    check_output_file("--json", args.json)
    model = Path(args.model) if args.model else pretrained_dir("spec")
    cache = open_cache(args.data)
    if args.split not in cache.splits:
        splits = ", ".join(cache.splits)
        raise ValueError(f"--split {args.split!r}: {args.data} has no such split (its splits: {splits})")
    vae, _ = load_vae(model, cache.frontend)
    if not (model / "prior.safetensors").exists():
        raise ValueError(f"--model {model}: no prior in this folder")
    prior = load_prior(model, vae.latent_dim)
    if not hasattr(prior, "surprises"):
        raise ValueError(f"--model {model}: its prior has no token likelihood (a band needs a token prior)")
    frames = int(args.seconds * cache.frontend.frame_rate)
    pieces = cache.pieces(args.split)[: args.pieces]
    tokens_per_second = cache.frontend.frame_rate / vae.time_ratio / prior.frames_per_token
    surprises = []
    for piece in tqdm(pieces, desc="scoring", unit="piece", file=sys.stderr):
        mel = np.asarray(cache.mel_window(piece, max(0, (piece.n_frames - frames) // 2), min(frames, piece.n_frames)))
        with torch.inference_mode():
            surprises.append(prior.surprises(encode_clip(vae, torch.from_numpy(mel))))
    quantiles = args.quantiles or DEFAULT_QUANTILES
    band = band_of_surprises(surprises, quantiles, temperature=args.temperature)
    window = int(round(10 * tokens_per_second))
    windows = [s[i: i + window].mean() for s in surprises for i in range(0, len(s) - window + 1, window)]
    averages = np.concatenate([moving_average(s, band.memory_tokens)[int(band.memory_tokens):] for s in surprises])
    shown = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    report = {
        "model": args.model or "bundled", "split": args.split, "pieces": len(pieces), "seconds": args.seconds,
        "tokens": int(sum(len(s) for s in surprises)), "mean_per_token": float(np.concatenate(surprises).mean()),
        "quantiles": list(quantiles), "band": band.to_dict(),
        "moving_average_quantiles": quantiles_of(averages, shown),
        "window_10s_quantiles": quantiles_of(windows, shown) if windows else None,  # none in pieces under 10 s
    }
    print(f"{model}: {len(pieces)} pieces of {args.split}, {report['tokens']} tokens; "
          f"mean surprise {report['mean_per_token']:.2f} nats a token")
    print("moving average (quantiles 5 10 25 50 75 90 95 %): "
          + " ".join(f"{v:.2f}" for v in report["moving_average_quantiles"].values()))
    if windows:
        print("10-s windows   (quantiles 5 10 25 50 75 90 95 %): "
              + " ".join(f"{v:.2f}" for v in report["window_10s_quantiles"].values()))
    print(f"band: {band.low:.2f}-{band.high:.2f} nats a token (quantiles {quantiles[0]:g}, {quantiles[1]:g}), "
          f"sampled at temperature {band.temperature:g}")
    text = json.dumps(report, indent=1) + "\n"
    if args.write:
        write_atomically(model / BAND_FILE, lambda handle: handle.write(text.encode()))
        print(f"wrote {model / BAND_FILE}")
    if args.json:
        write_atomically(args.json, lambda handle: handle.write(text.encode()))
    return 0


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    args = build_parser().parse_args(argv)
    return one_line_errors(PROG, lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
