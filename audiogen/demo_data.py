"""The demo dataset: MIDI rendered to a MAESTRO-layout set of FLACs with FluidSynth, no download.

``tools/make_demo_dataset.py`` is the command; this module is the library behind it:

- :func:`force_piano` rewrites a Standard MIDI File so every channel plays General MIDI program 0
  (acoustic grand piano): program changes and bank selects become 0 and channel 10 (GM drums,
  which FluidSynth always plays from the percussion bank) moves to a free channel. Sustain and
  the other pedals are left as recorded; FluidSynth honours CC 64.
- :func:`render_midi` renders one file with FluidSynth to 32-bit float (no clipping, no dither),
  mixes to mono, normalises to a fixed peak (-1 dBFS by default) and writes 16-bit FLAC at 44.1 kHz.
- :func:`midi_duration` reads a file's length in seconds from its tempo map.
- :func:`select_by_hours` caps the total duration while keeping every split represented.
- :func:`music21_corpus_candidates` lists the public-domain scores bundled with music21 (Bach
  chorales and a few piano pieces) that a fresh machine can always render.
- :func:`build_demo_dataset` ties these together with parallel workers and a progress bar.

Everything is deterministic: same inputs, same FLAC bytes and the same metadata CSV.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from audiogen.maestro import MaestroRecord, find_maestro_metadata, read_maestro_metadata, write_maestro_csv
from audiogen.sources import SPLITS, DataError, split_for_key, stable_hash

SAMPLE_RATE = 44100
PEAK_DBFS = -1.0
FLUIDSYNTH_GAIN = 0.3
FLUIDSYNTH_PATHS = ("/usr/bin/fluidsynth", "/usr/local/bin/fluidsynth")
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)
# Each of validation and test gets at least this share of --hours (when that much exists), so a
# small cap still leaves enough held-out audio to validate on.
MIN_EVAL_FRACTION = 0.1
GM_DRUM_CHANNEL = 9  # zero-based MIDI channel 10
MAX_MISSES = 20  # a lazily measured split stops filling after this many pieces in a row did not fit
TAIL_SECONDS = 3.0  # rendered audio kept after the last sounding note (release and reverb)
LEAD_SECONDS = 0.25  # kept before the first note-on, so its attack is whole
FADE_SECONDS = 0.05


class RenderError(RuntimeError):
    """FluidSynth or the SoundFont is missing, or a file could not be rendered."""


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


def find_fluidsynth(path: str | None = None) -> str:
    """The FluidSynth executable, or a RenderError naming the Debian package to install."""
    candidates = [path] if path else [shutil.which("fluidsynth"), *FLUIDSYNTH_PATHS]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise RenderError(
        f"FluidSynth not found{f' at {path}' if path else ''}: install it with "
        "`sudo apt-get install fluidsynth` (Debian/Ubuntu package `fluidsynth`)"
    )


def find_soundfont(path: str | None = None) -> str:
    """The General MIDI SoundFont (FluidR3_GM), or a RenderError naming the Debian package."""
    candidates = [path] if path else list(SOUNDFONT_PATHS)
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return candidate
    raise RenderError(
        f"General MIDI SoundFont not found (looked for {', '.join(candidates)}): install it with "
        "`sudo apt-get install fluid-soundfont-gm` (Debian/Ubuntu package `fluid-soundfont-gm`)"
    )


# --------------------------------------------------------------------------------------------
# Minimal Standard MIDI File reading and rewriting
# --------------------------------------------------------------------------------------------


def _read_varlen(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        if pos >= len(data):
            raise RenderError("truncated variable-length number")
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos
    raise RenderError("variable-length number longer than 4 bytes")


@dataclass(frozen=True)
class _Event:
    """One channel event: its absolute tick, where its status byte and data bytes are."""

    tick: int
    status_pos: int  # position of the (possibly earlier, running) status byte
    data_pos: int
    status: int


@dataclass
class _Track:
    events: list[_Event]
    tempos: list[tuple[int, int]]  # (tick, microseconds per quarter)
    end_tick: int


def _chunks(data: bytes | bytearray) -> list[tuple[bytes, int, int]]:
    """(chunk id, start of body, end of body) for every chunk of an SMF."""
    chunks = []
    pos = 0
    while pos + 8 <= len(data):
        kind = bytes(data[pos : pos + 4])
        length = int.from_bytes(data[pos + 4 : pos + 8], "big")
        chunks.append((kind, pos + 8, min(pos + 8 + length, len(data))))
        pos += 8 + length
    if not chunks or chunks[0][0] != b"MThd" or chunks[0][2] - chunks[0][1] < 6:
        raise RenderError("not a Standard MIDI File (no MThd header)")
    return chunks


def _parse_track(data: bytes | bytearray, start: int, end: int) -> _Track:
    events: list[_Event] = []
    tempos: list[tuple[int, int]] = []
    pos, tick, status, status_pos = start, 0, 0, -1
    while pos < end:
        delta, pos = _read_varlen(data, pos)
        tick += delta
        if pos >= end:
            break
        byte = data[pos]
        if byte == 0xFF:  # meta event: type, length, data
            kind = data[pos + 1]
            length, body = _read_varlen(data, pos + 2)
            if kind == 0x51 and length == 3:
                tempos.append((tick, int.from_bytes(data[body : body + 3], "big")))
            pos = body + length
            if kind == 0x2F:
                break
            continue
        if byte in (0xF0, 0xF7):  # sysex: length, data
            length, body = _read_varlen(data, pos + 1)
            pos = body + length
            continue
        if byte & 0x80:
            status, status_pos = byte, pos
            pos += 1
        elif status < 0x80:
            raise RenderError(f"data byte without a running status at offset {pos}")
        n_data = 1 if status & 0xF0 in (0xC0, 0xD0) else 2
        events.append(_Event(tick=tick, status_pos=status_pos, data_pos=pos, status=status))
        pos += n_data
    return _Track(events=events, tempos=tempos, end_tick=tick)


def _parse(data: bytes | bytearray) -> tuple[int, list[_Track]]:
    chunks = _chunks(data)
    _, hstart, _ = chunks[0]
    division = int.from_bytes(data[hstart + 4 : hstart + 6], "big")
    tracks = [_parse_track(data, s, e) for kind, s, e in chunks[1:] if kind == b"MTrk"]
    if not tracks:
        raise RenderError("MIDI file has no tracks")
    return division, tracks


def _seconds_of_ticks(division: int, tracks: list[_Track]) -> Callable[[int], float]:
    """A function from absolute tick to seconds, with the file's tempo map applied."""
    if division & 0x8000:  # SMPTE time: -frames per second, ticks per frame
        ticks_per_second = (256 - (division >> 8)) * (division & 0xFF)
        return lambda tick: tick / ticks_per_second
    # (tick, seconds at that tick, tempo from there on); 120 bpm until the first tempo event
    changes = sorted({tick: tempo for t in tracks for tick, tempo in t.tempos}.items())
    segments = [(0, 0.0, 500_000)]
    for tick, tempo in changes:
        start, seconds, old = segments[-1]
        if tick == start:
            segments[-1] = (start, seconds, tempo)
        else:
            segments.append((tick, seconds + (tick - start) * old / (1e6 * division), tempo))

    def seconds_at(tick: int) -> float:
        start, seconds, tempo = next(seg for seg in reversed(segments) if seg[0] <= tick)
        return seconds + (tick - start) * tempo / (1e6 * division)

    return seconds_at


def midi_duration(data: bytes) -> float:
    """Length of a Standard MIDI File in seconds (to its last event, tempo map applied)."""
    division, tracks = _parse(data)
    return _seconds_of_ticks(division, tracks)(max(t.end_tick for t in tracks))


def note_span(data: bytes) -> tuple[float, float]:
    """(first note-on, last sounding moment) of a Standard MIDI File, in seconds.

    The last sounding moment is the latest note-off, or, when the sustain pedal (CC 64) is
    still down then, the pedal's release after it. Real MAESTRO files carry events well beyond
    that (a median 21 s in the test split, once 245 s), and some a long wait before the first
    note: a renderer that keeps them writes minutes of digital silence.

    Raises:
        RenderError: the file has no notes.
    """
    division, tracks = _parse(data)
    seconds_at = _seconds_of_ticks(division, tracks)
    events = sorted((e.tick, e.status & 0xF0, e.status & 0x0F, e.data_pos) for t in tracks for e in t.events)
    first_on = None
    pedal_down: dict[int, bool] = {}
    held_by_pedal: set[int] = set()  # channels whose notes ring on after their note-off
    release = 0
    for tick, kind, channel, pos in events:
        velocity = data[pos + 1] if pos + 1 < len(data) else 0
        if kind == 0x90 and velocity > 0:
            first_on = tick if first_on is None else first_on
            release = max(release, tick)
        elif kind == 0x80 or kind == 0x90:
            release = max(release, tick)
            if pedal_down.get(channel):
                held_by_pedal.add(channel)
        elif kind == 0xB0 and data[pos] == 64:
            down = data[pos + 1] >= 64
            if not down and channel in held_by_pedal:
                release = max(release, tick)
                held_by_pedal.discard(channel)
            pedal_down[channel] = down
    if first_on is None:
        raise RenderError("MIDI file has no notes")
    if held_by_pedal:  # the pedal is never lifted: the notes ring to the end of the file
        release = max(t.end_tick for t in tracks)
    return seconds_at(first_on), seconds_at(release)


def force_piano(data: bytes) -> bytes:
    """Rewrite a Standard MIDI File so every note plays GM program 0 (acoustic grand piano).

    The file keeps its length and timing: bytes are changed in place. Program changes get
    program 0, bank selects (CC 0 and CC 32) value 0, and events on channel 10 (GM percussion)
    move to the lowest channel the file does not use (channel 1 when all 16 are used).
    Pedals (CC 64, 66, 67) are untouched.
    """
    out = bytearray(data)
    _, tracks = _parse(out)
    used = {e.status & 0x0F for t in tracks for e in t.events}
    free = [c for c in range(16) if c not in used and c != GM_DRUM_CHANNEL]
    drum_target = free[0] if free else 0
    seen_status: set[int] = set()
    for track in tracks:
        for event in track.events:
            kind, channel = event.status & 0xF0, event.status & 0x0F
            if channel == GM_DRUM_CHANNEL and event.status_pos not in seen_status:
                out[event.status_pos] = kind | drum_target
                seen_status.add(event.status_pos)
            if kind == 0xC0:
                out[event.data_pos] = 0
            elif kind == 0xB0 and out[event.data_pos] in (0, 32):
                out[event.data_pos + 1] = 0
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderResult:
    """What rendering one file produced: seconds written, the MIDI file's own length, the peak
    before normalisation in dBFS, and the silence cut before the first note and after the last
    note's release (seconds)."""

    duration: float
    midi_duration: float
    raw_peak_dbfs: float
    trimmed_head: float = 0.0
    trimmed_tail: float = 0.0


def render_midi(
    midi: bytes,
    out_path: str | Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    peak_dbfs: float = PEAK_DBFS,
    gain: float = FLUIDSYNTH_GAIN,
    fluidsynth: str | None = None,
    soundfont: str | None = None,
) -> RenderResult:
    """Render MIDI bytes through the GM acoustic grand piano to a mono 16-bit FLAC (or WAV).

    FluidSynth writes 32-bit float, so nothing clips inside it whatever the gain; the mono mix
    is then scaled to ``peak_dbfs`` and written atomically. Reverb stays on (a dry SoundFont
    piano sounds boxed), chorus is off (it detunes a piano).

    Raises:
        RenderError: FluidSynth/SoundFont missing, FluidSynth failing, a silent result, or a
            rendered length that does not match the MIDI file's.
    """
    from audiogen.audio import save_audio

    exe = find_fluidsynth(fluidsynth)
    sf2 = find_soundfont(soundfont)
    expected = midi_duration(midi)
    with tempfile.TemporaryDirectory(prefix="audiogen-render-") as tmp:
        mid_path = Path(tmp) / "in.mid"
        wav_path = Path(tmp) / "out.wav"
        mid_path.write_bytes(force_piano(midi))
        cmd = [
            exe, "-n", "-i", "-q",
            "-F", str(wav_path), "-T", "wav", "-O", "float",
            "-r", str(sample_rate), "-g", str(gain),
            "-R", "1", "-C", "0",
            "-o", "synth.cpu-cores=1",
            sf2, str(mid_path),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0 or not wav_path.is_file():
            message = (proc.stderr or proc.stdout).strip().splitlines()
            raise RenderError(f"fluidsynth failed ({proc.returncode}): {message[-1] if message else ''}")
        import soundfile as sf

        audio, rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    # FluidSynth plays to the MIDI file's last event and then until every voice has died away
    # (for an unreleased note, tens of seconds far below hearing). Keep the sounding span only:
    # from just before the first note to a fixed tail after the last release, fading out the
    # last 50 ms so the cut is silent. What lies outside it is digital silence or inaudible.
    first_on, last_sound = note_span(midi)
    start = int(round(max(0.0, first_on - LEAD_SECONDS) * rate))
    stop = min(len(mono), int(round((last_sound + TAIL_SECONDS) * rate)))
    if stop - start < int(round((last_sound - first_on) * rate)) - int(0.05 * rate):
        raise RenderError(f"rendered {len(mono) / rate:.2f} s but the MIDI file's notes end at {last_sound:.2f} s")
    trimmed_head, trimmed_tail = start / rate, max(0.0, expected - last_sound)
    mono = mono[start:stop].copy()
    fade = min(len(mono), int(FADE_SECONDS * rate))
    if stop < len(audio) and fade:
        mono[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    duration = len(mono) / rate
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak < 1e-5:
        raise RenderError("rendered audio is silent (no notes?)")
    mono = (mono * (10 ** (peak_dbfs / 20) / peak)).astype(np.float32)
    save_audio(out_path, mono, rate)
    return RenderResult(duration=duration, midi_duration=expected, raw_peak_dbfs=20 * math.log10(peak),
                        trimmed_head=trimmed_head, trimmed_tail=trimmed_tail)


# --------------------------------------------------------------------------------------------
# Choosing what to render
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A MIDI piece that may be rendered: its metadata row (duration may be 0 when unknown) and
    where its MIDI comes from (a file, or a music21 corpus path converted on demand)."""

    record: MaestroRecord
    midi_path: Path | None = None
    corpus_path: str | None = None


def split_targets(available: dict[str, float], total: float, capped: bool = True) -> dict[str, float]:
    """Seconds to take per split: in proportion to ``available``, but each of validation and test
    at least ``MIN_EVAL_FRACTION`` of the total (when it has any); train gets the rest.

    ``available`` is seconds per split; with ``capped`` False it only gives the proportions
    (e.g. piece counts when durations are not known yet) and no target is capped by it.
    """
    whole = sum(available.values())
    if whole <= 0:
        return {s: 0.0 for s in SPLITS}
    limit = dict(available) if capped else {s: math.inf if available.get(s, 0) > 0 else 0.0 for s in SPLITS}
    targets = {s: total * available.get(s, 0.0) / whole for s in SPLITS}
    for split in ("validation", "test"):
        if available.get(split, 0.0) > 0:
            targets[split] = min(max(targets[split], MIN_EVAL_FRACTION * total), limit[split])
    targets["train"] = min(max(total - targets["validation"] - targets["test"], 0.0), limit.get("train", 0.0))
    return targets


def _order(candidates: Sequence[Candidate]) -> list[Candidate]:
    # a hash order mixes composers and years, so a small cap still gets a varied set
    return sorted(candidates, key=lambda c: (stable_hash("demo:" + c.record.midi_filename), c.record.midi_filename))


def select_by_hours(
    candidates: Sequence[Candidate],
    hours: float | None,
    measure: Callable[[Candidate], Candidate] | None = None,
) -> list[Candidate]:
    """Pieces to render under a cap of ``hours``, every split that has pieces represented.

    Within a split, pieces are taken in a fixed hash order whenever they still fit the split's
    target (so the choice is deterministic and varied); the first piece of a split is always
    taken. ``measure`` fills in unknown durations lazily (corpus scores are converted only as
    far as needed). Returns the chosen pieces sorted by MIDI file name.
    """
    by_split = {s: _order([c for c in candidates if c.record.split == s]) for s in SPLITS}
    if hours is None:
        targets = {s: math.inf for s in SPLITS}
    else:
        if measure is None:
            targets = split_targets({s: sum(c.record.duration for c in by_split[s]) for s in SPLITS}, hours * 3600)
        else:  # unknown lengths: split in proportion to the piece counts
            targets = split_targets({s: float(len(by_split[s])) for s in SPLITS}, hours * 3600, capped=False)
    chosen: list[Candidate] = []
    for split in SPLITS:
        total, misses = 0.0, 0
        for candidate in by_split[split]:
            # stop when the split is full or, when durations cost a conversion, once the last
            # pieces tried were all too long for what is left (bounds a nearly full split's cost)
            if (targets[split] - total < 1.0 and total > 0) or (measure is not None and misses >= MAX_MISSES):
                break
            if measure is not None and candidate.record.duration <= 0:
                candidate = measure(candidate)
                if candidate.record.duration <= 0:
                    continue
            if total == 0 or total + candidate.record.duration <= targets[split]:
                chosen.append(candidate)
                total += candidate.record.duration
                misses = 0
            else:
                misses += 1
    return sorted(chosen, key=lambda c: c.record.midi_filename)


def midi_dir_candidates(midi_dir: str | Path, metadata: str | Path | None = None) -> list[Candidate]:
    """Candidates from a MIDI collection with MAESTRO-layout metadata (its splits are kept).

    Without metadata (and no ``maestro*.csv`` in the folder) every ``.mid``/``.midi`` file is
    used with the deterministic 80/10/10 split of :func:`audiogen.sources.split_for_key`.
    """
    midi_dir = Path(midi_dir)
    if not midi_dir.is_dir():
        raise DataError(f"{midi_dir}: MIDI folder not found")
    if metadata is None:
        try:
            metadata = find_maestro_metadata(midi_dir)
        except DataError:
            metadata = None
    candidates = []
    if metadata is not None:
        for record in read_maestro_metadata(metadata):
            audio = record.audio_filename
            if not audio.lower().endswith(".flac"):
                audio = str(Path(audio).with_suffix(".flac"))
            candidates.append(
                Candidate(record=replace(record, audio_filename=audio), midi_path=midi_dir / record.midi_filename)
            )
        return candidates
    for path in sorted(midi_dir.rglob("*")):
        if path.suffix.lower() in (".mid", ".midi") and path.is_file():
            key = path.relative_to(midi_dir).as_posix()
            record = MaestroRecord(
                canonical_composer="",
                canonical_title=path.stem,
                split=split_for_key(key),
                year=None,
                midi_filename=key,
                audio_filename=str(Path(key).with_suffix(".flac")),
                duration=0.0,
            )
            candidates.append(Candidate(record=record, midi_path=path))
    return candidates


# Piano pieces in music21's corpus (the rest of the demo set is Bach's four-part chorales).
# chopin/mazurka06-2.krn is left out: music21 10.5 cannot expand its repeats when writing MIDI.
MUSIC21_PIANO_PIECES = {
    "joplin/maple_leaf_rag.mxl": ("Scott Joplin", "Maple Leaf Rag"),
    "mozart/k545/movement1_exposition.mxl": ("Wolfgang Amadeus Mozart", "Sonata K. 545, I (exposition)"),
    "schumann_clara/polonaise_op1n1.mxl": ("Clara Schumann", "Polonaise Op. 1 No. 1"),
    "schumann_clara/polonaise_op1n2.mxl": ("Clara Schumann", "Polonaise Op. 1 No. 2"),
    "schumann_clara/polonaise_op1n3.mxl": ("Clara Schumann", "Polonaise Op. 1 No. 3"),
    "schumann_clara/polonaise_op1n4.mxl": ("Clara Schumann", "Polonaise Op. 1 No. 4"),
}
_CHORALE = re.compile(r"^bach/bwv(\d+(?:\.\d+)?)\.mxl$")


def music21_corpus_candidates() -> list[Candidate]:
    """Bach chorales and a few piano pieces from music21's bundled corpus (public domain).

    Durations are unknown (0) until the score is converted to MIDI by :func:`corpus_to_midi`.

    Raises:
        DataError: music21 is not installed (``pip install 'audiogen[demo]'``).
    """
    try:
        from music21 import corpus
    except ImportError as err:
        raise DataError("the music21 corpus needs music21: pip install 'audiogen[demo]'") from err
    entries: dict[str, tuple[str, str]] = {}
    for path in corpus.getComposer("bach"):
        rel = Path(path).as_posix().split("/corpus/")[-1]
        match = _CHORALE.match(rel)
        if match:
            entries[rel] = ("Johann Sebastian Bach", f"Chorale BWV {match.group(1)}")
    entries.update(MUSIC21_PIANO_PIECES)
    candidates = []
    for rel, (composer, title) in sorted(entries.items()):
        stem = rel.rsplit(".", 1)[0]
        record = MaestroRecord(
            canonical_composer=composer,
            canonical_title=title,
            split=split_for_key(rel),
            year=None,
            midi_filename=f"music21/{stem}.mid",
            audio_filename=f"music21/{stem}.flac",
            duration=0.0,
        )
        candidates.append(Candidate(record=record, corpus_path=rel))
    return candidates


def corpus_to_midi(corpus_path: str) -> bytes:
    """A music21 corpus score as MIDI bytes (mechanical velocities, the score's tempo or 120 bpm)."""
    from music21 import corpus, midi

    score = corpus.parse(corpus_path)
    return midi.translate.streamToMidiFile(score).writestr()


def candidate_midi(candidate: Candidate) -> bytes:
    """The MIDI bytes of a candidate (read from its file or converted from the corpus)."""
    if candidate.midi_path is not None:
        return Path(candidate.midi_path).read_bytes()
    if candidate.corpus_path is not None:
        return corpus_to_midi(candidate.corpus_path)
    raise DataError(f"{candidate.record.midi_filename}: no MIDI source")


# --------------------------------------------------------------------------------------------
# Building the set
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    candidate: Candidate
    out_dir: Path
    midi: bytes | None  # already converted (corpus) or None to read from midi_path


def _render_job(job: _Job) -> tuple[MaestroRecord, str | None, tuple[float, float]]:
    """Worker: render one piece (skipping a finished FLAC); returns its row or an error, and the
    seconds of silence cut before its first note and after its last release."""
    record = job.candidate.record
    flac = job.out_dir / record.audio_filename
    midi_out = job.out_dir / record.midi_filename
    trimmed = (0.0, 0.0)
    try:
        midi = job.midi if job.midi is not None else candidate_midi(job.candidate)
        midi_out.parent.mkdir(parents=True, exist_ok=True)
        if not midi_out.is_file() or midi_out.read_bytes() != midi:
            tmp = midi_out.with_name(midi_out.name + ".part")
            tmp.write_bytes(midi)
            os.replace(tmp, midi_out)
        if flac.is_file():  # rendered by an earlier run: FLAC files are written atomically
            import soundfile as sf

            info = sf.info(str(flac))
            duration = info.frames / info.samplerate
            first_on, last_sound = note_span(midi)
            trimmed = (max(0.0, first_on - LEAD_SECONDS), max(0.0, midi_duration(midi) - last_sound))
        else:
            result = render_midi(midi, flac)
            duration, trimmed = result.duration, (result.trimmed_head, result.trimmed_tail)
    except Exception as err:  # one bad file must not stop the set
        return record, f"{type(err).__name__}: {err}", trimmed
    return replace(record, duration=round(duration, 3)), None, trimmed


def _measure_corpus(candidate: Candidate) -> tuple[Candidate, bytes | None]:
    try:
        midi = candidate_midi(candidate)
        duration = midi_duration(midi)
    except Exception:
        return candidate, None
    return replace(candidate, record=replace(candidate.record, duration=duration)), midi


@dataclass
class BuildReport:
    """The rows written, the pieces that failed (with the reason), and per rendered piece the
    seconds of silence cut before its first note and after its last release."""

    records: list[MaestroRecord]
    failed: list[tuple[str, str]]
    csv_path: Path
    trimmed: list[tuple[float, float]] = field(default_factory=list)


def build_demo_dataset(
    out_dir: str | Path,
    *,
    midi_dir: str | Path | None = None,
    metadata: str | Path | None = None,
    hours: float | None = None,
    workers: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Render a MAESTRO-layout demo set into ``out_dir`` (rerunnable: finished FLACs are kept).

    Args:
        out_dir: receives ``maestro-v3.0.0.csv``, the MIDI files and the rendered FLACs.
        midi_dir: a MIDI collection (e.g. MAESTRO's MIDI); None uses music21's bundled corpus.
        metadata: MAESTRO-layout CSV/JSON for ``midi_dir`` (its splits are kept).
        hours: cap on the total rendered duration; None renders everything.
        workers: parallel FluidSynth processes.
    """
    import multiprocessing

    from tqdm import tqdm

    find_fluidsynth()
    find_soundfont()  # fail before any work when a tool is missing
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, workers)
    converted: dict[str, bytes] = {}
    # one worker renders in this process (FluidSynth is a subprocess anyway): no pool start-up
    pool_context = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else _InProcess()
    with pool_context as pool:
        if midi_dir is not None:
            candidates = midi_dir_candidates(midi_dir, metadata)
            chosen = select_by_hours(candidates, hours, measure=_measure_file if _needs_measure(candidates) else None)
        else:
            candidates = music21_corpus_candidates()
            log(f"music21 corpus: {len(candidates)} scores; converting to MIDI as far as --hours needs")
            measure = _BatchedMeasure(pool, candidates, workers, progress)
            chosen = select_by_hours(candidates, hours, measure=measure)
            converted = measure.midi
        hours_chosen = sum(c.record.duration for c in chosen) / 3600
        counts = {s: sum(c.record.split == s for c in chosen) for s in SPLITS}
        log(f"rendering {len(chosen)} pieces, {hours_chosen:.2f} h ({counts}) into {out_dir}")
        jobs = [_Job(c, out_dir, converted.get(c.record.midi_filename)) for c in chosen]
        results: list[tuple[MaestroRecord, str | None, tuple[float, float]]] = []
        bar = tqdm(total=len(jobs), unit="piece", disable=not progress, desc="render")
        for result in pool.imap(_render_job, jobs):
            results.append(result)
            bar.update()
            if result[1] is not None:
                bar.write(f"FAILED {result[0].midi_filename}: {result[1]}")
        bar.close()
    records = [r for r, err, _ in results if err is None]
    failed = [(r.midi_filename, err) for r, err, _ in results if err is not None]
    trimmed = [cut for _, err, cut in results if err is None]
    csv_path = out_dir / "maestro-v3.0.0.csv"
    write_maestro_csv(records, csv_path)
    return BuildReport(records=records, failed=failed, csv_path=csv_path, trimmed=trimmed)


def describe_trimming(trimmed: Sequence[tuple[float, float]]) -> str:
    """One line on the silence cut from rendered pieces: (head, tail) seconds per piece."""
    heads = np.array([h for h, _ in trimmed], dtype=float)
    tails = np.array([t for _, t in trimmed], dtype=float)
    return (f"cut silence the MIDI files carry: {heads.sum():.0f} s before first notes (max {heads.max():.1f} s), "
            f"{tails.sum():.0f} s after last releases (median {np.median(tails):.1f} s a piece, "
            f"max {tails.max():.1f} s); {TAIL_SECONDS:g} s kept after each last release")


def _needs_measure(candidates: Sequence[Candidate]) -> bool:
    return any(c.record.duration <= 0 for c in candidates)


def _measure_file(candidate: Candidate) -> Candidate:
    try:
        duration = midi_duration(candidate_midi(candidate))
    except Exception:
        duration = 0.0
    return replace(candidate, record=replace(candidate.record, duration=duration))


class _InProcess:
    """The two Pool methods used here, run in this process."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, items):
        return [fn(item) for item in items]

    def imap(self, fn, items):
        return (fn(item) for item in items)


class _BatchedMeasure:
    """Converts corpus scores to MIDI on the worker pool, a batch ahead of the selection.

    The selection asks for one candidate at a time in its fixed order; converting the next
    batch of that order in parallel keeps every core busy without converting the whole corpus
    when the cap is small. The converted MIDI is kept for rendering.
    """

    def __init__(self, pool, candidates: Sequence[Candidate], workers: int, progress: bool):
        self.pool = pool
        self.batch = max(4, 4 * workers)
        by_split = {s: _order([c for c in candidates if c.record.split == s]) for s in SPLITS}
        self.order = [c for s in SPLITS for c in by_split[s]]
        self.position = {c.record.midi_filename: i for i, c in enumerate(self.order)}
        self.done: dict[str, Candidate] = {}
        self.midi: dict[str, bytes] = {}

    def __call__(self, candidate: Candidate) -> Candidate:
        key = candidate.record.midi_filename
        if key not in self.done:
            start = self.position[key]
            batch = [c for c in self.order[start : start + self.batch] if c.record.midi_filename not in self.done]
            for measured, midi in self.pool.map(_measure_corpus, batch):
                self.done[measured.record.midi_filename] = measured
                if midi is not None:
                    self.midi[measured.record.midi_filename] = midi
        return self.done[key]
