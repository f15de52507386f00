"""`audiogen export-onnx --out DIR`: the pipeline's networks as ONNX graphs (see audiogen.onnx_export).

    audiogen export-onnx --out onnx/                          # the bundled models
    audiogen export-onnx --model RUN/best --vocoder VOC/best --out onnx/ --force
    audiogen export-onnx --cache            # once after installing: generate runs the bundled models on onnxruntime
    audiogen export-onnx --model RUN/best --vocoder VOC/best --cache   # the same for these models
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from audiogen.cli import EXIT_OK, add_version_option, one_line_errors

if TYPE_CHECKING:
    from audiogen.onnx_generation import SourceIdentity


def build_parser() -> argparse.ArgumentParser:
    from audiogen.cli.arguments import OneLineParser

    p = OneLineParser(
        prog="audiogen export-onnx",
        description="Write the vocoder, the VAE decoder and encoder and the prior's sampling step (the mixture "
                    "prior's prior_step; the token prior's token_step and token_depth_<j>) as ONNX graphs (dynamic "
                    "time axes), with the frontend and model configs and a manifest.json.",
    )
    p.add_argument("--model", help="spectrogram model folder (RUN/best of a VAE or prior run); default: bundled")
    p.add_argument("--vocoder", help="vocoder folder (RUN/best of train_vocoder.py); default: bundled")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="folder to create (written whole or not at all)")
    where.add_argument("--cache", action="store_true",
                       help="write the graphs generate runs (not the encoder) into the cache, where generate finds "
                            "them by the hashes of the folders' weights and config.yaml and then runs these models "
                            "on onnxruntime, without torch ($AUDIOGEN_CACHE_DIR/onnx, else "
                            "$XDG_CACHE_HOME/audiogen/onnx, else ~/.cache/audiogen/onnx); once after installing for "
                            "the bundled models (their graphs are not shipped: they would double the package's "
                            "weights); graphs already there are kept unless --force, stale ones replaced")
    p.add_argument("--generation-only", action="store_true",
                   help="with --out: only the graphs generate runs, as --cache writes (default: the VAE encoder "
                        "too)")
    p.add_argument("--force", action="store_true", help="replace the folder if it exists (default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_version_option(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    return one_line_errors(p.prog, lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    from audiogen.onnx_export import export_onnx

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        import onnxscript  # noqa: F401  (torch.onnx.export(dynamo=True) needs it)
    except ImportError:
        raise ValueError('export-onnx needs onnx and onnxscript: pip install -e ".[onnx]"') from None
    force = args.force
    if not args.cache:
        out = Path(args.out)
    else:
        from audiogen.onnx_generation import cached_graphs_dir, find_graphs

        sources = cache_sources(args.model, args.vocoder)  # hashes the weights once
        out = cached_graphs_dir(*(source.weights_sha for source in sources))
        if not args.force and find_graphs(*sources) is not None:
            if not args.quiet:
                say(f"{out}: the graphs of these models are there already (--force exports them again)")
            return EXIT_OK
        out.parent.mkdir(parents=True, exist_ok=True)
        # the cache is ours: graphs there of the same weights that no longer match (another
        # config.yaml, surprise band or mel sharpening) are stale, and replaced
        force = True
    manifest = export_onnx(out, args.model, args.vocoder, force=force, progress=None if args.quiet else say,
                           generation_only=args.cache or args.generation_only)
    if not args.quiet:
        for name, graph in manifest["graphs"].items():
            shapes = ", ".join(f"{t['name']} {tuple(t['shape'])}" for t in graph["inputs"])
            say(f"{out}/{graph['file']}: {name} ({shapes})")
        for name, why in manifest["not_exported"].items():
            say(f"not exported: {name}: {why}")
    return EXIT_OK


def cache_sources(model: str | None, vocoder: str | None) -> tuple[SourceIdentity, SourceIdentity]:
    """The identities (weights and config hashes) of the model and vocoder folders (None: bundled)."""
    from audiogen.checkpoint import CheckpointError
    from audiogen.generation import pretrained_dir
    from audiogen.onnx_generation import SourceIdentity

    folders = [Path(model) if model else pretrained_dir("spec"),
               Path(vocoder) if vocoder else pretrained_dir("vocoder")]
    for folder, what in zip(folders, ("spectrogram model", "vocoder"), strict=True):
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: {what} folder not found")
    return SourceIdentity.of(folders[0]), SourceIdentity.of(folders[1])
