"""Vocoder quality on held-out audio: log-mel L1 and multi-resolution STFT distance.

    python tools/vocoder_quality.py --cache data/cache [--split test] [--seconds 20] \\
        --vocoder default=audiogen/pretrained/vocoder --vocoder v3=runs/v3/best --out REPORT_DIR

Each piece of the prepared cache's split gives one excerpt of ``--seconds`` (from its middle,
where the music is). Every row re-synthesises the excerpts from their log-mel and is scored
against the originals with the trainers' own validation metric
(:func:`audiogen.losses.copy_synthesis_scores`):

- ``ground truth``: the original audio itself through the frontend (0 up to the cache's 16-bit
  rounding: the check that the metric is measured the right way round);
- ``griffin-lim``: the non-neural floor (fast Griffin-Lim, ``--griffin-lim-iters``);
- one row per ``--vocoder NAME=DIR`` (an exported vocoder folder, e.g. ``RUN/best``);
- with ``--model DIR`` (a spectrogram VAE or prior export): ``VAE → NAME``, the excerpts
  encoded to float16 latents, decoded and vocoded by the first vocoder (what the compression
  path costs), and a VAE section: the decoded mel's log-mel L1 and the compression ratio
  (:func:`audiogen.latents.compression_report`).

Writes ``vocoder_quality.md`` (table), ``vocoder_quality.json`` and ``spectrograms.png`` (the
first excerpt as the frontend sees it, one panel per row) into ``--out``, with each row's
first excerpt as WAV to listen to.

Exit status (:mod:`audiogen.cli`): 0 done; 2 a bad option or input, named in one line before
any work (a missing folder, a split it lacks, a number out of range); 3 the disk is full.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from audiogen.cli.arguments import OneLineParser, check_output_folder, float_at_least, positive_int

PROG = "vocoder_quality"


def excerpts(cache, split: str, seconds: float) -> list[dict]:
    """One ``seconds`` excerpt (mel and audio) from the middle of each piece of ``split``."""
    config = cache.frontend
    frames = int(seconds * config.frame_rate)
    out = []
    for entry in cache.pieces(split):
        mel = cache.load_mel(entry)
        length = min(frames, mel.shape[-1])
        start = (mel.shape[-1] - length) // 2
        audio = cache.audio_window(entry, start * config.hop_length, length * config.hop_length)
        out.append({"name": entry.name, "mel": torch.from_numpy(np.array(mel[:, start : start + length])),
                    "audio": torch.from_numpy(audio)})
    return out


def score_row(name: str, synthesise, items: list[dict], frontend, stft) -> dict:
    """Mean scores of one way of turning log-mel into audio, its speed, and its first excerpt."""
    from audiogen.losses import copy_synthesis_scores

    scores, first, seconds_taken = [], None, 0.0
    for item in items:
        started = time.perf_counter()
        audio = synthesise(item)
        seconds_taken += time.perf_counter() - started
        score, rebuilt = copy_synthesis_scores(audio, item["mel"], item["audio"], frontend, stft)
        scores.append(score)
        if first is None:
            first = {"audio": audio.reshape(-1).numpy(), "mel": rebuilt.numpy()}
    audio_seconds = sum(len(i["audio"]) for i in items) / frontend.config.sample_rate
    return {
        "name": name,
        "mel_l1": float(np.mean([s["mel_l1"] for s in scores])),
        "mel_l1_per_piece": [round(s["mel_l1"], 5) for s in scores],
        "stft_mr": float(np.mean([s["stft_mr"] for s in scores])),
        "xrt": audio_seconds / max(seconds_taken, 1e-9),
        "first": first,
    }


def vae_section(model_dir: str, vocoders: list, items: list[dict], cache, frontend, stft, rows: list[dict]) -> dict:
    """The VAE's reconstruction and compression figures; appends its ``VAE → vocoder`` row."""
    from audiogen.generation import load_vae
    from audiogen.latents import compression_report, encode_clip
    from audiogen.vocoder import vocode

    vae, _ = load_vae(model_dir, cache.frontend)
    reports = [compression_report(vae, item["mel"], num_samples=len(item["audio"])) for item in items]
    if vocoders:
        name, model = vocoders[0]

        def through_latents(item):
            latents = encode_clip(vae, item["mel"]).half().float()
            return vocode(model, vae.decode(latents, item["mel"].shape[-1])[0])

        row = score_row(f"VAE → {name}", through_latents, items, frontend, stft)
        row["params"] = sum(p.numel() for p in vae.parameters()) + sum(p.numel() for p in model.parameters())
        rows.append(row)
    first = reports[0]
    return {
        "model": model_dir,
        "mel_l1": float(np.mean([r["mel_l1"] for r in reports])),
        "ratio": float(np.mean([r["ratio"] for r in reports])),
        "kbps": float(np.mean([r["kbps"] for r in reports])),
        "latent_rate_hz": first["latent_rate_hz"],
        "latent_dim": int(first["latent_dim"]),
        "params": sum(p.numel() for p in vae.parameters()),
    }


def markdown_table(report: dict) -> str:
    lines = [
        f"Copy-synthesis of {report['excerpts']} excerpts of {report['seconds']:g} s "
        f"({report['audio_seconds']:.0f} s of audio) from the `{report['split']}` split of `{report['cache']}`; "
        f"{report['threads']} torch thread(s). Lower is better on both metrics.",
        "",
        "| row | log-mel L1 | MR-STFT distance | × real time | params |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        params = f"{row['params'] / 1e6:.2f} M" if row.get("params") else "—"
        lines.append(f"| {row['name']} | {row['mel_l1']:.4f} | {row['stft_mr']:.4f} | {row['xrt']:.1f} | {params} |")
    vae = report.get("vae")
    if vae:
        lines += [
            "",
            f"VAE `{vae['model']}` ({vae['params'] / 1e6:.2f} M params): {vae['latent_dim']} latent channels at "
            f"{vae['latent_rate_hz']:.2f} Hz, float16 = {vae['kbps']:.1f} kbit/s, {vae['ratio']:.1f}× smaller than "
            f"16-bit PCM; decoded log-mel L1 {vae['mel_l1']:.4f} against the original mel.",
        ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="prepared cache (audiogen-prepare --out)")
    p.add_argument("--split", default="test", help="cache split to score (default: %(default)s)")
    p.add_argument(
        "--seconds", type=float_at_least(1.0), default=20.0,
        help="excerpt length per piece, at least 1 s (default: %(default)s)",
    )
    p.add_argument(
        "--vocoder", action="append", default=[], metavar="NAME=DIR",
        help="an exported vocoder (repeat; default: none, only the ground truth and Griffin-Lim rows)",
    )
    p.add_argument("--model", help="exported spectrogram VAE (or prior) folder: adds the VAE rows (default: none)")
    p.add_argument(
        "--griffin-lim-iters", type=positive_int, default=32, help="Griffin-Lim iterations (default: %(default)s)"
    )
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument("--out", required=True, help="report folder")
    return p


def run(args: argparse.Namespace) -> dict:
    from audiogen.audio import save_audio
    from audiogen.cache import open_cache
    from audiogen.frontend import MelFrontend
    from audiogen.generation import load_vocoder
    from audiogen.losses import MultiResolutionSTFTLoss
    from audiogen.plots import save_spectrograms
    from audiogen.vocoder import vocode

    torch.set_num_threads(args.threads)
    named = []
    for spec in args.vocoder:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--vocoder {spec!r}: expected NAME=DIR")
        named.append((name, folder))
    cache = open_cache(args.cache)
    frontend = MelFrontend(cache.frontend)
    vocoders = [(name, load_vocoder(folder, cache.frontend)) for name, folder in named]
    items = excerpts(cache, args.split, args.seconds)
    if not items:
        raise ValueError(f"{args.cache}: no pieces in split {args.split!r}")
    stft = MultiResolutionSTFTLoss()
    rows = []
    with torch.inference_mode():
        rows.append(score_row("ground truth", lambda item: item["audio"], items, frontend, stft))
        rows.append(score_row(f"griffin-lim ({args.griffin_lim_iters} it)",
                              lambda item: frontend.griffin_lim(item["mel"], n_iter=args.griffin_lim_iters),
                              items, frontend, stft))
        for name, model in vocoders:
            row = score_row(name, lambda item, model=model: vocode(model, item["mel"]), items, frontend, stft)
            row["params"] = sum(p.numel() for p in model.parameters())
            rows.append(row)
            print(f"{name}: log-mel L1 {row['mel_l1']:.4f}, MR-STFT {row['stft_mr']:.4f}", flush=True)
        vae_report = vae_section(args.model, vocoders, items, cache, frontend, stft, rows) if args.model else None

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rate = cache.frontend.sample_rate
    panels = {"original": items[0]["mel"].numpy()}
    for row in rows[1:]:
        first = row.pop("first")
        panels[row["name"]] = first["mel"]
        save_audio(out / f"{row['name'].split(' ')[0]}.wav", first["audio"], rate)
    rows[0].pop("first")
    save_spectrograms(out / "spectrograms.png", panels, cache.frontend.frame_rate,
                      f"{items[0]['name']}: {args.seconds:g} s from the {args.split} split")
    report = {
        "cache": str(args.cache), "split": args.split, "seconds": args.seconds, "excerpts": len(items),
        "audio_seconds": sum(len(i["audio"]) for i in items) / rate, "threads": args.threads,
        "vocoders": dict(named), "rows": rows, "vae": vae_report,
    }
    (out / "vocoder_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "vocoder_quality.md").write_text(markdown_table(report))
    print(markdown_table(report))
    return report


def checked_run(args: argparse.Namespace) -> int:
    check_output_folder("--out", args.out)
    run(args)  # an unknown --split or an empty one is a DataError (a ValueError) naming it: status 2
    return 0


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    args = build_parser().parse_args(argv)
    return one_line_errors(PROG, lambda: checked_run(args))


if __name__ == "__main__":
    sys.exit(main())
