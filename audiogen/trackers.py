"""Training you can watch: accelerate's experiment trackers (TensorBoard, Weights & Biases).

``train.log_with: tensorboard`` (or ``wandb``, or both: ``tensorboard,wandb``) sends what the
loop writes to ``metrics.jsonl`` — losses, learning rates, gradient norms, validation metrics — to
the trackers too, and the validation pictures and audio each task writes under
``RUN/val/step-N/`` (spectrogram PNGs, WAV samples) beside them. ``metrics.jsonl`` stays the
record of the run; trackers are a view of it. TensorBoard's event files go under the run folder:

    .venv/bin/tensorboard --logdir RUN

Only the main process talks to trackers (accelerate's trackers are main-process only).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from audiogen.config import ConfigError

KNOWN_TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb"}  # name: the package it needs
PROJECT_NAME = "audiogen"  # the W&B project; TensorBoard's events go to RUN/<this>


def parse_log_with(value: str | None) -> list[str]:
    """The tracker names of ``train.log_with`` (comma-separated), checked and installed.

    Raises:
        ConfigError: an unknown tracker, or one whose package is not installed.
    """
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    for name in names:
        if name not in KNOWN_TRACKERS:
            raise ConfigError(f"train.log_with: unknown tracker {name!r}; choose from {', '.join(KNOWN_TRACKERS)}")
        if importlib.util.find_spec(KNOWN_TRACKERS[name]) is None:
            raise ConfigError(f"train.log_with: {name} is not installed (pip install {KNOWN_TRACKERS[name]})")
    return names


def flat_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A nested config as the flat scalar dict trackers take: ``{"optim/lr": 1e-3, ...}``.

    Lists and None become strings, since TensorBoard's hparams accept only scalars and strings.
    """
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_hparams(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def scalar_values(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of one ``metrics.jsonl`` row that belong on a chart (not its step or flags)."""
    return {key: float(value) for key, value in record.items()
            if key not in ("step", "best") and isinstance(value, (int, float)) and not isinstance(value, bool)}


class TrackerLog:
    """Forwards the loop's records and a validation's media to accelerate's trackers.

    Args:
        accelerator: the run's ``Accelerator``, made with ``log_with=names`` and
            ``project_dir=RUN``; :meth:`start` calls its ``init_trackers``.
        names: tracker names from :func:`parse_log_with` (empty: every method does nothing).
    """

    def __init__(self, accelerator: Any, names: list[str]):
        self.accelerator = accelerator
        self.names = names

    def start(self, resolved_config: dict[str, Any] | None) -> None:
        if self.names:
            self.accelerator.init_trackers(PROJECT_NAME, config=flat_hparams(resolved_config or {}))

    def scalars(self, record: dict[str, Any]) -> None:
        values = scalar_values(record)
        if self.names and values:
            self.accelerator.log(values, step=int(record["step"]))

    def validation_media(self, folder: Path, step: int) -> None:
        """Every PNG under ``folder`` as an image and every WAV as audio, tagged ``val/<file stem>``."""
        if not self.names or not self.accelerator.is_main_process or not folder.is_dir():
            return
        import soundfile as sf
        from matplotlib.image import imread

        images = {f"val/{path.stem}": imread(path)[..., :3] for path in sorted(folder.glob("*.png"))}  # (H, W, 3)
        sounds = {}
        for path in sorted(folder.glob("*.wav")):
            audio, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
            sounds[f"val/{path.stem}"] = (audio.mean(axis=1), sample_rate)
        for name in self.names:
            tracker = self.accelerator.get_tracker(name, unwrap=True)
            if name == "tensorboard":
                _tensorboard_media(tracker, images, sounds, step)
            elif name == "wandb":
                _wandb_media(tracker, images, sounds, step)

    def finish(self) -> None:
        if self.names:
            self.accelerator.end_training()


def _tensorboard_media(writer: Any, images: dict, sounds: dict, step: int) -> None:
    import torch

    for tag, image in images.items():
        writer.add_image(tag, image, global_step=step, dataformats="HWC")
    for tag, (audio, sample_rate) in sounds.items():
        writer.add_audio(tag, torch.from_numpy(audio)[None], global_step=step, sample_rate=sample_rate)
    writer.flush()


def _wandb_media(run: Any, images: dict, sounds: dict, step: int) -> None:
    import wandb

    media = {tag: wandb.Image(image) for tag, image in images.items()}
    media.update({tag: wandb.Audio(audio, sample_rate=rate) for tag, (audio, rate) in sounds.items()})
    run.log(media, step=step)
