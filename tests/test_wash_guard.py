"""The wash guard: what it gives out, how often it draws, and its samplers' checkpoints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from audiogen.descriptors import is_wash
from audiogen.wash_guard import AudioJudge, guarded_segments, segment_tokens

SR = 22050


class CountingSampler:
    """Draws tokens of one frame each from a seeded stream of uniforms; counts draws."""

    def __init__(self, seed: int):
        self.random = np.random.default_rng(seed)
        self.position = 0
        self.draws = 0

    def draw(self, tokens: int) -> np.ndarray:
        self.draws += 1
        self.position += tokens
        return self.random.random((1, 1, tokens))

    def checkpoint(self) -> int:
        return self.position

    def restore(self, checkpoint: int) -> None:
        self.position = checkpoint


def concat(parts):
    return np.concatenate(parts, axis=-1)


def take(stream, count):
    return list(itertools.islice(stream, count))


def test_a_washing_segment_is_drawn_again_and_none_is_given_out():
    # a "wash" is a window holding a frame above 0.95: with 8-frame segments most windows have none
    def washes(before, window):
        return bool((concat(window) > 0.95).any())

    sampler = CountingSampler(0)
    segments = take(guarded_segments(sampler, 8, washes, tries=4), 30)
    assert all(s.shape == (1, 1, 8) for s in segments)
    assert not any((s > 0.95).any() for s in segments)
    assert sampler.draws > 31  # some were drawn again (the unguarded stream has such frames)
    unguarded = CountingSampler(0).random.random((1, 1, 31 * 8))
    assert (unguarded > 0.95).any()


def test_when_every_try_washes_the_segment_before_is_drawn_again_too():
    # a segment that ends above 0.8 "primes" a wash in whatever follows it, though not in its own window
    def washes(before, window):
        return len(window) == 2 and bool(window[0][0, 0, -1] > 0.8)

    segments = take(guarded_segments(CountingSampler(1), 4, washes, tries=3), 40)
    given = concat(segments)[0, 0]
    assert not (given[3:-4:4] > 0.8).any()  # no given segment ends primed (but the last, not yet judged)
    assert (CountingSampler(1).random.random(200)[3::4] > 0.8).any()  # unguarded, some would


def test_a_hopeless_window_costs_a_bounded_number_of_draws_and_the_clip_still_ends():
    sampler = CountingSampler(2)
    tries = 3
    segments = take(guarded_segments(sampler, 5, lambda before, window: True, tries=tries), 10)
    assert len(segments) == 10
    # the first segment: 1 + tries draws (nothing before it to draw again); each next one at most
    # 1 + tries + 2 · tries (the step back draws two segments a try); one more is drawn, held
    assert sampler.draws <= (1 + tries) + 10 * (1 + 3 * tries)


def test_the_judge_sees_a_segment_with_the_one_before_and_the_one_given_out_before_that():
    seen, given = [], []

    def washes(before, window):
        seen.append((before, list(window)))
        return False

    stream = guarded_segments(CountingSampler(3), 6, washes)
    given += take(stream, 3)
    assert seen[0][0] is None and len(seen[0][1]) == 1  # the first segment alone
    assert seen[1][0] is None and seen[1][1][0] is given[0]  # then with the held one before it
    for (before, window), (earlier, held) in zip(seen[2:], itertools.pairwise(given), strict=False):
        assert before is earlier and window[0] is held  # the one given out before warms the decoder up


def test_a_clip_of_known_length_is_not_drawn_past_its_end():
    sampler = CountingSampler(5)
    segments = list(guarded_segments(sampler, 4, lambda before, window: False, frames=10))
    assert [s.shape[-1] for s in segments] == [4, 4, 4]  # enough for 10 frames, and the stream ends
    assert sampler.draws == 3


def test_same_seed_same_segments():
    def washes(before, window):
        return bool((concat(window) > 0.9).any())

    first = take(guarded_segments(CountingSampler(4), 8, washes), 12)
    again = take(guarded_segments(CountingSampler(4), 8, washes), 12)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize("bad", [{"segment_tokens": 0}, {"tries": -1}])
def test_bad_settings_are_refused(bad):
    settings = {"segment_tokens": 4, "tries": 2, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        next(guarded_segments(CountingSampler(0), settings["segment_tokens"], lambda *_: False,
                              tries=settings["tries"]))


def test_the_audio_judge_renders_each_segment_once_after_a_warm_up(monkeypatch):
    import audiogen.descriptors

    rendered, judged = [], []
    monkeypatch.setattr(audiogen.descriptors, "is_wash", lambda audio, rate: judged.append(audio.copy()) or False)

    def render(latents):
        rendered.append(latents.shape[-1])
        return np.repeat(latents[0, 0], 10)  # 10 samples a frame

    judge = AudioJudge(render, samples_per_frame=10, sample_rate=SR, concat=concat, warm_up_frames=3)
    a, b, c = (np.full((1, 1, 8), value) for value in (0.1, 0.2, 0.3))
    judge(None, [a])
    judge(None, [a, b])  # a's audio is kept; b is rendered after a's last 3 frames
    judge(a, [b, c])
    assert rendered == [8, 11, 11]
    assert [len(audio) for audio in judged] == [80, 160, 160]  # the window's audio, without the warm-up
    np.testing.assert_allclose(judged[2], np.repeat([0.2] * 8 + [0.3] * 8, 10))


def test_segments_are_three_seconds_of_whole_tokens():
    assert segment_tokens(21.5, 2) == 32  # 64.5 latent frames: 32 tokens of 2
    assert segment_tokens(0.1, 2) == 1


# ------------------------------------------------------------------------------ the detector on one window


def test_is_wash_takes_noise_and_not_notes_or_silence():
    t = np.arange(6 * SR) / SR
    notes = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate([220.0, 277.2, 329.6, 440.0]))
    noise = np.random.default_rng(0).standard_normal(t.size) * 0.2
    assert not is_wash((0.2 * notes).astype(np.float32), SR)
    assert is_wash(noise.astype(np.float32), SR)
    assert not is_wash(np.zeros(t.size, dtype=np.float32), SR)  # silence is a gap


# ------------------------------------------------------------------------------ the samplers go back exactly


def test_the_token_priors_sampler_goes_back_to_its_checkpoint():
    from audiogen.token_prior import TokenPrior

    torch.manual_seed(0)
    prior = TokenPrior(latent_dim=4, codebooks=2, codebook_size=16, frames_per_token=2, width=16, layers=2, heads=2,
                       mlp_ratio=2, context_tokens=5, codebook_steps=1).eval()
    prior.codebooks.update(torch.randn(64, 4))
    generator = torch.Generator().manual_seed(1)
    sampler = prior.sampler(1.0, generator)
    sampler.draw(7)  # past the context: the caches have started to slide
    here, random_here = sampler.checkpoint(), generator.get_state()
    ahead = sampler.draw(4)
    assert ahead.shape == (1, 4, 8)
    sampler.restore(here)
    generator.set_state(random_here)
    torch.testing.assert_close(sampler.draw(4), ahead, rtol=0, atol=0)
    sampler.restore(here)  # the same state, the generator's next numbers: another continuation
    assert not torch.equal(sampler.draw(4), ahead)
