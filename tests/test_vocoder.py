"""Vocoder generators, their configs, and chunked / streaming inference."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiogen.config import ConfigError, from_dict, read_yaml
from audiogen.discriminators import DiscriminatorConfig
from audiogen.frontend import FrontendConfig, MelFrontend
from audiogen.vocoder import (
    HiFiGANConfig,
    HiFiGANGenerator,
    ISTFTConfig,
    ISTFTGenerator,
    Vocoder,
    VocosConfig,
    VocosGenerator,
    _centred_istft,
    build_vocoder,
    vocode,
    vocode_stream,
    vocoder_config_from_dict,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "vocoder"
FRONTEND = FrontendConfig()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are small: on a busy 2-core machine, two intra-op threads that wait on each
    other at every operator make the tests up to 50 times slower than one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_model_config(name: str):
    return vocoder_config_from_dict(read_yaml(CONFIGS / f"{name}.yaml")["model"])


def small_generators() -> dict[str, Vocoder]:
    """One small instance of each family, hop 256, with seeded weights."""
    torch.manual_seed(0)
    return {
        "hifigan1": HiFiGANGenerator(
            upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), upsample_initial_channel=32,
            resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)),
        ),
        "hifigan2": HiFiGANGenerator(
            upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), upsample_initial_channel=32,
            resblock="2", resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 2), (2, 6)),
        ),
        "istft": ISTFTGenerator(
            upsample_rates=(8, 8), upsample_kernel_sizes=(16, 16), upsample_initial_channel=32,
            resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3, 5),),
        ),
        "vocos": VocosGenerator(dim=32, intermediate_dim=64, num_layers=3),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "paper_millions"), [("hifigan_v1", 13.92), ("hifigan_v2", 0.93), ("hifigan_v3", 1.46)]
)
def test_hifigan_parameter_counts_match_paper(name, paper_millions):
    model = build_vocoder(load_model_config(name), FRONTEND)
    assert isinstance(model, HiFiGANGenerator)
    assert abs(model.num_parameters() / 1e6 - paper_millions) / paper_millions < 0.01


@pytest.mark.parametrize("name", ["hifigan_v1", "hifigan_v2", "hifigan_v3", "istft", "default", "tiny"])
def test_shipped_configs_build_and_keep_the_contract(name):
    data = read_yaml(CONFIGS / f"{name}.yaml")
    assert set(data) == {"frontend", "model", "discriminator", "loss_weights", "optim", "train"}
    from_dict(DiscriminatorConfig, data["discriminator"], "discriminator")
    model = build_vocoder(load_model_config(name), FRONTEND).eval()
    assert model.n_mels == FRONTEND.n_mels and model.hop_length == FRONTEND.hop_length
    with torch.inference_mode():
        audio = model(torch.randn(2, FRONTEND.n_mels, 5) - 4)
    assert audio.shape == (2, 1, 5 * FRONTEND.hop_length)
    assert audio.abs().max() <= 1.0


@pytest.mark.parametrize("frames", [1, 7, 32])
def test_output_length_is_frames_times_hop(frames):
    for name, model in small_generators().items():
        model.train()  # training mode too: the length must not depend on the mode
        out = model(torch.randn(1, 80, frames))
        assert out.shape == (1, 1, frames * 256), name


def test_weight_norm_removal_keeps_output():
    mel = torch.randn(2, 80, 12) - 4
    for name, model in small_generators().items():
        model.eval()
        with torch.inference_mode():
            before = model(mel)
            params_before = model.num_parameters()
            model.remove_weight_norm()
            after = model(mel)
        assert torch.allclose(before, after, atol=1e-5), name
        if name != "vocos":  # the ConvNeXt generator uses LayerNorm, not weight norm
            assert model.num_parameters() < params_before, name
        assert not any("parametrizations" in key for key in model.state_dict()), name


def test_fast_istft_equals_torch_istft():
    torch.manual_seed(0)
    for n_fft, hop, frames in [(1024, 256, 40), (16, 4, 33), (1024, 256, 1), (512, 128, 9), (1024, 384, 10)]:
        window = torch.hann_window(n_fft)
        spec = torch.randn(2, frames, n_fft // 2 + 1, dtype=torch.complex64)
        ours = _centred_istft(spec, n_fft, hop, window)
        ref = torch.istft(spec.transpose(1, 2), n_fft, hop, n_fft, window, center=True, length=frames * hop)
        ref = ref.unsqueeze(1)
        assert ours.shape == (2, 1, frames * hop)
        assert torch.allclose(ours, ref, atol=1e-6)


def test_vocos_head_inverts_a_known_stft():
    """Frame alignment: a head that outputs the frontend's own STFT gives the audio back."""
    model = VocosGenerator(dim=8, intermediate_dim=8, num_layers=1)
    sr, hop = FRONTEND.sample_rate, FRONTEND.hop_length
    t = torch.arange(40 * hop) / sr
    audio = 0.5 * torch.sin(2 * torch.pi * 440 * t) * torch.exp(-3 * t)
    spec = MelFrontend(FRONTEND).stft(audio.unsqueeze(0))[..., :40]  # frames centred on k * hop
    rebuilt = _centred_istft(spec.transpose(1, 2), model.n_fft, hop, model.window)[0, 0]
    # exact except the last frames, which lack the frames after them
    assert torch.allclose(rebuilt[: 37 * hop], audio[: 37 * hop], atol=1e-5)


def test_gradients_reach_every_generator_parameter():
    for name, model in small_generators().items():
        model.train()
        model(torch.randn(2, 80, 6)).square().mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, (name, missing)
        assert any(p.grad.abs().sum() > 0 for p in model.parameters()), name


def test_config_dispatch_and_errors():
    assert isinstance(vocoder_config_from_dict({"kind": "istft"}), ISTFTConfig)
    assert isinstance(vocoder_config_from_dict({"kind": "vocos", "dim": 64}), VocosConfig)
    assert isinstance(vocoder_config_from_dict({"upsample_initial_channel": 128}), HiFiGANConfig)
    with pytest.raises(ConfigError, match="unknown vocoder kind"):
        vocoder_config_from_dict({"kind": "wavenet"})
    with pytest.raises(ConfigError, match="unknown key"):
        vocoder_config_from_dict({"kind": "vocos", "channels": 3})
    with pytest.raises(ConfigError, match="resblock"):
        vocoder_config_from_dict({"kind": "hifigan", "resblock": "3"})


def test_build_checks_cross_field_facts():
    with pytest.raises(ConfigError, match="n_mels 64 differs"):
        build_vocoder(HiFiGANConfig(n_mels=64), FRONTEND)
    with pytest.raises(ConfigError, match="upsample_rates is 128.*hop_length is 256"):
        build_vocoder(HiFiGANConfig(upsample_rates=(8, 8, 2), upsample_kernel_sizes=(16, 16, 4)), FRONTEND)
    with pytest.raises(ConfigError, match="istft_hop"):
        build_vocoder(ISTFTConfig(istft_hop=2, istft_n_fft=16), FRONTEND)
    with pytest.raises(ConfigError, match="n_fft 256 is too small"):
        build_vocoder(VocosConfig(n_fft=256), FRONTEND)
    # a 44.1 kHz frontend with hop 512 needs a matching generator, and a Vocos head follows it alone
    wide = FrontendConfig(sample_rate=44100, n_fft=2048, win_length=2048, hop_length=512, n_mels=128)
    assert build_vocoder(VocosConfig(dim=16, intermediate_dim=16, num_layers=1), wide).hop_length == 512
    model = build_vocoder(HiFiGANConfig(upsample_rates=(8, 8, 4, 2), upsample_kernel_sizes=(16, 16, 8, 4)), wide)
    assert model.n_mels == 128 and model.hop_length == 512


def long_mel(frames: int, batch: int = 1) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, 80, frames) * 2 - 5


@pytest.mark.parametrize("name", ["hifigan1", "istft", "vocos"])
def test_chunked_equals_whole(name):
    model = small_generators()[name].eval().remove_weight_norm()
    mel = long_mel(300, batch=2)
    with torch.inference_mode():
        whole = model(mel)[:, 0]
    chunked = vocode(model, mel, chunk_frames=64, overlap_frames=32)
    assert chunked.shape == whole.shape == (2, 300 * 256)
    # receptive fields here are under 16 frames, so chunks reproduce the whole output to rounding
    assert torch.allclose(chunked, whole, atol=1e-4), (chunked - whole).abs().max()
    # with too little context the seams show: the test above can fail
    starved = vocode(model, mel, chunk_frames=64, overlap_frames=0)
    assert (starved - whole).abs().max() > 1e-3


def test_vocode_accepts_unbatched_and_short_inputs():
    model = small_generators()["vocos"].eval()
    mel = long_mel(10)[0]
    out = vocode(model, mel)
    with torch.inference_mode():
        assert torch.allclose(out, model(mel.unsqueeze(0))[:, 0], atol=1e-6)
    assert out.shape == (1, 10 * 256)
    assert vocode(model, mel[:, :1], chunk_frames=4, overlap_frames=2).shape == (1, 256)
    with pytest.raises(ValueError, match="chunk_frames"):
        vocode(model, mel, chunk_frames=8, overlap_frames=16)


@pytest.mark.parametrize("sizes", [[1] * 70, [33, 1, 100, 7], [200], [64, 64, 64, 8]])
def test_streaming_equals_chunked(sizes):
    model = small_generators()["vocos"].eval()
    mel = long_mel(sum(sizes))[0]
    expected = vocode(model, mel, chunk_frames=64, overlap_frames=16)[0].numpy()
    pieces, start = [], 0
    for size in sizes:
        pieces.append(mel[:, start : start + size])
        start += size
    streamed = list(vocode_stream(model, iter(pieces), chunk_frames=64, overlap_frames=16))
    assert all(isinstance(p, np.ndarray) and p.ndim == 1 for p in streamed)
    joined = np.concatenate(streamed)
    assert joined.shape == expected.shape
    np.testing.assert_allclose(joined, expected, atol=1e-6)
    if sum(sizes) > 64 + 16:  # audio starts flowing before the input ends
        assert len(streamed) > 1


def test_streaming_batched_and_memory_is_bounded():
    model = small_generators()["vocos"].eval()
    mel = long_mel(500, batch=2)
    runner_pieces = list(vocode_stream(model, (mel[..., i : i + 50] for i in range(0, 500, 50)), 64, 16))
    assert all(p.shape[0] == 2 for p in runner_pieces)
    assert max(p.shape[1] for p in runner_pieces) <= (64 + 16) * 256  # one chunk at a time
    np.testing.assert_allclose(np.concatenate(runner_pieces, axis=1), vocode(model, mel, 64, 16).numpy(), atol=1e-6)


def _load_tool(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vocoder_quality_report_scores_ground_truth_griffin_lim_and_a_vocoder(tiny_cache, models, tmp_path):
    tool = _load_tool("vocoder_quality")
    out = tmp_path / "report"
    code = tool.main(["--cache", str(tiny_cache), "--split", "test", "--seconds", "2",
                      "--vocoder", f"tiny={models['vocoder']}", "--model", str(models["model"]),
                      "--griffin-lim-iters", "8", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "vocoder_quality.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ["ground truth", "griffin-lim (8 it)", "tiny", "VAE → tiny"]
    truth, gl, tiny, _ = rows.values()
    assert truth["stft_mr"] < 1e-3 and truth["mel_l1"] < 0.02  # only the cache's 16-bit rounding
    assert gl["mel_l1"] > 10 * truth["mel_l1"] and gl["stft_mr"] > 0.1
    assert tiny["mel_l1"] > gl["mel_l1"]  # an untrained vocoder is far from the original
    assert tiny["params"] > 0 and (out / "spectrograms.png").stat().st_size > 1000
    assert (out / "tiny.wav").exists() and "| tiny |" in (out / "vocoder_quality.md").read_text()
    vae = report["vae"]
    assert vae["ratio"] > 1 and vae["mel_l1"] > 0 and vae["latent_dim"] > 0
    assert tool.main(["--cache", str(tiny_cache), "--vocoder", "no-equals-sign", "--out", str(out)]) == 2


def test_vocos_mel_prior_starts_at_the_pseudo_inverse_magnitude():
    from audiogen.frontend import mel_filterbank
    from audiogen.vocoder import VocosConfig, build_vocoder

    frontend = FrontendConfig()
    mel = MelFrontend(frontend)(torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 22050).astype(np.float32)))
    plain = build_vocoder(VocosConfig(dim=32, intermediate_dim=64, num_layers=2), frontend)
    prior = build_vocoder(VocosConfig(dim=32, intermediate_dim=64, num_layers=2, mel_prior=True), frontend)
    basis = torch.from_numpy(mel_filterbank(frontend)).double()
    expected = (torch.linalg.pinv(basis) @ torch.exp(mel.double())).clamp(min=1e-5).T  # (F, n_bins)
    with torch.no_grad():
        got = prior.spectrum(mel[None])[0].abs().double()
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)
        assert not torch.allclose(plain.spectrum(mel[None])[0].abs().double(), expected, rtol=0.1)
        assert prior(mel[None]).shape == (1, 1, mel.shape[-1] * frontend.hop_length)
    assert not any(k.endswith("mel_inverse") for k in prior.state_dict())  # rebuilt from the config
    with pytest.raises(ConfigError, match="mel_prior"):
        build_vocoder(VocosConfig(n_fft=2048, mel_prior=True), frontend)
