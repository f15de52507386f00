"""Music metrics through the transcriber, and the transcriber's features as an FAD embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiogen.music_metrics import SCALARS, clip_metrics, compare_sets
from audiogen.transcription import Notes


def _even(count: int, step: float, pitch: int = 60, velocity: int = 80, length: float = 0.1) -> Notes:
    onsets = np.arange(count) * step
    return Notes.of(onsets, onsets + length, [pitch] * count, [velocity] * count)


def test_clip_metrics_of_known_notes():
    notes = Notes.of([0.0, 0.0, 0.5, 1.0], [1.0, 0.5, 1.0, 1.5], [48, 52, 55, 72], [40, 60, 80, 100])
    m = clip_metrics(notes, 2.0)
    assert m["notes_per_second"] == pytest.approx(2.0)
    assert m["polyphony"] == pytest.approx(2.0 * 1.0 / 1.5 + 1 * 0.5 / 1.5)  # two keys for 1 s, one for 0.5 s
    assert m["pitch_range"] == pytest.approx(np.subtract(*np.percentile([48, 52, 55, 72], [95, 5])))
    assert m["velocity_spread"] == pytest.approx(np.std([40, 60, 80, 100]))
    assert m["pitch_class_counts"][0] == 2 and m["pitch_class_counts"][4] == 1 and m["pitch_class_counts"][7] == 1
    # a chord (same onset) is one event: intervals 0.5 and 0.5, one bin: no rhythmic entropy
    assert m["ioi_entropy"] == 0.0


def test_ioi_entropy_rises_with_irregular_timing():
    rng = np.random.default_rng(0)
    onsets = np.cumsum(rng.uniform(0.05, 1.5, 40))
    free = Notes.of(onsets, onsets + 0.1, [60] * 40, [80] * 40)
    assert clip_metrics(_even(40, 0.25), 12.0)["ioi_entropy"] == 0.0
    assert clip_metrics(free, float(onsets[-1] + 1))["ioi_entropy"] > 2.0


def test_empty_clip_has_zero_metrics():
    m = clip_metrics(Notes.empty(), 5.0)
    assert all(m[k] == 0.0 for k in SCALARS) and sum(m["pitch_class_counts"]) == 0


def test_compare_sets_is_zero_for_a_set_against_itself_and_grows_with_the_difference():
    reference = [clip_metrics(_even(10 + i, 0.5, pitch=60 + i), 10.0) for i in range(8)]
    pieces = [f"p{i // 2}" for i in range(8)]
    same = compare_sets(reference, pieces, reference, pieces, n_bootstrap=50)
    assert all(v == pytest.approx(0.0) for v in same["distance"].values())
    assert all(same["interval"][k][0] <= 0 <= same["interval"][k][1] for k in SCALARS)  # cannot tell them apart
    faster = [clip_metrics(_even(40, 0.2, pitch=61), 10.0) for _ in range(6)]
    result = compare_sets(faster, [f"q{i}" for i in range(6)], reference, pieces, n_bootstrap=50)
    expected = 4.0 - np.mean([(10 + i) / 10 for i in range(8)])
    assert result["distance"]["notes_per_second"] == pytest.approx(expected)
    slower = compare_sets(reference, pieces, faster, [f"q{i}" for i in range(6)], n_bootstrap=50)
    assert slower["difference"]["notes_per_second"] == pytest.approx(-expected)
    low, high = result["interval"]["notes_per_second"]
    assert low <= expected <= high and high - low < expected
    assert result["distance"]["pitch_class_js"] > same["distance"]["pitch_class_js"]


@pytest.fixture(scope="module")
def transcriber_dir(tmp_path_factory):
    """An untrained tiny transcriber, exported as training exports it."""
    from pathlib import Path

    from audiogen.checkpoint import export_model
    from audiogen.config import from_dict, to_dict
    from audiogen.tasks import load_trainer_config
    from audiogen.transcriber import Transcriber, TranscriberConfig

    root = Path(__file__).resolve().parents[1]
    config = load_trainer_config(root / "configs/transcriber/tiny.yaml")
    torch.manual_seed(0)
    model = Transcriber.from_config(from_dict(TranscriberConfig, config.model, "model"), config.frontend.n_mels)
    out = tmp_path_factory.mktemp("transcriber") / "model"
    export_model(out, {"transcriber": model.eval()}, to_dict(config), {})
    return out


def test_transcriber_embedding_pools_the_models_features_per_patch(transcriber_dir):
    from audiogen.embeddings import EMBEDDERS, embedder_key, make_embedder
    from audiogen.transcriber import transcribe_mel

    assert "transcriber" in EMBEDDERS
    embedder = make_embedder("transcriber", weights=transcriber_dir)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(3 * embedder.sample_rate)).astype(np.float32)
    out = embedder.embed(audio)
    assert out.shape == (3, embedder.dim) and embedder.dim == 2 * 16  # tiny.yaml: hidden 16; 0.96 s patches
    features = transcribe_mel(embedder.model, embedder.frontend(torch.from_numpy(audio)))["features"].numpy()
    hop = embedder.framing.hop_samples(embedder.sample_rate)
    segment = embedder.framing.segment_samples(embedder.sample_rate)
    frames = [k for k in range(features.shape[1]) if hop <= k * 256 < hop + segment]  # patch 1
    np.testing.assert_allclose(out[1], np.concatenate([features[:, frames].mean(1), features[:, frames].std(1)]),
                               rtol=1e-4, atol=1e-5)
    identity = embedder.identity()
    assert identity["model"] == "transcriber" and len(identity["weights_sha256"]) == 64
    assert embedder_key(identity) != embedder_key(dict(identity, weights_sha256="0" * 64))


def test_music_meter_measures_clips_with_a_transcriber(transcriber_dir):
    from audiogen.music_metrics import MusicMeter

    meter = MusicMeter(transcriber_dir)
    result = meter.measure(np.zeros(2 * meter.sample_rate, dtype=np.float32))
    assert set(SCALARS) <= set(result) and len(result["pitch_class_counts"]) == 12


def test_fad_benchmark_reports_music_metrics_and_the_transcriber_embedding(transcriber_dir, tmp_path, monkeypatch):
    import importlib.util
    import json
    import sys
    from pathlib import Path

    from audiogen.audio import save_audio

    path = Path(__file__).resolve().parents[1] / "tools" / "fad_benchmark.py"
    spec = importlib.util.spec_from_file_location("fad_benchmark_music", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(0)
    t = np.arange(int(4.0 * 22050)) / 22050
    (tmp_path / "ref").mkdir()
    for index in range(4):
        tone = sum(np.sin(2 * np.pi * f * t) * np.exp(-3 * (t % 0.5)) for f in rng.uniform(200, 800, 3))
        save_audio(tmp_path / "ref" / f"p{index}.flac", (0.2 * tone).astype(np.float32), 22050)
    monkeypatch.setattr(bench, "load_models", lambda *a: (None, "no models here"))
    args = ["--reference", str(tmp_path / "ref"), "--num", "4", "--seconds", "1.5", "--embedding", "transcriber",
            "--bootstrap", "5", "--griffin-lim-iters", "2", "--keep-clips", "0", "--transcriber", str(transcriber_dir),
            "--out", str(tmp_path / "report")]
    assert bench.main(args) == 0
    report = json.loads((tmp_path / "report" / "fad_benchmark.json").read_text())
    assert report["embedding"]["model"] == "transcriber" and report["background_music"]["clips"] > 0
    scored = [r for r in report["rows"] if not r.get("skipped")]
    assert scored and all(set(r["music"]["distance"]) == {*SCALARS, "pitch_class_js"} for r in scored)
    assert "Music metrics through the transcriber" in (tmp_path / "report" / "fad_benchmark.md").read_text()
