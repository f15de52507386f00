"""FAD and KAD of the generator against real piano audio, with the baselines that give the numbers meaning.

    python tools/fad_benchmark.py --reference DIR [--split test] [--model DIR --vocoder DIR]
        [--num 200 --seconds 10] [--embedding vggish|mel] [--long-seconds 60 --long-num 48] --out REPORT_DIR

The reference (a MAESTRO-layout folder with ``maestro-v3.0.0.csv``, whose ``--split`` is used,
or any folder of audio) is cut into non-overlapping clips of ``--seconds``. Its pieces are
split in two halves, so no piece is on both sides: half A is the background set of every
row, and each row scores one evaluation set of up to ``--num`` clips against it:

- ``real (floor)``: clips of the other half B — what two real sets of this size score;
- ``griffin-lim``: copy-synthesis of B through the log-mel frontend and Griffin-Lim;
- ``vocoder``: copy-synthesis of B through the neural vocoder (what the vocoder alone costs);
- ``vae round trip``: B encoded and decoded by the VAE, then vocoded (what the VAE loses, so
  that the rest of the model row is what the latent prior gets wrong);
- ``codebook round trip``: the same with each latent frame replaced by its words in a token
  prior's codebooks (what quantising the latents loses; skipped for priors without codebooks);
- ``model``: clips generated from seeds by the spectrogram model and vocoder;
- ``noise (ceiling)``: white noise at the loudness of B's clips.

Clips that are (almost) all digital zero are left out of every set, the background included,
and the report says how many: a handful of them moves FAD more than the music does.

Every row gets FAD, FAD∞ and KAD (:mod:`audiogen.scoring`), with bootstrap intervals that
resample **pieces**: the clips cut from one reference recording share its piece id (so do their
Griffin-Lim, vocoder and VAE copies), while noise and generated clips are each their own piece.
A row's flags (an interval that leaves out its estimate, a negative FAD∞, fewer embeddings than
dimensions, a side of one piece) are printed as the row is scored, named in the table's last
column and spelled out below the tables.

Every row and the background also get **music descriptors** (:mod:`audiogen.descriptors`:
chroma entropy, onsets per second, silent fraction, spectral flatness, tonal ratio, and the
Jensen-Shannon distance of the pitch-class histogram to the background's), and **music metrics
through the transcriber** (:mod:`audiogen.music_metrics`; the bundled transcriber, or
``--transcriber DIR``; ``--no-music-metrics`` leaves them out): notes per second, polyphony,
pitch range, pitch-class histogram, inter-onset-interval entropy and velocity spread of the
transcribed notes, and each row's distance to the background's with an interval over pieces.

**Long form** (``--long-seconds 60``): ``--long-num`` clips of that length are generated, and as
many real excerpts of that length are cut from B's pieces; each is cut into windows of
``--seconds``, and every window position gets its FAD against the same background and its
descriptors, so drift shows as a rising line (``long_form.png``). Each long clip is also
searched for a wash (:func:`audiogen.descriptors.wash_windows`); ``long_spectrograms.png``
shows the first generated clips beside real excerpts on one colour scale.

Rows that need the models are skipped, with the reason in the report, when the models (or
``audiogen.generation``) cannot be loaded. Writes ``fad_benchmark.md`` (tables),
``fad_benchmark.json``, ``fad_benchmark.png`` (FAD and KAD bars with their bootstrap intervals) and
``spectrograms.png`` (the first clip of every row) into ``--out``, plus a few clips of every
row under ``clips/`` to listen to.

Exit status (:mod:`audiogen.cli`): 0 done; 2 a bad option or input, named in one line before
any work (a missing folder, a split it lacks, a number out of range); 3 the disk is full.
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

from audiogen.cli.arguments import (
    OneLineParser,
    float_at_least,
    int_at_least,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from audiogen.plots import save_figure

PROG = "fad_benchmark"
ROWS = {
    "real (floor)": "another real split (pieces not in the background)",
    "griffin-lim": "copy-synthesis: log-mel → Griffin-Lim",
    "vocoder": "copy-synthesis: log-mel → neural vocoder",
    "vae round trip": "log-mel → VAE encode/decode → neural vocoder",
    "codebook round trip": "log-mel → VAE encode → the token prior's codebooks → VAE decode → neural vocoder",
    "model": "generated from seeds (spectrogram model + vocoder)",
    "noise (ceiling)": "white noise at the clips' RMS",
}


@dataclass
class Row:
    name: str
    description: str
    clips: ClipSet = field(default_factory=lambda: ClipSet([], []))
    seconds_to_make: float = 0.0
    skipped: str | None = None
    result: dict | None = None
    silent_dropped: int = 0
    descriptors: dict | None = None
    music: dict | None = None  # audiogen.music_metrics.compare_sets against the background


def reference_files(root: Path, split: str) -> tuple[list[Path], str]:
    """Audio of ``split`` from a MAESTRO-layout CSV, else every audio file under ``root``."""
    from audiogen.embeddings import list_audio_files

    if root.is_dir():
        for csv_path in sorted(root.glob("maestro*.csv")):
            with open(csv_path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            chosen = [r for r in rows if r.get("split") == split]
            if chosen and "audio_filename" in chosen[0]:
                return [root / r["audio_filename"] for r in chosen], f"{csv_path.name}, split {split!r}"
            if chosen or "split" in (rows[0] if rows else {}):  # a MAESTRO CSV: never fall back to every file
                splits = ", ".join(sorted({r.get("split") or "?" for r in rows}))
                problem = "no audio_filename column" if chosen else f"no rows (its splits: {splits})"
                raise ValueError(f"--split {split!r}: {csv_path} has {problem}")
    return list_audio_files(root), "all audio files in the folder"


def cut_clips(audio: np.ndarray, length: int) -> list[np.ndarray]:
    """Non-overlapping clips of ``length`` samples (the remainder is dropped)."""
    return [audio[i : i + length].copy() for i in range(0, audio.shape[0] - length + 1, length)]


@dataclass
class ClipSet:
    """Clips and the piece each was cut from (clips of one piece share its name): intervals resample pieces."""

    clips: list[np.ndarray]
    pieces: list[str]

    def __len__(self) -> int:
        return len(self.clips)

    def subset(self, indices) -> ClipSet:
        return ClipSet([self.clips[i] for i in indices], [self.pieces[i] for i in indices])


def split_reference(
    files: list[Path], sample_rate: int, seconds: float, num: int, seed: int
) -> tuple[ClipSet, ClipSet, dict]:
    """Two halves of reference clips from disjoint pieces, up to ``num`` clips each, clips of
    digital silence left out before choosing (each half's count in ``silent_clips_dropped``).

    The info dict also names the pieces of half B (``eval_files``)."""
    from audiogen.audio import load_audio

    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    length = int(round(seconds * sample_rate))
    halves = [ClipSet([], []), ClipSet([], [])]
    pieces: list[list[Path]] = [[], []]
    if len(order) >= 2:
        for index, path in enumerate(order):
            audio, _ = load_audio(path, sample_rate=sample_rate)
            clips = cut_clips(audio, length)
            halves[index % 2].clips.extend(clips)
            halves[index % 2].pieces.extend([str(path)] * len(clips))
            pieces[index % 2].append(path)
        how = "pieces alternate between the halves"
    else:  # one piece only: alternate its clips (the floor is then optimistic)
        audio, _ = load_audio(order[0], sample_rate=sample_rate)
        clips = cut_clips(audio, length)
        halves = [ClipSet(clips[0::2], [str(order[0])] * len(clips[0::2])),
                  ClipSet(clips[1::2], [str(order[0])] * len(clips[1::2]))]
        pieces = [[order[0]], [order[0]]]
        how = "one piece: its clips alternate between the halves (optimistic floor)"
    chosen, silent = [], []
    for half in halves:
        half, dropped = drop_digital_silence(half)
        silent.append(dropped)
        if len(half) > num:
            half = half.subset(sorted(rng.choice(len(half), size=num, replace=False)))
        chosen.append(half)
    info = {"split": how, "pieces_background": len(pieces[0]), "pieces_eval": len(pieces[1]),
            "silent_clips_dropped": {"background": silent[0], "eval": silent[1]}, "eval_files": pieces[1]}
    return chosen[0], chosen[1], info


def drop_digital_silence(clips: ClipSet) -> tuple[ClipSet, int]:
    """The clips that are not (almost) all digital zero, with their pieces, and how many were dropped."""
    from audiogen.descriptors import is_digital_silence

    kept = [i for i, c in enumerate(clips.clips) if not is_digital_silence(c)]
    return clips.subset(kept), len(clips) - len(kept)


def own_pieces(clips: list[np.ndarray], label: str) -> ClipSet:
    """Clips that are each independent of the others (generated from their own seed): each its own piece."""
    return ClipSet(list(clips), [f"{label}/{i}" for i in range(len(clips))])


def long_excerpts(files: list[Path], sample_rate: int, seconds: float, num: int, seed: int) -> ClipSet:
    """Up to ``num`` non-overlapping excerpts of ``seconds`` from ``files``, taken round-robin
    over the pieces (each piece's first, then each one's second, ...), digital silence left out."""
    from audiogen.audio import load_audio
    from audiogen.descriptors import is_digital_silence

    length = int(round(seconds * sample_rate))
    per_piece = []
    for path in files:
        audio, _ = load_audio(path, sample_rate=sample_rate)
        per_piece.append([c for c in cut_clips(audio, length) if not is_digital_silence(c)])
    rng = np.random.default_rng(seed)
    for clips in per_piece:
        rng.shuffle(clips)
    out = ClipSet([], [])
    for depth in range(max((len(c) for c in per_piece), default=0)):
        for path, clips in zip(files, per_piece, strict=True):
            if depth < len(clips):
                out.clips.append(clips[depth])
                out.pieces.append(str(path))
    return out.subset(range(min(num, len(out))))


def describe_set(clips: list[np.ndarray], sample_rate: int, label: str) -> dict:
    """Set-level music descriptors (:func:`audiogen.descriptors.summarize`) of in-memory clips."""
    from tqdm import tqdm

    from audiogen.descriptors import describe_clip, summarize

    return summarize([describe_clip(c, sample_rate)
                      for c in tqdm(clips, desc=f"descriptors: {label}", unit="clip", disable=None)])


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


GUARD_NOTES = {True: ", washes drawn again (wash guard)", False: ", without the wash guard"}


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
        for i, clip in enumerate(row.clips.clips[:keep]):
            save_audio(target / f"{i:02d}.wav", peak_normalize(np.clip(clip, -10, 10), 0.9), sample_rate)


def spectrogram_picture(path: Path, rows: list[Row], frontend) -> None:
    """The first clip of every row as the frontend sees it, one panel per row, on one scale."""
    import torch

    from audiogen.plots import save_spectrograms

    panels = {}
    with torch.inference_mode():
        for row in rows:
            if not row.skipped and len(row.clips):
                panels[row.name] = frontend(torch.from_numpy(np.asarray(row.clips.clips[0], dtype=np.float32))).numpy()
    if panels:
        save_spectrograms(path, panels, frontend.config.frame_rate, "first clip of each row")


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def markdown_table(report: dict) -> str:
    emb = report["embedding"]
    lines = [
        f"FAD and KAD against {report['reference']['background_clips']} background clips "
        f"({report['reference'].get('background_pieces', '?')} pieces) of {report['seconds']:g} s "
        f"from `{report['reference']['path']}` ({report['reference']['selection']}; "
        f"{report['reference']['split']}).",
        "",
        f"Embedding: **{emb['model']}**"
        + (f" (weights SHA-256 `{emb['weights_sha256'][:16]}…`)" if emb.get("weights_sha256") else "")
        + f", framing `{emb['framing']}`, resampler `{report['resampler']}`, "
        f"{report['bootstrap']} bootstrap draws over pieces (the clips cut from one recording are drawn "
        "together: they are not independent)"
        + (f"; model clips sampled at temperature {report['temperature']:g}" if report.get("temperature") else "")
        + GUARD_NOTES.get(report.get("wash_guard"), "")
        + (", temperature kept to the model's surprise band" if report.get("surprise_band") else "")
        + (", their log-mel sharpened (the round trips' not)" if report.get("mel_sharpening") else "") + ".",
    ]
    if not emb.get("comparable_to_published", False):
        lines += ["", "**Mel embedding: weight-free, NOT comparable to published FAD values.**" if emb["model"] == "mel"
                  else f"**{emb['model']} embedding: NOT comparable to published FAD values.**"]
    lines += ["", "KAD: 100 × the unbiased MMD² under a Gaussian kernel whose width is the median distance "
              "within the background (kadtk's choice); no Gaussian assumption, no growth with fewer clips; "
              "near 0, and possibly slightly negative, when the sets match. Flags: see the list below the tables."]
    lines += [
        "",
        "| row | what it measures | clips | pieces | embeddings | FAD | 95% CI | FAD∞ | KAD | 95% CI | flags |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for row in report["rows"]:
        if row.get("skipped"):
            lines.append(f"| {row['name']} | {row['description']} | – | – | – | skipped | – | – | – | – | |")
            continue
        lines.append(
            f"| {row['name']} | {row['description']} | {row['clips']} | {row['pieces']} | {row['embeddings']} | "
            f"{_fmt(row['fad'])} | {_interval(row['fad_ci'])} | {_fmt(row['fad_inf'])} | "
            f"{_fmt(row['kad'])} | {_interval(row['kad_ci'])} | {_flag_cell(row['flags'])} |"
        )
    dropped = report["reference"].get("silent_clips_dropped", {})
    row_dropped = {r["name"]: r.get("silent_clips_dropped", 0) for r in report["rows"] if not r.get("skipped")}
    lines += ["", f"Digital silence left out: {dropped.get('background', 0)} background clips; per row "
              + ", ".join(f"{name} {n}" for name, n in row_dropped.items()) + "."]
    lines += ["", *descriptor_table(report)]
    if report.get("background_music"):
        from audiogen.music_metrics import music_table

        lines += ["", *music_table(report["background_music"], report["rows"])]
    flagged = _flags_by_message([(r["name"], r.get("flags", [])) for r in report["rows"] if not r.get("skipped")])
    notes = [r for r in report["rows"] if r.get("skipped")]
    if notes or report["notes"] or flagged:
        lines.append("")
        lines += [f"- {row['name']}: {row['skipped']}" for row in notes]
        lines += [f"- **flag** ({', '.join(names)}): {message}" for message, names in flagged.items()]
        lines += [f"- {note}" for note in report["notes"]]
    if report.get("long_form"):
        lines += ["", *long_form_table(report["long_form"])]
    return "\n".join(lines) + "\n"


def _interval(ci: list | None) -> str:
    return "–" if ci is None else f"{_fmt(ci[0])}–{_fmt(ci[1])}"


def _flag_cell(flags: list[dict]) -> str:
    """Short names of a row's flags for its table cell (the messages follow the table)."""
    from audiogen.scoring import flag_label

    return ", ".join(flag_label(f) for f in flags)


def _flags_by_message(rows: list[tuple[str, list[dict]]]) -> dict[str, list[str]]:
    """Flag message → the rows it applies to (a background flag applies to every row: said once)."""
    grouped: dict[str, list[str]] = {}
    for name, flags in rows:
        for flag in flags:
            grouped.setdefault(flag["message"], []).append(name)
    return grouped


def _descriptor_cells(d: dict | None, vs: dict | None) -> str:
    if d is None:
        return "– | – | – | – | – | –"
    js = vs["pitch_class_js"] if vs else 0.0
    return (f"{d['chroma_entropy']:.2f} | {d['onsets_per_second']:.2f} | {d['silent_fraction']:.3f} | "
            f"{d['spectral_flatness']:.4f} | {d['tonal_ratio']:.2f} | {js:.3f}")


def descriptor_table(report: dict) -> list[str]:
    """Music descriptors of the background and every row (means over clips)."""
    lines = ["Music descriptors (means over clips; `audiogen.descriptors`). Chroma entropy in bits "
             "(at most 3.58); pitch-class JS: Jensen-Shannon distance of the row's pitch-class histogram "
             "to the background's (bits).", "",
             "| set | chroma entropy | onsets/s | silent frames | spectral flatness | tonal ratio | pitch-class JS |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| background | {_descriptor_cells(report['background_descriptors'], None)} |"]
    for row in report["rows"]:
        if not row.get("skipped"):
            lines.append(f"| {row['name']} | {_descriptor_cells(row['descriptors'], row['vs_reference'])} |")
    return lines


def long_form_table(long: dict) -> list[str]:
    """FAD, KAD and descriptors per window position of the long clips, their flags, and their washes."""
    lines = [f"Long form: clips of {long['seconds']:g} s cut into windows of {long['window_seconds']:g} s, "
             "each window position scored against the same background (`long_form.png`).", ""]
    for name, data in long["sets"].items():
        washed = [round(t, 1) for t in data["first_wash_seconds"] if t is not None]
        unsharpened = data.get("washed_clips_unsharpened")
        lines += [f"**{name}**: {data['clips']} clips; {data['washed_clips']} switch into a wash"
                  + (f" (first wash window starts at {washed} s)" if washed else "")
                  + (f"; {unsharpened} with their log-mel unsharpened" if unsharpened is not None else "") + ".", "",
                  "| window | clips | FAD | KAD | flags | chroma entropy | onsets/s | silent frames | "
                  "spectral flatness | tonal ratio | pitch-class JS |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for w in data["windows"]:
            span = f"{w['start']:g}–{w['start'] + long['window_seconds']:g} s"
            lines.append(f"| {span} | {w['clips']} | {_fmt(w.get('fad'))} | {_fmt(w.get('kad'))} | "
                         f"{_flag_cell(w.get('flags', []))} | "
                         f"{_descriptor_cells(w['descriptors'], w['vs_reference'])} |")
        first, last = data["windows"][0].get("fad"), data["windows"][-1].get("fad")
        if first and last:
            lines += ["", f"Drift ({name}): last window's FAD / first window's = {last / first:.2f}."]
        flagged = _flags_by_message([(f"{w['start']:g} s", w.get("flags", [])) for w in data["windows"]])
        lines += [f"- **flag** (windows at {', '.join(starts)}): {message}" for message, starts in flagged.items()]
        lines.append("")
    return lines


def _interval_bars(ax, names: list[str], values: np.ndarray, cis: list, colors: list[str]) -> None:
    """Horizontal bars with their intervals as error bars (an interval that is n/a gets none)."""
    low = np.array([np.nan if ci is None or ci[0] is None else ci[0] for ci in cis], dtype=float)
    high = np.array([np.nan if ci is None or ci[1] is None else ci[1] for ci in cis], dtype=float)
    # an interval may leave its estimate out (flagged): the bar is drawn from the estimate either way
    errors = [np.nan_to_num(np.maximum(values - low, 0)), np.nan_to_num(np.maximum(high - values, 0))]
    ax.barh(names, values, xerr=errors, color=colors, capsize=4)


def bar_chart(report: dict, path: Path) -> None:
    """FAD and KAD of every row, side by side, with their bootstrap intervals over pieces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if not r.get("skipped")]
    names = [r["name"] for r in rows]
    colors = [
        "#d62728" if r["name"] == "model" else "#1f77b4" if "copy" in r["description"] else "#7f7f7f" for r in rows
    ]
    fig, (fad_ax, kad_ax) = plt.subplots(1, 2, figsize=(11, 0.6 * len(rows) + 1.5), sharey=True)
    values = np.array([r["fad"] for r in rows])
    _interval_bars(fad_ax, names, values, [r["fad_ci"] for r in rows], colors)
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > 50:
        fad_ax.set_xscale("log")
    _interval_bars(kad_ax, names, np.array([r["kad"] for r in rows]), [r["kad_ci"] for r in rows], colors)
    fad_ax.invert_yaxis()  # rows top to bottom in table order (the axes share y: invert once)
    kad_ax.axvline(0.0, color="black", linewidth=0.8)  # KAD is unbiased: a matching set sits near 0
    emb = report["embedding"]
    title = f"{emb['model']}, {emb['framing']}"
    if not emb.get("comparable_to_published", False):
        title += " — not comparable to published FAD"
    fig.suptitle(title, fontsize=10)
    level = int(report["level"] * 100)
    fad_ax.set_xlabel(f"FAD (lower is closer); bars: {level}% bootstrap interval over pieces")
    kad_ax.set_xlabel(f"KAD (0: same distribution); bars: {level}% interval over pieces")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    from audiogen.embeddings import EMBEDDERS

    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=True, help="MAESTRO-layout folder or folder of audio")
    p.add_argument(
        "--split", default="test", help="MAESTRO split to use when the folder has a CSV (default: %(default)s)"
    )
    p.add_argument("--model", default=None, help="exported spectrogram model folder (default: the bundled one)")
    p.add_argument("--vocoder", default=None, help="exported vocoder folder (default: the bundled one)")
    p.add_argument("--num", type=int_at_least(2), default=200, help="clips per set, at most (default: %(default)s)")
    p.add_argument(
        "--seconds", type=float_at_least(1.0), default=10.0,
        help="clip length, at least 1 s: one embedding patch (default: %(default)s)",
    )
    p.add_argument("--embedding", choices=tuple(EMBEDDERS), default="vggish", help="(default: %(default)s)")
    p.add_argument(
        "--vggish-weights", default=None,
        help="torchvggish checkpoint (default: $AUDIOGEN_VGGISH_WEIGHTS, then the cache)",
    )
    p.add_argument(
        "--framing", choices=("torchvggish", "google-reference"), default="torchvggish", help="(default: %(default)s)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... or auto (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="(default: %(default)s)")
    p.add_argument(
        "--temperature", type=positive_float,
        help="the prior's sampling temperature (default: generate's, the model's own)"
    )
    p.add_argument(
        "--no-wash-guard", dest="wash_guard", action="store_false",
        help="sample as the prior alone does, without redrawing what washes (generate's --no-wash-guard)",
    )
    p.add_argument(
        "--no-surprise-band", dest="surprise_band", action="store_false",
        help="sample at a fixed temperature even where the model carries a surprise band "
             "(generate's --no-surprise-band)",
    )
    p.add_argument(
        "--no-mel-sharpening", dest="mel_sharpening", action="store_false",
        help="vocode the generated clips' log-mel as decoded even where the model carries a mel "
             "sharpening (generate's --no-mel-sharpening)",
    )
    p.add_argument(
        "--bootstrap", type=int_at_least(2), default=200, help="bootstrap draws per row (default: %(default)s)"
    )
    p.add_argument(
        "--griffin-lim-iters", type=positive_int, default=32, help="Griffin-Lim iterations (default: %(default)s)"
    )
    p.add_argument(
        "--keep-clips", type=non_negative_int, default=2,
        help="example clips per row written under clips/ (default: %(default)s)",
    )
    p.add_argument("--long-seconds", type=non_negative_float, default=0.0,
                   help="long-form mode: length of the long clips, cut into --seconds windows, at least --seconds "
                   "(default: %(default)s: off)")
    p.add_argument(
        "--long-num", type=int_at_least(2), default=48,
        help="long clips generated (and real excerpts) in long form (default: %(default)s)",
    )
    p.add_argument("--transcriber", default=None, metavar="DIR",
                   help="transcriber of the music metrics and --embedding transcriber (default: the bundled one)")
    p.add_argument("--no-music-metrics", action="store_true",
                   help="leave out the music metrics through the transcriber (default: off: they are measured)")
    p.add_argument("--out", required=True, help="report folder")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Refuse what the options cannot give before models load or clips are made (ValueError names it)."""
    from audiogen.cli.arguments import check_output_folder, resolve_device

    check_output_folder("--out", args.out)
    if 0 < args.long_seconds < args.seconds:
        raise ValueError(f"--long-seconds {args.long_seconds:g}: shorter than one --seconds window ({args.seconds:g})")
    args.device = resolve_device(args.device)


def vae_round_trip_clips(generator, clips: list[np.ndarray], quantise=None,
                         label: str = "vae round trip") -> list[np.ndarray]:
    """Each clip encoded to the VAE's latents (posterior means), decoded and vocoded; with
    ``quantise`` (latents (1, D, L) → latents), changed by it before decoding."""
    from tqdm import tqdm

    out = []
    for clip in tqdm(clips, desc=label, unit="clip", disable=None):
        latents = generator.encode(clip)
        if quantise is not None:
            latents = quantise(latents)
        parts = list(generator.render([latents], len(clip)))
        out.append(np.concatenate(parts).astype(np.float32))
    return out


def codebook_quantiser(prior):
    """latents (1, D, L) → the same frames replaced by their residual-codebook words, for a prior
    with codebooks (:mod:`audiogen.token_prior`); None for one without."""
    codebooks = getattr(prior, "codebooks", None)
    if codebooks is None:
        return None
    return lambda z: codebooks.decode(codebooks.encode(z.transpose(1, 2))).transpose(1, 2).to(z.dtype)


def generate_clips(generator, count: int, seconds: float, seed: int, temperature: float, label: str):
    from tqdm import tqdm

    return [np.asarray(generator.generate(seconds, seed=seed + i, temperature=temperature), dtype=np.float32)
            for i in tqdm(range(count), desc=label, unit="clip", disable=None)]


def generate_long_clips(generator, count: int, seconds: float, seed: int, temperature: float, label: str):
    """``count`` clips as :func:`generate_clips` makes them and, where the generator sharpens the
    log-mel (:mod:`audiogen.mel_sharpening`), the same latents vocoded unsharpened (else None): the
    sharpening raises the tonal ratio the wash detector reads, so washes are counted on both."""
    import torch
    from tqdm import tqdm

    if getattr(generator, "mel_sharpening", None) is None:
        return generate_clips(generator, count, seconds, seed, temperature, label), None
    samples = int(round(seconds * generator.sample_rate))
    clips, unsharpened = [], []
    for i in tqdm(range(count), desc=label, unit="clip", disable=None):
        with torch.inference_mode():
            latents = list(generator.latents(samples, seed + i, temperature))
            for drawn, out in ((True, clips), (False, unsharpened)):
                out.append(np.concatenate(list(generator.render(latents, samples, drawn=drawn))).astype(np.float32))
    return clips, unsharpened


def score_row(background_set, clips: ClipSet, sample_rate, embedder, name, args) -> dict:
    """The :func:`audiogen.scoring.score_sets` report of one set of clips against the background."""
    from audiogen.embeddings import embed_arrays
    from audiogen.scoring import score_sets

    evaluation = embed_arrays(clips.clips, sample_rate, embedder, source=name, progress=True, pieces=clips.pieces)
    return score_sets(background_set, evaluation, n_bootstrap=args.bootstrap, seed=args.seed)


def print_flags(label: str, result: dict) -> None:
    from audiogen.scoring import flag_lines

    for line in flag_lines(result["flags"]):
        print(f"{label}: {line}", flush=True)


def windows_of(clips: ClipSet, length: int) -> list[ClipSet]:
    """Window position k → the k-th window of every clip (clips cut into ``length`` samples), with its piece."""
    cut = [cut_clips(c, length) for c in clips.clips]
    positions = min((len(c) for c in cut), default=0)
    return [ClipSet([c[k] for c in cut], list(clips.pieces)) for k in range(positions)]


def long_form(args, generator, background_set, background_descriptors, embedder, eval_files, sample_rate,
              out: Path) -> dict:
    """FAD, KAD and descriptors per window position of long generated clips and real excerpts, and washes."""
    from audiogen.descriptors import compare_to_reference, wash_windows

    length = int(round(args.seconds * sample_rate))
    sets = {"real": long_excerpts(eval_files, sample_rate, args.long_seconds, args.long_num, args.seed)}
    unsharpened = None
    if generator is not None:
        clips, unsharpened = generate_long_clips(generator, args.long_num, args.long_seconds, args.seed + 100_000,
                                                 args.temperature, f"generating {args.long_seconds:g} s")
        sets["model"] = own_pieces(clips, "model")
    report: dict = {"seconds": args.long_seconds, "window_seconds": args.seconds, "sets": {}}
    for name, clip_set in sets.items():
        positions = []
        for k, window in enumerate(windows_of(clip_set, length)):
            kept, _ = drop_digital_silence(window)
            label = f"{name} window {k}"
            row = {"start": k * args.seconds, "clips": len(kept), "fad": None, "kad": None}  # both need 2 clips
            if len(kept) >= 2:
                result = score_row(background_set, kept, sample_rate, embedder, label, args)
                row.update(fad=result["fad"], fad_ci=result["fad_ci"], kad=result["kad"], kad_ci=result["kad_ci"],
                           pieces=result["eval"]["pieces"], embeddings=result["eval"]["embeddings"],
                           flags=result["flags"])
                print_flags(label, result)
            descriptors = describe_set(kept.clips, sample_rate, label) if kept else None
            row["descriptors"] = descriptors
            row["vs_reference"] = compare_to_reference(descriptors, background_descriptors) if kept else None
            positions.append(row)
        washes = [wash_windows(c, sample_rate) for c in clip_set.clips]
        report["sets"][name] = {
            "clips": len(clip_set),
            "pieces": len(set(clip_set.pieces)),
            "windows": positions,
            "washed_clips": sum(bool(w) for w in washes),
            "first_wash_seconds": [w[0][0] if w else None for w in washes],
        }
        if name == "model" and unsharpened is not None:
            report["sets"][name]["washed_clips_unsharpened"] = sum(bool(wash_windows(c, sample_rate))
                                                                   for c in unsharpened)
        print(f"long form, {name}: {len(clip_set)} clips of {args.long_seconds:g} s, "
              f"{report['sets'][name]['washed_clips']} with a wash", flush=True)
    long_form_plot(report, out / "long_form.png")
    long_spectrograms({name: c.clips for name, c in sets.items()}, sample_rate, out / "long_spectrograms.png",
                      generator)
    return report


def long_form_plot(report: dict, path: Path) -> None:
    """FAD and descriptors per window position, one line per set: drift shows as a slope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("FAD", lambda w: w.get("fad")),
              ("chroma entropy (bits)", lambda w: (w["descriptors"] or {}).get("chroma_entropy")),
              ("onsets per second", lambda w: (w["descriptors"] or {}).get("onsets_per_second")),
              ("pitch-class JS distance to background", lambda w: (w["vs_reference"] or {}).get("pitch_class_js")),
              ("tonal ratio", lambda w: (w["descriptors"] or {}).get("tonal_ratio")),
              ("silent fraction", lambda w: (w["descriptors"] or {}).get("silent_fraction"))]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    colors = {"real": "#1f77b4", "model": "#d62728"}
    for ax, (title, value) in zip(axes.flat, panels, strict=True):
        for name, data in report["sets"].items():
            xs = [w["start"] + report["window_seconds"] / 2 for w in data["windows"]]
            ys = [value(w) for w in data["windows"]]
            ax.plot(xs, [np.nan if y is None else y for y in ys], "o-", color=colors.get(name), label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("window centre (s)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    fig.suptitle(f"long form: {report['seconds']:g} s clips in {report['window_seconds']:g} s windows")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def long_spectrograms(sets: dict, sample_rate: int, path: Path, generator, count: int = 4) -> None:
    """The first ``count`` clips of each long set as log-mel pictures on one colour scale."""
    import torch

    from audiogen.frontend import FrontendConfig, MelFrontend
    from audiogen.plots import save_spectrograms

    frontend = MelFrontend(generator.frontend.config if generator is not None else FrontendConfig())
    panels = {}
    with torch.inference_mode():
        for i in range(count):
            for name, clips in sets.items():
                if i < len(clips):
                    panels[f"{name} {i + 1}"] = frontend(torch.from_numpy(clips[i])).numpy()
    if panels:
        save_spectrograms(path, panels, frontend.config.frame_rate, "long clips, generated beside real excerpts")


def run(args: argparse.Namespace) -> dict:
    import torch

    from audiogen.audio import RESAMPLER
    from audiogen.descriptors import compare_to_reference
    from audiogen.embeddings import embed_arrays, make_embedder
    from audiogen.frontend import FrontendConfig, MelFrontend
    from audiogen.music_metrics import compare_sets, music_meter, set_summary

    files, selection = reference_files(Path(args.reference), args.split)  # a bad reference fails first
    if not files:
        raise ValueError(f"{args.reference}: no reference audio")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = args.transcriber if args.embedding == "transcriber" else args.vggish_weights
    embedder = make_embedder(args.embedding, weights=weights, framing=args.framing, device=args.device)
    generator, model_note = load_models(args.model, args.vocoder, args.device)
    if generator is not None:
        generator.wash_guard = args.wash_guard
        if not args.surprise_band:
            generator.surprise_band = None
        if not args.mel_sharpening:
            generator.mel_sharpening = None
    # a generator may have neither
    args.surprise_band = getattr(generator, "surprise_band", None) is not None
    args.mel_sharpening = getattr(generator, "mel_sharpening", None) is not None
    # the models' own frontend when they load (their sample rate and mel settings), on the CPU
    frontend = MelFrontend(generator.frontend.config if generator is not None else FrontendConfig())
    sample_rate = frontend.config.sample_rate
    print(f"reference: {len(files)} files ({selection}), clips of {args.seconds:g} s at {sample_rate} Hz", flush=True)
    background, real, split_info = split_reference(files, sample_rate, args.seconds, args.num, args.seed)
    eval_files = split_info.pop("eval_files")
    if len(background) < 2 or len(real) < 2:
        raise ValueError(f"{args.reference}: too little audio for two sets of {args.seconds:g} s clips")
    if args.temperature is None:
        from audiogen.generation import DEFAULT_TEMPERATURE

        args.temperature = getattr(generator, "default_temperature", DEFAULT_TEMPERATURE)

    rows = [Row(name, description) for name, description in ROWS.items()]
    by_name = {row.name: row for row in rows}
    by_name["real (floor)"].clips = real
    by_name["real (floor)"].silent_dropped = split_info["silent_clips_dropped"]["eval"]
    # copy-synthesis keeps each clip's piece; noise and generated clips are each independent of the others
    makers = {
        "griffin-lim": lambda: ClipSet(griffin_lim_clips(frontend, real.clips, args.griffin_lim_iters), real.pieces),
        "noise (ceiling)": lambda: own_pieces(noise_clips(real.clips, args.seed), "noise"),
    }
    quantise = codebook_quantiser(getattr(generator, "prior", None))
    if generator is None:
        for name in ("vocoder", "vae round trip", "codebook round trip", "model"):
            by_name[name].skipped = model_note
    elif quantise is None:
        by_name["codebook round trip"].skipped = "the model's prior has no codebooks (not a token prior)"
    else:
        makers["codebook round trip"] = lambda: ClipSet(
            vae_round_trip_clips(generator, real.clips, quantise, "codebook round trip"), real.pieces)
    if generator is not None:
        makers["vocoder"] = lambda: ClipSet([np.asarray(generator.vocode(frontend(torch.from_numpy(c)).numpy()),
                                                        dtype=np.float32) for c in real.clips], real.pieces)
        makers["vae round trip"] = lambda: ClipSet(vae_round_trip_clips(generator, real.clips), real.pieces)
        makers["model"] = lambda: own_pieces(generate_clips(generator, len(real), args.seconds, args.seed,
                                                            args.temperature, "generating"), "model")
    for name, make in makers.items():
        started = time.time()
        with torch.inference_mode():
            clips = make()
        by_name[name].clips, by_name[name].silent_dropped = drop_digital_silence(clips)
        by_name[name].seconds_to_make = time.time() - started

    print(f"embedding background ({len(background)} clips)", flush=True)
    background_set = embed_arrays(background.clips, sample_rate, embedder, source="background", progress=True,
                                  pieces=background.pieces)
    background_descriptors = describe_set(background.clips, sample_rate, "background")
    meter, music_note = (None, "--no-music-metrics") if args.no_music_metrics else music_meter(args.transcriber,
                                                                                             args.device)
    if music_note:
        print(f"music metrics: left out ({music_note})", flush=True)
    if meter is not None and meter.sample_rate != sample_rate:
        raise ValueError(f"--transcriber {meter.model_dir}: made for {meter.sample_rate} Hz, clips are {sample_rate}")
    background_music = meter.measure_clips(background.clips, "background") if meter else None
    for row in rows:
        if row.skipped:
            print(f"{row.name}: skipped ({row.skipped})", flush=True)
            continue
        if len(row.clips) < 2:
            row.skipped = f"{row.silent_dropped} of its clips were digital silence: fewer than 2 left"
            continue
        row.result = score_row(background_set, row.clips, sample_rate, embedder, row.name, args)
        row.descriptors = describe_set(row.clips.clips, sample_rate, row.name)
        if meter is not None:
            row.music = compare_sets(meter.measure_clips(row.clips.clips, row.name), row.clips.pieces,
                                     background_music, background.pieces, n_bootstrap=args.bootstrap, seed=args.seed)
        print(f"{row.name}: FAD {row.result['fad']:.4g} (FAD∞ {_fmt(row.result['fad_inf'])}), "
              f"KAD {row.result['kad']:.4g}", flush=True)
        print_flags(row.name, row.result)

    save_examples(out / "clips", rows, sample_rate, args.keep_clips)
    spectrogram_picture(out / "spectrograms.png", rows, frontend)
    identity = embedder.identity()
    report = {
        "reference": {
            "path": str(args.reference),
            "selection": selection,
            "files": len(files),
            "background_clips": len(background),
            "background_pieces": background_set.num_pieces,
            **split_info,
        },
        "seconds": args.seconds,
        "num": args.num,
        "seed": args.seed,
        "temperature": args.temperature,
        "wash_guard": args.wash_guard,
        "surprise_band": args.surprise_band,
        "mel_sharpening": args.mel_sharpening,
        "sample_rate": sample_rate,
        "embedding": identity,
        "framing": identity["framing"],
        "resampler": RESAMPLER,
        "bootstrap": args.bootstrap,
        "level": 0.95,
        "background_descriptors": background_descriptors,
        "background_music": set_summary(background_music) if meter else None,
        "transcriber": str(meter.model_dir) if meter else None,
        "music_metrics_note": music_note,
        "rows": [
            {"name": r.name, "description": r.description, "skipped": r.skipped}
            if r.skipped
            else {
                "name": r.name,
                "description": r.description,
                "clips": r.result["eval"]["files"],
                "pieces": r.result["eval"]["pieces"],
                "silent_clips_dropped": r.silent_dropped,
                "embeddings": r.result["eval"]["embeddings"],
                "fad": r.result["fad"],
                "fad_ci": r.result["fad_ci"],
                "fad_inf": r.result["fad_inf"],
                "kad": r.result["kad"],
                "kad_ci": r.result["kad_ci"],
                "bootstrap_unit": r.result["bootstrap"]["unit"],
                "seconds_to_make": round(r.seconds_to_make, 2),
                "flags": r.result["flags"],
                "warnings": r.result["warnings"],
                "descriptors": r.descriptors,
                "vs_reference": compare_to_reference(r.descriptors, background_descriptors),
                "music": r.music,
            }
            for r in rows
        ],
        "notes": [] if identity.get("comparable_to_published") else [identity.get("note", "")],
    }
    if args.long_seconds:
        report["long_form"] = long_form(args, generator, background_set, background_descriptors, embedder,
                                        eval_files, sample_rate, out)
    (out / "fad_benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "fad_benchmark.md").write_text(markdown_table(report))
    bar_chart(report, out / "fad_benchmark.png")
    return report


def benchmark(args: argparse.Namespace) -> int:
    check_args(args)
    report = run(args)
    print(markdown_table(report))
    print(f"wrote {Path(args.out) / 'fad_benchmark.md'}, .json and .png")
    return 0


def main(argv: list[str] | None = None) -> int:
    from audiogen.cli import one_line_errors

    args = build_parser().parse_args(argv)
    return one_line_errors(PROG, lambda: benchmark(args))


if __name__ == "__main__":
    sys.exit(main())
