"""The Python API: piano music as numpy arrays, for notebooks and other programs.

    from audiogen import Generator

    gen = Generator.from_pretrained()              # the models bundled with audiogen, on the CPU
    audio = gen.generate(seconds=10, seed=1)       # float32 (220500,), peak at -1 dBFS
    gen.sample_rate                                # 22050

Every method takes and returns plain numpy arrays: audio is mono float32 ``(samples,)`` at
:attr:`Generator.sample_rate` (inputs at any rate are resampled), log-mels are ``(n_mels, frames)``
in natural-log magnitude, latents ``(latent_dim, latent_frames)``. The same seed gives the same
audio as ``generate --seed``. Bad arguments raise one :class:`ValueError` that names the argument.
This module wraps :mod:`audiogen.generation` and :mod:`audiogen.latents`; it adds no model code.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiogen.generation import TARGET_PEAK, load_generator, pretrained_dir

MAX_SECONDS = 3 * 3600  # as for `generate --seconds`: longer is almost certainly a typo
MAX_CLIPS = 10_000
MAX_TEMPERATURE = 10.0


class Generator:
    """The bundled (or a given) spectrogram VAE, latent prior and vocoder behind a numpy interface.

    Build one with :meth:`from_pretrained`. Attributes:

    Attributes:
        sample_rate: audio samples per second of every waveform in and out (Hz).
        last_seed: the seed the latest :meth:`generate`, :meth:`stream` or :meth:`variation` used
            (the first clip's; clip ``i`` of ``num`` uses ``last_seed + i``), so a clip made with
            ``seed=None`` can be made again.
    """

    def __init__(self, pipeline: Any):
        """Wrap a loaded :class:`audiogen.generation.Generator` (use :meth:`from_pretrained`)."""
        self.pipeline = pipeline
        self.last_seed: int | None = None

    @classmethod
    def from_pretrained(cls, model_dir: str | Path | None = None, vocoder_dir: str | Path | None = None,
                        device: str = "cpu", threads: int | None = None, wash_guard: bool = True,
                        surprise_band: bool = True, mel_sharpening: bool = True) -> Generator:
        """Load exported model folders; nothing is downloaded.

        Args:
            model_dir: a spectrogram model folder (``RUN/best`` of a VAE or prior run); None: the
                bundled one. A VAE-only folder loads too; it encodes, decodes and morphs, but
                :meth:`generate`, :meth:`stream` and :meth:`variation` need a prior.
            vocoder_dir: a vocoder folder (``RUN/best`` of ``train_vocoder.py``); None: bundled.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"`` (CUDA when available).
            threads: torch's CPU threads (process-wide); None leaves torch's setting alone.
            wash_guard: draw again a stretch whose audio turns into a broadband wash
                (:mod:`audiogen.wash_guard`), as ``generate`` does; False keeps what the prior draws.
            surprise_band: where the model folder carries a surprise band (the bundled one does),
                let the temperature follow the prior's surprise at what it drew, within that band
                (:mod:`audiogen.surprise_band`), as ``generate`` does; False: a fixed temperature.
            mel_sharpening: where the model folder carries a mel sharpening (the bundled one
                does), sharpen the log-mel decoded from what the prior drew before vocoding it
                (:mod:`audiogen.mel_sharpening`), as ``generate`` does; False: vocode it as decoded.

        Raises:
            ValueError: a bad device or thread count; a missing or incomplete folder
                (:class:`~audiogen.checkpoint.CheckpointError`, a ValueError); a vocoder made
                for another frontend (:class:`~audiogen.frontend.FrontendMismatchError`).
        """
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise ValueError(f"threads must be a whole number of at least 1, got {threads!r}")
            torch.set_num_threads(threads)
        chosen = _device(device)
        spec_dir = Path(model_dir) if model_dir is not None else pretrained_dir("spec")
        with_prior = (spec_dir / "prior.safetensors").exists() or not spec_dir.is_dir()
        pipeline = load_generator(model_dir, vocoder_dir, device=chosen, with_prior=with_prior)
        pipeline.wash_guard = bool(wash_guard)
        if not surprise_band:
            pipeline.surprise_band = None
        if not mel_sharpening:
            pipeline.mel_sharpening = None
        return cls(pipeline)

    @property
    def sample_rate(self) -> int:
        """Audio samples per second (Hz) of every waveform this generator takes or makes."""
        return self.pipeline.sample_rate

    @property
    def n_mels(self) -> int:
        """Mel bands of :meth:`mel` and :meth:`vocode`."""
        return self.pipeline.frontend.config.n_mels

    @property
    def hop_length(self) -> int:
        """Audio samples per mel frame."""
        return self.pipeline.frontend.config.hop_length

    @property
    def latent_dim(self) -> int:
        """Channels of the latents of :meth:`encode`."""
        return self.pipeline.vae.latent_dim

    @property
    def samples_per_latent(self) -> int:
        """Audio samples per latent frame (hop length × the VAE's time ratio)."""
        return self.hop_length * self.pipeline.vae.time_ratio

    @property
    def default_temperature(self) -> float:
        """The temperature :meth:`generate` samples at when given none: the model's surprise band's
        (1.03 for the bundled model) while it is on, else 1.0, the one the prior was trained at."""
        return self.pipeline.default_temperature

    @property
    def has_prior(self) -> bool:
        """Whether the model folder held a latent prior (needed to generate)."""
        return self.pipeline.prior is not None

    def generate(self, seconds: float, seed: int | None = None, temperature: float | None = None,
                 num: int = 1, normalize: bool = True) -> np.ndarray:
        """New piano music.

        Args:
            seconds: length of each clip, > 0 (at most 3 hours).
            seed: the random seed; clip ``i`` uses ``seed + i``, as ``generate --seed S --num N``
                does, so the arrays match its files. None draws a fresh one (see :attr:`last_seed`).
            temperature: the prior's sampling temperature in [0, 10]: lower is calmer, higher busier;
                None: :attr:`default_temperature`.
            num: how many clips.
            normalize: scale each clip to a -1 dBFS peak, as ``generate`` writes files; False keeps
                the vocoder's raw level (what :meth:`stream` yields).

        Returns:
            float32 audio ``(samples,)`` for ``num=1``, ``(num, samples)`` otherwise, with
            ``samples = round(seconds * sample_rate)``.
        """
        _check_seconds(seconds)
        _check_temperature(temperature)
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or not 1 <= num <= MAX_CLIPS:
            raise ValueError(f"num must be a whole number between 1 and {MAX_CLIPS}, got {num!r}")
        self._need_prior("generate")
        first = self._seed(seed)
        clips = [self._finish(self.pipeline.generate(seconds, first + i, temperature), normalize)
                 for i in range(int(num))]
        return clips[0] if num == 1 else np.stack(clips)

    def stream(self, seconds: float | None = None, seed: int | None = None,
               temperature: float | None = None, chunk_seconds: float = 2.0) -> Iterator[np.ndarray]:
        """New piano music chunk by chunk, in bounded memory, for playing while it is made.

        The chunks join without seams (every stage carries context across them). They are at the
        vocoder's raw level, not normalised: a stream has no end to take the peak of.

        Args:
            seconds: total length (> 0); None streams forever, until the caller stops iterating.
            seed, temperature: as in :meth:`generate`.
            chunk_seconds: how much music the prior writes per step (> 0); smaller gives the first
                audio sooner and costs more vocoder work per second (each piece is run with 64 mel
                frames of context on either side). The samples do not depend on it, to float rounding.

        Yields:
            float32 audio pieces ``(n,)``; for a finite stream they add up to exactly
            ``round(seconds * sample_rate)`` samples and equal ``generate(..., normalize=False)`` to
            float rounding.
        """
        if seconds is not None:
            _check_seconds(seconds)
        _check_temperature(temperature)
        if not _is_number(chunk_seconds) or not 0 < chunk_seconds <= 60:
            raise ValueError(f"chunk_seconds must be a number in (0, 60], got {chunk_seconds!r}")
        self._need_prior("stream")
        return self.pipeline.stream(math.inf if seconds is None else seconds, self._seed(seed), temperature,
                                    chunk_seconds=chunk_seconds, vocoder_chunk_seconds=chunk_seconds)

    def mel(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """The log-mel spectrogram the models work on.

        Args:
            audio: mono ``(samples,)`` float (or integer PCM, scaled to [-1, 1]) at ``sr`` Hz.
            sr: its sample rate; it is resampled to :attr:`sample_rate` first.

        Returns:
            float32 ``(n_mels, 1 + samples' // hop_length)``, natural log of the mel magnitude
            (``samples'`` counted at :attr:`sample_rate`).
        """
        return self._mel_tensor(self._audio(audio, sr, "audio")).cpu().numpy()

    def vocode(self, mel: np.ndarray) -> np.ndarray:
        """Copy synthesis: a log-mel spectrogram back to audio with the vocoder.

        Args:
            mel: ``(n_mels, frames)`` as :meth:`mel` makes it.

        Returns:
            float32 ``(frames * hop_length,)`` at :attr:`sample_rate`, at the vocoder's raw level.
        """
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 2 or mel.shape[0] != self.n_mels or mel.shape[1] < 1:
            raise ValueError(f"mel must be (n_mels={self.n_mels}, frames >= 1), got shape {mel.shape}")
        if not np.isfinite(mel).all():
            raise ValueError("mel contains NaN or Inf")
        return self.pipeline.vocode(mel).astype(np.float32, copy=False)

    def encode(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """The VAE's latents of a clip (its posterior means): the codec's compressed form.

        Args:
            audio: mono ``(samples,)`` at ``sr`` Hz (resampled to :attr:`sample_rate`).
            sr: its sample rate.

        Returns:
            float32 ``(latent_dim, ceil((1 + samples' // hop_length) / time_ratio))``, one frame per
            :attr:`samples_per_latent` samples (``samples'`` counted at :attr:`sample_rate`).
        """
        return self.pipeline.encode(self._audio(audio, sr, "audio"))[0].float().cpu().numpy()

    def decode(self, latents: np.ndarray, samples: int | None = None, normalize: bool = False) -> np.ndarray:
        """Audio from latents (the VAE decoder, then the vocoder).

        Args:
            latents: ``(latent_dim, frames)`` (or ``(1, latent_dim, frames)``) as :meth:`encode` makes.
            samples: output length; pass the original clip's length for a round trip of the same
                size. None: ``frames * samples_per_latent``.
            normalize: scale to a -1 dBFS peak (``audiogen decode`` does); False keeps the raw level.

        Returns:
            float32 ``(samples,)`` at :attr:`sample_rate`.
        """
        z = self._latents(latents)
        samples = z.shape[-1] * self.samples_per_latent if samples is None else samples
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ValueError(f"samples must be a whole number >= 1, got {samples!r}")
        return self._render(z, int(samples), normalize)

    def variation(self, audio: np.ndarray, sr: int, amount: float = 0.3, seed: int | None = None,
                  seconds: float | None = None, temperature: float | None = None,
                  normalize: bool = True) -> np.ndarray:
        """A new clip that starts as a variation of ``audio`` (``generate --like``).

        The clip's latents are moved ``amount`` of a posterior spread towards fresh noise; the prior
        then continues from them when ``seconds`` is longer than the clip.

        Args:
            audio: mono ``(samples,)`` at ``sr`` Hz.
            sr: its sample rate.
            amount: in [0, 1]: 0 keeps the clip's own latents (a codec round trip), 1 moves a whole
                posterior spread away.
            seed: the random seed (None: a fresh one, see :attr:`last_seed`).
            seconds: output length (default: the clip's); beyond the clip the prior goes on.
            temperature: the prior's temperature for what comes after the clip.
            normalize: as in :meth:`generate`.

        Returns:
            float32 ``(round(seconds * sample_rate),)``.
        """
        if not _is_number(amount) or not 0 <= amount <= 1:
            raise ValueError(f"amount must be a number between 0 and 1, got {amount!r}")
        _check_temperature(temperature)
        if seconds is not None:
            _check_seconds(seconds)
        self._need_prior("variation")
        clip = self._audio(audio, sr, "audio")
        seed = self._seed(seed)
        seconds = len(clip) / self.sample_rate if seconds is None else seconds
        prefix = self.pipeline.variation_of(clip, float(amount), seed)
        return self._finish(self.pipeline.generate(seconds, seed, temperature, prefix=prefix), normalize)

    def morph(self, a: np.ndarray, b: np.ndarray, sr: int, seconds: float | None = None, at: float | None = None,
              spherical: bool = True, normalize: bool = True) -> np.ndarray:
        """``a`` turning into ``b``: their latents interpolated frame by frame (``audiogen morph``).

        Both clips are stretched in time to the output's length first.

        Args:
            a: the clip the morph starts as, mono ``(samples_a,)`` at ``sr`` Hz.
            b: the clip it ends as, mono ``(samples_b,)`` at ``sr`` Hz.
            sr: their sample rate.
            seconds: output length in (0, 3600] (default: the longer clip).
            at: a fixed blend in [0, 1] instead of a morph (0 is ``a``, 1 is ``b``).
            spherical: slerp the latents (keeps their scale); False blends linearly.
            normalize: as in :meth:`generate`.

        Returns:
            float32 ``(round(seconds * sample_rate),)``.
        """
        from audiogen.latents import interpolate

        if seconds is not None and (not _is_number(seconds) or not 0 < seconds <= 3600):
            raise ValueError(f"seconds must be a number in (0, 3600], got {seconds!r}")
        if at is not None and (not _is_number(at) or not 0 <= at <= 1):
            raise ValueError(f"at must be a number between 0 and 1, got {at!r}")
        clips = [self._audio(a, sr, "a"), self._audio(b, sr, "b")]
        z_a, z_b = (self.pipeline.encode(clip) for clip in clips)
        samples = round(seconds * self.sample_rate) if seconds is not None else max(len(c) for c in clips)
        # as many latent frames as the output's mel needs (what `audiogen morph` decodes)
        length = math.ceil((samples // self.hop_length + 1) / self.pipeline.vae.time_ratio)
        t = float(at) if at is not None else torch.linspace(0.0, 1.0, length)
        z = interpolate(z_a, z_b, t, length=length, spherical=spherical)
        return self._render(z, samples, normalize)

    def compression(self, audio: np.ndarray, sr: int) -> dict[str, float]:
        """What the codec (float16 latents) costs and loses on a clip, as ``audiogen encode`` reports.

        Returns:
            ``seconds``; ``latent_bytes`` (float16) and ``pcm_bytes`` (16-bit mono PCM of the same
            length); ``ratio`` (pcm / latent); ``kbps`` of the latents; ``latent_rate_hz``;
            ``latent_dim``; ``mel_l1``, the mean |log-mel error| after the float16 round trip.
        """
        from audiogen.latents import compression_report

        clip = self._audio(audio, sr, "audio")
        return compression_report(self.pipeline.vae, self._mel_tensor(clip), num_samples=len(clip))

    # --- checks and conversions -------------------------------------------------------------

    def _audio(self, audio: np.ndarray, sr: int, name: str) -> np.ndarray:
        """Mono float32 at the generator's rate, or a ValueError naming ``name``."""
        from audiogen.audio import resample

        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr < 1:
            raise ValueError(f"sr must be a sample rate in Hz (a whole number >= 1), got {sr!r}")
        clip = np.asarray(audio)
        if clip.ndim != 1:
            raise ValueError(f"{name} must be mono, shape (samples,), got shape {clip.shape} "
                             "(average the channels first, e.g. audio.mean(axis=-1))")
        if clip.size == 0:
            raise ValueError(f"{name} is empty")
        if np.issubdtype(clip.dtype, np.integer):  # PCM as soundfile or gr.Audio give it
            clip = clip / float(np.iinfo(clip.dtype).max)
        elif not np.issubdtype(clip.dtype, np.floating):
            raise ValueError(f"{name} must hold float or integer samples, got dtype {clip.dtype}")
        clip = clip.astype(np.float32)
        if not np.isfinite(clip).all():
            raise ValueError(f"{name} contains NaN or Inf samples")
        return resample(clip, int(sr), self.sample_rate)

    def _latents(self, latents: np.ndarray) -> torch.Tensor:
        z = torch.as_tensor(np.asarray(latents, dtype=np.float32))
        if z.dim() == 3 and z.shape[0] == 1:
            z = z[0]
        if z.dim() != 2 or z.shape[0] != self.latent_dim or z.shape[1] < 1:
            raise ValueError(f"latents must be (latent_dim={self.latent_dim}, frames >= 1), "
                             f"got shape {tuple(np.shape(latents))}")
        if not torch.isfinite(z).all():
            raise ValueError("latents contain NaN or Inf")
        return z[None]

    def _render(self, z: torch.Tensor, samples: int, normalize: bool) -> np.ndarray:
        parts = list(self.pipeline.render([z], samples))
        return self._finish(np.concatenate(parts) if parts else np.zeros(0, np.float32), normalize)

    @torch.inference_mode()
    def _mel_tensor(self, clip: np.ndarray) -> torch.Tensor:
        return self.pipeline.frontend(torch.as_tensor(clip, device=self.pipeline.device))

    def _finish(self, audio: np.ndarray, normalize: bool) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not np.isfinite(audio).all():
            raise ValueError("the model produced NaN/Inf samples (are its weights trained?)")
        return _peak_normalize(audio) if normalize else audio

    def _need_prior(self, what: str) -> None:
        if not self.has_prior:
            raise ValueError(f"{what} needs a latent prior; this model folder holds only a VAE "
                             "(pass a prior run's RUN/best, or the bundled model)")

    def _seed(self, seed: int | None) -> int:
        if seed is None:
            seed = secrets.randbelow(2**31)
        elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
        self.last_seed = int(seed)
        return self.last_seed


def _peak_normalize(audio: np.ndarray) -> np.ndarray:
    """Scale to the -1 dBFS peak ``generate`` writes (:data:`~audiogen.generation.TARGET_PEAK`)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * (TARGET_PEAK / peak)).astype(np.float32) if peak > 1e-6 else audio


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number)) and math.isfinite(value)


def _check_seconds(seconds: float) -> None:
    if not _is_number(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"seconds={seconds:g} is over the limit of {MAX_SECONDS} (3 hours)")


def _check_temperature(temperature: float | None) -> None:
    if temperature is None:
        return
    if not _is_number(temperature) or not 0 <= temperature <= MAX_TEMPERATURE:
        raise ValueError(f"temperature must be a number between 0 and {MAX_TEMPERATURE:g}, got {temperature!r}")


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is available")
    return chosen
