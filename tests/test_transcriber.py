"""The piano transcriber: labels from MIDI, decoding, MIDI out, scoring, the model, training and the CLI.

Everything runs on synthetic data the tests make: notes written as MIDI, rendered as decaying
harmonic tones at the same times (shifted as the demo renderer shifts its audio).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import have_fluidsynth

from audiogen.transcription import (
    N_KEYS,
    Notes,
    decode_notes,
    frame_labels,
    midi_bytes,
    note_scores,
    pooled_scores,
    read_midi_notes,
    render_shift,
    rendered_notes,
)

ROOT = Path(__file__).resolve().parents[1]
RATE = 22050 / 256  # the default frontend's frame rate


def _smf(events: list[tuple[int, bytes]], division: int = 480) -> bytes:
    """A type-0 MIDI file from (absolute tick, message) pairs at 120 bpm."""
    body = bytearray()
    now = 0
    for tick, message in sorted(events, key=lambda e: e[0]):
        delta, out = tick - now, [(tick - now) & 0x7F]
        delta >>= 7
        while delta:
            out.append(0x80 | (delta & 0x7F))
            delta >>= 7
        body += bytes(reversed(out)) + message
        now = tick
    body += b"\x00\xff\x2f\x00"
    return (b"MThd" + (6).to_bytes(4, "big") + b"\x00\x00\x00\x01" + division.to_bytes(2, "big")
            + b"MTrk" + len(body).to_bytes(4, "big") + bytes(body))


def _tones(notes: Notes, seconds: float, sr: int = 22050) -> np.ndarray:
    """Decaying harmonic tones, one per note, from its onset to its offset (a piano-ish render)."""
    t = np.arange(int(seconds * sr)) / sr
    out = np.zeros_like(t)
    for on, off, pitch in zip(notes.onsets, notes.offsets, notes.pitches, strict=True):
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        env = np.where((t >= on) & (t < off), np.exp(-(t - on) * 4), 0.0)
        for k in range(1, 6):
            if f0 * k < sr / 2:
                out += env * np.sin(2 * np.pi * f0 * k * (t - on)) / k
    return (0.5 * out / max(np.abs(out).max(), 1e-9)).astype(np.float32)


def _random_notes(seed: int, seconds: float, start: float) -> Notes:
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.uniform(start, seconds - 0.5, size=int(4 * (seconds - start))))
    onsets[0] = start
    # distinct keys: two strikes of one key a frame or two apart are one onset to the labels
    pitches = rng.choice(np.arange(48, 84), len(onsets), replace=False)
    return Notes.of(onsets, onsets + rng.uniform(0.1, 0.4, len(onsets)), pitches,
                    rng.integers(30, 110, len(onsets)))


# --------------------------------------------------------------------------------------------
# MIDI in and out


def test_midi_written_reads_back_the_same_notes():
    notes = Notes.of([0.0, 0.5, 0.5, 1.25], [0.4, 1.0, 0.75, 2.0], [60, 64, 67, 21], [100, 80, 60, 1])
    back = read_midi_notes(midi_bytes(notes))
    assert len(back) == len(notes)
    np.testing.assert_allclose(back.onsets, notes.onsets, atol=1 / 960)
    np.testing.assert_allclose(back.offsets, notes.offsets, atol=1 / 960)
    assert back.pitches.tolist() == notes.pitches.tolist()
    assert back.velocities.tolist() == notes.velocities.tolist()


def test_written_midi_is_read_by_music21(tmp_path):
    music21 = pytest.importorskip("music21")
    from audiogen.transcription import write_midi

    path = tmp_path / "x.mid"
    write_midi(Notes.of([0.0, 0.5], [0.5, 1.0], [60, 72], [90, 90]), path)
    pitches = sorted(n.pitch.midi for n in music21.converter.parse(str(path)).flatten().notes)
    assert pitches == [60, 72]


def test_sustain_pedal_holds_released_notes_until_it_lifts():
    # 120 bpm, 480 ticks a quarter: 960 ticks a second
    events = [(0, b"\x90\x3c\x64"), (192, b"\xb0\x40\x7f"), (480, b"\x80\x3c\x00"), (960, b"\xb0\x40\x00"),
              (1000, b"\x90\x40\x50"), (1100, b"\xb0\x40\x7f"), (1200, b"\x80\x40\x00"), (1500, b"\x90\x40\x50"),
              (1700, b"\x80\x40\x00"), (1900, b"\xb0\x40\x00")]
    data = _smf(events)
    held = read_midi_notes(data)
    dry = read_midi_notes(data, sustain=False)
    # C4 released at 0.5 s under the pedal rings to the pedal's lift at 1.0 s
    assert held.offsets[0] == pytest.approx(1.0) and dry.offsets[0] == pytest.approx(0.5)
    # E4 released under the pedal and struck again: the first ends at the new strike
    assert held.onsets.tolist()[1:] == pytest.approx([1000 / 960, 1500 / 960])
    assert held.offsets.tolist()[1:] == pytest.approx([1500 / 960, 1900 / 960])
    assert dry.offsets.tolist()[1:] == pytest.approx([1200 / 960, 1700 / 960])


def test_labels_follow_the_renderers_trim():
    # the demo renderer starts the audio LEAD_SECONDS (0.25) before the first note
    notes = Notes.of([1.0, 2.0], [1.5, 2.5], [60, 62], [80, 80])
    data = midi_bytes(notes)
    assert render_shift(data) == pytest.approx(0.75, abs=1e-3)
    early = midi_bytes(Notes.of([0.1], [0.5], [60], [80]))
    assert render_shift(early) == 0.0  # nothing before the first note to trim


# --------------------------------------------------------------------------------------------
# Labels, decoding, scores


def test_frame_labels_mark_onsets_frames_and_velocities():
    notes = Notes.of([0.1, 0.5, 0.2], [0.3, 0.6, 0.4], [60, 108, 10], [127, 64, 90])  # pitch 10: not a piano key
    labels = frame_labels(notes, 0, 100, RATE, onset_frames=2)
    assert {k: v.shape for k, v in labels.items()} == {k: (N_KEYS, 100) for k in ("onset", "frame", "velocity")}
    first, last = round(0.1 * RATE), round(0.3 * RATE)
    assert np.flatnonzero(labels["onset"][60 - 21]).tolist() == [first, first + 1]
    assert np.flatnonzero(labels["frame"][60 - 21]).tolist() == list(range(first, last))
    assert labels["velocity"][60 - 21, first] == pytest.approx(1.0)
    assert labels["velocity"][108 - 21, round(0.5 * RATE)] == pytest.approx(64 / 127)
    assert labels["frame"].sum() == (last - first) + (round(0.6 * RATE) - round(0.5 * RATE))
    # a window starting inside the first note: frames but no onset
    window = frame_labels(notes, first + 3, 10, RATE)
    assert window["onset"][60 - 21].sum() == 0 and window["frame"][60 - 21, 0] == 1


def test_decoding_the_labels_gives_the_notes_back():
    notes = _random_notes(0, 6.0, 0.3)
    labels = frame_labels(notes, 0, int(6.0 * RATE), RATE)
    decoded = decode_notes(labels["onset"], labels["frame"], labels["velocity"], RATE)
    assert note_scores(notes, decoded)["f1"] == 1.0
    assert np.abs(decoded.velocities - notes.velocities).max() <= 1
    late = decoded.shifted(-0.08)  # 80 ms late: outside the 50 ms tolerance
    assert note_scores(notes, late)["f1"] == 0.0


def test_decoding_splits_a_restruck_key_and_drops_nothing_below_threshold():
    onset = np.zeros((N_KEYS, 50))
    frame = np.zeros((N_KEYS, 50))
    onset[39, [5, 20]] = 0.9
    frame[39, 5:40] = 0.9
    onset[40, 10] = 0.4  # below the onset threshold: no note
    frame[40, 10:30] = 0.9
    notes = decode_notes(onset, frame, None, RATE)
    assert notes.pitches.tolist() == [60, 60]
    assert (notes.onsets * RATE).round().tolist() == [5, 20]
    assert (notes.offsets * RATE).round().tolist() == [20, 40]


def test_min_gap_drops_a_second_peak_of_one_attack_but_keeps_later_strikes():
    onset = np.zeros((N_KEYS, 60))
    onset[39, [5, 10, 40]] = 0.9  # 5 frames (58 ms) after the first, and 35 frames (406 ms)
    frame = np.zeros((N_KEYS, 60))
    frame[39, 5:50] = 0.9
    assert (decode_notes(onset, frame, None, RATE).onsets * RATE).round().tolist() == [5, 10, 40]
    kept = decode_notes(onset, frame, None, RATE, min_gap=0.1)
    assert (kept.onsets * RATE).round().tolist() == [5, 40]
    assert (kept.offsets * RATE).round().tolist() == [40, 50]  # the dropped peak does not end the note


def test_note_scores_count_pitch_and_onset_matches():
    reference = Notes.of([0.0, 1.0, 2.0], [0.5, 1.5, 2.5], [60, 62, 64], [80] * 3)
    estimate = Notes.of([0.02, 1.04, 2.0, 3.0], [0.3, 1.2, 2.1, 3.5], [60, 62, 65, 70], [80] * 4)
    scores = note_scores(reference, estimate)
    assert scores["precision"] == pytest.approx(2 / 4) and scores["recall"] == pytest.approx(2 / 3)
    pooled = pooled_scores([(scores, 3, 4), (note_scores(reference, reference), 3, 3)])
    assert pooled["recall"] == pytest.approx(5 / 6) and pooled["precision"] == pytest.approx(5 / 7)
    assert note_scores(Notes.empty(), Notes.empty())["f1"] == 1.0
    assert note_scores(reference, Notes.empty())["f1"] == 0.0


# --------------------------------------------------------------------------------------------
# The model


def _tiny_model():
    from audiogen.transcriber import Transcriber

    torch.manual_seed(0)
    return Transcriber(n_mels=80, conv_channels=(4, 8), hidden=16, dilations=(1, 2), dropout=0.0).eval()


def test_model_shapes_and_chunked_inference_match_one_pass():
    from audiogen.transcriber import transcribe_mel

    model = _tiny_model()
    mel = torch.randn(80, 300) - 5
    out = model(mel[None])
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (1, 88, 300) for k in ("onset", "frame", "velocity")}
    whole = transcribe_mel(model, mel, chunk_frames=1000)
    chunked = transcribe_mel(model, mel, chunk_frames=64, context_frames=16)
    assert tuple(whole["features"].shape) == (16, 300)
    for key in ("onset", "frame", "velocity", "features"):
        torch.testing.assert_close(chunked[key], whole[key], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(whole["onset"], torch.sigmoid(out["onset"][0]), atol=1e-5, rtol=1e-4)


def test_model_refuses_mels_its_pooling_cannot_divide():
    from audiogen.transcriber import Transcriber

    with pytest.raises(ValueError, match="divisible"):
        Transcriber(n_mels=81, conv_channels=(4, 8))


def test_losses_are_small_for_right_answers_and_large_for_wrong_ones():
    from audiogen.transcriber import transcriber_losses

    labels = frame_labels(_random_notes(1, 3.0, 0.2), 0, 200, RATE)
    target = {k: torch.from_numpy(v)[None] for k, v in labels.items()}
    right = {k: (target[k] * 2 - 1) * 20 for k in ("onset", "frame")}
    right["velocity"] = torch.logit(target["velocity"].clamp(1e-4, 1 - 1e-4))
    wrong = {k: -v for k, v in right.items()}
    good, bad = transcriber_losses(right, target), transcriber_losses(wrong, target)
    for name in ("onset/bce", "frame/bce", "velocity/mse"):
        assert good[name].item() < 1e-3 < bad[name].item()


# --------------------------------------------------------------------------------------------
# Training through the shared loop, then the CLI


@pytest.fixture(scope="module")
def midi_set(tmp_path_factory):
    """A MAESTRO-layout folder of 4 s pieces with MIDI beside audio rendered from it, and its cache."""
    import soundfile as sf

    from audiogen.frontend import FrontendConfig
    from audiogen.maestro import list_maestro
    from audiogen.preparation import prepare_cache

    root = tmp_path_factory.mktemp("midi_set")
    (root / "2004").mkdir()
    rows = []
    for index, split in enumerate(["train", "train", "validation", "test"]):
        stem = f"2004/piece{index}"
        notes = _random_notes(index, 5.0, 1.0)  # the first note 1 s in: the audio starts 0.75 s into the MIDI
        data = midi_bytes(notes)
        (root / f"{stem}.mid").write_bytes(data)
        sf.write(root / f"{stem}.flac", _tones(notes.shifted(render_shift(data)), 4.25), 22050)
        rows.append(["C", f"P{index}", split, 2004, f"{stem}.mid", f"{stem}.flac", 4.25])
    with (root / "maestro-v3.0.0.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["canonical_composer", "canonical_title", "split", "year", "midi_filename",
                         "audio_filename", "duration"])
        writer.writerows(rows)
    cache = tmp_path_factory.mktemp("midi_cache")
    prepare_cache(list_maestro(root), cache, FrontendConfig(), workers=1, progress=False)
    return root, cache


def test_dataset_labels_line_up_with_the_rendered_onsets(midi_set):
    from audiogen.cache import open_cache
    from audiogen.transcription import TranscriptionDataset, piece_midi_path

    root, cache = midi_set
    entry = open_cache(cache).pieces("train")[0]
    notes = rendered_notes(piece_midi_path(root, entry.metadata))
    assert notes.onsets[0] == pytest.approx(0.25, abs=2e-3)  # LEAD_SECONDS after the trim
    ds = TranscriptionDataset(cache, "train", 64, root)
    item = ds[0]
    assert {k: tuple(v.shape) for k, v in item.items()} == {"mel": (80, 64), **{k: (88, 64) for k in
                                                                                 ("onset", "frame", "velocity")}}
    # the onset labels sit where the mel's energy jumps (spectral flux peaks), not elsewhere
    position, start = ds.windows.window(0)
    mel = np.asarray(open_cache(cache).load_mel(ds.windows.entries[position]))
    flux = np.concatenate([[0], np.maximum(np.diff(mel, axis=1), 0).sum(0)])
    frames = np.rint(rendered_notes(piece_midi_path(root, ds.windows.entries[position].metadata)).onsets
                     * RATE).astype(int)
    frames = frames[(frames > 2) & (frames < len(flux) - 2)]
    profile = [flux[frames + lag].mean() for lag in range(-2, 3)]
    # these tones start abruptly, so the centred 1024-sample window sees them a frame early
    assert abs(int(np.argmax(profile)) - 2) <= 1
    assert max(profile[1:3]) > 3 * np.median(flux)
    unshifted = np.rint(read_midi_notes((root / ds.windows.entries[position].metadata["midi_filename"]).read_bytes())
                        .onsets * RATE).astype(int)
    unshifted = unshifted[(unshifted > 2) & (unshifted < len(flux) - 2)]
    assert flux[unshifted].mean() < max(profile) / 3  # without the trim's shift the labels miss the onsets


def test_tiny_training_exports_a_transcriber_the_cli_uses(midi_set, tmp_path):
    from audiogen.tasks import run_trainer

    root, cache = midi_set
    run = tmp_path / "run"
    status = run_trainer("transcriber", ["--config", str(ROOT / "configs/transcriber/tiny.yaml"), "--data",
                                         str(cache), "--out", str(run), "--set", f"midi_dir={root}", "--cpu"])
    assert status == 0
    assert (run / "best" / "transcriber.safetensors").is_file()
    metrics = [line for line in (run / "metrics.jsonl").read_text().splitlines() if "val/onset_f1" in line]
    assert metrics, "validation reports onset F1"

    audio = root / "2004" / "piece3.flac"
    out = tmp_path / "midi"
    cmd = [sys.executable, "-m", "audiogen", "transcribe", str(audio), "--out", str(out), "--model",
           str(run / "best")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = out / "piece3.mid"
    assert written.is_file() and "piece3.mid" in done.stdout
    read_midi_notes(written.read_bytes())  # a valid MIDI file (an untrained model may find no notes)

    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    forced = subprocess.run(cmd + ["--force"], capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr
    missing = subprocess.run(cmd[:4] + [str(tmp_path / "nope.wav")] + cmd[5:], capture_output=True, text=True)
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_trainer_scripts_refuse_each_others_configs(tmp_path):
    from audiogen.tasks import run_trainer

    args = ["--data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert run_trainer("vae", ["--config", str(ROOT / "configs/transcriber/tiny.yaml"), *args]) == 2
    assert run_trainer("transcriber", ["--config", str(ROOT / "configs/spec/tiny.yaml"), *args]) == 2


def test_transcriber_task_needs_midi_dir(midi_set, tmp_path, capsys):
    from audiogen.tasks import run_trainer

    _, cache = midi_set
    status = run_trainer("transcriber", ["--config", str(ROOT / "configs/transcriber/tiny.yaml"), "--data",
                                         str(cache), "--out", str(tmp_path / "run"), "--set", "midi_dir=null"])
    assert status == 2 and "needs midi_dir" in capsys.readouterr().err


@pytest.mark.skipif(not have_fluidsynth(), reason="fluidsynth or a GM SoundFont not installed")
def test_bundled_transcriber_finds_the_notes_of_a_fluidsynth_render(tmp_path):
    from audiogen.demo_data import render_midi
    from audiogen.transcriber import bundled_transcriber_dir

    if not (bundled_transcriber_dir() / "transcriber.safetensors").is_file():
        pytest.skip("no transcriber is bundled")
    rng = np.random.default_rng(3)
    onsets = np.round(np.cumsum(rng.uniform(0.12, 0.5, 24)), 3)
    notes = Notes.of(onsets, onsets + rng.uniform(0.2, 0.6, 24), rng.integers(40, 90, 24), rng.integers(50, 110, 24))
    data = midi_bytes(notes)
    (tmp_path / "piece.mid").write_bytes(data)
    render_midi(data, tmp_path / "piece.flac")
    done = subprocess.run([sys.executable, "-m", "audiogen", "transcribe", str(tmp_path / "piece.flac"), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found = read_midi_notes((tmp_path / "out" / "piece.mid").read_bytes())
    scores = note_scores(rendered_notes(tmp_path / "piece.mid"), found)
    assert scores["f1"] > 0.8, scores
