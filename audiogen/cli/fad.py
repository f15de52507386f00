"""``audiogen-fad``: embed audio, score Fréchet and kernel audio distances, fetch the VGGish weights.

    audiogen-fad embed AUDIO... --out OUT.npz [--embedding vggish|mel] [--vggish-weights W.pth]
    audiogen-fad score --background A --eval B [--json OUT.json]
    audiogen-fad download-weights [--url URL] [--sha256 HEX]

``A`` and ``B`` are each a folder of audio (searched recursively), a text file listing audio
paths, or an .npz written by ``embed``. ``score`` prints FAD, KAD, their intervals (resampling
files: each file is a piece), FAD∞ and one ``flag (...)`` line for each number not to trust; its
last line is the JSON report.
Errors print one line on stderr; the exit status follows :mod:`audiogen.cli` (2: a bad option
or input, 3: disk full or a failed download). Files written get the mode the umask gives; an
embedding cache that cannot be written is warned about in one line and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiogen.cli.arguments import (
    OneLineParser,
    check_output_file,
    int_at_least,
    non_negative_int,
    positive_int,
    probability,
    resolve_device,
)

PROG = "audiogen-fad"


def _add_embedding_options(parser: argparse.ArgumentParser, defaults_from_npz: bool) -> None:
    from audiogen.embeddings import EMBEDDERS

    hint = " (default: that of an .npz input, else %s)" if defaults_from_npz else " (default: %s)"
    parser.add_argument(
        "--embedding",
        choices=tuple(EMBEDDERS),
        default=None,
        help="vggish: FAD as published; mel: weight-free; transcriber: the bundled piano transcriber's hidden "
        "features (an embedding that hears notes); mel and transcriber are NOT comparable to published FAD"
        + hint % "vggish",
    )
    parser.add_argument(
        "--vggish-weights",
        metavar="PATH",
        default=None,
        help="torchvggish checkpoint vggish-10086976.pth (default: $AUDIOGEN_VGGISH_WEIGHTS, then the cache)",
    )
    parser.add_argument(
        "--framing",
        choices=("torchvggish", "google-reference"),
        default=None,
        help="torchvggish: non-overlapping 0.96 s patches; google-reference: 1 s every 0.5 s, peak-normalised"
        + hint % "torchvggish",
    )
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... or auto: cuda when there is one (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="patches per forward pass (default: %(default)s)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="decoding processes (default: the CPU count, at most 4)"
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="embedding cache; one that cannot be written is warned about and skipped "
        "(default: $AUDIOGEN_CACHE/fad-embeddings, else ~/.cache/audiogen/fad-embeddings)",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    from audiogen.cli import add_version_option

    parser = OneLineParser(
        prog=prog,
        description="Fréchet and kernel audio distances (FAD, KAD) on audio embeddings. Exit status: 0 done, "
        "2 bad option or input (named in one line), 3 the machine failed (disk full, out of memory, download "
        "failed), 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{embed,score,download-weights}")

    embed = sub.add_parser("embed", help="write per-file embeddings to an .npz")
    embed.add_argument("audio", nargs="+", help="audio files (folders and list files are expanded)")
    embed.add_argument(
        "--out", required=True, help="output .npz: one float32 [n_patches, d] array per file, and OUT.npz.json"
    )
    embed.add_argument("--force", action="store_true",
                       help="replace an existing --out and its .json (default: off: an existing file is refused)")
    _add_embedding_options(embed, defaults_from_npz=False)

    score = sub.add_parser("score", help="FAD, KAD and their intervals between a background and an evaluation set")
    score.add_argument("--background", required=True, help="folder, list file or .npz")
    score.add_argument("--eval", required=True, dest="evaluation", help="folder, list file or .npz")
    score.add_argument("--json", default=None, help="also write the result to this JSON file (default: stdout only)")
    score.add_argument("--force", action="store_true",
                       help="replace an existing --json file (default: off: an existing file is refused)")
    score.add_argument(
        "--bootstrap", type=int_at_least(2), default=200, help="bootstrap draws for the interval (default: %(default)s)"
    )
    score.add_argument(
        "--confidence",
        type=probability,
        default=0.95,
        help="interval coverage, between 0 and 1 (default: %(default)s)",
    )
    score.add_argument(
        "--fad-inf-steps",
        type=int_at_least(3),
        default=25,
        help="subset sizes for the FAD∞ line fit, at least 3 (default: %(default)s)",
    )
    score.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of bootstrap and FAD∞ subsets (default: %(default)s)"
    )
    _add_embedding_options(score, defaults_from_npz=True)

    download = sub.add_parser("download-weights", help="fetch vggish-10086976.pth with a checksum")
    download.add_argument(
        "--url", default=None, help="source (default: $AUDIOGEN_VGGISH_URL, else the torchvggish release)"
    )
    download.add_argument(
        "--cache-dir", default=None, help="target folder (default: $AUDIOGEN_CACHE, else ~/.cache/audiogen)"
    )
    download.add_argument(
        "--sha256", default=None, help="expected SHA-256 or a prefix of it (default: 10086976, the file's own)"
    )
    download.add_argument("--force", action="store_true", help="download even if a verified file exists")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    add_version_option(parser)
    return parser


def _embedding_cache_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.cache_dir) if args.cache_dir else None


def _make_embedder(args: argparse.Namespace, embedding: str, framing: str):
    from audiogen.embeddings import make_embedder

    return make_embedder(
        embedding,
        weights=args.vggish_weights,
        framing=framing,
        device=resolve_device(args.device),
        batch_size=args.batch_size,
    )


class WarnOnce:
    """Prints each warning once per command: the background and eval sets each try the same cache."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def __call__(self, message: str) -> None:
        if message not in self.said:
            self.said.add(message)
            print(f"{PROG}: warning: {message}", file=sys.stderr)


def _embed_files(args: argparse.Namespace, files: list[Path], embedder, desc: str, source: str):
    from audiogen.embeddings import embed_files

    return embed_files(
        files,
        embedder,
        workers=args.workers,
        cache_dir=_embedding_cache_dir(args),
        use_cache=not args.no_cache,
        progress=not args.quiet,
        desc=desc,
        source=source,
        warn=args.warn,
    )


def cmd_embed(args: argparse.Namespace) -> int:
    from audiogen.embeddings import list_audio_files, save_npz

    check_output_file("--out", args.out, args.force)
    check_output_file("--out", f"{args.out}.json", args.force)
    files = [f for source in args.audio for f in list_audio_files(source)]
    embedder = _make_embedder(args, args.embedding or "vggish", args.framing or "torchvggish")
    embedded = _embed_files(args, files, embedder, "embedding", source=" ".join(args.audio))
    keys = save_npz(embedded, args.out)
    summary = {
        "out": str(args.out),
        "files": len(keys),
        "embeddings": embedded.num_embeddings,
        "decoded": embedded.decoded,
        "from_cache": embedded.cached,
        "embedding": embedded.identity,
    }
    print(json.dumps(summary))
    return 0


def _default_from_npz(sets: list, key: str, fallback: str) -> str:
    values = {s.identity.get(key) for s in sets if s is not None and s.identity}
    values.discard(None)
    if len(values) > 1:
        raise ValueError(f"the .npz inputs disagree on {key}: {sorted(values)}")
    return values.pop() if values else fallback


def _interval_text(ci: list) -> str:
    return "n/a" if None in ci else f"{ci[0]:.4f}–{ci[1]:.4f}"


def _human_summary(report: dict) -> str:
    from audiogen.scoring import flag_lines

    inf = report["fad_inf"]
    sha = report.get("weights_sha256")
    model = report["embedding_model"] + (f" (weights sha256 {sha[:12]}…)" if sha else "")
    level = f"{report['fad_ci_level'] * 100:g}%"
    unit = report["bootstrap"]["unit"]
    lines = [
        f"FAD {report['fad']:.4f}  ({level} CI {_interval_text(report['fad_ci'])})  "
        f"FAD∞ {'n/a' if inf is None else f'{inf:.4f}'}",
        f"KAD {report['kad']:.4f}  ({level} CI {_interval_text(report['kad_ci'])})",
        f"embedding {model}, framing {report['framing']}, resampler {report['resampler']}",
        f"background {report['background']['files']} files / {report['background']['pieces']} pieces / "
        f"{report['background']['embeddings']} embeddings; eval {report['eval']['files']} files / "
        f"{report['eval']['pieces']} pieces / {report['eval']['embeddings']} embeddings; intervals resample "
        f"{unit['background']}s / {unit['eval']}s ({report['bootstrap']['n']} draws)",
    ]
    lines += flag_lines(report["flags"])
    lines += [f"warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)


def _write_json(path: str | Path, payload: dict) -> None:
    from audiogen.embeddings import write_atomically

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2) + "\n"
    write_atomically(path, lambda handle: handle.write(text.encode()), ".json.part")


def cmd_score(args: argparse.Namespace) -> int:
    from audiogen.embeddings import list_audio_files, load_npz
    from audiogen.scoring import score_sets

    if args.json:
        check_output_file("--json", args.json, args.force)
    specs = {"background": args.background, "eval": args.evaluation}
    sets = {label: load_npz(spec) if spec.lower().endswith(".npz") else None for label, spec in specs.items()}
    # list the audio first: a wrong folder is reported before seconds are spent loading weights
    files = {label: list_audio_files(spec) for label, spec in specs.items() if sets[label] is None}
    npz_sets = [s for s in sets.values() if s is not None]
    embedding = args.embedding or _default_from_npz(npz_sets, "model", "vggish")
    framing = args.framing or _default_from_npz(npz_sets, "framing", "torchvggish")
    if files:
        embedder = _make_embedder(args, embedding, framing)
        for label, paths in files.items():
            sets[label] = _embed_files(args, paths, embedder, f"embedding {label}", source=specs[label])
    report = score_sets(
        sets["background"],
        sets["eval"],
        n_bootstrap=args.bootstrap,
        level=args.confidence,
        fad_inf_steps=args.fad_inf_steps,
        seed=args.seed,
    )
    if args.json:
        _write_json(args.json, report)
    print(_human_summary(report))
    print(json.dumps(report))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from audiogen.download import download_vggish_weights, sha256_file

    path = download_vggish_weights(
        cache_dir=args.cache_dir, url=args.url, sha256=args.sha256, force=args.force, progress=not args.quiet
    )
    print(json.dumps({"weights": str(path), "sha256": sha256_file(path)}))
    return 0


COMMANDS = {"embed": cmd_embed, "score": cmd_score, "download-weights": cmd_download}


def _run(args: argparse.Namespace) -> int:
    from audiogen.cli import EXIT_ENVIRONMENT
    from audiogen.download import DownloadError

    try:
        return COMMANDS[args.command](args)
    except DownloadError as err:  # the network or the server failed the command, not its options
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_ENVIRONMENT


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Entry point of ``audiogen-fad``; returns the exit status (:mod:`audiogen.cli`'s convention)."""
    from audiogen.cli import one_line_errors

    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help or a usage error (argparse has printed it)
        return int(exit_.code or 0)
    args.warn = WarnOnce()
    # WeightsNotFoundError is an OSError, WeightsError a ValueError, AudioError names its file: one line each
    return one_line_errors(prog, lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
