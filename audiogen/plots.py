"""Pictures people would rather look at than read: spectrograms side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_spectrograms(path: str | Path, panels: dict[str, np.ndarray], frame_rate: float, title: str = "") -> None:
    """Save log-mel spectrograms (n_mels, F) stacked vertically, one panel per entry, as PNG.

    All panels share one colour scale (the range of the first), so louder/quieter and
    blurrier/sharper differences are visible rather than normalised away.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {k: np.asarray(v, dtype=np.float32) for k, v in panels.items()}
    first = next(iter(panels.values()))
    vmin, vmax = float(np.percentile(first, 1)), float(first.max())
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.3 * len(panels)), squeeze=False)
    for ax, (name, mel) in zip(axes[:, 0], panels.items(), strict=True):
        seconds = mel.shape[-1] / frame_rate
        image = ax.imshow(mel, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma",
                          extent=(0, seconds, 0, mel.shape[0]))
        ax.set_ylabel(f"{name}\nmel bin")
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="log magnitude", shrink=0.8)
    if title:
        fig.suptitle(title)
    try:
        save_figure(fig, path, dpi=80)
    finally:
        plt.close(fig)


def save_figure(fig, path: str | Path, dpi: int) -> None:
    """Write a matplotlib figure as PNG atomically: a crash or a full disk leaves no partial picture."""
    import os
    import tempfile

    from audiogen.audio import publish_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, dpi=dpi, format="png")
        publish_file(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
