"""Training datasets over a prepared cache: random aligned (mel, audio) windows and whole pieces.

:class:`SegmentDataset` draws random aligned windows as a deterministic function of
(seed, epoch, index); :class:`FullPieceDataset` yields whole pieces for validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiogen.cache import open_cache
from audiogen.frontend import FrontendConfig
from audiogen.sources import DataError


class SegmentDataset(torch.utils.data.Dataset):
    """Random aligned windows of log-mel and audio from one split of a cache.

    Item ``i`` is a window chosen by a generator seeded with (seed, epoch, i): a piece drawn with
    probability proportional to its frame count, then a start frame uniform over the positions
    where the window's audio lies inside the piece. So any sampler's order (seeded, resumed,
    split across ranks) fixes the data exactly; :meth:`set_epoch` draws new windows.

    ``ds[i]`` is ``{"mel": (n_mels, segment_frames) float32, "audio": (segment_frames * hop,)
    float32}`` (no "audio" when ``with_audio`` is False). Mel frame k of the window is frame
    ``start + k`` of the piece's log-mel, centred on audio sample ``(start + k) * hop``, and the
    audio starts at sample ``start * hop``. Pieces shorter than a window are padded (mel with the
    frontend's log-silence, audio with zeros).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        segment_frames: int,
        with_audio: bool = True,
        seed: int = 0,
        length: int | None = None,
        expected_frontend: FrontendConfig | None = None,
    ):
        if segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
        self.cache = open_cache(cache_dir, expected_frontend)
        self.entries = self.cache.pieces(split)
        if not self.entries:
            raise DataError(f"{cache_dir}: no pieces in split {split!r}")
        self.split = split
        self.segment_frames = segment_frames
        self.with_audio = with_audio
        self.seed = seed
        self.epoch = 0
        self.hop = self.cache.frontend.hop_length
        self._cumulative = np.cumsum([e.n_frames for e in self.entries], dtype=np.int64)
        total = int(self._cumulative[-1])
        self.length = length if length is not None else max(1, total // segment_frames)
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")

    def set_epoch(self, epoch: int) -> None:
        """Choose the windows of another epoch (cheap; call before reading items)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def window(self, index: int) -> tuple[int, int]:
        """(piece position in ``self.entries``, start frame) of item ``index`` this epoch."""
        rng = np.random.default_rng([self.seed % 2**63, self.epoch, index])
        position = int(np.searchsorted(self._cumulative, rng.integers(0, self._cumulative[-1]), side="right"))
        entry = self.entries[position]
        # the audio of the window, (start + segment) * hop samples, must fit inside the piece
        last_start = entry.n_samples // self.hop - self.segment_frames
        start = int(rng.integers(0, last_start + 1)) if last_start > 0 else 0
        return position, start

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} windows")
        index %= self.length
        position, start = self.window(index)
        entry = self.entries[position]
        item = {"mel": torch.from_numpy(self.cache.mel_window(entry, start, self.segment_frames))}
        if self.with_audio:
            audio = self.cache.audio_window(entry, start * self.hop, self.segment_frames * self.hop)
            item["audio"] = torch.from_numpy(audio)
        return item


class FullPieceDataset(torch.utils.data.Dataset):
    """Whole pieces of a split (or their first ``max_frames`` frames), for validation and test.

    ``ds[i]`` is ``{"mel": (n_mels, F) float32, "audio": (F * hop,) float32, "name": str}`` with
    F = the piece's frame count (capped at ``max_frames``); the audio is zero-padded to F * hop
    samples so that it lines up with the mel as in :class:`SegmentDataset`.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        max_frames: int | None = None,
        expected_frontend: FrontendConfig | None = None,
    ):
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
        self.cache = open_cache(cache_dir, expected_frontend)
        self.entries = self.cache.pieces(split)
        self.split = split
        self.max_frames = max_frames
        self.hop = self.cache.frontend.hop_length

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        frames = entry.n_frames if self.max_frames is None else min(entry.n_frames, self.max_frames)
        return {
            "mel": torch.from_numpy(self.cache.mel_window(entry, 0, frames)),
            "audio": torch.from_numpy(self.cache.audio_window(entry, 0, frames * self.hop)),
            "name": entry.name,
        }
