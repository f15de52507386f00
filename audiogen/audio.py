"""Audio I/O: decode anything libsndfile reads to float32 mono, resample, write WAV/FLAC.

Every decoding failure raises :class:`AudioError` whose message starts with the file name, so
callers (preparation, ``generate --like``, ``audiogen-fad``) can report it in one line.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import secrets
import tempfile
from collections.abc import Iterator
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


def load_audio(path: str | Path, sample_rate: int | None = None,
               seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a file to float32 mono in [-1, 1]-ish range.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG, AIFF, ...).
        sample_rate: resample to this rate; None keeps the file's rate.
        seconds: decode only the first ``seconds`` of the file (the rest is never read, so
            time and memory follow what is asked, not the file's length); None reads it all.

    Returns:
        (samples of shape (T,), sample rate).

    Raises:
        AudioError: missing file, undecodable, zero length, or NaN/Inf samples (in the part read).
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    try:
        with sf.SoundFile(str(path)) as handle:
            file_sr = handle.samplerate
            frames = -1 if seconds is None else max(1, math.ceil(seconds * file_sr))
            data = handle.read(frames, dtype="float32", always_2d=True)
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


class OutputExistsError(ValueError):
    """An output file that is there already and was not to be replaced."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        super().__init__(f"{path}: already exists; pass --force to replace it")


def umask_mode() -> int:
    """The mode a new file gets from ``open``: 0666 minus the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_output(path: str | Path, force: bool = False) -> Iterator[BinaryIO]:
    """A binary file (seekable, readable) whose content appears at ``path`` only once the block
    ends without an error: readers see the old file or the whole new one, never a part.

    Where the system allows (Linux, ``O_TMPFILE``), the data goes to a file without a name in
    ``path``'s folder, linked into place at the end: a crash or a SIGKILL at any moment leaves
    nothing in the folder (the kernel frees an unnamed file with its last descriptor).
    Elsewhere it is a hidden ``.NAME.XXXXXXXX.part`` beside ``path``, removed on every exit
    Python sees (errors, Ctrl-C, SIGTERM turned into an exception).

    The new file gets the mode of any new file (0666 minus the umask), also when it replaces
    one (a read-only one included). Without ``force`` an existing ``path`` is never replaced,
    even one that appears while the block runs (the final link refuses it).

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is false.
    """
    path = Path(path)
    folder = path.parent
    if not force and os.path.lexists(path):
        raise OutputExistsError(path)
    fd, named = _unnamed_file(folder, path.name)
    handle = os.fdopen(fd, "w+b")
    try:
        yield handle
        handle.flush()
        if named is None:
            _link_unnamed(handle, path, force)
        else:
            _publish_named(named, path, force)
    finally:
        handle.close()
        if named is not None:
            Path(named).unlink(missing_ok=True)


def _unnamed_file(folder: Path, name: str) -> tuple[int, str | None]:
    """(descriptor, None) of a file without a name in ``folder``, or (descriptor, its name) of
    a hidden temporary file where the system or file system has no ``O_TMPFILE``."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is not None and os.path.isdir("/proc/self/fd"):
        try:
            # the mode goes through the umask like any open(); linking keeps it
            return os.open(folder, flag | os.O_RDWR, 0o666), None
        except OSError as err:
            # EOPNOTSUPP: the file system has none; EISDIR/EINVAL: a kernel older than 3.11
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    return tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")


def _link_unnamed(handle: BinaryIO, path: Path, force: bool) -> None:
    """Give the unnamed file open as ``handle`` the name ``path`` (``force``: replacing it)."""
    source = f"/proc/self/fd/{handle.fileno()}"
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # linkat(AT_SYMLINK_FOLLOW) through /proc names an O_TMPFILE file; os.link calls plain
        # link() (which would link the /proc symlink itself) unless a dir_fd is given
        def link(name: str) -> None:
            os.link(source, name, dst_dir_fd=folder, follow_symlinks=True)

        try:
            if not force:
                link(path.name)  # refuses an existing name: no-clobber without a race
                return
            # a name of our own, then a rename over the old file: atomic; only the instant
            # between the two calls could leave the hidden name behind
            staged = f".{path.name}.{secrets.token_hex(4)}.part"
            link(staged)
        except FileExistsError:
            raise OutputExistsError(path) from None
        except OSError:  # a sandbox or file system that refuses the link: copy to a named file
            _copy_and_publish(handle, path, force)
            return
        try:
            os.replace(staged, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(staged, dir_fd=folder)
            raise
    finally:
        os.close(folder)


def _copy_and_publish(handle: BinaryIO, path: Path, force: bool) -> None:
    import shutil

    fd, named = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as copy:
            handle.seek(0)
            shutil.copyfileobj(handle, copy)
        _publish_named(named, path, force)
    finally:
        Path(named).unlink(missing_ok=True)


def _publish_named(named: str, path: Path, force: bool) -> None:
    """Rename a finished hidden file into place (a hard link first without ``force``: it refuses
    an existing name, where a rename would replace it)."""
    os.chmod(named, umask_mode())
    if force:
        os.replace(named, path)
        return
    try:
        os.link(named, path)
    except FileExistsError:
        raise OutputExistsError(path) from None
    except OSError:  # no hard links on this file system (FAT, some network mounts)
        if os.path.lexists(path):
            raise OutputExistsError(path) from None
        os.replace(named, path)


def publish_file(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file into place with the usual permissions.

    ``mkstemp`` makes files readable by the owner only; a user's output should get the mode
    any other new file gets (0666 minus the umask).
    """
    os.chmod(tmp, umask_mode())
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
    force: bool = True,
) -> None:
    """Write mono float audio; WAV 16-bit PCM by default, FLAC when the name ends in .flac.

    A path is written atomically (:func:`atomic_output`), so a reader never sees a half-written
    file and a kill leaves nothing behind; ``force=False`` refuses to replace an existing file.
    ``target`` may also be a binary stream (e.g. stdout), in which case ``format`` defaults to WAV.
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
    # encoded in memory, then written by Python: libsndfile's own writes go through callbacks
    # that can only print a refused write ("Exception ignored ... Traceback") and carry on, so a
    # full disk would scatter tracebacks above the one-line error (the audio is in memory already)
    encoded = io.BytesIO()
    sf.write(encoded, audio, sample_rate, subtype=subtype or default_subtype, format=fmt)
    with atomic_output(path, force=force) as handle:
        handle.write(encoded.getbuffer())


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
