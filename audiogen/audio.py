"""Audio I/O: decode anything libsndfile reads to float32 mono, resample, write WAV/FLAC.

Every decoding failure raises :class:`AudioError` whose message starts with the file name, so
callers (preparation, ``generate --like``, ``audiogen-fad``) can report it in one line.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

# soxr's "HQ" is a band-limited polyphase resampler (about 140 dB stop band); FAD values move
# with the resampler, so one choice is made here and named in reports.
RESAMPLER = "soxr_hq"
# File name endings of the formats :func:`load_audio` decodes (libsndfile >= 1.1: Ogg Vorbis and Opus, MP3):
# the one list every command that reads a folder of audio accepts (audiogen-prepare --audio-dir, audiogen-fad).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of a 1-D float signal (soxr HQ); identity when rates match."""
    if orig_sr == target_sr:
        return audio
    import soxr

    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def audio_info(path: str | Path) -> tuple[int, int, float]:
    """(sample rate, channels, duration in seconds) from the header, without decoding."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except FileNotFoundError as err:
        raise AudioError(path, "file not found") from err
    except Exception as err:  # libsndfile raises its own error types
        raise AudioError(path, f"not readable as audio ({_short(err)})") from err
    return info.samplerate, info.channels, info.frames / max(info.samplerate, 1)


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a file to float32 mono in [-1, 1]-ish range.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG, AIFF, ...).
        sample_rate: resample to this rate; None keeps the file's rate.

    Returns:
        (samples of shape (T,), sample rate).

    Raises:
        AudioError: missing file, undecodable, zero length, or NaN/Inf samples.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(path, f"not readable as audio ({_short(err)})") from err
    if data.shape[0] == 0:
        raise AudioError(path, "zero-length audio")
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or Inf samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if sample_rate is not None and sample_rate != file_sr:
        mono = resample(mono, file_sr, sample_rate)
        file_sr = sample_rate
    return mono, file_sr


def publish_file(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file into place with the usual permissions.

    ``mkstemp`` makes files readable by the owner only; a user's output should get the mode
    any other new file gets (0666 minus the umask).
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__


def _format_for(path: str | Path) -> tuple[str, str]:
    suffix = Path(path).suffix.lower()
    if suffix == ".flac":
        return "FLAC", "PCM_16"
    if suffix in (".wav", ""):
        return "WAV", "PCM_16"
    if suffix == ".ogg":
        return "OGG", "VORBIS"
    raise AudioError(path, f"unsupported output format {suffix!r} (use .wav or .flac)")


def save_audio(
    target: str | Path | BinaryIO,
    audio: np.ndarray,
    sample_rate: int,
    subtype: str | None = None,
    format: str | None = None,
) -> None:
    """Write mono float audio; WAV 16-bit PCM by default, FLAC when the name ends in .flac.

    A path is written atomically (temporary name in the same folder, then renamed), so a reader
    never sees a half-written file. ``target`` may also be a binary stream (e.g. stdout), in
    which case ``format`` defaults to WAV.
    """
    import soundfile as sf

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"save_audio expects mono (T,), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("refusing to write audio with NaN/Inf samples")
    if not isinstance(target, (str, Path)):
        sf.write(target, audio, sample_rate, subtype=subtype or "PCM_16", format=format or "WAV")
        return
    path = Path(target)
    fmt, default_subtype = _format_for(path)
    fmt = format or fmt
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            sf.write(handle, audio, sample_rate, subtype=subtype or default_subtype, format=fmt)
        publish_file(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_audio(audio: np.ndarray, sample_rate: int, format: str = "WAV") -> bytes:
    """The bytes of a WAV/FLAC file holding ``audio`` (16-bit PCM)."""
    buffer = io.BytesIO()
    save_audio(buffer, audio, sample_rate, format=format)
    return buffer.getvalue()


def peak_normalize(audio: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scale so the largest absolute sample is ``peak`` (silence is returned unchanged)."""
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    if top < 1e-8:
        return audio
    return (audio * (peak / top)).astype(np.float32)
