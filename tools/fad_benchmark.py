"""FAD of the generator against real piano audio, with the baselines that give the number meaning.

    python tools/fad_benchmark.py --reference DIR [--split test] [--model DIR --vocoder DIR]
        [--num 200 --seconds 10] [--embedding vggish|mel] --out REPORT_DIR

The reference (a MAESTRO-layout folder with ``maestro-v3.0.0.csv``, whose ``--split`` is used,
or any folder of audio) is cut into non-overlapping clips of ``--seconds``. Its pieces are
split in two halves, so no piece is on both sides: half A is the background set of every
row, and each row scores one evaluation set of up to ``--num`` clips against it:

- ``real (floor)``: clips of the other half B — what two real sets of this size score;
- ``griffin-lim``: copy-synthesis of B through the log-mel frontend and Griffin-Lim;
- ``vocoder``: copy-synthesis of B through the neural vocoder (what the vocoder alone costs);
- ``model``: clips generated from seeds by the spectrogram model and vocoder;
- ``noise (ceiling)``: white noise at the loudness of B's clips.

Rows that need the models are skipped, with the reason in the report, when the models (or
``audiogen.generation``) cannot be loaded. Writes ``fad_benchmark.md`` (table),
``fad_benchmark.json``, ``fad_benchmark.png`` (bar chart with bootstrap intervals) and
``spectrograms.png`` (the first clip of every row) into ``--out``, plus a few clips of every
row under ``clips/`` to listen to.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROWS = {
    "real (floor)": "another real split (pieces not in the background)",
    "griffin-lim": "copy-synthesis: log-mel → Griffin-Lim",
    "vocoder": "copy-synthesis: log-mel → neural vocoder",
    "model": "generated from seeds (spectrogram model + vocoder)",
    "noise (ceiling)": "white noise at the clips' RMS",
}


@dataclass
class Row:
    name: str
    description: str
    clips: list[np.ndarray] = field(default_factory=list)
    seconds_to_make: float = 0.0
    skipped: str | None = None
    result: dict | None = None


def reference_files(root: Path, split: str) -> tuple[list[Path], str]:
    """Audio of ``split`` from a MAESTRO-layout CSV, else every audio file under ``root``."""
    from audiogen.fad import list_audio_files

    if root.is_dir():
        for csv_path in sorted(root.glob("maestro*.csv")):
            with open(csv_path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if r.get("split") == split]
            if rows:
                return [root / r["audio_filename"] for r in rows], f"{csv_path.name}, split {split!r}"
    return list_audio_files(root), "all audio files in the folder"


def cut_clips(audio: np.ndarray, length: int) -> list[np.ndarray]:
    """Non-overlapping clips of ``length`` samples (the remainder is dropped)."""
    return [audio[i : i + length].copy() for i in range(0, audio.shape[0] - length + 1, length)]


def split_reference(
    files: list[Path], sample_rate: int, seconds: float, num: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """Two halves of reference clips from disjoint pieces, up to ``num`` clips each."""
    from audiogen.audio import load_audio

    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    length = int(round(seconds * sample_rate))
    halves: list[list[np.ndarray]] = [[], []]
    pieces: list[list[str]] = [[], []]
    if len(order) >= 2:
        for index, path in enumerate(order):
            audio, _ = load_audio(path, sample_rate=sample_rate)
            halves[index % 2] += cut_clips(audio, length)
            pieces[index % 2].append(path.name)
        how = "pieces alternate between the halves"
    else:  # one piece only: alternate its clips (the floor is then optimistic)
        audio, _ = load_audio(order[0], sample_rate=sample_rate)
        clips = cut_clips(audio, length)
        halves = [clips[0::2], clips[1::2]]
        pieces = [[order[0].name], [order[0].name]]
        how = "one piece: its clips alternate between the halves (optimistic floor)"
    chosen = []
    for half in halves:
        if len(half) > num:
            keep = sorted(rng.choice(len(half), size=num, replace=False))
            half = [half[i] for i in keep]
        chosen.append(half)
    info = {"split": how, "pieces_background": len(pieces[0]), "pieces_eval": len(pieces[1])}
    return chosen[0], chosen[1], info


def griffin_lim_clips(frontend, clips: list[np.ndarray], n_iter: int, batch: int = 8) -> list[np.ndarray]:
    import torch
    from tqdm import tqdm

    out = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(clips), batch), desc="griffin-lim", unit="batch", disable=None):
            audio = torch.from_numpy(np.stack(clips[start : start + batch]))
            rebuilt = frontend.griffin_lim(frontend(audio), n_iter=n_iter, seed=start)
            out += [a.numpy().astype(np.float32) for a in rebuilt]
    return out


def noise_clips(clips: list[np.ndarray], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal(c.shape[0]) * float(np.sqrt(np.mean(c.astype(np.float64) ** 2)))).astype(np.float32)
        for c in clips
    ]


def load_models(model: str | None, vocoder: str | None, device: str):
    """(generator or None, note). Explicit ``--model/--vocoder`` that fail to load are errors."""
    try:
        from audiogen.generation import load_generator
    except ImportError as err:
        return None, f"audiogen.generation cannot be imported ({err})"
    try:
        return load_generator(model_dir=model, vocoder_dir=vocoder, device=device), None
    except Exception as err:  # the reason goes into the report
        if model is not None or vocoder is not None:
            raise
        return None, f"bundled models not loaded ({type(err).__name__}: {err})"


def save_examples(folder: Path, rows: list[Row], sample_rate: int, keep: int) -> None:
    from audiogen.audio import peak_normalize, save_audio

    for row in rows:
        if row.skipped or keep <= 0:
            continue
        target = folder / row.name.split(" ")[0]
        target.mkdir(parents=True, exist_ok=True)
        for i, clip in enumerate(row.clips[:keep]):
            save_audio(target / f"{i:02d}.wav", peak_normalize(np.clip(clip, -10, 10), 0.9), sample_rate)


def spectrogram_picture(path: Path, rows: list[Row], frontend) -> None:
    """The first clip of every row as the frontend sees it, one panel per row, on one scale."""
    import torch

    from audiogen.plots import save_spectrograms

    panels = {}
    with torch.inference_mode():
        for row in rows:
            if not row.skipped and row.clips:
                panels[row.name] = frontend(torch.from_numpy(np.asarray(row.clips[0], dtype=np.float32))).numpy()
    if panels:
        save_spectrograms(path, panels, frontend.config.frame_rate, "first clip of each row")


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def markdown_table(report: dict) -> str:
    emb = report["embedding"]
    lines = [
        f"FAD against {report['reference']['background_clips']} background clips of {report['seconds']:g} s "
        f"from `{report['reference']['path']}` ({report['reference']['selection']}; "
        f"{report['reference']['split']}).",
        "",
        f"Embedding: **{emb['model']}**"
        + (f" (weights SHA-256 `{emb['weights_sha256'][:16]}…`)" if emb.get("weights_sha256") else "")
        + f", framing `{emb['framing']}`, resampler `{report['resampler']}`, "
        f"{report['bootstrap']} bootstrap draws over clips"
        + (f"; model clips sampled at temperature {report['temperature']:g}." if report.get("temperature") else "."),
    ]
    if not emb.get("comparable_to_published", False):
        lines += ["", "**Mel embedding: weight-free, NOT comparable to published FAD values.**"]
    lines += [
        "",
        "| row | what it measures | clips | embeddings | FAD | 95% CI | FAD∞ |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for row in report["rows"]:
        if row.get("skipped"):
            lines.append(f"| {row['name']} | {row['description']} | – | – | skipped | – | – |")
            continue
        ci = row["fad_ci"]
        lines.append(
            f"| {row['name']} | {row['description']} | {row['clips']} | {row['embeddings']} | "
            f"{_fmt(row['fad'])} | {_fmt(ci[0])}–{_fmt(ci[1])} | {_fmt(row['fad_inf'])} |"
        )
    notes = [r for r in report["rows"] if r.get("skipped")]
    if notes or report["notes"]:
        lines.append("")
        lines += [f"- {row['name']}: {row['skipped']}" for row in notes]
        lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def bar_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if not r.get("skipped")]
    names = [r["name"] for r in rows]
    values = np.array([r["fad"] for r in rows])
    low = values - np.array([r["fad_ci"][0] for r in rows])
    high = np.array([r["fad_ci"][1] for r in rows]) - values
    colors = [
        "#d62728" if r["name"] == "model" else "#1f77b4" if "copy" in r["description"] else "#7f7f7f" for r in rows
    ]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
    ax.barh(names, values, xerr=[np.maximum(low, 0), np.maximum(high, 0)], color=colors, capsize=4)
    ax.invert_yaxis()
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > 50:
        ax.set_xscale("log")
    emb = report["embedding"]
    title = f"FAD ({emb['model']}, {emb['framing']})"
    if not emb.get("comparable_to_published", False):
        title += " — not comparable to published FAD"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"FAD (lower is closer to the reference); bars: {int(report['level'] * 100)}% bootstrap interval")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=True, help="MAESTRO-layout folder or folder of audio")
    p.add_argument("--split", default="test", help="MAESTRO split to use when the folder has a CSV (default test)")
    p.add_argument("--model", default=None, help="exported spectrogram model folder (default: bundled)")
    p.add_argument("--vocoder", default=None, help="exported vocoder folder (default: bundled)")
    p.add_argument("--num", type=int, default=200, help="clips per set (at most)")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length")
    p.add_argument("--embedding", choices=("vggish", "mel"), default="vggish")
    p.add_argument("--vggish-weights", default=None, help="torchvggish checkpoint (default: env, cache)")
    p.add_argument("--framing", choices=("torchvggish", "google-reference"), default="torchvggish")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, help="the prior's sampling temperature (default: generate's)")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--griffin-lim-iters", type=int, default=32)
    p.add_argument("--keep-clips", type=int, default=2, help="example clips per row written under clips/")
    p.add_argument("--out", required=True, help="report folder")
    return p


def run(args: argparse.Namespace) -> dict:
    import torch
    from tqdm import tqdm

    from audiogen.audio import RESAMPLER
    from audiogen.fad import embed_arrays, make_embedder, score_sets
    from audiogen.frontend import FrontendConfig, MelFrontend

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    embedder = make_embedder(args.embedding, weights=args.vggish_weights, framing=args.framing, device=args.device)
    files, selection = reference_files(Path(args.reference), args.split)
    if not files:
        raise ValueError(f"{args.reference}: no reference audio")
    generator, model_note = load_models(args.model, args.vocoder, args.device)
    # the models' own frontend when they load (their sample rate and mel settings), on the CPU
    frontend = MelFrontend(generator.frontend.config if generator is not None else FrontendConfig())
    sample_rate = frontend.config.sample_rate
    print(f"reference: {len(files)} files ({selection}), clips of {args.seconds:g} s at {sample_rate} Hz", flush=True)
    background, real, split_info = split_reference(files, sample_rate, args.seconds, args.num, args.seed)
    if len(background) < 2 or len(real) < 2:
        raise ValueError(f"{args.reference}: too little audio for two sets of {args.seconds:g} s clips")

    rows = [Row(name, description) for name, description in ROWS.items()]
    by_name = {row.name: row for row in rows}
    by_name["real (floor)"].clips = real
    started = time.time()
    by_name["griffin-lim"].clips = griffin_lim_clips(frontend, real, args.griffin_lim_iters)
    by_name["griffin-lim"].seconds_to_make = time.time() - started
    by_name["noise (ceiling)"].clips = noise_clips(real, args.seed)
    if generator is None:
        for name in ("vocoder", "model"):
            by_name[name].skipped = model_note
    else:
        started = time.time()
        with torch.inference_mode():
            mels = [frontend(torch.from_numpy(c)).numpy() for c in real]
        by_name["vocoder"].clips = [np.asarray(generator.vocode(m), dtype=np.float32) for m in mels]
        by_name["vocoder"].seconds_to_make = time.time() - started
        started = time.time()
        count = len(real)
        from audiogen.generation import DEFAULT_TEMPERATURE

        if args.temperature is None:
            args.temperature = DEFAULT_TEMPERATURE
        temperature = {"temperature": args.temperature}
        by_name["model"].clips = [
            np.asarray(generator.generate(args.seconds, seed=args.seed + i, **temperature), dtype=np.float32)
            for i in tqdm(range(count), desc="generating", unit="clip", disable=None)
        ]
        by_name["model"].seconds_to_make = time.time() - started

    print(f"embedding background ({len(background)} clips)", flush=True)
    background_set = embed_arrays(background, sample_rate, embedder, source="background", progress=True)
    for row in rows:
        if row.skipped:
            print(f"{row.name}: skipped ({row.skipped})", flush=True)
            continue
        evaluation = embed_arrays(row.clips, sample_rate, embedder, source=row.name, progress=True)
        row.result = score_sets(background_set, evaluation, n_bootstrap=args.bootstrap, seed=args.seed)
        print(f"{row.name}: FAD {row.result['fad']:.4g} (FAD∞ {_fmt(row.result['fad_inf'])})", flush=True)

    save_examples(out / "clips", rows, sample_rate, args.keep_clips)
    spectrogram_picture(out / "spectrograms.png", rows, frontend)
    identity = embedder.identity()
    report = {
        "reference": {
            "path": str(args.reference),
            "selection": selection,
            "files": len(files),
            "background_clips": len(background),
            **split_info,
        },
        "seconds": args.seconds,
        "num": args.num,
        "seed": args.seed,
        "temperature": args.temperature,
        "sample_rate": sample_rate,
        "embedding": identity,
        "framing": identity["framing"],
        "resampler": RESAMPLER,
        "bootstrap": args.bootstrap,
        "level": 0.95,
        "rows": [
            {"name": r.name, "description": r.description, "skipped": r.skipped}
            if r.skipped
            else {
                "name": r.name,
                "description": r.description,
                "clips": r.result["eval"]["files"],
                "embeddings": r.result["eval"]["embeddings"],
                "fad": r.result["fad"],
                "fad_ci": r.result["fad_ci"],
                "fad_inf": r.result["fad_inf"],
                "seconds_to_make": round(r.seconds_to_make, 2),
                "warnings": r.result["warnings"],
            }
            for r in rows
        ],
        "notes": [] if identity.get("comparable_to_published") else [identity.get("note", "")],
    }
    (out / "fad_benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "fad_benchmark.md").write_text(markdown_table(report))
    bar_chart(report, out / "fad_benchmark.png")
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from audiogen.audio import AudioError

    try:
        report = run(args)
    except (AudioError, ValueError, OSError) as err:
        print(f"fad_benchmark: error: {err}", file=sys.stderr)
        return 1
    print(markdown_table(report))
    print(f"wrote {Path(args.out) / 'fad_benchmark.md'}, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
