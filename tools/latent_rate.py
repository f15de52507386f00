"""How much the VAE's latent carries, and what a token prior's codebooks lose of it.

    python tools/latent_rate.py --data CACHE [--model DIR] [--split validation] [--windows 12]

Reads ``--windows`` log-mel windows of ``--seconds`` from the cache's ``--split`` (one from the
middle of each of that many pieces), encodes them with the model's VAE and prints
(:func:`audiogen.latents.rate_report`): the posterior's KL to N(0, I) in nats and bits per latent
frame and kbit/s (the information a prior must model), the spread of each channel's posterior
means over its posterior variance, and the log-mel L1 of the decoded means; for a model whose
prior has codebooks (``kind: token_prior``), the same L1 through the codebooks' words, their bits
per frame and the share of words used. ``--json`` writes the figures. Exit status 0; 2 on bad
input (named in one line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiogen.cli.arguments import OneLineParser, check_output_file, positive_float, positive_int

PROG = "latent_rate"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a cache made by audiogen-prepare")
    parser.add_argument("--model", default=None,
                        help="an exported VAE or prior folder (default: the bundled model)")
    parser.add_argument("--split", default="validation", help="cache split to read (default: %(default)s)")
    parser.add_argument("--windows", type=positive_int, default=12, help="windows, one a piece (default: %(default)s)")
    parser.add_argument("--seconds", type=positive_float, default=24.0, help="window length (default: %(default)s)")
    parser.add_argument("--json", default=None, help="write the figures here (default: not written)")
    return parser


def measure(args: argparse.Namespace) -> int:
    check_output_file("--json", args.json)
    import numpy as np
    import torch

    from audiogen.cache import open_cache
    from audiogen.generation import load_prior, load_vae, pretrained_dir
    from audiogen.latents import rate_report

    model = args.model or str(pretrained_dir("spec"))
    cache = open_cache(args.data)
    if args.split not in cache.splits:
        splits = ", ".join(cache.splits)
        raise ValueError(f"--split {args.split!r}: {args.data} has no such split (its splits: {splits})")
    vae, _ = load_vae(model, cache.frontend)
    prior = load_prior(model, vae.latent_dim) if (Path(model) / "prior.safetensors").exists() else None
    frames = int(args.seconds * cache.frontend.frame_rate)
    pieces = cache.pieces(args.split)[: args.windows]
    mels = [torch.from_numpy(np.asarray(cache.mel_window(p, max(0, (p.n_frames - frames) // 2), frames)))
            for p in pieces]
    report = rate_report(vae, mels, getattr(prior, "codebooks", None))
    report.update(model=model, split=args.split, windows=len(mels), seconds=args.seconds)
    print(f"{model}: {len(mels)} windows of {args.seconds:g} s ({args.split})")
    print(f"latent: KL {report['kl_nats_per_frame']:.1f} nats = {report['kl_bits_per_frame']:.1f} bits a frame, "
          f"{report['kbit_per_s']:.2f} kbit/s; mean spread / posterior variance per channel "
          f"{report['spread_min']:.3g}-{report['spread_max']:.3g}; "
          f"log-mel L1 through the VAE {report['vae_mel_l1']:.3f}")
    if "codebook_mel_l1" in report:
        print(f"codebooks: {report['codebook_bits_per_frame']:.0f} bits a frame, "
              f"{100 * report['codebook_use']:.0f} % of words used (least-used stage); "
              f"log-mel L1 through the codebooks {report['codebook_mel_l1']:.3f}")
    if args.json:
        from audiogen.embeddings import write_atomically

        text = json.dumps(report, indent=1) + "\n"
        write_atomically(args.json, lambda handle: handle.write(text.encode()))
    return 0


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    args = build_parser().parse_args(argv)
    return one_line_errors(PROG, lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
