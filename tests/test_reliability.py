"""Bad input gets a clear answer and loses nothing; nothing unpickles code; frontends must match.

The corpus (made here) has 13 cases: 8 unusable audio files (truncated FLAC, corrupt FLAC, a
text file named .flac, a WAV with no samples, an empty file, digital silence, NaN and Inf
samples in a float WAV), 3 unusual but valid ones (8 kHz, 96 kHz, 6 channels: resampled or
downmixed, never refused), and 2 metadata faults (a MAESTRO CSV row naming a missing file, a
CSV without a column). Preparation reports each bad file and prepares the rest;
``generate --like`` and ``audiogen-fad embed/score`` refuse each unusable file in one line
naming it and the reason, and accept the valid ones (digital silence included: it is music
a model may make, and only preparation leaves it out, as useless for training).

Safe loading: weights files that are pickles whose unpickling would run code (raw pickle and
torch's zip format, named ``.safetensors``; a ``.pth`` given as VGGish weights; a training
checkpoint's ``optim.pt``) are refused and the code never runs (a marker file stays absent);
a model folder whose frontend differs from the vocoder's, or a cache whose frontend differs
from the trainer config's, is refused in one line.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from helpers import MAESTRO_COLUMNS, piano_like

from audiogen.checkpoint import CheckpointError, load_state_dict
from audiogen.frontend import FrontendConfig

ROOT = Path(__file__).resolve().parents[1]
SR = FrontendConfig().sample_rate
SECONDS = 2.0


def _flac_bytes(seed: int) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, piano_like(SECONDS, SR, seed=seed), SR, format="FLAC")
    return buffer.getvalue()


def _truncated_flac(path: Path) -> None:
    data = _flac_bytes(0)
    path.write_bytes(data[: len(data) // 2])


def _damaged_flac(path: Path) -> None:
    """A FLAC whose header is intact and whose frames are overwritten in the middle."""
    data = bytearray(_flac_bytes(1))
    middle = len(data) // 2
    data[middle : middle + 512] = np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _float_wav_with(value: float):
    def make(path: Path) -> None:
        audio = piano_like(SECONDS, SR, seed=2)
        audio[len(audio) // 3] = value
        sf.write(path, audio, SR, subtype="FLOAT")

    return make


# name → (how to make it, what preparation does, a fragment of the reason)
BAD_AUDIO = {
    "truncated.flac": (_truncated_flac, "corrupt", "not readable"),
    "corrupt.flac": (_damaged_flac, "corrupt", "not readable"),
    "text.flac": (lambda p: p.write_text("not audio at all\n" * 40), "corrupt", "not readable"),
    "no_samples.wav": (lambda p: sf.write(p, np.zeros(0, np.float32), SR), "corrupt", "zero-length"),
    "empty.flac": (lambda p: p.write_bytes(b""), "corrupt", "not readable"),
    "nan.wav": (_float_wav_with(float("nan")), "corrupt", "NaN or Inf"),
    "inf.wav": (_float_wav_with(float("inf")), "corrupt", "NaN or Inf"),
}
SILENCE = "silence.flac"  # unusable for training, valid everywhere else
VALID_ODD = {  # name → (sample rate, channels)
    "rate_8k.flac": (8000, 1),
    "rate_96k.wav": (96000, 1),
    "six_channels.wav": (SR, 6),
}
MISSING = "missing.flac"
N_CASES = len(BAD_AUDIO) + 1 + len(VALID_ODD) + 2  # + silence; + missing file and missing column


def six_channel_audio() -> np.ndarray:
    return np.stack([piano_like(SECONDS, SR, seed=10 + c) * (c + 1) / 6 for c in range(6)], axis=1)


def make_corpus(folder: Path) -> Path:
    """Every audio case of the corpus in ``folder``, plus two good pieces; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (make, _, _) in BAD_AUDIO.items():
        make(folder / name)
    sf.write(folder / SILENCE, np.zeros(int(SECONDS * SR), np.float32), SR)
    for name, (rate, channels) in VALID_ODD.items():
        audio = six_channel_audio() if channels == 6 else piano_like(SECONDS, rate, seed=rate)
        sf.write(folder / name, audio, rate, subtype="PCM_24" if name.endswith(".wav") else "PCM_16")
    for i in range(2):
        sf.write(folder / f"good{i}.flac", piano_like(SECONDS, SR, seed=20 + i), SR)
    return folder


def write_csv(path: Path, rows: list[dict], columns=MAESTRO_COLUMNS) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def row(audio: str, split: str = "train") -> dict:
    return {"canonical_composer": "C", "canonical_title": audio, "split": split, "year": 2004,
            "midi_filename": audio + ".midi", "audio_filename": audio, "duration": SECONDS}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))


def one_line_error(stderr: str, *fragments: str | tuple[str, ...]) -> str:
    """The single stderr line of a refusal; it must hold every fragment (a tuple: one of them)
    and no traceback."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        options = fragment if isinstance(fragment, tuple) else (fragment,)
        assert any(option in lines[0] for option in options), (fragment, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------ preparation


def test_preparation_reports_every_bad_file_and_prepares_the_rest(corpus, tmp_path):
    from audiogen.cache import open_cache

    maestro = tmp_path / "maestro"
    maestro.mkdir()
    for item in corpus.iterdir():
        (maestro / item.name).symlink_to(item)
    names = [*BAD_AUDIO, SILENCE, *VALID_ODD, MISSING, "good0.flac"]
    write_csv(maestro / "maestro-v3.0.0.csv", [row(n) for n in names] + [row("good1.flac", "validation")])
    cache = tmp_path / "cache"
    result = run_cli("audiogen.cli.prepare", "--maestro", str(maestro), "--out", str(cache), "--workers", "1",
                     "--no-progress")
    assert result.returncode == 1, result.stderr  # 1: prepared, with pieces skipped
    assert "Traceback" not in result.stdout + result.stderr
    expected = {name: (kind, reason) for name, (_, kind, reason) in BAD_AUDIO.items()}
    expected[SILENCE] = ("silent", "dBFS")
    expected[MISSING] = ("missing", "file not found")
    report = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(report) == len(expected) == 9
    for name, (kind, reason) in expected.items():
        lines = [line for line in report if f" {name}:" in line]
        assert len(lines) == 1 and lines[0].split()[0] == kind and reason in lines[0], (name, report)

    opened = open_cache(cache)
    assert sorted(s["source"] for s in opened.skipped) == sorted(expected)
    prepared = {p.metadata["source"]: p for s in ("train", "validation") for p in opened.pieces(s)}
    assert sorted(prepared) == sorted([*VALID_ODD, "good0.flac", "good1.flac"])
    hop = opened.frontend.hop_length
    for name, entry in prepared.items():
        # resampled to the cache rate with the duration kept (soxr: within a few samples)
        assert abs(entry.n_samples - SECONDS * SR) <= 2, (name, entry.n_samples)
        assert entry.n_frames == 1 + entry.n_samples // hop
        assert opened.load_mel(entry).shape == (opened.frontend.n_mels, entry.n_frames)
        assert np.isfinite(opened.load_mel(entry)).all()
    # six channels are averaged, not one channel kept
    stored = opened.load_audio(prepared["six_channels.wav"])
    np.testing.assert_allclose(stored, six_channel_audio().mean(axis=1), atol=2 / 32768)
    # 96 kHz: the piece's level survives resampling (a wrong rate would stretch or empty it)
    original = piano_like(SECONDS, 96000, seed=96000)
    level = float(np.sqrt(np.mean(opened.load_audio(prepared["rate_96k.wav"]) ** 2)))
    assert level == pytest.approx(float(np.sqrt(np.mean(original**2))), rel=0.02)


def test_metadata_without_a_column_is_refused_in_one_line(corpus, tmp_path, capsys):
    from audiogen.cli.prepare import main

    maestro = tmp_path / "maestro"
    maestro.mkdir()
    (maestro / "good0.flac").symlink_to(corpus / "good0.flac")
    columns = [c for c in MAESTRO_COLUMNS if c != "split"]
    write_csv(maestro / "maestro-v3.0.0.csv", [row("good0.flac")], columns=columns)
    code = main(["--maestro", str(maestro), "--out", str(tmp_path / "cache"), "--workers", "1", "--no-progress"])
    assert code == 2
    one_line_error(capsys.readouterr().err, "maestro-v3.0.0.csv", "missing column", "split")
    assert not (tmp_path / "cache" / "index.json").exists()


# ------------------------------------------------------------------------------ models for generate


def generate(models, capsys, *args: str) -> tuple[int, str]:
    from audiogen.cli.generate import main

    code = main(["--model", str(models["model"]), "--vocoder", str(models["vocoder"]), "--seconds", "1",
                 "--seed", "1", "--quiet", *args])
    return code, capsys.readouterr().err


@pytest.fixture
def one_thread(monkeypatch):
    # generate raises torch's thread count to all cores unless OMP_NUM_THREADS is set
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.usefixtures("one_thread")
def test_generate_like_refuses_each_unusable_file_in_one_line(corpus, models, capsys, tmp_path):
    cases = {**{name: reason for name, (_, _, reason) in BAD_AUDIO.items()}, MISSING: "file not found"}
    for name, reason in cases.items():
        out = tmp_path / f"{name}.wav"
        code, err = generate(models, capsys, "--like", str(corpus / name), "--out", str(out))
        assert code == 2, (name, err)
        one_line_error(err, name, reason)
        assert not out.exists() and not list(tmp_path.glob("*.part"))
    # the same as users type it: one line on stderr, no traceback, exit 2
    result = run_cli("audiogen.cli.generate", "--model", str(models["model"]), "--vocoder", str(models["vocoder"]),
                     "--seconds", "1", "--like", str(corpus / "nan.wav"), "--out", str(tmp_path / "x.wav"))
    assert result.returncode == 2
    one_line_error(result.stderr, "nan.wav", "NaN or Inf")


@pytest.mark.usefixtures("one_thread")
def test_generate_like_accepts_silence_other_rates_and_channels(corpus, models, capsys, tmp_path):
    for name in [SILENCE, *VALID_ODD]:
        out = tmp_path / f"{name}.wav"
        code, err = generate(models, capsys, "--like", str(corpus / name), "--out", str(out))
        assert code == 0, (name, err)
        audio, rate = sf.read(out)
        assert rate == SR and len(audio) == SR and np.isfinite(audio).all()


# ------------------------------------------------------------------------------ audiogen-fad


def fad(capsys, *args: str) -> tuple[int, str, str]:
    from audiogen.cli.fad import main

    code = main([*args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


MEL = ["--embedding", "mel", "--no-cache", "--workers", "1", "--quiet"]


def test_fad_refuses_each_unusable_file_and_accepts_the_valid_ones(corpus, capsys, tmp_path):
    background = tmp_path / "background.npz"
    goods = [str(corpus / "good0.flac"), str(corpus / "good1.flac")]
    code, _, err = fad(capsys, "embed", *goods, "--out", str(background), *MEL)
    assert code == 0, err
    cases = {**{name: reason for name, (_, _, reason) in BAD_AUDIO.items()}, MISSING: ("no such file", "not found")}
    for name, reason in cases.items():
        out = tmp_path / f"{name}.npz"
        code, _, err = fad(capsys, "embed", str(corpus / name), "--out", str(out), *MEL)
        assert code != 0, name
        one_line_error(err, name, reason)
        assert not out.exists()
        listing = tmp_path / f"{name}.txt"  # an evaluation set with one bad file among good ones
        listing.write_text("\n".join([*goods, str(corpus / name)]) + "\n")
        code, out_text, err = fad(capsys, "score", "--background", str(background), "--eval", str(listing),
                                  "--bootstrap", "5", *MEL)
        assert code != 0 and out_text == "", name
        one_line_error(err, name, reason)
    valid = [str(corpus / n) for n in [SILENCE, *VALID_ODD]]
    code, out_text, err = fad(capsys, "embed", *valid, "--out", str(tmp_path / "valid.npz"), *MEL)
    assert code == 0, err
    assert json.loads(out_text.strip().splitlines()[-1])["files"] == len(valid)
    with np.load(tmp_path / "valid.npz") as data:
        arrays = [data[k] for k in data.files if data[k].dtype.kind == "f"]
    assert len(arrays) >= len(valid) and all(np.isfinite(a).all() and a.shape[0] >= 2 for a in arrays)


def test_corpus_size():
    assert len(BAD_AUDIO) == 7 and len(VALID_ODD) == 3 and N_CASES == 13


# ------------------------------------------------------------------------------ safe loading


class RunsCode:
    """Unpickling this calls exec(), which writes a marker file: a stand-in for any payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def evil_files(folder: Path, stem: str) -> dict[str, Path]:
    """Weights-named files holding the payload: raw pickle bytes and torch's zip format."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "MARKER"
    raw = folder / f"{stem}-raw"
    raw.write_bytes(pickle.dumps(RunsCode(marker), protocol=2))  # the protocol torch.load expects
    zipped = folder / f"{stem}-zip"
    torch.save({"weights": RunsCode(marker)}, zipped)
    return {"marker": marker, "raw": raw, "zip": zipped}


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    files = evil_files(tmp_path, "control")
    pickle.loads(files["raw"].read_bytes())
    assert files["marker"].read_text() == "code ran"  # so an absent marker below means it never ran


def test_pickled_weights_are_refused_without_running_code(tmp_path):
    files = evil_files(tmp_path / "evil", "weights")
    for kind in ("raw", "zip"):
        path = tmp_path / f"{kind}.safetensors"
        path.write_bytes(files[kind].read_bytes())
        with pytest.raises(CheckpointError, match="not a safetensors file"):
            load_state_dict(path)
    assert not files["marker"].exists()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("kind", ["raw", "zip"])
@pytest.mark.parametrize("network", ["vae", "prior", "vocoder"])
def test_generate_refuses_a_model_folder_with_pickled_weights(models, capsys, tmp_path, kind, network):
    import shutil

    files = evil_files(tmp_path / "evil", network)
    folders = {}
    for name in ("model", "vocoder"):
        folders[name] = tmp_path / name
        shutil.copytree(models[name], folders[name])
    target = folders["vocoder" if network == "vocoder" else "model"] / f"{network}.safetensors"
    target.write_bytes(files[kind].read_bytes())
    code, err = generate(folders, capsys, "--out", str(tmp_path / "x.wav"))
    assert code == 2
    one_line_error(err, f"{network}.safetensors", "not a safetensors file")
    assert not files["marker"].exists() and not (tmp_path / "x.wav").exists()


def test_vggish_weights_that_are_a_code_pickle_are_refused(corpus, capsys, tmp_path):
    files = evil_files(tmp_path / "evil", "vggish")
    for kind in ("raw", "zip"):
        weights = tmp_path / f"vggish-{kind}.pth"
        weights.write_bytes(files[kind].read_bytes())
        code, _, err = fad(capsys, "embed", str(corpus / "good0.flac"), "--out", str(tmp_path / "x.npz"),
                           "--embedding", "vggish", "--vggish-weights", str(weights), "--no-cache", "--workers", "1",
                           "--quiet")
        assert code != 0
        one_line_error(err, weights.name)
    assert not files["marker"].exists()


def test_resuming_from_a_checkpoint_whose_optimiser_file_runs_code_is_refused(tmp_path):
    from accelerate import Accelerator
    from torch import nn

    from audiogen.training import OptimConfig, Task, TrainConfig, latest_checkpoint, train

    class Linear(Task):
        ema_network = None

        def __init__(self):
            self.networks = {"net": nn.Linear(2, 1)}

        def train_step(self, batch, ctx):
            loss = (ctx.networks["net"](batch["x"]) ** 2).mean()
            ctx.backward(loss)
            ctx.optimizer_step("net")
            return {"loss": loss.item()}

        def validate(self, ctx):
            return {"val/loss": 0.0}

        def export(self, ctx):
            return {"net": ctx.networks["net"]}

    data = [{"x": torch.ones(2) * i} for i in range(8)]
    config = TrainConfig(batch_size=2, max_steps=2, log_every=1, val_every=100, ckpt_every=1, ema_decay=None)
    train(Linear(), data, [], config, OptimConfig(), tmp_path, Accelerator(cpu=True))
    files = evil_files(tmp_path / "evil", "optim")
    checkpoint = latest_checkpoint(tmp_path)
    for kind in ("raw", "zip"):
        (checkpoint / "optim.pt").write_bytes(files[kind].read_bytes())
        with pytest.raises(CheckpointError, match="optim.pt"):
            train(Linear(), data, [], config.__class__(**{**config.__dict__, "max_steps": 4}), OptimConfig(),
                  tmp_path, Accelerator(cpu=True), resume=True)
    assert not files["marker"].exists()


# ------------------------------------------------------------------------------ frontends must match


@pytest.mark.usefixtures("one_thread")
def test_generate_refuses_a_model_made_for_another_frontend(models, capsys, tmp_path):
    import shutil

    changed = tmp_path / "model"
    shutil.copytree(models["model"], changed)
    config = yaml.safe_load((changed / "config.yaml").read_text())
    config["frontend"] = dict(config.get("frontend") or {}, hop_length=512)
    (changed / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    code, err = generate({"model": changed, "vocoder": models["vocoder"]}, capsys, "--out", str(tmp_path / "x.wav"))
    assert code == 2
    one_line_error(err, "another audio frontend", "hop_length 256 (expected 512)")
    assert not (tmp_path / "x.wav").exists()
    # the same refusal as users see it
    result = run_cli("audiogen.cli.generate", "--model", str(changed), "--vocoder", str(models["vocoder"]),
                     "--seconds", "1", "--out", str(tmp_path / "y.wav"))
    assert result.returncode == 2
    one_line_error(result.stderr, "hop_length")


def test_trainer_refuses_a_cache_made_for_another_frontend(tiny_cache, tmp_path, capsys):
    from audiogen.tasks import run_trainer

    code = run_trainer("vocoder", ["--config", str(ROOT / "configs/vocoder/tiny.yaml"), "--data", str(tiny_cache),
                                   "--out", str(tmp_path / "run"), "--set", "frontend.fmax=7000", "--cpu"])
    assert code == 2
    one_line_error(capsys.readouterr().err, "another audio frontend", "fmax")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resuming_a_run_made_for_another_frontend_is_refused(tiny_cache, tmp_path, capsys):
    from audiogen.config import to_dict
    from audiogen.tasks import load_trainer_config, run_trainer

    # a run whose config.yaml and checkpoint say it was trained on other features (fmax 7 kHz)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step-0000002").mkdir(parents=True)
    (run_dir / "checkpoints" / "step-0000002" / "state.json").write_text(json.dumps({"step": 2}))
    (run_dir / "checkpoints" / "latest").write_text("step-0000002\n")
    config = load_trainer_config(ROOT / "configs/vocoder/tiny.yaml", ["frontend.fmax=7000"])
    saved = yaml.safe_dump(to_dict(config), sort_keys=False)
    (run_dir / "config.yaml").write_text(saved)
    code = run_trainer("vocoder", ["--config", str(ROOT / "configs/vocoder/tiny.yaml"), "--data", str(tiny_cache),
                                   "--out", str(run_dir), "--resume", "--cpu"])
    assert code == 2
    one_line_error(capsys.readouterr().err, f"run {run_dir}", "fmax 7000.0 (expected None)")
    assert (run_dir / "config.yaml").read_text() == saved  # the run's record is left as it was
