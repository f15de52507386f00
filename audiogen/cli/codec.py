"""What the VAE's encoder makes possible: a compact latent codec, and morphs between two clips.

    audiogen encode piece.flac --out piece.npz      # float16 latents, about 32x smaller than PCM
    audiogen decode piece.npz --out piece.wav       # back to audio (VAE decoder + vocoder)
    audiogen morph a.flac b.flac --out morph.wav    # a's latents turning frame by frame into b's

The .npz holds ``latents`` (float16, latent channels × frames), ``samples`` and ``sample_rate``
of the original, the ``frontend`` settings (JSON) and ``vae_sha256``, the VAE that made them:
decoding with another VAE is refused, since its latent space means something else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiogen.cli import add_version_option, one_line_errors
from audiogen.cli.arguments import OneLineParser
from audiogen.cli.generate import SCRATCH_NOTE, check_length, check_output, prepare_device, sigterm_as_interrupt

FORMAT_VERSION = 1
OUTPUT_NOTE = ("Files: the output appears whole or not at all, and an existing one is replaced only with --force. "
               "SIGTERM and Ctrl-C end the command with status 130.")


def _model_options(p: argparse.ArgumentParser, vocoder: bool = True) -> None:
    p.add_argument("--force", action="store_true",
                   help="replace the output file if it exists (default: off: an existing --out is refused)")
    p.add_argument("--model",
                   help="spectrogram model folder (RUN/best of a VAE or prior run) (default: the bundled one)")
    if vocoder:
        p.add_argument("--vocoder", help="vocoder folder (RUN/best of train_vocoder.py) (default: the bundled one)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to run; auto takes CUDA when there is one (default: %(default)s)")


def _load(args: argparse.Namespace):
    from audiogen.generation import load_generator

    device = prepare_device(args.device)
    return load_generator(args.model, getattr(args, "vocoder", None), device=device, with_prior=False)


def save_latents(path: str | Path, latents, samples: int, generator, force: bool = True) -> dict[str, float]:
    """Write a clip's latents (1, D, L) as float16 .npz; returns the sizes for the report.

    Written atomically (:func:`audiogen.audio.atomic_output`); ``force=False`` refuses an existing file.
    """
    import dataclasses

    import numpy as np

    from audiogen.audio import atomic_output

    z = latents[0].float().cpu().numpy().astype(np.float16)
    fields = {
        "latents": z,
        "samples": np.int64(samples),
        "sample_rate": np.int64(generator.sample_rate),
        "frontend": np.array(json.dumps(dataclasses.asdict(generator.frontend.config))),
        "vae_sha256": np.array(generator.vae_sha256),
        "format_version": np.int64(FORMAT_VERSION),
    }
    with atomic_output(path, force=force) as handle:
        np.savez(handle, **fields)
    return {"latent_bytes": z.nbytes, "pcm_bytes": 2 * samples, "file_bytes": Path(path).stat().st_size}


def load_latents(path: str | Path, generator):
    """(latents (1, D, L) float32, samples) of an ``encode`` file, checked against ``generator``."""
    import zipfile

    import numpy as np
    import torch

    from audiogen.frontend import FrontendConfig, check_same_frontend

    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a latent file of audiogen encode (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a latent file of audiogen encode ({err})") from None
    missing = {"latents", "samples", "frontend", "vae_sha256"} - set(fields)
    if missing:
        raise ValueError(f"{path}: not a latent file of audiogen encode (missing {', '.join(sorted(missing))})")
    frontend = FrontendConfig(**json.loads(str(fields["frontend"])))
    check_same_frontend(generator.frontend.config, frontend, str(path))
    if str(fields["vae_sha256"]) != generator.vae_sha256:
        raise ValueError(f"{path}: encoded by another VAE (sha256 {str(fields['vae_sha256'])[:12]}…, this one "
                         f"{generator.vae_sha256[:12]}…); pass --model with the model that encoded it")
    z = torch.from_numpy(fields["latents"].astype(np.float32))[None]
    return z, int(fields["samples"])


def encode_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="audiogen encode", description="Audio → the VAE's float16 latents (.npz).",
                                epilog=OUTPUT_NOTE)
    p.add_argument("audio", help="an audio file (anything libsndfile reads)")
    p.add_argument("--out", required=True, help="the .npz to write (required)")
    _model_options(p, vocoder=False)
    add_version_option(p)
    return p


def encode_main(argv: list[str] | None = None) -> int:
    return _guarded(encode_parser(), argv, _encode)


def _encode(args: argparse.Namespace) -> int:
    from audiogen.audio import load_audio

    check_output(args.out, args.force)
    generator = _load(args)
    audio = load_audio(args.audio, generator.sample_rate)[0]
    check_length(len(audio), generator, f"{args.audio}: {len(audio)} samples")
    sizes = save_latents(args.out, generator.encode(audio), len(audio), generator, force=args.force)
    seconds = len(audio) / generator.sample_rate
    print(f"wrote {args.out}: {seconds:.1f} s in {sizes['latent_bytes']:,} bytes of latents "
          f"({sizes['pcm_bytes'] / sizes['latent_bytes']:.1f}x smaller than 16-bit PCM, "
          f"{8 * sizes['latent_bytes'] / seconds / 1000:.1f} kbit/s)", file=sys.stderr)
    return 0


def decode_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="audiogen decode", description="Latents of audiogen encode → audio.",
                                epilog=SCRATCH_NOTE)
    p.add_argument("latents", help="an .npz written by audiogen encode")
    p.add_argument("--out", required=True,
                   help="output file (.wav 16-bit or .flac), peak-normalised to -1 dBFS (required)")
    _model_options(p)
    add_version_option(p)
    return p


def decode_main(argv: list[str] | None = None) -> int:
    return _guarded(decode_parser(), argv, _decode)


def _decode(args: argparse.Namespace) -> int:
    from audiogen.generation import write_clip

    check_output(args.out, args.force, (".wav", ".flac"))
    generator = _load(args)
    z, samples = load_latents(args.latents, generator)
    check_length(samples, generator, f"{args.latents}: a clip of {samples} samples")
    write_clip(generator.render([z], samples), args.out, generator.sample_rate, force=args.force)
    print(f"wrote {args.out} ({samples / generator.sample_rate:.1f} s)", file=sys.stderr)
    return 0


def morph_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="audiogen morph",
        description="Encode two clips and decode a path between their latents: the first clip "
                    "turning into the second over the length of the output.",
        epilog=SCRATCH_NOTE)
    p.add_argument("first", help="the clip the morph starts as")
    p.add_argument("second", help="the clip it ends as")
    p.add_argument("--out", required=True, help="output file (.wav 16-bit or .flac) (required)")
    p.add_argument("--seconds", type=float,
                   help="length of the output, at most 3600 (default: the length of the longer clip)")
    p.add_argument("--at", type=float,
                   help="a fixed blend instead of a morph: 0 is the first clip, 1 the second (default: none, a "
                        "morph from the first clip to the second)")
    p.add_argument("--linear", action="store_true",
                   help="blend latents linearly (default: off: slerp, which keeps their scale)")
    _model_options(p)
    add_version_option(p)
    return p


def morph_main(argv: list[str] | None = None) -> int:
    return _guarded(morph_parser(), argv, _morph)


def _morph(args: argparse.Namespace) -> int:
    import math

    import torch

    from audiogen.audio import load_audio
    from audiogen.generation import write_clip
    from audiogen.latents import interpolate

    check_output(args.out, args.force, (".wav", ".flac"))
    if args.seconds is not None and (not math.isfinite(args.seconds) or not 0 < args.seconds <= 3600):
        raise ValueError(f"--seconds must be in (0, 3600], got {args.seconds}")
    if args.at is not None and not 0 <= args.at <= 1:
        raise ValueError(f"--at must be between 0 and 1, got {args.at}")
    generator = _load(args)
    clips = [load_audio(name, generator.sample_rate)[0] for name in (args.first, args.second)]
    z_a, z_b = (generator.encode(audio) for audio in clips)
    samples = round(args.seconds * generator.sample_rate) if args.seconds else max(len(c) for c in clips)
    what = f"--seconds {args.seconds:g}" if args.seconds else f"{args.first} and {args.second}"
    check_length(samples, generator, what)
    hop = generator.frontend.config.hop_length
    length = math.ceil((samples // hop + 1) / generator.vae.time_ratio)
    t = args.at if args.at is not None else torch.linspace(0.0, 1.0, length)
    z = interpolate(z_a, z_b, t, length=length, spherical=not args.linear)
    write_clip(generator.render([z], samples), args.out, generator.sample_rate, force=args.force)
    print(f"wrote {args.out} ({samples / generator.sample_rate:.1f} s)", file=sys.stderr)
    return 0


def _guarded(p: argparse.ArgumentParser, argv: list[str] | None, run) -> int:
    args = p.parse_args(argv)

    def guarded() -> int:
        with sigterm_as_interrupt():
            return run(args)

    return one_line_errors(p.prog, guarded)
