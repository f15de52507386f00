"""`generate --seconds 30 --out clip.wav`: piano music from the bundled (or given) models."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_SECONDS = 3 * 3600  # longer requests are almost certainly a typo (and fill a disk)


SCRATCH_NOTE = (
    "Files: an output appears whole or not at all, and an existing one is replaced only with --force. "
    "While a clip is made, its float32 samples wait in an unnamed scratch file in the system temp "
    "folder ($TMPDIR, else /tmp; 4 bytes a sample: about 950 MB for 3 hours), which the system frees "
    "however generate ends, even on SIGKILL. SIGTERM and Ctrl-C end it with status 130."
)


def bundled_temperature() -> float:
    """The bundled model's default temperature (its surprise band's), for --help."""
    from audiogen.generation import pretrained_dir
    from audiogen.surprise_band import default_temperature, read_band

    return default_temperature(read_band(pretrained_dir("spec")))


def build_parser(prog: str = "generate") -> argparse.ArgumentParser:
    from audiogen.cli import add_version_option
    from audiogen.cli.arguments import OneLineParser  # usage errors in one line, like every refusal
    from audiogen.generation import DEFAULT_TEMPERATURE

    p = OneLineParser(
        prog=prog,
        description="Generate piano music. Without options: 30 s from the bundled models to clip.wav.",
        epilog=SCRATCH_NOTE,
    )
    p.add_argument("--seconds", type=float, default=30.0,
                   help=f"clip length in seconds, at least one frame of the model (about 12 ms) and at most "
                        f"{MAX_SECONDS}; with --out -, 'inf' plays until the reader stops (default: %(default)g)")
    p.add_argument("--out", default="clip.wav",
                   help="output file (.wav 16-bit, or .flac; peak-normalised to -1 dBFS, with provenance tags "
                        "that `audiogen info` prints); '-' streams WAV to standard output as it is made, at a fixed "
                        "gain lowered only where it would clip (a reader that "
                        "stops early, like `| head -c 100`, ends generate quietly with status 0); with --num, a "
                        "pattern like 'take-{i}.wav' or 'take-{i:02d}.flac' ({i} is the clip's number; write {{ "
                        "and }} for literal braces) or a name that gets -000, -001, ... (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="replace output files that exist (default: off: an existing file is refused)")
    p.add_argument("--seed", type=int,
                   help="random seed, same seed same file (default: a fresh one, printed); with --num, clip k "
                        "gets seed + k")
    p.add_argument("--num", type=int, default=1, help="number of clips, 1 to 10000 (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature, 0 to 10: lower is calmer, higher busier (default: the model's "
                        f"own: with its surprise band the band's, {bundled_temperature():g} for the bundled "
                        f"model; else {DEFAULT_TEMPERATURE:g}, the one the prior was trained at)")
    p.add_argument("--no-wash-guard", dest="wash_guard", action="store_false",
                   help="keep what the prior draws even where it washes (default: a stretch whose audio "
                        "turns into a broadband wash is drawn again, up to 9 times; see docs/priors.md)")
    p.add_argument("--no-surprise-band", dest="surprise_band", action="store_false",
                   help="sample at a fixed --temperature, 1.0 unless given (default: where the model carries a "
                        "surprise band, "
                        "as the bundled one does, the temperature follows how surprising the prior finds what "
                        "it drew, kept within the band it has on real music; see docs/priors.md)")
    p.add_argument("--no-mel-sharpening", dest="mel_sharpening", action="store_false",
                   help="vocode the log-mel as the VAE decodes it (default: where the model carries a mel "
                        "sharpening, as the bundled one does, the decoded log-mel is sharpened across mel bands "
                        "against the smearing of drawn latents; see docs/priors.md)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to run; auto takes CUDA when there is one (default: %(default)s)")
    p.add_argument("--model", help="spectrogram model folder (RUN/best of the prior stage) (default: the bundled one)")
    p.add_argument("--vocoder", help="vocoder folder (RUN/best of train_vocoder.py) (default: the bundled one)")
    p.add_argument("--like",
                   help="an audio file to make a variation of: the clip starts as a variation of its first "
                        "seconds and continues from them; only the part the clip uses is read (default: none)")
    p.add_argument("--variation", type=float, default=0.3,
                   help="how far from --like to move, 0..1 (default: %(default)s)")
    p.add_argument("--threads", type=int,
                   help="CPU threads; with 2 or more, clips of a minute or more run the prior, the VAE decoder "
                        "and the vocoder at once (on PyTorch one thread each; on onnxruntime the decoder and the "
                        "vocoder use all of them) and make what --threads 1 makes (default: "
                        "OMP_NUM_THREADS when set, else "
                        "all cores, or 1 when the load average says the cores are busy)")
    p.add_argument("--runtime", choices=["auto", "torch", "onnxruntime"], default="auto",
                   help="what runs the networks: onnxruntime (numpy and onnxruntime only, without importing torch; "
                        "several times faster on a CPU) needs the onnx extra and ONNX graphs of the models in the "
                        "cache: `audiogen export-onnx --cache` writes the bundled models' once (the quick start "
                        "does), `--model M --vocoder V --cache` those of others; the same seed makes the same "
                        "music either way, to float rounding. auto takes onnxruntime where it can (a CPU, a "
                        "mixture or token prior, no --like) and PyTorch otherwise, without a word (default: "
                        "%(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: off: a bar for clips of 20 s "
                                                        "or more)")
    add_version_option(p)
    return p


TEMPLATE_FIELD = "i"


def output_names(out: str, num: int) -> list[str]:
    """The file name of each clip: a pattern with ``{i}`` formatted per clip, else ``out`` itself
    for one clip and numbered names (``-000``, ``-001``, ...) for several.

    Raises:
        ValueError: a pattern with braces that do not match, a field other than ``{i}``, a
            format ``{i}`` cannot take, or names that repeat (one line, naming ``--out``).
    """
    if "{" in out or "}" in out:
        names = _format_pattern(out, num)
        if names is not None:
            return names
        out = out.replace("{{", "{").replace("}}", "}")  # only literal braces: a plain name
    if num == 1:
        return [out]
    path = Path(out)
    return [str(path.with_name(f"{path.stem}-{i:03d}{path.suffix or '.wav'}")) for i in range(num)]


def _format_pattern(out: str, num: int) -> list[str] | None:
    """``out`` formatted for clips 0 .. num-1, or None when it holds no field (only ``{{``/``}}``)."""
    import string

    hint = "write {i} for the clip's number, {{ and }} for literal braces"
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(out) if field is not None]
    except ValueError as err:
        raise ValueError(f"--out {out!r}: not a valid pattern ({err}); {hint}") from None
    if not fields:
        return None
    for field in fields:
        name = field.split(".")[0].split("[")[0]
        if name != TEMPLATE_FIELD:
            shown = "{" + field + "}"
            raise ValueError(f"--out {out!r}: unknown field {shown}; {hint}")
    try:
        names = [out.format(i=i) for i in range(num)]
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as err:
        raise ValueError(f"--out {out!r}: not a valid pattern ({err}); {hint}") from None
    if len(set(names)) < len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise ValueError(f"--out {out!r}: gives two clips the same name ({twice}); {hint}")
    return names


def default_threads() -> int:
    """All cores on an idle machine, one on a busy one.

    Every parallel region waits for its slowest thread, so when other processes already keep
    the cores busy, two threads made `generate` three times slower than one (docs/benchmarks.md).
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cores - 0.5
    except OSError:  # no load average on this platform
        busy = False
    return 1 if busy else cores


def prepare_device(choice: str, threads: int | None = None) -> str:
    """The torch device for ``--device auto|cpu|cuda``, with torch's CPU threads set."""
    import torch

    device = "cuda" if choice == "auto" and torch.cuda.is_available() else choice
    device = "cpu" if device == "auto" else device
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if threads is not None:
        torch.set_num_threads(threads)
    elif device == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(default_threads())
    return device


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad arguments before any model is loaded (ValueError with one clear line)."""
    import math

    endless = math.isinf(args.seconds) and args.seconds > 0 and args.out == "-"
    if not endless and (not math.isfinite(args.seconds) or args.seconds <= 0):
        raise ValueError(f"--seconds must be a positive number (or inf with --out -), got {args.seconds}")
    if not endless and args.seconds > MAX_SECONDS:
        raise ValueError(f"--seconds {args.seconds:g} is over the limit of {MAX_SECONDS} s (3 hours)")
    if args.num < 1 or args.num > 10_000:
        raise ValueError(f"--num must be between 1 and 10000, got {args.num}")
    # (None: the generator's default, set when it is loaded; importing it here would load torch)
    if args.temperature is not None and not (math.isfinite(args.temperature) and 0 <= args.temperature <= 10):
        raise ValueError(f"--temperature must be between 0 and 10, got {args.temperature}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if not 0 <= args.variation <= 1:
        raise ValueError(f"--variation must be between 0 and 1, got {args.variation}")
    if args.out == "-":
        if args.num != 1:
            raise ValueError("--out - writes one clip; use a file pattern with --num")
        return
    for name in output_names(args.out, args.num):
        check_output(name, args.force, (".wav", ".flac"))


def check_output(name: str, force: bool, suffixes: tuple[str, ...] | None = None) -> None:
    """Refuse an output name before any work: a suffix not in ``suffixes`` (None: any), a missing
    or unwritable folder, a folder in its place, or a file that exists without ``force``
    (ValueError, one line)."""
    from audiogen.audio import OutputExistsError

    if suffixes is not None and Path(name).suffix.lower() not in suffixes:
        raise ValueError(f"{name}: output must end in {' or '.join(suffixes)}")
    parent = Path(name).parent
    if not parent.is_dir():
        raise ValueError(f"{name}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{name}: folder {parent} is not writable")
    if os.path.isdir(name):
        raise ValueError(f"{name}: is a folder, not a file")
    if os.path.lexists(name) and not force:
        raise OutputExistsError(name)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the block runs, so a terminated command unwinds
    like Ctrl-C: every ``finally`` runs, nothing half-written stays, and the status is 130."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None, prog: str = "generate") -> int:
    from audiogen.cli import one_line_errors

    args = build_parser(prog).parse_args(argv)

    def run() -> int:
        with sigterm_as_interrupt():
            check_arguments(args)
            return _run(args)

    return one_line_errors(prog, run)


def _run(args: argparse.Namespace) -> int:
    import math

    from tqdm.auto import tqdm

    from audiogen.generation import stream_wav, write_clip

    hashes = model_hashes(args)
    generator = load_models(args, *hashes)
    generator.wash_guard = args.wash_guard
    if not args.surprise_band:
        generator.surprise_band = None
    if not args.mel_sharpening:
        generator.mel_sharpening = None
    endless = math.isinf(args.seconds)
    if args.temperature is None:
        args.temperature = generator.default_temperature
    total = None if endless else int(round(args.seconds * generator.sample_rate))
    if total is not None:
        check_length(total, generator, f"--seconds {args.seconds:g}")
    like_audio = None
    if args.like:
        from audiogen.audio import load_audio

        # only the seconds of --like that the clip uses are read: a 3-hour file costs what 10 s do
        # (an endless clip starts as a variation of the file's first minute)
        like_seconds = generator.like_seconds(total) if total is not None else ENDLESS_LIKE_SECONDS
        like_audio = load_audio(args.like, generator.sample_rate, seconds=like_seconds)[0]
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    log = sys.stderr
    if args.seed is None:
        print(f"seed {seed} (pass --seed {seed} to make the same clip again)", file=log)
    names = ["-"] if args.out == "-" else output_names(args.out, args.num)
    provenance = {**_clip_tags(args, seed, *hashes), "runtime": generator.runtime} if args.out != "-" else {}
    for index, name in enumerate(names):
        clip_seed = seed + index
        prefix = {"prefix": generator.variation_of(like_audio, args.variation, clip_seed)} if args.like else {}
        show = not args.quiet and args.seconds >= 20
        with tqdm(total=total, unit="sample", unit_scale=True, disable=not show, file=log,
                  desc=f"clip {index + 1}/{len(names)}", leave=False) as bar:
            if name == "-":
                # small chunks: the first audio leaves within a fraction of a second of the models loading
                chunks = generator.stream(args.seconds, clip_seed, args.temperature, **prefix,
                                          chunk_seconds=STREAM_CHUNK_SECONDS,
                                          vocoder_chunk_seconds=STREAM_CHUNK_SECONDS)
                stream_wav(chunks, sys.stdout.buffer, generator.sample_rate, total, progress=bar)
                return 0
            chunks = generator.stream(args.seconds, clip_seed, args.temperature, **prefix)
            write_clip(chunks, name, generator.sample_rate, progress=bar, force=args.force,
                       tags={**provenance, "seed": clip_seed})
        print(f"wrote {name} ({args.seconds:g} s, {generator.sample_rate} Hz, seed {clip_seed})", file=log)
    return 0


def model_folders(args: argparse.Namespace) -> tuple[Path, Path]:
    """--model and --vocoder, the bundled folders by default."""
    from audiogen.generation import pretrained_dir

    return Path(args.model or pretrained_dir("spec")), Path(args.vocoder or pretrained_dir("vocoder"))


def model_hashes(args: argparse.Namespace) -> tuple[str, str]:
    """The short hashes of the weights of --model and --vocoder: the clips' tags carry them, and
    they name the models' ONNX graphs."""
    from audiogen.clip_tags import model_hash

    return model_hash(model_folders(args)[0]), model_hash(model_folders(args)[1])


def load_models(args: argparse.Namespace, model_sha: str, vocoder_sha: str) -> Any:
    """The generator this run uses: on onnxruntime where :func:`onnx_graphs` finds graphs, else on
    PyTorch; its stages on threads of their own for long clips with two threads or more."""
    import math

    # the stages on threads of their own pay off on long clips only (see PIPELINE_MIN_SECONDS)
    long_clip = math.isinf(args.seconds) or args.seconds >= PIPELINE_MIN_SECONDS
    graphs = onnx_graphs(args, model_sha, vocoder_sha)
    if graphs is not None:
        from audiogen.onnx_generation import load_onnx_generator

        threads = args.threads or _env_threads() or default_threads()
        generator = load_onnx_generator(graphs, threads)
        generator.pipelined = threads >= 2 and long_clip
        return generator
    import torch

    from audiogen.generation import load_generator

    device = prepare_device(args.device, args.threads)
    generator = load_generator(args.model, args.vocoder, device=device)
    generator.pipelined = device == "cpu" and torch.get_num_threads() >= 2 and long_clip
    return generator


def onnx_graphs(args: argparse.Namespace, model_sha: str, vocoder_sha: str) -> Path | None:
    """The folder of ONNX graphs this run uses (:mod:`audiogen.onnx_generation`), or None for PyTorch.

    Decided without importing torch. ``--runtime auto`` takes PyTorch, silently, wherever onnxruntime
    cannot run the whole clip; ``--runtime onnxruntime`` says why in one line (ValueError).
    """
    from audiogen.onnx_generation import SourceIdentity, find_graphs, onnxruntime_available

    if args.runtime == "torch":
        return None
    graphs, why = None, None
    if args.like:
        why = "--like encodes its clip with the VAE's encoder, which runs on PyTorch"
    elif args.device == "cuda" or (args.device == "auto" and gpu_present()):
        why = "a GPU runs on PyTorch (pass --device cpu)"
    elif not onnxruntime_available():
        why = 'onnxruntime is not installed (pip install -e ".[onnx]")'
    else:
        folders = model_folders(args)
        graphs = find_graphs(SourceIdentity.of(folders[0], model_sha), SourceIdentity.of(folders[1], vocoder_sha))
        if graphs is None:
            why = ("no ONNX graphs of these model folders (the flow prior has none; for a mixture or token prior "
                   "`audiogen export-onnx --model M --vocoder V --cache` makes them once)")
    if why is not None and args.runtime == "onnxruntime":
        raise ValueError(f"--runtime onnxruntime: {why}")
    return graphs


# device nodes of the GPU drivers torch can use (NVIDIA's, and ROCm's, which torch also calls cuda):
# without them, --device auto means the CPU, which is known without importing torch
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd")


def gpu_present() -> bool:
    return any(os.path.exists(path) for path in GPU_DEVICE_FILES)


def _env_threads() -> int | None:
    """OMP_NUM_THREADS as a count, when it is one (torch follows it by itself; onnxruntime is told)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


ENDLESS_LIKE_SECONDS = 60.0
# stages on threads of their own pay off on long clips only: on PyTorch, measured in one run on an idle
# 2-core machine, 120 s took 0.93x the serial time and 30 s 1.15x (threads cost more than they hide)
PIPELINE_MIN_SECONDS = 60.0
STREAM_CHUNK_SECONDS = 2.0  # prior and vocoder chunks of --out -: first audio soon, little extra vocoder work


def _clip_tags(args: argparse.Namespace, seed: int, model_sha: str, vocoder_sha: str) -> dict:
    """The provenance a clip carries: what ``audiogen info`` prints and remakes it from."""
    from audiogen import __version__
    from audiogen.clip_tags import clip_tags

    return clip_tags(version=__version__, seed=seed, temperature=args.temperature, seconds=args.seconds,
                     model=args.model or "bundled", model_sha=model_sha,
                     vocoder=args.vocoder or "bundled", vocoder_sha=vocoder_sha,
                     like=args.like, variation=args.variation if args.like else None, wash_guard=args.wash_guard,
                     surprise_band=args.surprise_band, mel_sharpening=args.mel_sharpening)


def check_length(samples: int, generator: Any, what: str) -> None:
    """Refuse a clip shorter than one frame of the model (it would be a WAV of no music);
    ``what`` names the option or file in the message."""
    hop = generator.hop_length
    if samples < hop:
        raise ValueError(f"{what} is shorter than one frame of the model "
                         f"({hop} samples, {1000 * hop / generator.sample_rate:.1f} ms)")


if __name__ == "__main__":
    sys.exit(main())
