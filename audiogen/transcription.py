"""Piano transcription data: note labels from MIDI aligned to the renders, decoding, MIDI out, scoring.

The demo set is rendered from MIDI (:mod:`audiogen.demo_data`), so every clip comes with exact
notes. This module turns those notes into frame labels for the transcriber, the transcriber's
frame-wise outputs back into notes, notes into a Standard MIDI File, and scores estimated notes
against reference notes with mir_eval's note-level metrics.

Times are seconds from the start of the *audio*. The renderer cut
``max(0, first_onset - LEAD_SECONDS)`` seconds of leading silence from each FLAC, so labels are
the MIDI's note times minus that shift (:func:`render_shift`). Mel frame ``k`` is centred on
sample ``k * hop`` (a centred STFT), so a note at ``t`` seconds lies at frame ``t * frame_rate``.

Pitches are MIDI numbers; the 88 keys are MIDI 21 (A0) to 108 (C8), key index = pitch - 21.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

N_KEYS = 88
LOWEST_PITCH = 21  # A0, key index 0
ONSET_TOLERANCE = 0.05  # seconds; mir_eval's default and the usual note-onset F1 criterion
SUSTAIN_CC = 64
TICKS_PER_QUARTER = 480
ONSET_FRAMES = 2  # onset target width: 23 ms at 86 frames/s, a short target rather than one frame
WRITE_TEMPO = 500_000  # microseconds per quarter (120 bpm): 960 ticks a second


@dataclass(frozen=True)
class Notes:
    """A set of notes as parallel arrays, sorted by onset then pitch.

    Attributes:
        onsets: (N,) float64 seconds.
        offsets: (N,) float64 seconds, each > its onset.
        pitches: (N,) int64 MIDI numbers.
        velocities: (N,) int64 MIDI velocities 1..127.
    """

    onsets: np.ndarray
    offsets: np.ndarray
    pitches: np.ndarray
    velocities: np.ndarray

    def __len__(self) -> int:
        return len(self.onsets)

    @classmethod
    def empty(cls) -> Notes:
        return cls(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def of(cls, onsets: Any, offsets: Any, pitches: Any, velocities: Any) -> Notes:
        """Build from sequences, sorting by (onset, pitch)."""
        onsets, offsets = np.asarray(onsets, np.float64), np.asarray(offsets, np.float64)
        pitches, velocities = np.asarray(pitches, np.int64), np.asarray(velocities, np.int64)
        order = np.lexsort((pitches, onsets))
        return cls(onsets[order], offsets[order], pitches[order], velocities[order])

    def shifted(self, seconds: float) -> Notes:
        """The same notes ``seconds`` earlier (labels for audio that starts ``seconds`` into the MIDI)."""
        return Notes(self.onsets - seconds, self.offsets - seconds, self.pitches, self.velocities)

    def between(self, start: float, stop: float) -> Notes:
        """Notes whose onset lies in [start, stop), offsets cut at ``stop``, times relative to ``start``."""
        keep = (self.onsets >= start) & (self.onsets < stop)
        return Notes(self.onsets[keep] - start, np.minimum(self.offsets[keep], stop) - start,
                     self.pitches[keep], self.velocities[keep])


# --------------------------------------------------------------------------------------------
# MIDI in


def read_midi_notes(data: bytes, sustain: bool = True) -> Notes:
    """The notes of a Standard MIDI File (all tracks and channels), in seconds of the MIDI.

    With ``sustain``, a note released while its channel's sustain pedal (CC 64 >= 64) is down
    rings until the pedal comes up, or until the same key is struck again: that is what the
    renderer plays (FluidSynth honours CC 64), so frame labels follow the sound. A note still
    held at the end of the file ends at the last event.
    """
    # the demo renderer's own SMF reader: the labels read the file exactly as it was rendered
    from audiogen.demo_data import _parse, _seconds_of_ticks

    division, tracks = _parse(data)
    seconds_at = _seconds_of_ticks(division, tracks)
    # at one tick: controllers, then note-offs, then note-ons (a re-struck key ends, then starts)
    order = {0xB0: 0, 0x80: 1, 0x90: 2}
    events = sorted(
        (e.tick, order[e.status & 0xF0] if (e.status & 0xF0) != 0x90 or data[e.data_pos + 1] > 0 else 1,
         e.status & 0x0F, data[e.data_pos], data[e.data_pos + 1])
        for t in tracks for e in t.events if (e.status & 0xF0) in order and e.data_pos + 1 < len(data))
    sounding: dict[tuple[int, int], tuple[int, int]] = {}  # (channel, pitch) -> (onset tick, velocity)
    released: set[tuple[int, int]] = set()  # keys let go of while the pedal holds them
    pedal: dict[int, bool] = {}
    out: list[tuple[int, int, int, int]] = []

    def end(key: tuple[int, int], tick: int) -> None:
        onset, velocity = sounding.pop(key)
        released.discard(key)
        out.append((onset, tick, key[1], velocity))

    for tick, kind, channel, a, b in events:
        if kind == 0:
            if a != SUSTAIN_CC:
                continue
            pedal[channel] = b >= 64
            if not pedal[channel]:
                for key in [k for k in released if k[0] == channel]:
                    end(key, tick)
        elif kind == 1:
            key = (channel, a)
            if key in sounding and key not in released:
                if sustain and pedal.get(channel):
                    released.add(key)
                else:
                    end(key, tick)
        else:
            key = (channel, a)
            if key in sounding:
                end(key, tick)
            sounding[key] = (tick, b)
    last = max(t.end_tick for t in tracks)
    for key in list(sounding):
        end(key, max(last, sounding[key][0]))
    if not out:
        return Notes.empty()
    ticks = sorted({tick for on, off, _, _ in out for tick in (on, off)})
    seconds = dict(zip(ticks, map(seconds_at, ticks), strict=True))
    onsets = [seconds[on] for on, _, _, _ in out]
    # a zero-length note (on and off at one tick) still sounds: give it one millisecond
    offsets = [max(seconds[off], seconds[on] + 1e-3) for on, off, _, _ in out]
    return Notes.of(onsets, offsets, [p for _, _, p, _ in out], [v for _, _, _, v in out])


def render_shift(data: bytes) -> float:
    """Seconds of the MIDI that the demo renderer cut before the audio starts."""
    from audiogen.demo_data import LEAD_SECONDS, note_span

    return max(0.0, note_span(data)[0] - LEAD_SECONDS)


def rendered_notes(midi_path: str | Path) -> Notes:
    """The notes of a demo-set MIDI file in seconds of its rendered audio."""
    data = Path(midi_path).read_bytes()
    return read_midi_notes(data).shifted(render_shift(data))


# --------------------------------------------------------------------------------------------
# Frame labels


def frame_labels(notes: Notes, start_frame: int, n_frames: int, frame_rate: float,
                 onset_frames: int = ONSET_FRAMES) -> dict[str, np.ndarray]:
    """Onset, frame and velocity targets of frames [start_frame, start_frame + n_frames).

    A note from ``t0`` to ``t1`` seconds covers frames ``round(t0 * rate)`` up to (not
    including) ``round(t1 * rate)``, at least one; its onset marks the first ``onset_frames``
    of them and its velocity / 127 the same frames of the velocity target.

    Returns:
        ``{"onset", "frame", "velocity"}``, each (88, n_frames) float32 in [0, 1].
    """
    onset = np.zeros((N_KEYS, n_frames), np.float32)
    frame = np.zeros((N_KEYS, n_frames), np.float32)
    velocity = np.zeros((N_KEYS, n_frames), np.float32)
    if len(notes):
        first = np.rint(notes.onsets * frame_rate).astype(np.int64) - start_frame
        last = np.maximum(np.rint(notes.offsets * frame_rate).astype(np.int64) - start_frame, first + 1)
        keys = notes.pitches - LOWEST_PITCH
        inside = (last > 0) & (first < n_frames) & (keys >= 0) & (keys < N_KEYS)
        for a, b, k, v in zip(first[inside], last[inside], keys[inside], notes.velocities[inside], strict=True):
            frame[k, max(a, 0):min(b, n_frames)] = 1.0
            if a >= 0:
                onset[k, a:min(a + onset_frames, n_frames)] = 1.0
                velocity[k, a:min(a + onset_frames, n_frames)] = v / 127.0
    return {"onset": onset, "frame": frame, "velocity": velocity}


# --------------------------------------------------------------------------------------------
# Decoding


def decode_notes(onset_prob: np.ndarray, frame_prob: np.ndarray, velocity: np.ndarray | None, frame_rate: float,
                 onset_threshold: float = 0.5, frame_threshold: float = 0.5, min_gap: float = 0.0) -> Notes:
    """Frame-wise probabilities of one clip to notes (the onsets-and-frames rule).

    A note starts at the first frame of each run of onset probability above ``onset_threshold``
    and lasts while the frame probability stays above ``frame_threshold`` (its onset frames
    count as sounding), ending at the next onset of the same key at the latest. An onset run that
    starts less than ``min_gap`` seconds after the previous note's start on its key is taken for a
    second peak of that attack and ignored.

    Args:
        onset_prob: (88, T) in [0, 1].
        frame_prob: (88, T) in [0, 1].
        velocity: (88, T) in [0, 1] (velocity / 127) or None (all notes velocity 64).
        frame_rate: frames per second.

    Returns:
        The notes, times in seconds of the clip (frame k is at k / frame_rate).
    """
    onset_on = onset_prob > onset_threshold
    frame_on = frame_prob > frame_threshold
    starts = onset_on & ~np.pad(onset_on, ((0, 0), (1, 0)))[:, :-1]  # first frame of each onset run
    gap = int(round(min_gap * frame_rate))
    if gap > 0:
        for key in np.flatnonzero(starts.any(axis=1)):
            last = -gap - 1
            for frame in np.flatnonzero(starts[key]):
                if frame - last < gap:
                    starts[key, frame] = False
                else:
                    last = frame
    n_frames = onset_prob.shape[1]
    onsets, offsets, pitches, velocities = [], [], [], []
    for key, frame in zip(*np.nonzero(starts), strict=True):
        stop = frame + 1
        while stop < n_frames and (frame_on[key, stop] or onset_on[key, stop]) and not starts[key, stop]:
            stop += 1
        vel = 64 if velocity is None else int(np.clip(round(float(velocity[key, frame]) * 127), 1, 127))
        onsets.append(frame / frame_rate)
        offsets.append(stop / frame_rate)
        pitches.append(key + LOWEST_PITCH)
        velocities.append(vel)
    return Notes.of(onsets, offsets, pitches, velocities) if onsets else Notes.empty()


# --------------------------------------------------------------------------------------------
# MIDI out


def midi_varlen(value: int) -> bytes:
    """A MIDI variable-length quantity (7 bits a byte, high bit set on all but the last)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: Notes) -> bytes:
    """A type-0 Standard MIDI File of the notes on channel 1, piano, 120 bpm (960 ticks a second)."""
    ticks_per_second = TICKS_PER_QUARTER * 1e6 / WRITE_TEMPO
    events: list[tuple[int, int, bytes]] = []  # (tick, 0 for off / 1 for on, message)
    for on, off, pitch, vel in zip(notes.onsets, notes.offsets, notes.pitches, notes.velocities, strict=True):
        start = max(0, int(round(on * ticks_per_second)))
        stop = max(start + 1, int(round(off * ticks_per_second)))
        events.append((start, 1, bytes([0x90, int(pitch), int(np.clip(vel, 1, 127))])))
        events.append((stop, 0, bytes([0x80, int(pitch), 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    body = bytearray(b"\x00\xff\x51\x03" + WRITE_TEMPO.to_bytes(3, "big") + b"\x00\xc0\x00")
    now = 0
    for tick, _, message in events:
        body += midi_varlen(tick - now) + message
        now = tick
    body += b"\x00\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") \
        + TICKS_PER_QUARTER.to_bytes(2, "big")
    return header + b"MTrk" + len(body).to_bytes(4, "big") + bytes(body)


def write_midi(notes: Notes, path: str | Path) -> None:
    """Write :func:`midi_bytes` to ``path`` atomically (a temporary file, then a rename)."""
    import os
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(midi_bytes(notes))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# Scoring


def note_scores(reference: Notes, estimate: Notes, onset_tolerance: float = ONSET_TOLERANCE) -> dict[str, float]:
    """Note-level precision, recall and F1 on onsets and pitch only (mir_eval, offsets ignored).

    A reference note is found when an estimate of the same pitch starts within
    ``onset_tolerance`` seconds of it (each matched at most once). With no notes on either side
    the scores are 1; with notes on one side only, 0.
    """
    if not len(reference) and not len(estimate):
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    if not len(reference) or not len(estimate):
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    import mir_eval

    def intervals(notes: Notes) -> np.ndarray:
        return np.stack([notes.onsets, np.maximum(notes.offsets, notes.onsets + 1e-3)], axis=1)

    def hertz(notes: Notes) -> np.ndarray:
        return 440.0 * 2.0 ** ((notes.pitches - 69) / 12.0)

    precision, recall, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        intervals(reference), hertz(reference), intervals(estimate), hertz(estimate),
        onset_tolerance=onset_tolerance, offset_ratio=None)
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def pooled_scores(per_clip: list[tuple[dict[str, float], int, int]]) -> dict[str, float]:
    """Precision, recall and F1 pooled over clips, from each clip's scores and note counts.

    Args:
        per_clip: (scores, reference notes, estimated notes) per clip; matches are recovered as
            recall * reference notes, so clips weigh by their notes rather than equally.
    """
    matched = sum(s["recall"] * n_ref for s, n_ref, _ in per_clip)
    n_ref = sum(n for _, n, _ in per_clip)
    n_est = sum(n for _, _, n in per_clip)
    precision = matched / n_est if n_est else float(n_ref == 0)
    recall = matched / n_ref if n_ref else float(n_est == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --------------------------------------------------------------------------------------------
# Training data


def piece_midi_path(midi_dir: str | Path, metadata: dict[str, Any]) -> Path:
    """The MIDI file beside a cache piece's audio in the MAESTRO-layout folder ``midi_dir``."""
    name = metadata.get("midi_filename") or str(Path(str(metadata.get("source", ""))).with_suffix(".mid"))
    return Path(midi_dir) / name


class NoteLabels:
    """Each cache piece's notes, read from its MIDI on first use and kept (a few kB a piece)."""

    def __init__(self, midi_dir: str | Path):
        self.midi_dir = Path(midi_dir)
        self._notes: dict[str, Notes] = {}

    def notes(self, entry: Any) -> Notes:
        """The rendered-audio notes of a :class:`audiogen.cache.PieceEntry`."""
        if entry.name not in self._notes:
            from audiogen.sources import DataError

            path = piece_midi_path(self.midi_dir, entry.metadata)
            if not path.is_file():
                raise DataError(f"{path}: no MIDI file for cache piece {entry.name} (transcriber labels need "
                                f"the MIDI beside each rendered FLAC; is midi_dir the demo set's folder?)")
            self._notes[entry.name] = rendered_notes(path)
        return self._notes[entry.name]


class TranscriptionDataset:
    """Random log-mel windows of a cache split with their note labels (map-style, deterministic).

    Windows are chosen exactly as :class:`audiogen.datasets.SegmentDataset` chooses them (by
    seed, epoch and index); ``ds[i]`` is ``{"mel": (n_mels, F), "onset": (88, F), "frame":
    (88, F), "velocity": (88, F)}`` float32 tensors, F = ``segment_frames``.
    """

    def __init__(self, cache_dir: str | Path, split: str, segment_frames: int, midi_dir: str | Path,
                 seed: int = 0, expected_frontend: Any = None):
        from audiogen.datasets import SegmentDataset

        self.windows = SegmentDataset(cache_dir, split, segment_frames, with_audio=False, seed=seed,
                                      expected_frontend=expected_frontend)
        self.labels = NoteLabels(midi_dir)
        self.frame_rate = self.windows.cache.frontend.frame_rate

    def set_epoch(self, epoch: int) -> None:
        self.windows.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        item = self.windows[index]
        position, start = self.windows.window(index % len(self.windows))
        notes = self.labels.notes(self.windows.entries[position])
        labels = frame_labels(notes, start, self.windows.segment_frames, self.frame_rate)
        return {"mel": item["mel"], **{k: torch.from_numpy(v) for k, v in labels.items()}}
