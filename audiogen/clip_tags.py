"""Provenance tags in generated clips: how a clip found later can be made again.

A generated WAV or FLAC carries, in its metadata (WAV LIST/INFO, FLAC Vorbis comments, both
written by libsndfile), the audiogen version, seed, temperature, length and the names and content
hashes of the models that made it. ``audiogen info CLIP`` reads them back. The tags are one JSON
object in the ``comment`` field (so nothing is lost to the few fixed fields a WAV has), with a
readable ``title`` and ``software`` beside it.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

TAG_SCHEMA = "audiogen-clip/1"  # a key in the JSON, so readers can tell our comments from others'
WEIGHT_SUFFIX = ".safetensors"


def model_hash(folder: str | Path) -> str:
    """A short content hash of a model folder's weights (sha256 over its .safetensors files, by name).

    Folders with the same weights hash the same wherever they live; 12 hex digits are plenty to
    tell models apart and short enough to read.
    """
    digest = hashlib.sha256()
    files = sorted(Path(folder).glob(f"*{WEIGHT_SUFFIX}"))
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12] if files else "none"


def clip_tags(*, version: str, seed: int, temperature: float, seconds: float, model: str, model_sha: str,
              vocoder: str, vocoder_sha: str, like: str | None = None, variation: float | None = None,
              wash_guard: bool = True, surprise_band: bool = True, mel_sharpening: bool = True) -> dict:
    """The provenance of one generated clip, as a flat JSON-ready dict.

    ``model`` and ``vocoder`` are the folders as the user named them (``"bundled"`` for the shipped
    ones); the hashes say which weights those were at the time. ``wash_guard``, ``surprise_band``
    and ``mel_sharpening`` are written only when they were off (:func:`wash_guard_of`,
    :func:`surprise_band_of`, :func:`mel_sharpening_of` read them).
    """
    tags: dict[str, Any] = {"schema": TAG_SCHEMA, "audiogen": version, "seed": seed, "temperature": temperature,
                            "seconds": seconds, "model": model, "model_sha256": model_sha,
                            "vocoder": vocoder, "vocoder_sha256": vocoder_sha}
    if like is not None:
        tags.update(like=like, variation=variation)
    if not wash_guard:
        tags["wash_guard"] = False
    if not surprise_band:
        tags["surprise_band"] = False
    if not mel_sharpening:
        tags["mel_sharpening"] = False
    return tags


def remake_command(tags: dict) -> str:
    """The ``generate`` command line that makes the clip again (same models, seed and settings)."""
    words = ["generate", "--seconds", f"{tags['seconds']:g}", "--seed", str(tags["seed"]),
             "--temperature", f"{tags['temperature']:g}"]
    for option in ("model", "vocoder"):
        if tags.get(option) not in (None, "bundled"):
            words += [f"--{option}", tags[option]]
    if tags.get("like") is not None:
        words += ["--like", tags["like"], "--variation", f"{tags['variation']:g}"]
    if not wash_guard_of(tags):
        words.append("--no-wash-guard")
    if not surprise_band_of(tags):
        words.append("--no-surprise-band")
    if not mel_sharpening_of(tags):
        words.append("--no-mel-sharpening")
    return shlex.join(words + ["--out", "clip.wav"])


WASH_GUARD_SINCE = (0, 2)  # the audiogen version whose generate first drew washes again
SURPRISE_BAND_SINCE = (0, 3)  # the first whose generate kept the prior's surprise in its band
MEL_SHARPENING_SINCE = (0, 3)  # the first whose generate sharpened the decoded log-mel


def wash_guard_of(tags: dict) -> bool:
    """Whether the clip was made with the wash guard: the tag says so when it was off, and clips
    of versions before the guard lack the tag and were made without it."""
    return _setting_of(tags, "wash_guard", WASH_GUARD_SINCE)


def surprise_band_of(tags: dict) -> bool:
    """Whether the clip was made with the model's surprise band (where it has one), read as
    :func:`wash_guard_of` reads the guard."""
    return _setting_of(tags, "surprise_band", SURPRISE_BAND_SINCE)


def mel_sharpening_of(tags: dict) -> bool:
    """Whether the clip's log-mel was sharpened (where its model carries a sharpening), read as
    :func:`wash_guard_of` reads the guard."""
    return _setting_of(tags, "mel_sharpening", MEL_SHARPENING_SINCE)


def _setting_of(tags: dict, name: str, since: tuple[int, int]) -> bool:
    if name in tags:
        return bool(tags[name])
    try:
        version = tuple(int(part) for part in str(tags.get("audiogen", "")).split(".")[:2])
    except ValueError:  # a development or foreign version string: assume the present behaviour
        return True
    return version >= since


def apply_tags(sound_file: Any, tags: dict) -> None:
    """Set the tags on an open ``soundfile.SoundFile`` (before its first frames are written)."""
    sound_file.title = f"audiogen generate, seed {tags['seed']}"
    sound_file.software = f"audiogen {tags['audiogen']}"
    sound_file.comment = json.dumps(tags, sort_keys=True)


def read_tags(path: str | Path) -> dict | None:
    """The provenance tags of a clip, or None when it carries none of ours.

    Raises:
        AudioError: the file cannot be read as audio.
    """
    import soundfile as sf

    from audiogen.audio import AudioError

    try:
        with sf.SoundFile(str(path)) as handle:
            comment = handle.copy_metadata().get("comment", "")
    except (RuntimeError, sf.LibsndfileError) as err:
        raise AudioError(path, str(err).splitlines()[0]) from err
    try:
        tags = json.loads(comment)
    except ValueError:
        return None
    return tags if isinstance(tags, dict) and tags.get("schema") == TAG_SCHEMA else None


def describe_tags(tags: dict) -> list[str]:
    """Lines for ``audiogen info``: each tag, then the command that makes the clip again."""
    width = max(map(len, tags))
    lines = [f"{key:<{width}}  {value}" for key, value in tags.items() if key != "schema"]
    return lines + ["", f"make it again: {remake_command(tags)}"]
