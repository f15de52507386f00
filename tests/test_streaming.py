"""Generation on every core and as a stream: the pipelined chain, the streamed WAV, the endless clip."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from audiogen.generation import TARGET_PEAK, StreamLevel, load_generator, stream_wav, wav_header


@pytest.fixture(scope="module")
def generator():
    torch.set_num_threads(1)
    return load_generator()


def test_pipelined_chain_makes_what_the_plain_chain_makes(generator):
    generator.pipelined = False
    plain = np.concatenate(list(generator.stream(6.0, seed=4)))
    generator.pipelined = True
    try:
        pipelined = np.concatenate(list(generator.stream(6.0, seed=4)))
    finally:
        generator.pipelined = False
    assert len(pipelined) == len(plain) == round(6.0 * generator.sample_rate)
    np.testing.assert_array_equal(pipelined, plain)  # each stage at one thread, in the same order


def test_stopping_a_pipelined_stream_ends_its_threads(generator):
    generator.pipelined = True
    try:
        stream = generator.stream(float("inf"), seed=1, chunk_seconds=1.0, vocoder_chunk_seconds=1.0)
        taken = sum(len(next(stream)) for _ in range(3))
        stream.close()
    finally:
        generator.pipelined = False
    assert taken > 0
    assert not [t for t in threading.enumerate() if t.name.startswith("audiogen-")]


def test_endless_stream_is_the_finite_clip_continued(generator):
    finite = np.concatenate(list(generator.stream(4.0, seed=9)))
    endless = generator.stream(float("inf"), seed=9)
    head = np.concatenate([next(endless) for _ in range(1)])
    endless.close()
    # the finite clip's prior draws equal chunks, the endless one chunks of 8 s: same frames, same music
    n = min(len(head), len(finite)) - generator.sample_rate  # the finite clip's last second has less right context
    np.testing.assert_allclose(head[:n], finite[:n], atol=1e-4)


def test_wav_header_is_read_back_as_the_stream_it_announces():
    samples = np.linspace(-0.5, 0.5, 1000).astype(np.float32)
    buffer = io.BytesIO()
    assert stream_wav([samples[:400], samples[400:]], buffer, 16000, len(samples)) == 1000
    buffer.seek(0)
    audio, rate = sf.read(buffer, dtype="float32")
    assert rate == 16000 and len(audio) == 1000
    assert len(wav_header(16000, None)) == 44 == len(wav_header(16000, 10))


def test_stream_level_never_clips_and_never_turns_up():
    level = StreamLevel(gain=2.0)
    quiet = level(np.full(10, 0.1, dtype=np.float32))
    assert np.allclose(quiet, 0.2)
    loud = level(np.full(10, 0.9, dtype=np.float32))
    assert np.max(np.abs(loud)) <= TARGET_PEAK + 1e-6
    after = level(np.full(10, 0.1, dtype=np.float32))
    assert after.max() < 0.2  # lowered for good: no pumping back up


def test_generate_streams_forever_until_the_reader_stops():
    command = [sys.executable, "-m", "audiogen.cli.generate", "--seconds", "inf", "--seed", "2", "--out", "-",
               "--threads", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wanted = 44 + 2 * 22050 * 6  # six seconds of 16-bit mono: more than one chunk of every stage
    data = b""
    while len(data) < wanted:
        block = proc.stdout.read(65536)
        assert block, proc.stderr.read().decode()
        data += block
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    errors = proc.stderr.read().decode()  # (the progress bar of a long stream is there)
    assert "Traceback" not in errors and "error" not in errors.lower()  # no "Broken pipe" either
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def test_inf_is_refused_for_files(tmp_path):
    result = subprocess.run([sys.executable, "-m", "audiogen.cli.generate", "--seconds", "inf", "--out",
                             str(tmp_path / "x.wav")], capture_output=True, text=True)
    assert result.returncode == 2 and "--seconds" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_generated_file_says_how_to_make_it_again(tmp_path):
    from audiogen.clip_tags import read_tags

    out = tmp_path / "take.flac"
    subprocess.run([sys.executable, "-m", "audiogen.cli.generate", "--seconds", "1", "--seed", "12",
                    "--temperature", "0.9", "--out", str(out)], check=True, capture_output=True)
    tags = read_tags(out)
    assert tags["seed"] == 12 and tags["temperature"] == 0.9 and tags["seconds"] == 1.0
    assert tags["model"] == tags["vocoder"] == "bundled" and len(tags["model_sha256"]) == 12
