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
to a checkpoint, and the ``window_washes`` callable renders and judges a window.
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


# window_washes(warm_up, window): whether the audio of ``window`` (latents (1, D, n)) washes,
# ``warm_up`` (latents before it, or None) decoded first so the window's start has its context
WindowJudge = Callable[[Any, Any], bool]


@dataclass
class _Segment:
    start: Any  # the sampler's checkpoint before the segment
    frames: Any  # its latents (1, D, n)


def guarded_segments(sampler: RewindableSampler, segment_tokens: int, window_washes: WindowJudge,
                     concat: Callable[[list[Any]], Any], tries: int = DEFAULT_TRIES) -> Iterator[Any]:
    """Latent segments (1, D, segment_tokens · frames_per_token) forever, each one segment behind
    what the sampler has drawn (see the module docstring).

    Args:
        concat: joins latents along time (torch.cat or numpy.concatenate on the last axis).
        tries: redraws of a washing segment before the segment before it is drawn again too.
    """
    if segment_tokens < 1:
        raise ValueError(f"segment_tokens must be >= 1, got {segment_tokens}")
    if tries < 0:
        raise ValueError(f"tries must be >= 0, got {tries}")
    held: _Segment | None = None  # drawn and judged, not yet given out: the guard may draw it again
    given: Any = None  # the last segment given out: the decoder's warm-up for a window over `held`
    while True:
        new = _Segment(sampler.checkpoint(), sampler.draw(segment_tokens))
        context = held.frames if held is not None else None
        washes = window_washes(given if held is not None else None, _join(concat, context, new.frames))
        for _ in range(tries if washes else 0):
            sampler.restore(new.start)
            new.frames = sampler.draw(segment_tokens)
            washes = window_washes(given if held is not None else None, _join(concat, context, new.frames))
            if not washes:
                break
        if washes and held is not None:  # the wash may have begun in the held segment: draw both again
            for _ in range(tries):
                sampler.restore(held.start)
                held.frames = sampler.draw(segment_tokens)
                new = _Segment(sampler.checkpoint(), sampler.draw(segment_tokens))
                if not window_washes(given, concat([held.frames, new.frames])):
                    break
        if held is not None:
            given = held.frames
            yield held.frames
        held = new


def audio_judge(render: Callable[[Any], Any], samples_per_frame: int, sample_rate: int,
                concat: Callable[[list[Any]], Any]) -> WindowJudge:
    """A ``window_washes`` for :func:`guarded_segments` from a runtime's ``render`` (latents (1, D, n)
    → mono float audio): it renders warm-up and window together and judges the window's audio."""
    from audiogen.descriptors import is_wash

    def window_washes(warm_up: Any, window: Any) -> bool:
        audio = render(_join(concat, warm_up, window))
        return is_wash(audio[-window.shape[-1] * samples_per_frame:], sample_rate)

    return window_washes


def _join(concat: Callable[[list[Any]], Any], context: Any, frames: Any) -> Any:
    return frames if context is None else concat([context, frames])


def segment_tokens(latent_rate: float, frames_per_token: int) -> int:
    """Tokens of one guard segment: ``SEGMENT_SECONDS`` of latents (latent frames a second), at least one."""
    return max(1, round(SEGMENT_SECONDS * latent_rate / frames_per_token))
