"""`audiogen app`: the models in a browser (Gradio), on this machine, with no network.

Four tabs, one per thing the models do: generate (length, seed, temperature, number of clips), a
variation of an uploaded clip, a morph between two clips, and the codec (an uploaded clip through
the VAE's float16 latents and back, with what that saves). Every result is a WAV to play or
download and a spectrogram picture; long work reports its progress.

The page works offline: Gradio's analytics are off, no share link is made, and the fonts and
scripts are served from the installed package. The server binds to 127.0.0.1 unless told otherwise.

The work is done by the ``*_clips`` functions below, which take a :class:`audiogen.api.Generator`
and a folder and return file paths, so they run (and are tested) without a browser.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from audiogen.api import Generator

MAX_CLIPS = 4  # audio players on the generate tab
MAX_APP_SECONDS = 120.0  # the length slider's end; longer clips belong to `generate` on the command line
MAX_UPLOAD_SECONDS = 600.0  # an uploaded clip longer than this is refused (memory, waiting)
STREAM_CHUNK_SECONDS = 2.0  # progress is reported after each piece of this much music
# no "share" button: it posts to Hugging Face Spaces discussions, which needs the network
AUDIO_BUTTONS = ["download"]
IMAGE_BUTTONS = ["download", "fullscreen"]

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is being done)


def _no_progress(fraction: float, desc: str) -> None:
    pass


def new_folder(root: Path) -> Path:
    """A fresh folder for one request's files (requests from two browser tabs never collide)."""
    return Path(tempfile.mkdtemp(prefix="request-", dir=root))


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> str:
    from audiogen.audio import save_audio

    save_audio(path, audio, sample_rate)
    return str(path)


def write_spectrograms(path: Path, gen: Generator, clips: dict[str, np.ndarray], title: str = "") -> str:
    """A PNG of the clips' log-mels (n_mels × frames each), stacked, on one colour scale."""
    from audiogen.plots import save_spectrograms

    panels = {name: gen.mel(audio, gen.sample_rate) for name, audio in clips.items()}
    save_spectrograms(path, panels, gen.sample_rate / gen.hop_length, title)
    return str(path)


def load_upload(gen: Generator, path: str | None, what: str) -> np.ndarray:
    """An uploaded file as mono float32 at the generator's rate, or a ValueError naming it."""
    from audiogen.audio import audio_info, load_audio

    if not path:
        raise ValueError(f"upload {what} first")
    seconds = audio_info(path)[2]  # from the header: a long file is refused before it is decoded
    if seconds > MAX_UPLOAD_SECONDS:
        raise ValueError(f"{what} is {seconds:.0f} s long; the app takes clips up to "
                         f"{MAX_UPLOAD_SECONDS:.0f} s (use the command line for longer ones)")
    return load_audio(path, gen.sample_rate)[0]


def _seed(value: float | None) -> int | None:
    """A seed box's value: empty means a fresh seed."""
    if value is None or value == "":
        return None
    if float(value) != int(value) or value < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {value}")
    return int(value)


def _played(gen: Generator, seconds: float, seed: int, temperature: float, progress: Progress,
            done: float, share: float) -> np.ndarray:
    """One generated clip, normalised as ``generate`` writes it, reporting progress as it streams.

    ``done`` and ``share``: the fraction of the request finished before this clip, and this clip's part.
    """
    total = round(seconds * gen.sample_rate)
    pieces, made = [], 0
    for piece in gen.stream(seconds, seed, temperature, chunk_seconds=STREAM_CHUNK_SECONDS):
        pieces.append(piece)
        made += len(piece)
        progress(done + share * made / total, f"{made / gen.sample_rate:.0f} of {seconds:g} s")
    return _normalized(np.concatenate(pieces))


def _normalized(audio: np.ndarray) -> np.ndarray:
    """At the -1 dBFS peak ``generate`` writes, so results play at one level."""
    from audiogen.audio import peak_normalize
    from audiogen.generation import TARGET_PEAK

    return peak_normalize(audio, TARGET_PEAK)


def generate_clips(gen: Generator, folder: Path, seconds: float, seed: int | None, temperature: float, num: int,
                   progress: Progress = _no_progress) -> tuple[list[str], str, str]:
    """New clips.

    Clip ``i`` uses ``seed + i``, as ``generate --seed S --num N`` does, so the files are the same.

    Returns:
        (WAV paths, one per clip; a PNG of their spectrograms; a line saying how to make them again).
    """
    if int(num) != num or not 1 <= num <= MAX_CLIPS:
        raise ValueError(f"number of clips must be between 1 and {MAX_CLIPS}, got {num}")
    if not 0 < seconds <= MAX_APP_SECONDS:
        raise ValueError(f"length must be in (0, {MAX_APP_SECONDS:g}] s, got {seconds}")
    num = int(num)
    first = seed if seed is not None else secrets.randbelow(2**31)
    clips = {f"seed {first + i}": _played(gen, seconds, first + i, temperature, progress, i / num, 1 / num)
             for i in range(num)}
    paths = [write_wav(folder / f"audiogen-seed{first + i}.wav", audio, gen.sample_rate)
             for i, audio in enumerate(clips.values())]
    progress(1.0, "drawing the spectrograms")
    picture = write_spectrograms(folder / "spectrograms.png", gen, clips,
                                 f"{seconds:g} s at temperature {temperature:g}")
    again = f"generate --seconds {seconds:g} --seed {first} --temperature {temperature:g}"
    again += f" --num {num} --out 'take-{{i}}.wav'" if num > 1 else " --out clip.wav"
    seeds = f"{first} to {first + num - 1}" if num > 1 else f"{first}"
    return paths, picture, f"Seed {seeds}. The same from the command line: `{again}`"


def variation_clip(gen: Generator, folder: Path, upload: str | None, amount: float, seed: int | None,
                   seconds: float | None, temperature: float, progress: Progress = _no_progress
                   ) -> tuple[str, str, str]:
    """A variation of an uploaded clip (``generate --like``); ``seconds`` None or 0: the clip's length.

    Returns:
        (WAV path; a PNG of the clip's and the variation's spectrograms; a line on what was made).
    """
    progress(0.0, "reading the clip")
    clip = load_upload(gen, upload, "a clip")
    seed = seed if seed is not None else secrets.randbelow(2**31)
    seconds = seconds or None
    progress(0.2, "encoding and varying")
    audio = gen.variation(clip, gen.sample_rate, amount=amount, seed=seed, seconds=seconds, temperature=temperature)
    path = write_wav(folder / f"variation-{amount:g}-seed{seed}.wav", audio, gen.sample_rate)
    progress(0.9, "drawing the spectrograms")
    picture = write_spectrograms(folder / "variation.png", gen, {"clip": _normalized(clip), "variation": audio})
    again = f"generate --like CLIP --variation {amount:g} --seed {seed} --seconds {len(audio) / gen.sample_rate:g}"
    return path, picture, f"Seed {seed}. The same from the command line: `{again}`"


def morph_clip(gen: Generator, folder: Path, first: str | None, second: str | None, seconds: float | None,
               at: float | None, progress: Progress = _no_progress) -> tuple[str, str, str]:
    """The first upload turning into the second (``audiogen morph``); ``at`` in [0, 1]: a fixed blend instead.

    Returns:
        (WAV path; a PNG of both clips' and the morph's spectrograms; a line on what was made).
    """
    progress(0.0, "reading the clips")
    a, b = load_upload(gen, first, "the first clip"), load_upload(gen, second, "the second clip")
    progress(0.2, "encoding, blending and decoding")
    audio = gen.morph(a, b, gen.sample_rate, seconds=seconds or None, at=at)
    path = write_wav(folder / ("morph.wav" if at is None else f"blend-{at:g}.wav"), audio, gen.sample_rate)
    progress(0.9, "drawing the spectrograms")
    picture = write_spectrograms(folder / "morph.png", gen,
                                 {"first": _normalized(a), "second": _normalized(b), "result": audio})
    what = "a morph" if at is None else f"a blend at {at:g}"
    again = "audiogen morph FIRST SECOND" + (f" --at {at:g}" if at is not None else "") + \
            (f" --seconds {seconds:g}" if seconds else "") + " --out morph.wav"
    return path, picture, f"{what.capitalize()}, {len(audio) / gen.sample_rate:.1f} s. From the command line: `{again}`"


def codec_clip(gen: Generator, folder: Path, upload: str | None, progress: Progress = _no_progress
               ) -> tuple[str, str, str, str]:
    """An uploaded clip through the codec: encoded to float16 latents and decoded again.

    Returns:
        (WAV path of the decoded clip; the latents as an ``audiogen encode`` .npz, which
        ``audiogen decode`` reads; a PNG of the original's and the decoded clip's spectrograms;
        the compression figures in a line).
    """
    import torch

    from audiogen.cli.codec import save_latents

    progress(0.0, "reading the clip")
    clip = load_upload(gen, upload, "a clip")
    progress(0.2, "encoding")
    latents = gen.encode(clip, gen.sample_rate)
    stored = latents.astype(np.float16).astype(np.float32)  # what the .npz holds
    latent_file = folder / "latents.npz"
    save_latents(latent_file, torch.from_numpy(stored)[None], len(clip), gen.pipeline)
    progress(0.4, "decoding")
    audio = gen.decode(stored, samples=len(clip), normalize=True)
    path = write_wav(folder / "decoded.wav", audio, gen.sample_rate)
    progress(0.8, "measuring")
    report = gen.compression(clip, gen.sample_rate)
    picture = write_spectrograms(folder / "codec.png", gen, {"original": _normalized(clip), "decoded": audio})
    return path, str(latent_file), picture, compression_line(report, latents.shape)


def compression_line(report: dict[str, float], shape: tuple[int, ...]) -> str:
    """The codec's figures as one sentence (:meth:`audiogen.api.Generator.compression` gives them)."""
    return (f"{report['seconds']:.1f} s of audio in {report['latent_bytes']:,.0f} bytes of float16 latents "
            f"({shape[0]} channels × {shape[1]} frames at {report['latent_rate_hz']:.1f} Hz): "
            f"**{report['ratio']:.1f}× smaller** than 16-bit PCM ({report['pcm_bytes']:,.0f} bytes), "
            f"{report['kbps']:.1f} kbit/s; mean log-mel error after the round trip {report['mel_l1']:.3f}.")


# --- the page ---------------------------------------------------------------------------------


def _import_gradio():
    """Gradio with its telemetry off (set before the import: it reads the variable at import too)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    return gr


def _progress_of(gr_progress: Any) -> Progress:
    return lambda fraction, desc: gr_progress(min(max(fraction, 0.0), 1.0), desc=desc)


def _as_user_error(gr: Any, run: Callable[[], Any]) -> Any:
    """A bad input shows as one line in the page (gr.Error), never as a traceback."""
    try:
        return run()
    except ValueError as err:  # AudioError, CheckpointError and the API's argument errors are ValueErrors
        raise gr.Error(str(err)) from None


def build_app(gen: Generator, root: str | Path | None = None, title: str = "audiogen") -> Any:
    """The Gradio page over a loaded generator.

    Args:
        gen: an :class:`audiogen.api.Generator`.
        root: where results are written (one folder per request); default a temporary folder
            removed when the process exits.
        title: the browser tab's title.

    Returns:
        a ``gradio.Blocks``; call :func:`launch` (or its ``launch``) to serve it. The endpoints a
        ``gradio_client`` can call are ``/generate``, ``/variation``, ``/morph`` and ``/codec``.
    """
    gr = _import_gradio()
    if root is None:
        holder = tempfile.TemporaryDirectory(prefix="audiogen-app-")
        root = Path(holder.name)
    else:
        holder = None
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
    sr = gen.sample_rate
    model = "a VAE and latent prior" if gen.has_prior else "a VAE (no prior: generate and variation are off)"

    # gradio removes cached copies of results after a day; the originals go with `holder`
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        demo.audiogen_results = holder  # keeps the temporary folder alive as long as the app
        gr.Markdown(f"# audiogen\nPiano music from {model} and a vocoder, {sr:,} Hz mono, made on this machine. "
                    "Every result plays here and downloads as a 16-bit WAV; its spectrogram is below it.")
        with gr.Tab("Generate"):
            with gr.Row():
                seconds = gr.Slider(1, MAX_APP_SECONDS, value=10, step=1, label="length (s)")
                temperature = gr.Slider(0.5, 1.5, value=gen.default_temperature, step=0.01, label="temperature",
                                        info="lower is calmer, higher busier (this model's default: "
                                             f"{gen.default_temperature:g})")
            with gr.Row():
                seed = gr.Number(value=None, precision=0, label="seed", info="empty: a fresh one, shown below")
                num = gr.Slider(1, MAX_CLIPS, value=1, step=1, label="number of clips",
                                info="clip i uses seed + i")
            go = gr.Button("Generate", variant="primary", interactive=gen.has_prior)
            players = [gr.Audio(type="filepath", label=f"clip {i + 1}", visible=i == 0, interactive=False,
                                buttons=AUDIO_BUTTONS)
                       for i in range(MAX_CLIPS)]
            picture = gr.Image(type="filepath", label="spectrograms (log-mel)", interactive=False,
                               buttons=IMAGE_BUTTONS)
            info = gr.Markdown()

            def on_generate(seconds, seed, temperature, num, progress=gr.Progress()):  # noqa: B008 (gradio's idiom)
                paths, png, line = _as_user_error(gr, lambda: generate_clips(
                    gen, new_folder(root), float(seconds), _seed(seed), float(temperature), int(num),
                    _progress_of(progress)))
                return [*paths, *[None] * (MAX_CLIPS - len(paths)), png, line]

            # as many players as clips asked for (kept out of the endpoint, which returns plain paths)
            num.change(lambda n: [gr.Audio(visible=i < n) for i in range(MAX_CLIPS)], num, players,
                       api_visibility="private", queue=False)
            go.click(on_generate, [seconds, seed, temperature, num], [*players, picture, info],
                     api_name="generate", concurrency_id="models")

        with gr.Tab("Variation"):
            gr.Markdown("A clip's latents moved a little towards new music; the prior continues "
                        "from them when the length is longer than the clip (`generate --like`).")
            upload = gr.Audio(type="filepath", sources=["upload", "microphone"], label="a clip")
            with gr.Row():
                amount = gr.Slider(0, 1, value=0.3, step=0.05, label="how far from the clip",
                                   info="0 keeps it, 1 moves a whole posterior spread away")
                v_seconds = gr.Number(value=0, label="length (s)", info="0: the clip's length", minimum=0,
                                      maximum=MAX_APP_SECONDS)
            with gr.Row():
                v_seed = gr.Number(value=None, precision=0, label="seed", info="empty: a fresh one")
                v_temperature = gr.Slider(0.5, 1.5, value=1.0, step=0.05, label="temperature (after the clip)")
            v_go = gr.Button("Make a variation", variant="primary", interactive=gen.has_prior)
            v_audio = gr.Audio(type="filepath", label="variation", interactive=False, buttons=AUDIO_BUTTONS)
            v_picture = gr.Image(type="filepath", label="spectrograms: the clip, the variation", interactive=False,
                                 buttons=IMAGE_BUTTONS)
            v_info = gr.Markdown()

            def on_variation(upload, amount, seconds, seed, temperature, progress=gr.Progress()):  # noqa: B008
                return _as_user_error(gr, lambda: variation_clip(
                    gen, new_folder(root), upload, float(amount), _seed(seed), float(seconds or 0),
                    float(temperature), _progress_of(progress)))

            v_go.click(on_variation, [upload, amount, v_seconds, v_seed, v_temperature],
                       [v_audio, v_picture, v_info], api_name="variation", concurrency_id="models")

        with gr.Tab("Morph"):
            gr.Markdown("The first clip turning into the second, frame by frame through the latent space "
                        "(`audiogen morph`), or a fixed blend of the two.")
            with gr.Row():
                first = gr.Audio(type="filepath", sources=["upload"], label="first clip")
                second = gr.Audio(type="filepath", sources=["upload"], label="second clip")
            with gr.Row():
                m_seconds = gr.Number(value=0, label="length (s)", info="0: the longer clip's", minimum=0,
                                      maximum=MAX_APP_SECONDS)
                blend = gr.Checkbox(value=False, label="a fixed blend instead of a morph")
                at = gr.Slider(0, 1, value=0.5, step=0.05, label="blend (0: first, 1: second)")
            m_go = gr.Button("Morph", variant="primary")
            m_audio = gr.Audio(type="filepath", label="morph", interactive=False, buttons=AUDIO_BUTTONS)
            m_picture = gr.Image(type="filepath", label="spectrograms: first, second, result", interactive=False,
                                 buttons=IMAGE_BUTTONS)
            m_info = gr.Markdown()

            def on_morph(first, second, seconds, blend, at, progress=gr.Progress()):  # noqa: B008
                return _as_user_error(gr, lambda: morph_clip(
                    gen, new_folder(root), first, second, float(seconds or 0), float(at) if blend else None,
                    _progress_of(progress)))

            m_go.click(on_morph, [first, second, m_seconds, blend, at], [m_audio, m_picture, m_info],
                       api_name="morph", concurrency_id="models")

        with gr.Tab("Codec"):
            gr.Markdown("A clip encoded to the VAE's float16 latents and decoded again (`audiogen encode`, "
                        "`audiogen decode`): hear what the compression keeps.")
            c_upload = gr.Audio(type="filepath", sources=["upload", "microphone"], label="a clip")
            c_go = gr.Button("Encode and decode", variant="primary")
            c_info = gr.Markdown()
            c_audio = gr.Audio(type="filepath", label="decoded", interactive=False, buttons=AUDIO_BUTTONS)
            c_latents = gr.File(label="the latents (.npz; `audiogen decode` reads it)", interactive=False)
            c_picture = gr.Image(type="filepath", label="spectrograms: original, decoded", interactive=False,
                                 buttons=IMAGE_BUTTONS)

            def on_codec(upload, progress=gr.Progress()):  # noqa: B008
                path, latents, png, line = _as_user_error(gr, lambda: codec_clip(
                    gen, new_folder(root), upload, _progress_of(progress)))
                return line, path, latents, png

            c_go.click(on_codec, [c_upload], [c_info, c_audio, c_latents, c_picture], api_name="codec",
                       concurrency_id="models")
    # one request at a time over the models: they share the CPU threads, and a second request
    # running beside the first would only make both slower
    demo.queue(default_concurrency_limit=1)
    return demo


def launch(demo: Any, host: str = "127.0.0.1", port: int = 7860) -> str:
    """Start serving the page in a background thread, with no share link; returns its local URL.

    ``demo.close()`` stops it. ``host`` 127.0.0.1 keeps it to this machine; 0.0.0.0 opens it to the network.
    """
    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                            prevent_thread_lock=True, show_error=True, ssr_mode=False, quiet=True)
    return url
