"""GAN and reconstruction losses for the vocoder and the spectrogram VAE/GAN.

The adversarial losses are generic: they take lists of score tensors and lists of lists of
feature maps, as returned by :mod:`audiogen.discriminators` (or any discriminator that follows
the same convention), and sum over sub-discriminators as HiFi-GAN does. Weights are not applied
here: they live in the trainer config, keyed by the logged metric names (HiFi-GAN's values:
``"mel/l1": 45``, ``"adv/feat": 2``, ``"adv/gen": 1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from audiogen.frontend import MelFrontend

DEFAULT_STFT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))  # (n_fft, hop, win)


def discriminator_loss(real_scores: Sequence[torch.Tensor], fake_scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN loss of the discriminator: Σ_k mean((1 - D_k(real))²) + mean(D_k(fake)²).

    Pass the scores of *detached* generated audio, so this loss does not reach the generator.
    """
    _check_same_length(real_scores, fake_scores, "scores")
    loss = real_scores[0].new_zeros(())
    for real, fake in zip(real_scores, fake_scores, strict=True):
        loss = loss + torch.mean((1 - real.float()) ** 2) + torch.mean(fake.float() ** 2)
    return loss


def generator_adversarial_loss(fake_scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN loss of the generator: Σ_k mean((1 - D_k(fake))²)."""
    if not fake_scores:
        raise ValueError("no discriminator scores")
    loss = fake_scores[0].new_zeros(())
    for fake in fake_scores:
        loss = loss + torch.mean((1 - fake.float()) ** 2)
    return loss


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]], fake_features: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """Σ over sub-discriminators and layers of mean |real − fake| (real features detached).

    HiFi-GAN multiplies this sum by 2 inside its loss; here that factor is the config weight.
    """
    _check_same_length(real_features, fake_features, "feature map lists")
    loss = None
    for real_maps, fake_maps in zip(real_features, fake_features, strict=True):
        _check_same_length(real_maps, fake_maps, "feature maps")
        for real, fake in zip(real_maps, fake_maps, strict=True):
            term = torch.mean(torch.abs(real.detach().float() - fake.float()))
            loss = term if loss is None else loss + term
    return loss


def _check_same_length(a: Sequence, b: Sequence, what: str) -> None:
    if len(a) != len(b) or not a:
        raise ValueError(f"{what}: got {len(a)} real and {len(b)} generated (need equal, non-zero)")


def _as_batch(audio: torch.Tensor) -> torch.Tensor:
    """(T,), (B, T) or (B, 1, T) → (B, T) float32."""
    if audio.dim() == 3:
        if audio.shape[1] != 1:
            raise ValueError(f"expected mono audio (B, 1, T), got {tuple(audio.shape)}")
        audio = audio[:, 0]
    elif audio.dim() == 1:
        audio = audio.unsqueeze(0)
    return audio.float()


class MelL1Loss(nn.Module):
    """Mean absolute difference of log-mel spectrograms (HiFi-GAN's reconstruction loss).

    Uses the project's :class:`MelFrontend`, so the loss sees the same features the vocoder is
    conditioned on. ``forward(fake, real)`` takes audio (B, 1, T), (B, T) or (T,) of the same
    length; ``real`` may instead be given as its log-mel (B, n_mels, F) via ``real_mel``.
    """

    def __init__(self, frontend: MelFrontend):
        super().__init__()
        self.frontend = frontend

    def forward(
        self, fake: torch.Tensor, real: torch.Tensor | None = None, real_mel: torch.Tensor | None = None
    ) -> torch.Tensor:
        fake_mel = self.frontend(_as_batch(fake))
        if real_mel is None:
            if real is None:
                raise ValueError("give the real audio or its log-mel")
            real_mel = self.frontend(_as_batch(real))
        if real_mel.dim() == 2:
            real_mel = real_mel.unsqueeze(0)
        if real_mel.shape != fake_mel.shape:
            raise ValueError(f"mel shapes differ: generated {tuple(fake_mel.shape)}, real {tuple(real_mel.shape)}")
        return F.l1_loss(fake_mel, real_mel.float())


class MultiResolutionSTFTLoss(nn.Module):
    """Multi-resolution STFT distance (Yamamoto et al. 2020, Parallel WaveGAN).

    For each (n_fft, hop, win): spectral convergence ``‖|Y| − |X|‖_F / ‖|Y|‖_F`` plus the mean
    absolute difference of log magnitudes; each term averaged over the resolutions, the two
    summed. Used as a training loss and as the evaluation metric "STFT distance". 0 for
    identical signals.
    """

    def __init__(self, resolutions: Sequence[tuple[int, int, int]] = DEFAULT_STFT_RESOLUTIONS):
        super().__init__()
        self.resolutions = tuple(tuple(r) for r in resolutions)
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window{i}", torch.hann_window(win), persistent=False)

    def terms(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"stft/sc": spectral convergence, "stft/logmag": log-magnitude L1}, each resolution-averaged."""
        fake, real = _as_batch(fake), _as_batch(real)
        if fake.shape != real.shape:
            raise ValueError(f"audio shapes differ: generated {tuple(fake.shape)}, real {tuple(real.shape)}")
        sc = fake.new_zeros(())
        logmag = fake.new_zeros(())
        for i, (n_fft, hop, win) in enumerate(self.resolutions):
            window = getattr(self, f"window{i}")
            fake_mag, real_mag = (_magnitude(x, n_fft, hop, win, window) for x in (fake, real))
            sc = sc + torch.linalg.norm(real_mag - fake_mag) / torch.linalg.norm(real_mag)
            logmag = logmag + F.l1_loss(torch.log(fake_mag), torch.log(real_mag))
        n = len(self.resolutions)
        return {"stft/sc": sc / n, "stft/logmag": logmag / n}

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        terms = self.terms(fake, real)
        return terms["stft/sc"] + terms["stft/logmag"]


def _magnitude(audio: torch.Tensor, n_fft: int, hop: int, win: int, window: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(audio, n_fft, hop, win, window, center=True, return_complex=True)
    # floored power (as Parallel WaveGAN): keeps sqrt, log and the SC denominator finite on silence
    return torch.sqrt(torch.clamp(spec.real.square() + spec.imag.square(), min=1e-7))


@torch.no_grad()
def multi_resolution_stft_distance(
    fake: torch.Tensor, real: torch.Tensor, resolutions: Sequence[tuple[int, int, int]] = DEFAULT_STFT_RESOLUTIONS
) -> float:
    """The evaluation metric: :class:`MultiResolutionSTFTLoss` as a float (lower is better)."""
    return float(MultiResolutionSTFTLoss(resolutions).to(fake.device)(fake, real))


@torch.no_grad()
def copy_synthesis_scores(
    audio: torch.Tensor, target_mel: torch.Tensor, target_audio: torch.Tensor | None,
    frontend: MelFrontend, stft: MultiResolutionSTFTLoss,
) -> tuple[dict[str, float], torch.Tensor]:
    """How far ``audio`` re-synthesised from ``target_mel`` is from the original.

    Returns ({"mel_l1": log-mel L1 against ``target_mel``, "stft_mr": multi-resolution STFT
    distance against ``target_audio`` (absent without it)}, the log-mel of ``audio``). Both
    are 0 for the original itself; both are compared over the shorter of the two signals.
    """
    audio = audio.reshape(-1)
    rebuilt = frontend(audio)[:, : target_mel.shape[-1]]
    scores = {"mel_l1": F.l1_loss(rebuilt, target_mel[:, : rebuilt.shape[-1]].float()).item()}
    if target_audio is not None:
        n = min(len(target_audio), len(audio))
        scores["stft_mr"] = stft(audio[None, :n], target_audio.reshape(-1)[None, :n]).item()
    return scores, rebuilt
