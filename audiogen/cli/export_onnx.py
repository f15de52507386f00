"""`audiogen export-onnx --out DIR`: the pipeline's networks as ONNX graphs (see audiogen.onnx_export).

    audiogen export-onnx --out onnx/                          # the bundled models
    audiogen export-onnx --model RUN/best --vocoder VOC/best --out onnx/ --force
"""

from __future__ import annotations

import argparse
import sys

from audiogen.cli import EXIT_OK, add_version_option, one_line_errors


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="audiogen export-onnx",
        description="Write the vocoder, the VAE decoder and encoder and the prior's one-step function as ONNX "
                    "graphs (dynamic time axes), with the frontend and model configs and a manifest.json.",
    )
    p.add_argument("--model", help="spectrogram model folder (RUN/best of a VAE or prior run); default: bundled")
    p.add_argument("--vocoder", help="vocoder folder (RUN/best of train_vocoder.py); default: bundled")
    p.add_argument("--out", required=True, help="folder to create (written whole or not at all)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (default: refuse)")
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
    manifest = export_onnx(args.out, args.model, args.vocoder, force=args.force, progress=None if args.quiet else say)
    if not args.quiet:
        for name, graph in manifest["graphs"].items():
            shapes = ", ".join(f"{t['name']} {tuple(t['shape'])}" for t in graph["inputs"])
            say(f"{args.out}/{graph['file']}: {name} ({shapes})")
        for name, why in manifest["not_exported"].items():
            say(f"not exported: {name}: {why}")
    return EXIT_OK
