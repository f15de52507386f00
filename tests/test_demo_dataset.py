"""The demo-dataset builder: MIDI rewriting, durations, hour caps, and (with FluidSynth) rendering."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import have_fluidsynth

from audiogen.demo_data import (
    Candidate,
    RenderError,
    _parse,
    build_demo_dataset,
    describe_trimming,
    find_fluidsynth,
    find_soundfont,
    force_piano,
    midi_duration,
    note_span,
    render_midi,
    select_by_hours,
    split_targets,
)
from audiogen.maestro import MAESTRO_COLUMNS, MaestroRecord, read_maestro_metadata
from audiogen.sources import SPLITS
from audiogen.transcription import midi_varlen


def smf(tracks: list[list[tuple[int, bytes]]], division: int = 480) -> bytes:
    """A format-1 Standard MIDI File from (delta ticks, event bytes) lists; end-of-track added."""
    out = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + len(tracks).to_bytes(2, "big")
    out += division.to_bytes(2, "big")
    for events in tracks:
        body = b"".join(midi_varlen(d) + e for d, e in events) + b"\x00\xff\x2f\x00"
        out += b"MTrk" + len(body).to_bytes(4, "big") + body
    return out


def tempo(us_per_quarter: int) -> bytes:
    return b"\xff\x51\x03" + us_per_quarter.to_bytes(3, "big")


def melody(channel: int = 0, program: int = 40, notes: int = 4, ticks: int = 480, pedal: bool = True) -> list:
    events = [(0, bytes([0xC0 | channel, program])), (0, bytes([0xB0 | channel, 0, 5]))]
    if pedal:
        events.append((0, bytes([0xB0 | channel, 64, 127])))
    for k in range(notes):
        # running status for the note-off: only data bytes follow the delta
        events += [(0, bytes([0x90 | channel, 60 + 2 * k, 90])), (ticks, bytes([60 + 2 * k, 0]))]
    if pedal:
        events.append((0, bytes([0xB0 | channel, 64, 0])))
    return events


def test_midi_duration_follows_the_tempo_map():
    conductor = [(0, tempo(500_000)), (960, tempo(1_000_000))]  # 2 beats at 120 bpm, then 60 bpm
    notes = [(0, b"\x90\x3c\x40"), (1920, b"\x80\x3c\x00")]
    assert midi_duration(smf([conductor, notes])) == pytest.approx(1.0 + 2.0)
    assert midi_duration(smf([notes])) == pytest.approx(2.0)  # 120 bpm by default
    with pytest.raises(RenderError, match="not a Standard MIDI"):
        midi_duration(b"RIFF....")


def test_note_span_ends_at_the_last_release_and_the_pedal_lifted_after_it():
    # 120 bpm, 480 ticks a beat: a note from 2 s to 3 s, then a stray controller event at 30 s
    notes = [(1920, b"\x90\x3c\x40"), (960, b"\x80\x3c\x00"), (25920, b"\xb0\x07\x64")]
    assert note_span(smf([notes])) == pytest.approx((2.0, 3.0))
    assert midi_duration(smf([notes])) == pytest.approx(30.0)
    # the same note released at 3 s while the pedal is down rings until the pedal is lifted at 4 s
    pedalled = [(0, b"\xb0\x40\x7f"), (1920, b"\x90\x3c\x40"), (960, b"\x90\x3c\x00"),
                (960, b"\xb0\x40\x00"), (24000, b"\xb0\x07\x64")]
    assert note_span(smf([pedalled])) == pytest.approx((2.0, 4.0))
    # a pedal never lifted: the notes ring to the end of the file
    held = pedalled[:3] + [(25920, b"\xb0\x07\x64")]
    assert note_span(smf([held]))[1] == pytest.approx(midi_duration(smf([held])))
    with pytest.raises(RenderError, match="no notes"):
        note_span(smf([[(0, b"\xb0\x07\x64")]]))


def test_force_piano_rewrites_programs_banks_and_the_drum_channel():
    data = smf([[(0, tempo(400_000))], melody(channel=0, program=40), melody(channel=9, program=0)])
    rewritten = force_piano(data)
    assert len(rewritten) == len(data)
    assert midi_duration(rewritten) == midi_duration(data)
    _, tracks = _parse(rewritten)
    events = [(e.status, rewritten[e.data_pos : e.data_pos + 2]) for t in tracks for e in t.events]
    assert all(s & 0x0F != 9 for s, _ in events)  # nothing left on GM percussion
    assert {s & 0x0F for s, _ in events} == {0, 1}  # drums moved to the first free channel
    assert all(d[0] == 0 for s, d in events if s & 0xF0 == 0xC0)  # every program is the grand piano
    assert all(d[1] == 0 for s, d in events if s & 0xF0 == 0xB0 and d[0] in (0, 32))
    pedal = [d for s, d in events if s & 0xF0 == 0xB0 and d[0] == 64]
    assert [v for _, v in pedal] == [127, 0, 127, 0]  # sustain pedal kept as recorded
    notes_before = [(e.tick, data[e.data_pos]) for t in _parse(data)[1] for e in t.events if e.status & 0xE0 == 0x80]
    notes_after = [(e.tick, rewritten[e.data_pos]) for t in tracks for e in t.events if e.status & 0xE0 == 0x80]
    assert notes_after == notes_before


def _candidates(spec: dict[str, list[float]]) -> list[Candidate]:
    out = []
    for split, durations in spec.items():
        for i, d in enumerate(durations):
            record = MaestroRecord("C", f"{split}{i}", split, 2004, f"{split}/{i}.mid", f"{split}/{i}.flac", d)
            out.append(Candidate(record=record))
    return out


def test_hour_cap_keeps_every_split_and_is_deterministic():
    cands = _candidates({"train": [600.0] * 200, "validation": [300.0] * 12, "test": [400.0] * 15})
    chosen = select_by_hours(cands, 8)
    per_split = {s: sum(c.record.duration for c in chosen if c.record.split == s) for s in SPLITS}
    assert sum(per_split.values()) <= 8 * 3600
    assert sum(per_split.values()) > 7.5 * 3600
    assert per_split["validation"] >= 0.09 * 8 * 3600 and per_split["test"] >= 0.09 * 8 * 3600
    assert select_by_hours(list(reversed(cands)), 8) == chosen
    assert len(select_by_hours(cands, None)) == len(cands)
    tiny = select_by_hours(cands, 0.01)  # smaller than any piece: still one piece per split
    assert sorted(c.record.split for c in tiny) == sorted(SPLITS)


def test_split_targets():
    targets = split_targets({"train": 34.9, "validation": 3.4, "test": 4.5}, 8.0)
    assert targets["validation"] == pytest.approx(0.8) and targets["test"] == pytest.approx(0.84, abs=0.01)
    assert sum(targets.values()) == pytest.approx(8.0)
    assert split_targets({"train": 1.0, "validation": 0.0, "test": 0.0}, 8.0)["train"] == 1.0


def test_missing_tools_name_the_debian_packages(tmp_path):
    with pytest.raises(RenderError, match="apt-get install fluidsynth"):
        find_fluidsynth(str(tmp_path / "no-fluidsynth"))
    with pytest.raises(RenderError, match="fluid-soundfont-gm"):
        find_soundfont(str(tmp_path / "none.sf2"))


needs_fluidsynth = pytest.mark.skipif(not have_fluidsynth(), reason="fluidsynth or FluidR3_GM.sf2 not installed")


@needs_fluidsynth
def test_render_is_piano_level_set_and_deterministic(tmp_path):
    data = smf([[(0, tempo(500_000))], melody(program=40, notes=4, ticks=240)])
    result = render_midi(data, tmp_path / "a.flac")
    render_midi(data, tmp_path / "b.flac")
    assert (tmp_path / "a.flac").read_bytes() == (tmp_path / "b.flac").read_bytes()
    audio, sr = sf.read(tmp_path / "a.flac", dtype="float32")
    assert sr == 44100 and audio.ndim == 1
    assert len(audio) / sr >= result.midi_duration == pytest.approx(1.0)
    assert 20 * np.log10(np.abs(audio).max()) == pytest.approx(-1.0, abs=0.05)
    # the notes sound (C4, D4, E4, F#4 for 0.25 s each): energy near 262 Hz in the first quarter second
    spectrum = np.abs(np.fft.rfft(audio[: sr // 4]))
    freqs = np.fft.rfftfreq(sr // 4, 1 / sr)
    assert freqs[np.argmax(spectrum[freqs < 2000])] == pytest.approx(261.6, abs=8)
    # the program change to 40 (violin) was rewritten: the same file as given program 0 renders identically
    render_midi(smf([[(0, tempo(500_000))], melody(program=0, notes=4, ticks=240)]), tmp_path / "c.flac")
    assert (tmp_path / "c.flac").read_bytes() == (tmp_path / "a.flac").read_bytes()


@needs_fluidsynth
def test_render_cuts_the_silence_a_midi_file_carries_and_says_so(tmp_path):
    # notes from 2 s to 3 s, and the file's last event at 40 s (as real MAESTRO files have)
    notes = [(1920, b"\x90\x3c\x60"), (960, b"\x80\x3c\x00"), (35520, b"\xb0\x07\x64")]
    result = render_midi(smf([notes]), tmp_path / "a.flac")
    audio, sr = sf.read(tmp_path / "a.flac", dtype="float32")
    assert result.trimmed_head == pytest.approx(2.0 - 0.25, abs=1e-3)
    assert result.trimmed_tail == pytest.approx(40.0 - 3.0, abs=1e-3)
    assert len(audio) / sr == pytest.approx(result.duration) == pytest.approx(0.25 + 1.0 + 3.0, abs=0.01)
    quiet = int(0.2 * sr)
    assert np.abs(audio[:quiet]).max() < 1e-3 < np.abs(audio[quiet:]).max()  # the note starts 0.25 s in
    line = describe_trimming([(result.trimmed_head, result.trimmed_tail), (0.0, 1.0)])
    assert "2 s before first notes" in line and "38 s after last releases" in line


@needs_fluidsynth
def test_build_from_a_midi_dir_keeps_splits_and_writes_maestro_csv(tmp_path):
    midi_dir = tmp_path / "midi"
    rows = []
    for i, split in enumerate(["train", "train", "validation", "test"]):
        path = midi_dir / "2004" / f"p{i}.mid"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(smf([[(0, tempo(500_000))], melody(notes=2 + i, ticks=240, pedal=i % 2 == 0)]))
        rows.append(["Composer", f"Piece {i}", split, 2004, f"2004/p{i}.mid", f"2004/p{i}.flac", 1.0])
    with (midi_dir / "meta.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([list(MAESTRO_COLUMNS), *rows])
    report = build_demo_dataset(
        tmp_path / "out",
        midi_dir=midi_dir,
        metadata=midi_dir / "meta.csv",
        workers=1,
        progress=False,
        log=lambda _: None,
    )
    assert not report.failed
    records = read_maestro_metadata(tmp_path / "out" / "maestro-v3.0.0.csv")
    assert [(r.audio_filename, r.split) for r in records] == [(row[5], row[2]) for row in rows]
    for r in records:
        info = sf.info(tmp_path / "out" / r.audio_filename)
        assert info.samplerate == 44100 and abs(info.frames / 44100 - r.duration) < 1e-3
        assert (tmp_path / "out" / r.midi_filename).read_bytes() == (midi_dir / r.midi_filename).read_bytes()
    first = (tmp_path / "out" / "maestro-v3.0.0.csv").read_bytes()
    # a rerun keeps what is there and writes the same metadata
    stamp = (tmp_path / "out" / records[0].audio_filename).stat().st_mtime_ns
    build_demo_dataset(
        tmp_path / "out",
        midi_dir=midi_dir,
        metadata=midi_dir / "meta.csv",
        workers=1,
        progress=False,
        log=lambda _: None,
    )
    assert (tmp_path / "out" / "maestro-v3.0.0.csv").read_bytes() == first
    assert (tmp_path / "out" / records[0].audio_filename).stat().st_mtime_ns == stamp  # not rendered again


def test_music21_corpus_candidates_cover_all_splits():
    pytest.importorskip("music21")
    from audiogen.demo_data import corpus_to_midi, music21_corpus_candidates

    cands = music21_corpus_candidates()
    assert len(cands) > 300
    assert {c.record.split for c in cands} == set(SPLITS)
    assert any(c.record.canonical_composer == "Scott Joplin" for c in cands)
    chorale = next(c for c in cands if c.corpus_path == "bach/bwv250.mxl")
    assert Path(chorale.record.audio_filename).suffix == ".flac"
    assert 15.0 < midi_duration(corpus_to_midi(chorale.corpus_path)) < 60.0  # 40 beats, at the score's tempo
