"""`audiogen app [--port N]`: the models in a browser page on this machine (Gradio, the ``app`` extra)."""

from __future__ import annotations

import argparse
import importlib.util
import socket
import sys
import time

from audiogen.cli import EXIT_ENVIRONMENT, EXIT_OK, add_version_option, one_line_errors

INSTALL_HINT = 'pip install -e ".[app]"'


def build_parser(prog: str = "audiogen app") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve a page to generate, vary, morph and encode piano music with the bundled (or given) "
                    "models: every result plays, downloads as WAV and shows its spectrogram. Offline; Ctrl-C stops.")
    p.add_argument("--port", type=int, default=7860, help="the port to serve on (default 7860)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to bind: 127.0.0.1 keeps the page to this machine, 0.0.0.0 opens it "
                        "to the network (default 127.0.0.1)")
    p.add_argument("--model", help="spectrogram model folder (RUN/best of a prior run); default: bundled")
    p.add_argument("--vocoder", help="vocoder folder (RUN/best of train_vocoder.py); default: bundled")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's own choice, all cores)")
    add_version_option(p)
    return p


def check_port_free(host: str, port: int) -> None:
    """Refuse a port in use (or out of range) in one line, before minutes go into loading models."""
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be between 1 and 65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ValueError(f"--host {host} --port {port}: cannot listen there ({err.strerror}); "
                             "pass another --port") from None


def main(argv: list[str] | None = None, prog: str = "audiogen app") -> int:
    args = build_parser(prog).parse_args(argv)
    return one_line_errors(prog, lambda: _run(args, prog))


def _run(args: argparse.Namespace, prog: str) -> int:
    if importlib.util.find_spec("gradio") is None:
        print(f"{prog}: error: the app needs Gradio, which is not installed: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    check_port_free(args.host, args.port)
    from audiogen.api import Generator
    from audiogen.app import build_app, launch

    generator = Generator.from_pretrained(args.model, args.vocoder, device=args.device, threads=args.threads)
    demo = build_app(generator)
    url = launch(demo, args.host, args.port)
    print(f"audiogen app on {url} (Ctrl-C stops it)", file=sys.stderr)
    try:
        while demo.is_running:
            time.sleep(0.2)
    finally:
        demo.close()
    return EXIT_OK
