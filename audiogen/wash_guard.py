"""A sampler guard against the wash: a stretch of latents whose audio washes is drawn again.

A long sample of the token prior now and then switches into a bright, broadband wash and stays
in it: once the wash is its context, the wash is what it continues. Training longer did not make
that rarer, and noise on the training inputs traded it for silence (docs/priors.md). The guard
listens instead. The prior draws the clip ``SEGMENT_SECONDS`` at a time; each new segment is
rendered to audio together with the segment before it (a wash window's length,
:data:`audiogen.descriptors.WASH_WINDOW_SECONDS`) and, when that window is a wash by
:func:`audiogen.descriptors.is_wash`, the segment is drawn again from the prior's state before
it, up to ``tries`` times. When every try washes, the wash may have begun in the segment before,
which is held back for this: both are drawn again, up to ``tries`` times more. Then the last try
stands, so a clip always ends, and the guard's work is bounded (at most ``2 · tries + 1`` draws
of a segment).

Redraws take the next random numbers of the same generator, so one seed still gives one clip.
The guard judges with the same detector tools/fad_benchmark.py counts washes with: with the
guard on, that count says how often the guard gave up, not how often the prior washes; the
per-window FADs and descriptors are the independent check of what it writes instead.

Everything here works on any runtime: a :class:`RewindableSampler` draws latents and goes back
to a checkpoint, and an :class:`AudioJudge` renders with the runtime's networks and judges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

SEGMENT_SECONDS = 3.0  # half a wash window: a segment and the one before it make one window
DEFAULT_TRIES = 4


class RewindableSampler(Protocol):
    """A prior's sampler that can go back: what :func:`guarded_segments` drives."""

    def draw(self, tokens: int) -> Any:
        """The latent frames (1, D, tokens · frames_per_token) of the next ``tokens`` tokens."""

    def checkpoint(self) -> Any:
        """The sampler's state now (not its random generator's), for :meth:`restore`."""

    def restore(self, checkpoint: Any) -> None:
        """Go back to a checkpoint; what is drawn next takes the generator's next random numbers."""


# window_washes(before, segments): whether the audio of ``segments`` (one or two latent segments
# (1, D, n), in time order: the window) washes; ``before`` is the segment before them (or None),
# whose tail the first segment's decoding may warm up on
WindowJudge = Callable[[Any, list[Any]], bool]


@dataclass
class _Segment:
    start: Any  # the sampler's checkpoint before the segment
    frames: Any  # its latents (1, D, n)


def guarded_segments(sampler: RewindableSampler, segment_tokens: int, window_washes: WindowJudge,
                     tries: int = DEFAULT_TRIES, frames: int | None = None) -> Iterator[Any]:
    """Latent segments (1, D, segment_tokens · frames_per_token), each one segment behind what the
    sampler has drawn (see the module docstring): forever, or until they hold ``frames`` latent
    frames (the last one is then given out as soon as it is judged, not drawn past the clip's end).

    Args:
        tries: redraws of a washing segment before the segment before it is drawn again too.
    """
    if segment_tokens < 1:
        raise ValueError(f"segment_tokens must be >= 1, got {segment_tokens}")
    if tries < 0:
        raise ValueError(f"tries must be >= 0, got {tries}")
    held: _Segment | None = None  # drawn and judged, not yet given out: the guard may draw it again
    given: Any = None  # the last segment given out
    given_frames = 0

    def washes(new: _Segment) -> bool:
        return window_washes(given, [new.frames] if held is None else [held.frames, new.frames])

    while True:
        new = _Segment(sampler.checkpoint(), sampler.draw(segment_tokens))
        washing = washes(new)
        for _ in range(tries if washing else 0):
            sampler.restore(new.start)
            new.frames = sampler.draw(segment_tokens)
            if not (washing := washes(new)):
                break
        if washing and held is not None:  # the wash may have begun in the held segment: draw both again
            for _ in range(tries):
                sampler.restore(held.start)
                held.frames = sampler.draw(segment_tokens)
                new = _Segment(sampler.checkpoint(), sampler.draw(segment_tokens))
                if not washes(new):
                    break
        if held is not None:
            given, given_frames = held.frames, given_frames + held.frames.shape[-1]
            yield held.frames
        held = new
        if frames is not None and given_frames + held.frames.shape[-1] >= frames:
            yield held.frames
            return


class AudioJudge:
    """A ``window_washes`` for :func:`guarded_segments` from a runtime's ``render`` (latents (1, D, n)
    → mono float audio).

    Each segment is rendered once, after the last ``warm_up_frames`` of the segment before it (the
    VAE decoder's and the vocoder's context), and its audio kept while its window may be judged
    again; a window's audio is its segments' audio end to end. So the guard costs about a
    quarter more decoding and vocoding than the clip itself, plus what it draws again.
    """

    def __init__(self, render: Callable[[Any], Any], samples_per_frame: int, sample_rate: int,
                 concat: Callable[[list[Any]], Any], warm_up_frames: int = 16):
        self.render, self.samples_per_frame, self.sample_rate = render, samples_per_frame, sample_rate
        self.concat, self.warm_up_frames = concat, warm_up_frames
        self._audio: list[tuple[Any, Any]] = []  # (segment, its audio), the latest few

    def __call__(self, before: Any, segments: list[Any]) -> bool:
        import numpy as np

        from audiogen.descriptors import is_wash

        pieces = [self._segment_audio(segments[i - 1] if i else before, segment) for i, segment in enumerate(segments)]
        return is_wash(np.concatenate(pieces), self.sample_rate)

    def _segment_audio(self, previous: Any, segment: Any) -> Any:
        for known, audio in self._audio:
            if known is segment:
                return audio
        warm_up = 0 if previous is None else min(self.warm_up_frames, previous.shape[-1])
        latents = segment if not warm_up else self.concat([previous[..., -warm_up:], segment])
        audio = self.render(latents)[warm_up * self.samples_per_frame:]
        self._audio = [*self._audio[-3:], (segment, audio)]
        return audio


def guarded_latents(sampler: RewindableSampler, render: Callable[[Any], Any], *, latent_rate: float,
                    frames_per_token: int, samples_per_frame: int, sample_rate: int,
                    concat: Callable[[list[Any]], Any], frames: int | None = None) -> Iterator[Any]:
    """The guard as a runtime's generator uses it: :func:`guarded_segments` of ``SEGMENT_SECONDS``
    (``latent_rate`` latent frames a second) judged by an :class:`AudioJudge` on ``render``."""
    judge = AudioJudge(render, samples_per_frame, sample_rate, concat)
    return guarded_segments(sampler, segment_tokens(latent_rate, frames_per_token), judge, frames=frames)


def segment_tokens(latent_rate: float, frames_per_token: int) -> int:
    """Tokens of one guard segment: ``SEGMENT_SECONDS`` of latents (latent frames a second), at least one."""
    return max(1, round(SEGMENT_SECONDS * latent_rate / frames_per_token))
