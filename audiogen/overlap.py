"""Streaming with overlap, for torch tensors and numpy arrays alike: the windows of the two
streamed stages of generation, kept in one place so that every runtime makes the same audio.

:func:`decode_with_overlap` runs a decoder over latent chunks as they arrive with enough latent
context on both sides that the pieces join into the whole decode (used by
:func:`audiogen.latents.decode_stream` and the onnxruntime path); :class:`CrossfadeChunker` runs a
vocoder over a mel that arrives in pieces, in fixed chunks with overlap and crossfades (used by
:mod:`audiogen.vocoder` and the onnxruntime path). Both need of their arrays only slicing on the last
axis, ``shape[-1]``, arithmetic, and a ``concat`` function the caller passes (``torch.cat`` or
``np.concatenate``); nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

Concat = Callable[[list[Any]], Any]  # joins arrays on their last axis


def decode_with_overlap(decode: Callable[[Any], Any], latent_chunks: Iterable[Any], overlap: int, ratio: int,
                        concat: Concat) -> Iterator[Any]:
    """Decode latent chunks as they arrive; yield mel pieces as soon as they are final.

    Each piece is decoded from a window holding ``overlap`` latent frames of context on each side,
    so the concatenated pieces equal decoding the whole sequence at once (to float rounding), while
    memory holds only the pending frames plus ``2 · overlap``. A piece is held back until
    ``overlap`` frames after it have arrived; the last one comes when the input ends.

    Args:
        decode: latents (1, D, L) → mel (n_mels, L · ratio).
        latent_chunks: (1, D, l_i) pieces of one latent sequence (any l_i ≥ 0).
    """
    pending = None  # latent frames [start, start + len)
    start = emitted = 0  # global latent indices: first frame held; first frame not yet decoded

    def window(stop: int) -> Any:
        first = max(start, emitted - overlap)
        mel = decode(pending[..., first - start:])
        return mel[:, (emitted - first) * ratio: (stop - first) * ratio]

    for chunk in latent_chunks:
        pending = chunk if pending is None else concat([pending, chunk])
        ready = start + pending.shape[-1] - overlap
        if ready > emitted:
            yield window(ready)
            emitted = ready
            keep = max(start, emitted - overlap)
            pending, start = pending[..., keep - start:], keep
    if pending is not None and start + pending.shape[-1] > emitted:
        yield window(start + pending.shape[-1])


def raised_cosine_fade_in(samples: int) -> np.ndarray:
    """A float32 ramp from 0 to 1 over ``samples``, sampled at half-sample offsets, whose mirror
    image is its complement (``ramp + ramp[::-1] == 1``): two chunks crossfaded with it sum to one."""
    return (0.5 - 0.5 * np.cos(math.pi * (np.arange(samples) + 0.5) / max(samples, 1))).astype(np.float32)


class CrossfadeChunker:
    """Runs a vocoder over a mel that arrives in pieces, in fixed chunks with overlap.

    Chunk ``i`` owns the frames ``[i * chunk, (i + 1) * chunk)`` and is run on them plus
    ``overlap`` frames of context on each side. Of its output, the samples from ``half =
    overlap // 2`` frames before its start to ``half`` frames after its end are kept; where two
    chunks meet they are crossfaded with complementary raised-cosine ramps over ``overlap``
    frames centred on the boundary. Every kept sample thus sees at least ``half`` frames of real
    context on each side, which covers the receptive field of the shipped generators, so
    chunked output equals whole-input output to float rounding; the crossfade hides what a
    larger receptive field would leave.

    The chunk layout depends only on the frame index, never on how the input was split, so
    feeding the mel in any pieces gives the same audio.

    Args:
        run: mel (B, n_mels, f) → audio (B, f · hop), in the arrays of ``fade_in``.
        fade_in: :func:`raised_cosine_fade_in` of ``2 · (overlap // 2) · hop`` samples, as the
            caller's array type.
    """

    def __init__(self, run: Callable[[Any], Any], chunk_frames: int, overlap_frames: int, hop: int,
                 concat: Concat, fade_in: Any):
        if chunk_frames < 1 or overlap_frames < 0:
            raise ValueError("chunk_frames must be >= 1 and overlap_frames >= 0")
        if chunk_frames < overlap_frames:
            raise ValueError(f"chunk_frames {chunk_frames} must be >= overlap_frames {overlap_frames}")
        self.run, self.concat, self.fade_in = run, concat, fade_in
        self.chunk, self.context, self.hop = chunk_frames, overlap_frames, hop
        self.half = overlap_frames // 2
        self.mel = None  # buffered frames, (B, n_mels, n)
        self.mel_start = 0  # global index of the first buffered frame
        self.next_chunk = 0  # global start frame of the next chunk to run
        self.tail = None  # previous chunk's output over the next crossfade

    def push(self, mel: Any) -> list[Any]:
        """Add frames (B, n_mels, f); return the audio (B, n) that became final."""
        self.mel = mel if self.mel is None else self.concat([self.mel, mel])
        out = []
        # a chunk can run once its right context has arrived and more frames follow it (so it
        # is not the last one, whose end is only known at finish())
        while self._buffered_end() >= self.next_chunk + self.chunk + max(self.context, 1):
            out.append(self._run_chunk(self.next_chunk + self.chunk, last=False))
        return out

    def finish(self) -> list[Any]:
        """The input has ended: run the remaining chunks and return their audio."""
        out = []
        end = self._buffered_end()
        while self.mel is not None and self.next_chunk < end:
            stop = min(self.next_chunk + self.chunk, end)
            out.append(self._run_chunk(stop, last=stop == end))
        return out

    def _buffered_end(self) -> int:
        return self.mel_start + (0 if self.mel is None else self.mel.shape[-1])

    def _run_chunk(self, stop: int, last: bool) -> Any:
        start, hop, end = self.next_chunk, self.hop, self._buffered_end()
        first = start == 0
        lo, hi = max(0, start - self.context), min(end, stop + self.context)
        audio = self.run(self.mel[..., lo - self.mel_start: hi - self.mel_start])  # (B, (hi - lo) · hop)

        def take(a: int, b: int) -> Any:  # global frame range → this chunk's samples
            return audio[..., (a - lo) * hop: (b - lo) * hop]

        # where this chunk's share begins, and where the next chunk's crossfade begins
        keep_from = start if first else max(0, start - self.half)
        fade_to = min(end, start + self.half) if not first else start
        hand_over = stop if last else stop - self.half
        pieces = []
        if not first:
            ramp = self.fade_in[: (fade_to - keep_from) * hop]
            pieces.append(self.tail * (1 - ramp) + take(keep_from, fade_to) * ramp)
        pieces.append(take(fade_to, max(fade_to, hand_over)))
        if not last:
            self.tail = take(hand_over, min(end, stop + self.half))
        self.next_chunk = stop
        # frames before the next chunk's left context are no longer needed
        drop = max(0, self.next_chunk - self.context - self.mel_start)
        self.mel, self.mel_start = self.mel[..., drop:], self.mel_start + drop
        return self.concat(pieces)
