"""Music descriptors and the wash detector on signals whose answers are known."""

import numpy as np
import pytest

from audiogen.descriptors import (
    compare_to_reference,
    describe_clip,
    first_wash,
    is_digital_silence,
    jensen_shannon_distance,
    summarize,
    wash_windows,
)

SR = 22050


def plucked(freqs_hz, seconds, notes_per_second, seed=0):
    """Decaying harmonic tones (a plucked-string stand-in for piano), cycling through ``freqs_hz``."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SR), dtype=np.float64)
    step = int(SR / notes_per_second)
    t = np.arange(int(1.5 * SR)) / SR
    for k, start in enumerate(range(0, len(out), step)):
        f0 = freqs_hz[k % len(freqs_hz)]
        tone = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 6))
        tone *= np.exp(-3 * t)
        end = min(len(out), start + len(tone))
        out[start:end] += tone[: end - start]
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def wash(seconds, seed=0):
    """Broadband noise, smoothed a little: bright and loud, with no partials."""
    noise = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return (0.1 * np.convolve(noise, np.ones(3) / 3, mode="same")).astype(np.float32)


def test_digital_silence():
    assert is_digital_silence(np.zeros(SR, dtype=np.float32))
    assert is_digital_silence(np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 1e-5)
    assert not is_digital_silence(plucked([440.0], 1.0, 2))
    almost = np.zeros(SR, dtype=np.float32)
    almost[: SR // 10] = 0.5  # a tenth of a second of sound is music enough to keep
    assert not is_digital_silence(almost)


def test_descriptors_tell_harmony_rhythm_and_noise_apart():
    c_major = [261.63, 329.63, 392.0]  # C, E, G
    chord = describe_clip(plucked(c_major, 10.0, 2), SR)
    busy = describe_clip(plucked(c_major, 10.0, 6), SR)
    noise = describe_clip(wash(10.0), SR)
    assert chord["chroma_entropy"] < noise["chroma_entropy"] - 0.5
    assert noise["chroma_entropy"] > 3.3  # near log2(12) = 3.58
    assert chord["onsets_per_second"] == pytest.approx(2.0, abs=0.5)
    assert busy["onsets_per_second"] == pytest.approx(6.0, abs=1.5)
    assert chord["spectral_flatness"] < noise["spectral_flatness"] / 10
    assert chord["tonal_ratio"] > 0.8 > 0.2 > noise["tonal_ratio"]
    top = set(np.argsort(chord["pitch_classes"])[-3:])
    assert top == {0, 4, 7}  # C, E, G
    gapped = np.concatenate([plucked(c_major, 5.0, 2), np.zeros(5 * SR, dtype=np.float32)])
    assert describe_clip(gapped, SR)["silent_fraction"] == pytest.approx(0.5, abs=0.1)


def test_wash_detector_flags_a_switch_into_noise_and_not_dense_playing():
    playing = plucked([220.0, 277.18, 329.63, 440.0, 554.37], 30.0, 8)  # dense arpeggios
    assert wash_windows(playing, SR) == []
    switched = np.concatenate([playing[: 20 * SR], wash(20.0)])
    start = first_wash(switched, SR)
    assert start is not None and 15.0 <= start <= 21.0
    assert first_wash(np.zeros(10 * SR, dtype=np.float32), SR) is None  # silence is a gap, not a wash


def test_set_summaries_and_distances():
    a = summarize([describe_clip(plucked([261.63], 5.0, 2), SR), describe_clip(plucked([261.63], 5.0, 3), SR)])
    b = summarize([describe_clip(plucked([369.99], 5.0, 2), SR)])  # F sharp: far from C
    assert a["clips"] == 2 and len(a["pitch_classes"]) == 12
    assert compare_to_reference(a, a)["pitch_class_js"] == pytest.approx(0.0, abs=1e-9)
    assert compare_to_reference(b, a)["pitch_class_js"] > 0.3
    assert compare_to_reference(a, a)["onsets_ratio"] == pytest.approx(1.0)
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert jensen_shannon_distance([1, 1], [1, 1]) == pytest.approx(0.0)


def test_tonal_ratio_frames_are_librosas_stft_and_rms_framing():
    # the numpy implementation (the wash guard runs it inside generate) against the same formula on
    # librosa's stft, feature.rms and scipy's median filter, which it replaced
    import librosa
    from scipy.ndimage import median_filter

    from audiogen.descriptors import TONAL_BAND_HZ, TONAL_FFT, TONAL_HOP, TONAL_MEDIAN_BINS, tonal_ratio_frames

    audio = np.concatenate([plucked([220.0, 330.0, 440.0], 4.0, 6), wash(3.0), np.zeros(SR, np.float32)])[:-123]
    ratio, sounding = tonal_ratio_frames(audio, SR)
    power = np.abs(librosa.stft(audio, n_fft=TONAL_FFT, hop_length=TONAL_HOP)).astype(np.float64) ** 2
    freqs = librosa.fft_frequencies(sr=SR, n_fft=TONAL_FFT)
    power = power[(freqs > TONAL_BAND_HZ[0]) & (freqs < TONAL_BAND_HZ[1])]
    peaks = power > median_filter(power, size=(TONAL_MEDIAN_BINS, 1), mode="nearest") * 10.0
    expected = (power * peaks).sum(axis=0) / np.maximum(power.sum(axis=0), 1e-20)
    np.testing.assert_allclose(ratio, expected, atol=1e-6)
    rms = librosa.feature.rms(y=audio, frame_length=TONAL_FFT, hop_length=TONAL_HOP)[0]
    level = 10 * np.log10(np.maximum(power.sum(axis=0), 1e-20))
    np.testing.assert_array_equal(sounding, (20 * np.log10(np.maximum(rms, 1e-12)) > -60) & (level > level.max() - 50))
    second = SR // TONAL_HOP  # frames a second
    assert not sounding[-second + 3:].any()  # the silent end
    assert ratio[second: 3 * second].min() > 0.5 > ratio[5 * second: 6 * second].max()  # notes, then the wash
