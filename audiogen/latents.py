"""Operations on VAE latent sequences: streamed decoding, variations, interpolation, compression.

:func:`decode_stream` decodes latent chunks as a prior writes them, with enough latent context
on both sides that the concatenated mel equals decoding the whole sequence at once;
:func:`encode_clip` gives a clip's posterior means, :func:`variation` noise- or prior-guided
resampling near them, :func:`interpolate` a frame-wise slerp between two clips, and
:func:`compression_report` what float16 latents cost and lose against 16-bit PCM, and
:func:`rate_report` how many bits a latent frame carries and what a token prior's codebooks lose.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F

from audiogen.frontend import FrontendConfig
from audiogen.mixture_prior import LatentPrior, SamplingNoise
from audiogen.overlap import decode_with_overlap
from audiogen.spec import SpecVAE


@torch.inference_mode()
def decode_stream(
    vae: SpecVAE, latent_chunks: Iterable[torch.Tensor], overlap: int | None = None
) -> Iterator[torch.Tensor]:
    """Decode latent chunks as they arrive; yield mel pieces as soon as they are final.

    Each piece is decoded from a window holding ``overlap`` latent frames of context on each
    side (``vae.decoder_context`` by default: the decoder's whole reach), so the concatenated
    output equals ``vae.decode`` of the concatenated latents, up to float rounding, while
    memory holds only the pending frames plus ``2 · overlap``. A piece is held back until
    ``overlap`` frames after it have arrived; the last one comes when the input ends.

    Args:
        latent_chunks: (1, D, l_i) pieces of one latent sequence (any l_i ≥ 0).
        overlap: context frames per side; less than the decoder's reach trades exactness for speed.

    Yields:
        mel pieces (n_mels, l · time_ratio), in the frontend's units.
    """
    overlap = vae.decoder_context if overlap is None else int(overlap)
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")

    def checked(chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        for chunk in chunks:
            if chunk.dim() != 3 or chunk.shape[:2] != (1, vae.latent_dim):
                raise ValueError(f"expected latent chunks (1, {vae.latent_dim}, l), got {tuple(chunk.shape)}")
            yield chunk

    def concat(pieces: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([piece.to(pieces[0].device) for piece in pieces], dim=-1)

    yield from decode_with_overlap(lambda z: vae.decode(z)[0], checked(latent_chunks), overlap, vae.time_ratio, concat)


def encoder_reach(vae: SpecVAE) -> int:
    """Mel frames beyond its own span that one latent frame's encoding can depend on, on either side.

    An upper bound summed over the encoder's convolutions (each reaches ``(kernel - 1) ·
    dilation`` frames at its input's rate): what a caller must read past the frames it keeps so
    that their latents equal those of the whole clip.
    """
    reach, rate = 0, 1  # in mel frames; mel frames per frame at the current layer's input
    for module in vae.encoder.modules():
        if isinstance(module, torch.nn.Conv1d):
            reach += (module.kernel_size[0] - 1) * module.dilation[0] * rate
            rate *= module.stride[0]
    return reach


@torch.inference_mode()
def encode_clip(vae: SpecVAE, mel: torch.Tensor) -> torch.Tensor:
    """The posterior means (1, D, ceil(F / time_ratio)) of a mel (n_mels, F) or (1, n_mels, F)."""
    if mel.dim() == 2:
        mel = mel.unsqueeze(0)
    mu, _ = vae.encode(mel.to(next(vae.parameters()).device, torch.float32))
    return mu


@torch.inference_mode()
def variation(
    vae: SpecVAE,
    z: torch.Tensor,
    amount: float,
    generator: torch.Generator | None = None,
    prior: LatentPrior | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Latents near ``z`` (1, D, L): 0 returns ``z``, 1 something new in the same spirit.

    Without a prior, each frame is pulled towards fresh N(0, I) noise (the VAE's prior):
    ``sqrt(1 - a²)·z + a·ε``, which keeps the latents' overall scale. With a prior, frames are
    re-sampled in order, each from the prior conditioned on the *varied* frames before it and
    mixed with the original, ``(1 - a)·z_t + a·ẑ_t``: the variation follows its own musical
    continuation instead of adding static.

    Args:
        vae: the model ``z`` came from (its latent size is checked).
        amount: in [0, 1].
        generator: CPU random generator (seeded for reproducible variations).
        prior: optional :class:`LatentPrior` for prior-guided variations.
        temperature: the prior's sampling temperature.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    if z.dim() != 3 or z.shape[:2] != (1, vae.latent_dim):
        raise ValueError(f"expected latents (1, {vae.latent_dim}, L), got {tuple(z.shape)}")
    if amount == 0.0:
        return z.clone()
    if prior is None:
        # drawn frame by frame (L, D order), so frame t gets the same noise whatever L is: a clip
        # varied from the first seconds of a file equals one varied from the whole file
        noise = torch.randn((z.shape[0], z.shape[2], z.shape[1]), generator=generator).transpose(1, 2)
        return math.sqrt(1.0 - amount**2) * z + amount * noise.to(z.device, z.dtype)
    state = prior.begin()
    noise = SamplingNoise(prior.latent_dim, generator)
    frames = []
    for t in range(z.shape[-1]):
        guess = prior.draw(state.params, temperature, noise).to(z.device)
        frame = (1.0 - amount) * z[..., t] + amount * guess
        frames.append(frame)
        prior.advance(state, frame)
    return torch.stack(frames, dim=-1)


def _resample_frames(z: torch.Tensor, length: int) -> torch.Tensor:
    if z.shape[-1] == length:
        return z
    return F.interpolate(z, size=length, mode="linear", align_corners=True)


def interpolate(
    z_a: torch.Tensor, z_b: torch.Tensor, t: float | torch.Tensor, length: int | None = None, spherical: bool = True
) -> torch.Tensor:
    """Frame-wise interpolation between two latent sequences (1, D, L_a) and (1, D, L_b).

    Sequences of different lengths are first stretched (linearly in time) to ``length``
    (default the longer one). Each frame is slerped (``spherical``), which keeps the norm of
    Gaussian-like latents where a plain lerp would shrink them towards silence, or lerped.

    Args:
        t: 0 gives ``z_a``, 1 gives ``z_b``; a tensor (length,) varies it per frame (a morph).

    Returns:
        (1, D, length).
    """
    if z_a.dim() != 3 or z_b.dim() != 3 or z_a.shape[:2] != z_b.shape[:2]:
        raise ValueError(f"expected two (B, D, L) latents of the same size, got {tuple(z_a.shape)}, {tuple(z_b.shape)}")
    length = max(z_a.shape[-1], z_b.shape[-1]) if length is None else int(length)
    a, b = _resample_frames(z_a.float(), length), _resample_frames(z_b.float(), length)
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device).reshape(1, 1, -1)  # (1, 1, 1 or length)
    if not spherical:
        return (1 - t) * a + t * b
    norm_a, norm_b = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    cos = ((a * b).sum(dim=1, keepdim=True) / (norm_a * norm_b).clamp(min=1e-8)).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    # nearly parallel frames: slerp's weights tend to lerp's, and the division is unstable
    safe = sin > 1e-4
    w_a = torch.where(safe, torch.sin((1 - t) * omega) / sin.clamp(min=1e-4), 1 - t)
    w_b = torch.where(safe, torch.sin(t * omega) / sin.clamp(min=1e-4), t)
    return w_a * a + w_b * b


@torch.inference_mode()
def compression_report(vae: SpecVAE, mel: torch.Tensor, num_samples: int | None = None,
                       frontend: FrontendConfig | None = None) -> dict[str, float]:
    """How well a clip survives encode → float16 latents → decode, and how small it gets.

    Args:
        mel: (n_mels, F) or (1, n_mels, F) log-mel of the clip.
        num_samples: the clip's length in samples (default ``(F - 1) · hop``).
        frontend: the audio settings (default the VAE's own).

    Returns:
        ``latent_bytes`` (float16), ``pcm_bytes`` (16-bit mono PCM of the same duration),
        ``ratio`` (pcm / latent), ``latent_rate_hz``, ``latent_dim``, ``kbps`` of the latents,
        ``seconds`` and ``mel_l1`` (mean |log-mel error| of the decoded float16 latents).
    """
    frontend = frontend or vae.frontend_config
    if frontend is None:
        raise ValueError("compression_report needs the frontend config (the VAE has none)")
    if mel.dim() == 2:
        mel = mel.unsqueeze(0)
    mel = mel.float().to(next(vae.parameters()).device)
    stored = encode_clip(vae, mel).half()  # what a compressed file would hold
    recon = vae.decode(stored.float(), mel.shape[-1])
    num_samples = (mel.shape[-1] - 1) * frontend.hop_length if num_samples is None else int(num_samples)
    seconds = num_samples / frontend.sample_rate
    latent_bytes = stored.numel() * 2
    pcm_bytes = num_samples * 2
    return {
        "seconds": seconds,
        "latent_dim": float(vae.latent_dim),
        "latent_rate_hz": frontend.frame_rate / vae.time_ratio,
        "latent_bytes": float(latent_bytes),
        "pcm_bytes": float(pcm_bytes),
        "ratio": pcm_bytes / latent_bytes,
        "kbps": latent_bytes * 8 / max(seconds, 1e-9) / 1000,
        "mel_l1": F.l1_loss(recon, mel).item(),
    }


@torch.inference_mode()
def rate_report(vae: SpecVAE, mels: Iterable[torch.Tensor], codebooks=None) -> dict[str, float]:
    """How much a VAE's latent carries, and what quantising it loses, over log-mel windows.

    The rate is the posterior's KL to N(0, I) summed over channels (nats and bits per latent
    frame: what a prior must model), the spread of each channel's posterior means over its
    posterior variance (min and max over channels), and log-mel L1 of the decoded means against
    the input (``vae_mel_l1``). With ``codebooks`` (a :class:`audiogen.token_prior.ResidualCodebooks`),
    the means are replaced by their words before decoding (``codebook_mel_l1``), and the share of
    words each stage used is given (``codebook_use``, the smallest over stages).

    Args:
        mels: (n_mels, T) or (1, n_mels, T) windows in the frontend's units.
    """
    device = next(vae.parameters()).device
    kl, means, variances, vae_l1, codebook_l1, used = [], [], [], [], [], None
    for mel in mels:
        mel = (mel if mel.dim() == 3 else mel.unsqueeze(0)).float().to(device)
        mu, logvar = vae.encode(mel)
        kl.append((0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)).sum(1).flatten())
        means.append(mu[0].T)
        variances.append(logvar[0].exp().T)
        vae_l1.append(F.l1_loss(vae.decode(mu, mel.shape[-1]), mel).item())
        if codebooks is not None:
            codes = codebooks.encode(mu.transpose(1, 2))
            words = codebooks.decode(codes).transpose(1, 2)
            codebook_l1.append(F.l1_loss(vae.decode(words, mel.shape[-1]), mel).item())
            hits = torch.zeros(codebooks.stages, codebooks.size, dtype=torch.bool, device=device)
            hits.scatter_(1, codes.reshape(-1, codebooks.stages).T, True)
            used = hits if used is None else used | hits
    if not kl:
        raise ValueError("rate_report needs at least one log-mel window")
    nats = torch.cat(kl).mean().item()
    spread = torch.cat(means).var(0) / torch.cat(variances).mean(0)
    report = {
        "kl_nats_per_frame": nats,
        "kl_bits_per_frame": nats / math.log(2),
        "latent_rate_hz": vae.frontend_config.frame_rate / vae.time_ratio if vae.frontend_config else float("nan"),
        "spread_min": spread.min().item(),
        "spread_max": spread.max().item(),
        "vae_mel_l1": sum(vae_l1) / len(vae_l1),
    }
    report["kbit_per_s"] = report["kl_bits_per_frame"] * report["latent_rate_hz"] / 1000
    if codebooks is not None:
        report["codebook_mel_l1"] = sum(codebook_l1) / len(codebook_l1)
        report["codebook_bits_per_frame"] = codebooks.stages * math.log2(codebooks.size)
        report["codebook_use"] = used.float().mean(1).min().item()
    return report
