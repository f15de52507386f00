"""The token prior on onnxruntime (audiogen.onnx_generation.OnnxTokenPrior): its numpy twins of pick_code and
rotary, its graphs stepped from numpy against TokenPrior.sample_stream for the same seeds, past the sliding
window, and `generate` on a token-prior folder whose graphs export-onnx put in the cache.

Tolerance: the codes must be the same draw for draw. A code could rightly differ only where the uniform lies
within the graphs' float error of a boundary of the cumulative softmax; the PyTorch side records, for each draw,
how far its uniform lies from the nearest boundary (in probability), and a stream is compared up to its first
draw closer than MARGIN (1e-4; the graphs' logits differ from PyTorch's by ~1e-6, so every draw farther off must
agree). At least 95 % of the draws must be compared, so a test that compared nothing would fail. The latents
are sums of codebook words, so equal codes make them equal to 1e-6.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from audiogen import onnx_generation, token_prior
from audiogen.clip_tags import model_hash, read_tags
from audiogen.onnx_generation import (
    SourceIdentity,
    cached_graphs_dir,
    find_graphs,
    onnx_prior,
    onnxruntime_available,
    token_graphs,
)
from audiogen.token_prior import TokenPrior
from audiogen.transformer import rotary

MARGIN = 1e-4
SEEDS = (0, 1, 2, 3)

needs_export = pytest.mark.skipif(
    not onnxruntime_available() or importlib.util.find_spec("onnxscript") is None,
    reason="onnxruntime and onnxscript not installed (onnx extra)")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def small_prior(**overrides) -> TokenPrior:
    torch.manual_seed(0)
    args = dict(latent_dim=4, codebooks=2, codebook_size=16, frames_per_token=2, width=16, layers=2, heads=2,
                mlp_ratio=2, context_tokens=6)
    prior = TokenPrior(**{**args, **overrides}).eval()
    prior.codebooks.words.copy_(torch.randn_like(prior.codebooks.words))  # as if fitted
    with torch.no_grad():  # logits of a few nats, so that every code is drawn now and then
        for out in prior.depth_out:
            out.weight.mul_(20)
    return prior


# ------------------------------------------------------------------------------ the numpy twins


@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, 0), (0.7, 0), (1.3, 3), (1.0, 1), (0.0, 0)])
def test_pick_code_twin_picks_what_torch_picks(temperature, top_k):
    rng = np.random.default_rng(0)
    for _ in range(50):
        logits = (rng.standard_normal(16) * 3).astype(np.float32)
        for u in np.concatenate([rng.random(40, dtype=np.float32), [0.0, np.float32(1 - 2**-24)]]):
            expected = token_prior.pick_code(torch.from_numpy(logits), float(u), temperature, top_k)
            assert onnx_generation.pick_code(logits, float(u), temperature, top_k) == expected


@pytest.mark.parametrize("position", [0, 1, 7, 255, 10_000, 3_000_000])
def test_rotary_twin_is_torch_rotary(position):
    cos, sin = rotary(torch.tensor([position]), 48)
    got_cos, got_sin = onnx_generation.rotary(position, 48)
    assert got_cos.dtype == np.float32 and got_cos.shape == (1, 24)
    np.testing.assert_allclose(got_cos, cos.numpy(), rtol=0, atol=1e-7)
    np.testing.assert_allclose(got_sin, sin.numpy(), rtol=0, atol=1e-7)


# ------------------------------------------------------------------------------ the graphs against PyTorch


def exported_prior(prior: TokenPrior, folder) -> onnx_generation.OnnxTokenPrior:
    from audiogen.onnx_export import export_graph, prior_graphs

    folder.mkdir()
    graphs = prior_graphs(prior)
    for graph in graphs:
        export_graph(graph, folder / graph.spec.file)
    facts = {graph.spec.name: {"file": graph.spec.file, **graph.extra} for graph in graphs}
    assert sorted(facts) == sorted(token_graphs(prior.codes_per_token))
    return onnx_prior(folder, facts)


def recorded(module, monkeypatch) -> list[tuple[int, float]]:
    """Every code ``module.pick_code`` returns, with the uniform's distance from the nearest CDF boundary."""
    draws, pick = [], module.pick_code

    def recording(logits, uniform, temperature, top_k):
        code = pick(logits, uniform, temperature, top_k)
        scaled = torch.as_tensor(logits).double() / max(temperature, 1e-30)
        if 0 < top_k < scaled.numel():
            scaled = scaled.masked_fill(scaled < torch.topk(scaled, top_k).values[-1], float("-inf"))
        cumulative = torch.cumsum(torch.softmax(scaled, -1), -1)
        margin = float((cumulative - uniform * cumulative[-1]).abs().min()) if temperature > 0 else 1.0
        draws.append((code, margin))
        return code

    monkeypatch.setattr(module, "pick_code", recording)
    return draws


# a token of 2 frames x 2 codebooks (three depth graphs) and one of a single code (none); top-k; a lower temperature
CASES = [(dict(), 1.0), (dict(codebooks=1, frames_per_token=1, top_k=5), 1.0), (dict(codebooks=3), 0.8)]


@needs_export
@pytest.mark.parametrize(("overrides", "temperature"), CASES)
def test_onnxruntime_stream_equals_sample_stream_for_the_same_seed(overrides, temperature, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    prior = small_prior(**overrides)
    onnx = exported_prior(prior, tmp_path / "graphs")
    tokens = 4 * prior.context_tokens  # the window slides for three quarters of the stream
    frames = tokens * prior.frames_per_token
    compared = total = 0
    for seed in SEEDS:
        torch_draws = recorded(token_prior, monkeypatch)
        expected = next(prior.sample_stream(frames, temperature, torch.Generator().manual_seed(seed)))[0].numpy()
        onnx_draws = recorded(onnx_generation, monkeypatch)
        got = next(onnx.sample_stream(frames, temperature, seed))[0]
        assert got.shape == expected.shape == (prior.latent_dim, frames)
        total += len(torch_draws)
        near = [i for i, (_, margin) in enumerate(torch_draws) if margin <= MARGIN]
        agree = near[0] if near else len(torch_draws)  # draws before the first one near a boundary
        compared += agree
        assert [c for c, _ in onnx_draws[:agree]] == [c for c, _ in torch_draws[:agree]], seed
        agreed_frames = agree // prior.codes_per_token * prior.frames_per_token
        np.testing.assert_allclose(got[:, :agreed_frames], expected[:, :agreed_frames], rtol=0, atol=1e-6)
        assert len({c for c, _ in torch_draws}) >= 4  # a real choice at each draw, not one code
    assert compared >= 0.95 * total


@needs_export
def test_chunks_do_not_change_the_stream_and_seeds_do(tmp_path):
    onnx = exported_prior(small_prior(), tmp_path / "graphs")
    whole = next(onnx.sample_stream(60, 1.0, 5))
    stream = onnx.sample_stream(7, 1.0, 5)
    pieces = np.concatenate([next(stream) for _ in range(9)], -1)[..., :60]
    np.testing.assert_array_equal(pieces, whole)
    assert np.abs(next(onnx.sample_stream(60, 1.0, 6)) - whole).max() > 0.1


# ------------------------------------------------------------------------------ generate on a token-prior folder


@pytest.fixture(scope="module")
def token_model(models, tmp_path_factory):
    """The tiny test models' VAE with a small token prior, exported as training does."""
    import yaml

    from audiogen.checkpoint import export_model
    from audiogen.generation import load_vae

    vae, _ = load_vae(models["model"])
    prior = small_prior(latent_dim=vae.latent_dim, context_tokens=32)
    config = yaml.safe_load((models["model"] / "config.yaml").read_text())
    config["model"] = {"kind": "token_prior", "codebooks": 2, "codebook_size": 16, "frames_per_token": 2,
                       "width": 16, "layers": 2, "heads": 2, "mlp_ratio": 2, "context_tokens": 32}
    return export_model(tmp_path_factory.mktemp("token") / "model", {"vae": vae, "prior": prior}, config, {})


def run_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ))


@needs_export
def test_export_to_the_cache_then_generate_runs_the_token_prior_on_onnxruntime(models, token_model, tmp_path):
    tiny = ["--model", str(token_model), "--vocoder", str(models["vocoder"])]
    done = run_command("audiogen", "export-onnx", *tiny, "--cache", "--quiet")
    assert done.returncode == 0, done.stderr
    folder = cached_graphs_dir(model_hash(token_model), model_hash(models["vocoder"]))
    assert sorted(p.name for p in folder.glob("*.onnx")) == sorted(
        f"{name}.onnx" for name in ("vae_decoder", "vocoder", *token_graphs(4)))
    assert find_graphs(SourceIdentity.of(token_model), SourceIdentity.of(models["vocoder"])) == folder
    clips = {}
    for runtime in ("auto", "torch"):
        out = tmp_path / f"{runtime}.wav"
        done = run_command("audiogen.cli.generate", "--quiet", *tiny, "--runtime", runtime, "--seconds", "4",
                           "--seed", "2", "--out", str(out))  # 4 s: 43 tokens, past the window of 32
        assert done.returncode == 0, done.stderr
        clips[read_tags(out)["runtime"]] = sf.read(out, dtype="float32")[0]
    assert set(clips) == {"onnxruntime", "torch"}
    assert np.abs(clips["onnxruntime"] - clips["torch"]).max() <= 0.01  # an untrained VAE, each clip normalised
    (folder / "token_depth_2.onnx").unlink()  # an incomplete folder is passed over: PyTorch, or a one-line refusal
    assert find_graphs(SourceIdentity.of(token_model), SourceIdentity.of(models["vocoder"])) is None
    done = run_command("audiogen.cli.generate", "--quiet", *tiny, "--runtime", "onnxruntime", "--seconds", "1",
                       "--out", str(tmp_path / "x.wav"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no ONNX graphs" in done.stderr
