"""`audiogen export-onnx`: every graph under onnxruntime matches PyTorch on the same input, at two lengths.

The bundled models are exported once (through the command line, as a user would) and shared by the
tests: the export costs about 15 s of CPU, the graph runs milliseconds. Skipped without onnxruntime
and onnxscript (the ``onnx`` extra).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from audiogen.generation import load_prior, load_vae, load_vocoder, pretrained_dir  # noqa: E402
from audiogen.onnx_export import run_graph  # noqa: E402

TOLERANCE = 1e-4  # max abs difference, in the output's units


def export_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audiogen", "export-onnx", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "bundled"
    done = export_command("--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def bundled():
    vae, _ = load_vae(pretrained_dir("spec"))
    return {"vae": vae, "vocoder": load_vocoder(pretrained_dir("vocoder")),
            "prior": load_prior(pretrained_dir("spec"), vae.latent_dim)}


def max_abs(a, b: torch.Tensor) -> float:
    assert a.shape == tuple(b.shape)
    return float(np.abs(a - b.numpy()).max())


def test_export_writes_graphs_configs_and_manifest(exported, bundled):
    from audiogen.onnx_export import prior_graphs

    manifest = json.loads((exported / "manifest.json").read_text())
    steps = [graph.spec.name for graph in prior_graphs(bundled["prior"])]  # the bundled prior's family's
    assert set(manifest["graphs"]) == {"vocoder", "vae_decoder", "vae_encoder", *steps}
    assert manifest["not_exported"] == {}
    for graph in manifest["graphs"].values():
        assert (exported / graph["file"]).stat().st_size > 0
        assert all({"name", "shape", "units"} <= set(t) for t in graph["inputs"] + graph["outputs"])
    assert manifest["graphs"]["vocoder"]["inputs"][0]["shape"] == ["B", 80, "F"]
    frontend = yaml.safe_load((exported / "frontend.yaml").read_text())
    assert frontend == yaml.safe_load((pretrained_dir("spec") / "config.yaml").read_text())["frontend"]
    assert manifest["frontend"] == frontend
    assert (exported / "spec_config.yaml").exists() and (exported / "vocoder_config.yaml").exists()
    assert not list(exported.parent.glob(".bundled.*"))  # no temporary folder left beside it


@pytest.mark.parametrize("frames", [37, 150])
def test_vocoder_graph_matches_pytorch(exported, bundled, frames):
    mel = torch.randn(1, 80, frames) * 1.5 - 5.0
    with torch.inference_mode():
        expected = bundled["vocoder"](mel)
    (audio,) = run_graph(exported / "vocoder.onnx", {"mel": mel})
    assert audio.shape == (1, 1, frames * 256)
    assert max_abs(audio, expected) <= TOLERANCE


@pytest.mark.parametrize(("batch", "latent_frames"), [(1, 5), (3, 23)])
def test_vae_decoder_graph_matches_pytorch(exported, bundled, batch, latent_frames):
    z = torch.randn(batch, bundled["vae"].latent_dim, latent_frames)
    with torch.inference_mode():
        expected = bundled["vae"].decode(z)
    (mel,) = run_graph(exported / "vae_decoder.onnx", {"latents": z})
    assert max_abs(mel, expected) <= TOLERANCE


@pytest.mark.parametrize("frames", [37, 64])  # not a multiple of the time ratio (padded), and a multiple
def test_vae_encoder_graph_matches_pytorch(exported, bundled, frames):
    mel = torch.randn(2, 80, frames) * 1.5 - 5.0
    with torch.inference_mode():
        mu, logvar = bundled["vae"].encode(mel)
    got_mu, got_logvar = run_graph(exported / "vae_encoder.onnx", {"mel": mel})
    assert max_abs(got_mu, mu) <= TOLERANCE
    assert max_abs(got_logvar, logvar) <= TOLERANCE


@pytest.fixture(scope="module")
def mixture_step(models, tmp_path_factory):
    """The tiny test models' mixture prior and its step graph (the bundled prior may be of another family)."""
    from audiogen.onnx_export import export_graph, mixture_step_graph

    vae, _ = load_vae(models["model"])
    prior = load_prior(models["model"], vae.latent_dim)
    graph = mixture_step_graph(prior)
    path = tmp_path_factory.mktemp("mixture") / graph.spec.file
    export_graph(graph, path)
    return prior, path, graph.spec.inputs[1].shape


@pytest.mark.parametrize("steps", [3, 40])  # within the shortest block's span, and past several spans
def test_prior_step_graph_follows_begin_and_advance(mixture_step, steps):
    """From a zero state, the graph's params after each frame equal LatentPrior.begin/advance's."""
    prior, graph, state_shape = mixture_step
    state = np.zeros((1, *state_shape[1:]), dtype=np.float32)
    frames = torch.randn(steps, 1, prior.latent_dim)
    reference = prior.begin(None)
    params, state = run_graph(graph, {"frame": np.zeros((1, prior.latent_dim)), "state": state})
    worst = max_abs(params, reference.params)
    for frame in frames:
        reference = prior.advance(reference, frame)
        params, state = run_graph(graph, {"frame": frame, "state": state})
        worst = max(worst, max_abs(params, reference.params))
    assert worst <= TOLERANCE


def test_prior_step_graph_takes_a_batch(mixture_step):
    """Two pieces stepped together give what each gives alone."""
    prior, graph, state_shape = mixture_step
    frames, states = torch.randn(2, prior.latent_dim), torch.randn(2, *state_shape[1:])
    together = run_graph(graph, {"frame": frames, "state": states})
    for i in range(2):
        alone = run_graph(graph, {"frame": frames[i:i + 1], "state": states[i:i + 1]})
        for got, want in zip(together, alone, strict=True):
            np.testing.assert_allclose(got[i:i + 1], want, atol=1e-5)


def test_token_step_graph_takes_a_batch(tmp_path):
    """Two pieces stepped together give what each gives alone (the batch axis of every input is free)."""
    from audiogen.onnx_export import export_graph, token_step_graph
    from audiogen.token_prior import TokenPrior

    torch.manual_seed(0)
    graph = token_step_graph(TokenPrior(latent_dim=3, codebook_size=8, width=16, layers=2, heads=2, context_tokens=5))
    export_graph(graph, tmp_path / graph.spec.file)
    inputs = dict(zip([t.name for t in graph.spec.inputs], graph.example_inputs, strict=True))
    together = run_graph(tmp_path / graph.spec.file, inputs)
    for i in range(2):
        alone = run_graph(tmp_path / graph.spec.file,
                          {name: value if value.dim() == 0 or name in ("cos", "sin") else value[i:i + 1]
                           for name, value in inputs.items()})
        for got, want in zip(together, alone, strict=True):
            np.testing.assert_allclose(np.take(got, [i], axis=1 if got.ndim == 4 else 0), want, atol=1e-5)


def test_existing_out_is_refused_in_one_line(tmp_path):
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = export_command("--out", str(out))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "already exists" in done.stderr and "--force" in done.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_missing_model_folder_is_a_one_line_error(tmp_path):
    done = export_command("--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "onnx"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "nowhere" in done.stderr
    assert not (tmp_path / "onnx").exists()


def fake_export(graph, path):
    path.write_text(graph.spec.name)


def test_force_replaces_the_folder_whole(tmp_path, monkeypatch):
    from audiogen import onnx_export

    monkeypatch.setattr(onnx_export, "export_graph", fake_export)  # the real export is tested above
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "stale.onnx").write_text("old")
    manifest = onnx_export.export_onnx(out, force=True)
    assert not (out / "stale.onnx").exists()
    assert sorted(p.name for p in out.glob("*.onnx")) == sorted(g["file"] for g in manifest["graphs"].values())
    assert [p.name for p in tmp_path.iterdir()] == ["onnx"]


def test_a_failed_export_leaves_nothing(tmp_path, monkeypatch):
    from audiogen import onnx_export

    calls = []

    def fail_on_second(graph, path):
        calls.append(graph.spec.name)
        if len(calls) == 2:
            raise RuntimeError("exporter failed")
        fake_export(graph, path)

    monkeypatch.setattr(onnx_export, "export_graph", fail_on_second)
    with pytest.raises(RuntimeError):
        onnx_export.export_onnx(tmp_path / "onnx")
    assert list(tmp_path.iterdir()) == []


def test_flow_prior_has_no_step_graph_and_says_why():
    from audiogen.flow_prior import FlowPrior, FlowPriorConfig
    from audiogen.onnx_export import prior_graphs

    config = FlowPriorConfig(width=16, layers=1, heads=2, head_width=16, head_blocks=1)
    why = prior_graphs(FlowPrior.from_config(config, latent_dim=4))
    assert isinstance(why, str) and "flow" in why


def test_folded_copy_drops_weight_norm_and_leaves_the_original_whole():
    """deepcopy + remove_parametrizations would break the original (they share its class); folded_copy does not."""
    from torch.nn.utils import parametrize

    from audiogen.onnx_export import folded_copy
    from audiogen.vocoder import HiFiGANGenerator

    torch.manual_seed(0)
    vocoder = HiFiGANGenerator(n_mels=80, upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8),
                               upsample_initial_channel=16, resblock="2", resblock_kernel_sizes=(3,),
                               resblock_dilation_sizes=((1, 3),)).eval()
    mel = torch.randn(1, 80, 9) - 5.0
    folded = folded_copy(vocoder)
    assert not any(parametrize.is_parametrized(m) for m in folded.modules())
    assert parametrize.is_parametrized(vocoder.body.conv_pre, "weight")
    with torch.inference_mode():
        torch.testing.assert_close(folded(mel), vocoder(mel), atol=1e-6, rtol=0)


def test_a_vae_only_folder_exports_without_a_prior_step(tmp_path, monkeypatch):
    import shutil

    from audiogen import onnx_export

    model = tmp_path / "vae-only"
    model.mkdir()
    for name in ("config.yaml", "vae.safetensors"):
        shutil.copy(pretrained_dir("spec") / name, model / name)
    monkeypatch.setattr(onnx_export, "export_graph", fake_export)
    manifest = onnx_export.export_onnx(tmp_path / "onnx", model_dir=model)
    assert "prior_step" not in manifest["graphs"] and "no prior" in manifest["not_exported"]["prior"]
    assert not (tmp_path / "onnx" / "prior_step.onnx").exists()
