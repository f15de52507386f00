import numpy as np
import pytest
import torch
from helpers import piano_like

from audiogen.frontend import FrontendConfig, FrontendMismatchError, MelFrontend, check_same_frontend


@pytest.mark.parametrize("n", [22050, 22050 + 77, 300])
def test_matches_librosa(n):
    import librosa

    cfg = FrontendConfig()
    y = piano_like(n / cfg.sample_rate + 0.0, cfg.sample_rate)[:n]
    if len(y) < n:
        y = np.pad(y, (0, n - len(y)))
    ours = MelFrontend(cfg).mel(torch.from_numpy(y)).numpy()
    ref = librosa.feature.melspectrogram(
        y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, power=1.0, center=True, pad_mode="constant",
    )
    assert ours.shape == ref.shape == (cfg.n_mels, 1 + n // cfg.hop_length)
    # relative error where the reference has energy; absolute near zero
    assert np.max(np.abs(ours - ref) / (np.abs(ref) + 1e-4 * ref.max())) < 1e-4


def test_batched_equals_single_and_log_floor():
    fe = MelFrontend()
    a, b = piano_like(1.0, 22050, 1), piano_like(1.0, 22050, 2)
    batch = fe(torch.from_numpy(np.stack([a, b])))
    assert batch.shape == (2, 80, 1 + 22050 // 256)
    assert torch.allclose(batch[1], fe(torch.from_numpy(b)), atol=1e-5)
    silence = fe(torch.zeros(4096))
    assert torch.allclose(silence, torch.full_like(silence, fe.config.log_silence))


def test_griffin_lim_inverts_roughly():
    fe = MelFrontend()
    y = torch.from_numpy(piano_like(1.0, 22050))
    mel = fe(y)
    rec = fe.griffin_lim(mel, n_iter=32)
    assert rec.shape == ((mel.shape[-1] - 1) * 256,)
    err_gl = (fe(rec) - mel[:, : fe(rec).shape[-1]]).abs().mean()
    err_noise = (fe(torch.randn_like(rec) * 0.1) - mel[:, : fe(rec).shape[-1]]).abs().mean()
    assert err_gl < 0.5 * err_noise


def test_config_validation_and_mismatch():
    with pytest.raises(ValueError):
        FrontendConfig(fmax=20000.0)
    with pytest.raises(FrontendMismatchError, match="hop_length 128"):
        check_same_frontend(FrontendConfig(), FrontendConfig(hop_length=128), "model.safetensors")


@pytest.mark.parametrize("cfg", [FrontendConfig(), FrontendConfig(sample_rate=44100, n_fft=2048, n_mels=128, fmin=30.0,
                                                                  fmax=16000.0)])
def test_filterbank_equals_librosa(cfg):
    import librosa

    from audiogen.frontend import mel_filterbank

    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    np.testing.assert_allclose(mel_filterbank(cfg), ref, rtol=1e-5, atol=1e-8)
