"""Signals and small datasets that tests make themselves (no downloads, no ../shared)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

MAESTRO_COLUMNS = ["canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename",
                   "duration"]


def piano_like(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Decaying harmonic notes plus a little noise: a real-looking test signal."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    out = np.zeros_like(t)
    for start in np.arange(0, seconds, 0.25):
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        env = np.where(t >= start, np.exp(-(t - start) * 3), 0)
        for k in range(1, 8):
            out += env * np.sin(2 * np.pi * f0 * k * (t - start)) / k**1.5
    out += 0.001 * rng.standard_normal(len(t))
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def make_piano_maestro(root: Path, splits: dict[str, int], seconds: float = 3.0, sr: int = 22050) -> Path:
    """A MAESTRO-layout folder of piano-like FLACs: ``splits`` maps split name to piece count."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    with (root / "maestro-v3.0.0.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MAESTRO_COLUMNS)
        index = 0
        for split, count in splits.items():
            for _ in range(count):
                stem = f"2004/piece{index:02d}"
                (root / "2004").mkdir(exist_ok=True)
                sf.write(root / f"{stem}.flac", piano_like(seconds, sr, seed=index), sr)
                writer.writerow(["Composer", f"Piece {index}", split, 2004, f"{stem}.midi", f"{stem}.flac", seconds])
                index += 1
    return root


def have_fluidsynth() -> bool:
    """Whether FluidSynth and a General MIDI SoundFont are installed (the demo renderer needs both)."""
    from audiogen.demo_data import RenderError, find_fluidsynth, find_soundfont

    try:
        find_fluidsynth()
        find_soundfont()
    except RenderError:
        return False
    return True
