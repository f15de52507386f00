"""Music descriptors of audio clips, and a detector of the broadband "wash" a drifting model falls into.

FAD says how far a set of clips is from real piano, not in what way. These say which way:

- **chroma entropy** (bits, at most log2(12) = 3.58): librosa's ``chroma_stft``, each frame
  normalised to sum 1; clear harmony has a few strong pitch classes (real MAESTRO renderings
  sit near 2.7), smeared harmony spreads over all twelve;
- **onsets per second**: librosa's onset detector; real playing has runs and arpeggios at
  5-10 notes a second, a model holding chords far fewer;
- **silent fraction**: share of frames below ``SILENT_DBFS`` (gaps and drop-outs);
- **spectral flatness** (0 tonal … 1 white noise), mean over non-silent frames;
- **pitch-class histogram**: mean of the normalised chroma frames, compared between sets by
  Jensen-Shannon distance (bits, 0 … 1);
- **tonal ratio**: the share of 60 Hz - 4 kHz energy that lies in spectral peaks at least 10 dB
  above the median of the surrounding 168 Hz; piano notes are sharp partials, a wash is not.

A **wash** is a window of ``WASH_WINDOW_SECONDS`` (hopped by half) of non-silent audio whose
median tonal ratio is below ``WASH_TONAL_RATIO``. Calibration (1,128 windows of 30 rendered
MAESTRO pieces against the bundled model's ``generate --seed 1/2 --seconds 60``): the lowest
real window was 0.557 (1 % below 0.78), the washes of seeds 1 and 2 sat at 0.39-0.53.
Spectral flatness alone and the share of energy above 4 kHz do not separate them: dense real
playing with pedal is as bright and as flat as a wash, but keeps its partials.

Everything here takes mono float audio and a sample rate; nothing reads files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SILENT_DBFS = -60.0  # a frame quieter than this (RMS) is silence
DIGITAL_SILENCE_LEVEL = 1e-4  # |sample| below this is (dithered) digital zero (-80 dBFS)
DIGITAL_SILENCE_FRACTION = 0.99  # a clip with this share of such samples is "digital silence"
FRAME, HOP = 2048, 512  # descriptor frames at 22.05 kHz: 93 ms every 23 ms
TONAL_FFT, TONAL_HOP = 4096, 1024  # 5.4 Hz bins: piano partials resolved down to the bass
TONAL_BAND_HZ = (60.0, 4000.0)
TONAL_PEAK_DB = 10.0
TONAL_MEDIAN_BINS = 31
WASH_WINDOW_SECONDS = 6.0
WASH_TONAL_RATIO = 0.5
WASH_LOUDNESS_RANGE_DB = 50.0  # frames within this much of the clip's loudest count as sounding
SCALARS = ("chroma_entropy", "onsets_per_second", "silent_fraction", "spectral_flatness", "tonal_ratio")


def is_digital_silence(audio: np.ndarray) -> bool:
    """Whether a clip is (almost) all digital zero: such clips say nothing about music, and a few
    of them in a set move FAD more than the music does."""
    audio = np.asarray(audio)
    return audio.size == 0 or float(np.mean(np.abs(audio) < DIGITAL_SILENCE_LEVEL)) >= DIGITAL_SILENCE_FRACTION


def _sounding(rms: np.ndarray) -> np.ndarray:
    return 20 * np.log10(np.maximum(rms, 1e-12)) > SILENT_DBFS


def tonal_ratio_frames(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame (hop ``TONAL_HOP``): the tonal ratio (see the module docstring) and whether the
    frame sounds (louder than ``SILENT_DBFS`` and within ``WASH_LOUDNESS_RANGE_DB`` of the
    clip's loudest frame in the band).

    In numpy alone (the wash guard runs it inside ``generate``, where librosa's first call would
    cost seconds): the frames are librosa's ``stft`` and ``feature.rms`` framing (centred, zero
    padded, a periodic Hann window; tests/test_descriptors.py checks it against librosa).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    audio = np.asarray(audio, dtype=np.float32)
    frames = sliding_window_view(np.pad(audio, TONAL_FFT // 2), TONAL_FFT)[::TONAL_HOP]  # (T, n_fft)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(TONAL_FFT) / TONAL_FFT)).astype(np.float32)
    freqs = np.fft.rfftfreq(TONAL_FFT, 1.0 / sample_rate)
    band = (freqs > TONAL_BAND_HZ[0]) & (freqs < TONAL_BAND_HZ[1])
    spectrum = np.abs(np.fft.rfft(frames * window, axis=1).astype(np.complex64))  # (T, bins): frames outermost,
    power = spectrum[:, band].astype(np.float64) ** 2  # so each frame's neighbourhoods lie together in memory
    half = TONAL_MEDIAN_BINS // 2  # the median of the surrounding (odd) bins, edges repeated
    neighbours = sliding_window_view(np.pad(power, ((0, 0), (half, half)), mode="edge"), TONAL_MEDIAN_BINS, axis=1)
    local = np.partition(neighbours, half, axis=-1)[..., half]
    peaks = power > local * 10 ** (TONAL_PEAK_DB / 10)
    total = power.sum(axis=1)
    level = 10 * np.log10(np.maximum(total, 1e-20))
    sounding = _sounding(rms[: len(level)]) & (level > level.max(initial=-200.0) - WASH_LOUDNESS_RANGE_DB)
    return (power * peaks).sum(axis=1) / np.maximum(total, 1e-20), sounding


def _window_median(ratio: np.ndarray, sounding: np.ndarray) -> float | None:
    """The median tonal ratio of a window's sounding frames; None when it is mostly silence (a
    gap, not a wash)."""
    if sounding.size == 0 or sounding.mean() < 0.5:
        return None
    return float(np.median(ratio[sounding]))


def wash_windows(audio: np.ndarray, sample_rate: int) -> list[tuple[float, float, float]]:
    """(start s, end s, median tonal ratio) of every wash window of a clip (none when it has none)."""
    ratio, sounding = tonal_ratio_frames(audio, sample_rate)
    fps = sample_rate / TONAL_HOP
    size = max(1, int(round(WASH_WINDOW_SECONDS * fps)))
    found = []
    for start in range(0, max(1, len(ratio) - size + 1), max(1, size // 2)):
        median = _window_median(ratio[start: start + size], sounding[start: start + size])
        if median is not None and median < WASH_TONAL_RATIO:
            found.append((start / fps, (start + size) / fps, median))
    return found


def is_wash(audio: np.ndarray, sample_rate: int) -> bool:
    """Whether a stretch of audio (a wash window's length, say), taken as one window, is a wash."""
    median = _window_median(*tonal_ratio_frames(audio, sample_rate))
    return median is not None and median < WASH_TONAL_RATIO


def first_wash(audio: np.ndarray, sample_rate: int) -> float | None:
    """Where a clip's first wash window starts (seconds), or None."""
    windows = wash_windows(audio, sample_rate)
    return windows[0][0] if windows else None


def describe_clip(audio: np.ndarray, sample_rate: int) -> dict:
    """The descriptors of one clip: the scalars of ``SCALARS`` and ``pitch_classes`` (12,)."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    seconds = len(audio) / sample_rate
    rms = librosa.feature.rms(y=audio, frame_length=FRAME, hop_length=HOP)[0]
    chroma = librosa.feature.chroma_stft(y=audio, sr=sample_rate, n_fft=FRAME, hop_length=HOP)
    flatness = librosa.feature.spectral_flatness(y=audio, n_fft=FRAME, hop_length=HOP)[0]
    n = min(len(rms), chroma.shape[1], len(flatness))
    sounding = _sounding(rms[:n])
    onsets = librosa.onset.onset_detect(y=audio, sr=sample_rate, hop_length=HOP, units="frames")
    ratio, tonal_mask = tonal_ratio_frames(audio, sample_rate)
    if not sounding.any():
        nan = float("nan")
        return {"chroma_entropy": nan, "onsets_per_second": 0.0, "silent_fraction": 1.0,
                "spectral_flatness": nan, "tonal_ratio": nan, "pitch_classes": np.full(12, 1 / 12)}
    frames = chroma[:, :n][:, sounding].astype(np.float64)
    frames = frames / np.maximum(frames.sum(axis=0, keepdims=True), 1e-12)
    entropy = -(frames * np.log2(np.maximum(frames, 1e-12))).sum(axis=0)
    return {
        "chroma_entropy": float(entropy.mean()),
        "onsets_per_second": len(onsets) / max(seconds, 1e-9),
        "silent_fraction": float(1.0 - sounding.mean()),
        "spectral_flatness": float(flatness[:n][sounding].mean()),
        "tonal_ratio": float(np.median(ratio[tonal_mask])) if tonal_mask.any() else float("nan"),
        "pitch_classes": frames.mean(axis=1),
    }


def summarize(descriptors: Sequence[dict]) -> dict:
    """Set level: mean and std of each scalar over clips (NaNs of silent clips left out), the
    mean pitch-class histogram, and the number of clips."""
    out: dict = {"clips": len(descriptors)}
    for name in SCALARS:
        values = np.array([d[name] for d in descriptors], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[name] = float(values.mean()) if values.size else float("nan")
        out[name + "_std"] = float(values.std()) if values.size else float("nan")
    histograms = np.array([d["pitch_classes"] for d in descriptors], dtype=np.float64).reshape(-1, 12)
    mean = histograms.mean(axis=0) if len(histograms) else np.full(12, 1 / 12)
    out["pitch_classes"] = (mean / mean.sum()).tolist()
    return out


def jensen_shannon_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance between two histograms, in bits (0 equal … 1 disjoint)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / b[keep])))

    return math.sqrt(max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m)))


def compare_to_reference(summary: dict, reference: dict) -> dict:
    """A set's descriptors next to the reference's: each scalar's difference (set − reference),
    the onset rate as a ratio, and the pitch-class histograms' Jensen-Shannon distance."""
    out = {f"{name}_diff": summary[name] - reference[name] for name in SCALARS}
    out["onsets_ratio"] = summary["onsets_per_second"] / reference["onsets_per_second"] \
        if reference["onsets_per_second"] > 0 else float("nan")
    out["pitch_class_js"] = jensen_shannon_distance(summary["pitch_classes"], reference["pitch_classes"])
    return out
