"""ONNX graphs of the generation pipeline's networks, for runtimes other than PyTorch.

:func:`export_onnx` writes one graph per network stage into a folder, with the configs beside
them and a ``manifest.json`` that names each graph's inputs and outputs, their shapes
(batch ``B``, channels, time: ``F`` mel frames, ``L`` latent frames) and units::

    OUT/vocoder.onnx        mel (B, n_mels, F) → audio (B, 1, F · hop)
    OUT/vae_decoder.onnx    latents (B, D, L) → mel (B, n_mels, L · time_ratio)
    OUT/vae_encoder.onnx    mel (B, n_mels, F) → mu, logvar (B, D, ceil(F / time_ratio))
    OUT/prior_step.onnx     frame (B, D), state (B, S, C) → params (B, K(1 + 2D)), state (B, S, C)   (mixture prior)
    OUT/token_step.onnx     codes (B, J), first, cos, sin, valid, key/value caches → summary, logits,
                            frames (B, D, f), new keys/values                                  (token prior)
    OUT/token_depth_<j>.onnx   h (B, W), code (B,) → h, logits (B, K), after slot j            (token prior)
    OUT/frontend.yaml       the audio frontend (sample rate, STFT and mel settings)
    OUT/spec_config.yaml, OUT/vocoder_config.yaml   the model folders' resolved configs
    OUT/manifest.json

Time axes (and the batch axis) are dynamic. The graphs are made by ``torch.onnx.export(...,
dynamo=True)``: the TorchScript exporter has no ``aten::polar`` (the Vocos and iSTFT heads build
a complex spectrum), the dynamo one lowers it and the inverse FFT to real ONNX ops.

What is not a graph, and why: the chunking with overlap of :func:`audiogen.vocoder.vocode` and
:func:`audiogen.latents.decode_stream` (plain slicing and crossfades around the graphs; every
graph takes any length, so a runtime can chunk as it likes); the prior's sampling loop and its
random draws (:meth:`audiogen.mixture_prior.LatentPrior.draw`: one categorical pick and a few
normals per frame; :func:`audiogen.token_prior.pick_code`: one inverse-CDF pick per code, between
the depth head's steps), cheaper in the host language than as a graph, and the token prior's
key/value ring (the host writes each position's keys into it); and the flow prior
(:mod:`audiogen.flow_prior`), whose step is a rotary transformer over a sliding key/value cache
plus an ODE solve, so it is recorded in the manifest as not exported.

onnx, onnxscript and onnxruntime (the ``onnx`` extra) are imported only where they are used.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiogen.onnx_generation import MANIFEST_VERSION, is_generation_graph, ort_session

OPSET = 18  # ONNX opset 18 (2022): onnxruntime >= 1.14 runs it, and it has the DFT that the inverse FFT needs
# torch.export specialises an axis whose example size is 0 or 1 (and then refuses to make it dynamic), so every
# example has a batch of 2
EXAMPLE_BATCH = 2


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph: its name, shape (ints, or names of dynamic axes) and units."""

    name: str
    shape: tuple[int | str, ...]
    units: str
    dtype: str = "float32"


@dataclass(frozen=True)
class GraphSpec:
    """What a graph computes, written to the manifest."""

    name: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "description": self.description,
            "inputs": [dataclasses.asdict(t) for t in self.inputs],
            "outputs": [dataclasses.asdict(t) for t in self.outputs],
        }


@dataclass
class ExportableGraph:
    """A module ready for ``torch.onnx.export``: example inputs and the dynamic axes of each input."""

    spec: GraphSpec
    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    dynamic_axes: dict[str, dict[int, str]]  # input name → {axis: axis name}
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # more facts for the manifest


LOG_MEL_UNITS = "natural-log magnitude mel (the frontend's log(max(mel, log_floor)))"
LATENT_UNITS = "VAE latent (unitless; about N(0, 1) under the prior)"


def folded_copy(module: nn.Module) -> nn.Module:
    """A CPU copy in eval mode with every parametrization (weight norm) folded into a plain parameter.

    ``module`` itself is left as it was. Not ``copy.deepcopy`` then ``remove_parametrizations``: a
    parametrized module's class is made for it alone and deepcopy shares that class with the copy,
    so removing the parametrization from the copy deletes the ``weight`` property from the
    original's class as well (the original then fails with "has no attribute 'weight'").
    """
    from torch.nn.utils import parametrize

    clone = copy.deepcopy(module).cpu().eval()
    for sub in clone.modules():
        if parametrize.is_parametrized(sub):
            values = {name: getattr(sub, name).detach().clone() for name in sub.parametrizations}
            delattr(sub, "parametrizations")
            sub.__class__ = sub.__class__.__bases__[0]  # the class it had before it was parametrized
            for name, value in values.items():
                sub.register_parameter(name, nn.Parameter(value, requires_grad=False))
    return clone


# --------------------------------------------------------------------------------------------
# Export wrappers: the inference path of each network as a plain forward with tensor arguments


class VAEDecoderGraph(nn.Module):
    """``SpecVAE.decode`` without the optional crop: latents (B, D, L) → mel (B, n_mels, L · time_ratio)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents)


class VAEEncoderGraph(nn.Module):
    """``SpecVAE.encode`` with its right padding written without a Python branch on the length.

    ``encode`` pads only when F is not a multiple of ``time_ratio`` (an ``if`` on the shape,
    which an exported graph would freeze to the example's answer); padding by ``ceil(F / r) · r - F``
    frames always is the same computation for every F, and a graph of any length.
    """

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from audiogen.spec import LOGVAR_MAX, LOGVAR_MIN

        vae = self.vae
        x = (mel - vae.mel_mean) / vae.mel_std
        frames = mel.shape[-1]
        pad = (frames + vae.time_ratio - 1) // vae.time_ratio * vae.time_ratio - frames  # in 0 .. ratio - 1
        x = torch.cat([x, x[..., -1:].expand(-1, -1, pad)], dim=-1)  # replicate the last frame
        mu, logvar = vae.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


class MixturePriorStep(nn.Module):
    """One sampling step of :class:`audiogen.mixture_prior.LatentPrior` with its cache as a tensor.

    PyTorch keeps one ring buffer per causal block, indexed by the time modulo its span; a
    graph has no state, so here the buffers are shift registers laid end to end in one state
    tensor (B, S, C), S = sum of the blocks' spans, oldest frame first: each step reads its taps
    at fixed offsets and returns the state shifted by one frame. The arithmetic is the same as
    ``LatentPrior.advance``. A zero state is the start of a piece: feeding it a zero frame gives
    the first frame's distribution, as ``LatentPrior.begin(None)`` does.
    """

    def __init__(self, prior: nn.Module):
        super().__init__()
        self.prior = prior
        self.spans = [block.span for block in prior.blocks]

    @property
    def state_frames(self) -> int:
        return sum(self.spans)

    def forward(self, frame: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frame (B, D), state (B, S, C) → (params (B, K(1 + 2D)), next state (B, S, C))."""
        x = self.prior.inp(frame)
        pieces, offset = [], 0
        for block, span in zip(self.prior.blocks, self.spans, strict=True):
            history = state[:, offset : offset + span]  # h_{t-span} .. h_{t-1}
            h = block.norm(x)
            lags = [(block.kernel_size - 1 - j) * block.dilation for j in range(block.kernel_size - 1)]
            taps = [history[:, span - lag] for lag in lags]
            x = x + block._mlp(torch.cat(taps + [h], dim=-1))
            pieces += [history[:, 1:], h.unsqueeze(1)]
            offset += span
        return self.prior.head(self.prior.norm(x)), torch.cat(pieces, dim=1)


# --------------------------------------------------------------------------------------------
# The graphs of the pipeline


def vocoder_graph(vocoder: nn.Module, frames: int = 64) -> ExportableGraph:
    """The vocoder (any :class:`audiogen.vocoder.Vocoder`) on a copy with weight norm folded away."""
    from audiogen.vocoder import DEFAULT_CHUNK_FRAMES, DEFAULT_OVERLAP_FRAMES

    module = folded_copy(vocoder)
    n_mels, hop = module.n_mels, module.hop_length
    spec = GraphSpec(
        name="vocoder",
        description=f"log-mel spectrogram → waveform; frame k is centred on sample k·{hop}",
        inputs=(TensorSpec("mel", ("B", n_mels, "F"), LOG_MEL_UNITS),),
        outputs=(TensorSpec("audio", ("B", 1, f"F*{hop}"), "waveform in [-1, 1] at the frontend's sample rate"),),
    )
    example = torch.randn(EXAMPLE_BATCH, n_mels, frames) - 5.0
    # how audiogen.vocoder.vocode_stream chunks a long mel, so another runtime makes the same audio
    extra = {"hop_length": hop, "chunk_frames": DEFAULT_CHUNK_FRAMES, "overlap_frames": DEFAULT_OVERLAP_FRAMES}
    return ExportableGraph(spec, module, (example,), {"mel": {0: "B", 2: "F"}}, extra)


def vae_decoder_graph(vae: nn.Module, latent_frames: int = 16) -> ExportableGraph:
    """The VAE decoder: latents → log-mel."""
    d, r, n_mels = vae.latent_dim, vae.time_ratio, vae.n_mels
    spec = GraphSpec(
        name="vae_decoder",
        description=f"VAE latents → log-mel spectrogram ({r} mel frames per latent frame)",
        inputs=(TensorSpec("latents", ("B", d, "L"), LATENT_UNITS),),
        outputs=(TensorSpec("mel", ("B", n_mels, f"L*{r}"), LOG_MEL_UNITS),),
    )
    module = VAEDecoderGraph(folded_copy(vae))
    extra = {"time_ratio": r, "context_latent_frames": vae.decoder_context}
    example = torch.randn(EXAMPLE_BATCH, d, latent_frames)
    return ExportableGraph(spec, module, (example,), {"latents": {0: "B", 2: "L"}}, extra)


def vae_encoder_graph(vae: nn.Module, frames: int = 63) -> ExportableGraph:
    """The VAE encoder: log-mel → the posterior's mean and log-variance."""
    d, r, n_mels = vae.latent_dim, vae.time_ratio, vae.n_mels
    latent = TensorSpec("mu", ("B", d, f"ceil(F/{r})"), LATENT_UNITS)
    spec = GraphSpec(
        name="vae_encoder",
        description="log-mel spectrogram → posterior mean and log-variance of the latents "
                    f"(a mel whose length is not a multiple of {r} is padded with its last frame)",
        inputs=(TensorSpec("mel", ("B", n_mels, "F"), LOG_MEL_UNITS),),
        outputs=(latent, dataclasses.replace(latent, name="logvar", units="natural log of the posterior variance")),
    )
    module = VAEEncoderGraph(folded_copy(vae))
    # an example length that is not a multiple of the ratio, so the padding is traced as a computation
    return ExportableGraph(spec, module, (torch.randn(EXAMPLE_BATCH, n_mels, frames) - 5.0,), {"mel": {0: "B", 2: "F"}},
                           {"time_ratio": r})


def prior_graphs(prior: nn.Module) -> list[ExportableGraph] | str:
    """The graphs of a prior's sampling step (:data:`audiogen.onnx_generation.MIXTURE_GRAPHS`,
    :func:`audiogen.onnx_generation.token_graphs`), or why a prior has none (a string)."""
    from audiogen.mixture_prior import LatentPrior
    from audiogen.token_prior import TokenPrior

    if isinstance(prior, LatentPrior):
        return [mixture_step_graph(prior)]
    if isinstance(prior, TokenPrior):
        return [token_step_graph(prior), *(token_depth_graph(prior, j) for j in range(prior.codes_per_token - 1))]
    return (f"{type(prior).__name__}: only the mixture and token priors have step graphs; the flow prior's step is "
            "a rotary transformer over a sliding key/value cache plus an ODE solve per token")


def mixture_step_graph(prior: nn.Module) -> ExportableGraph:
    """The mixture prior's one-step function."""
    module = MixturePriorStep(folded_copy(prior))
    d, k = prior.latent_dim, prior.num_mixtures
    s, c = module.state_frames, prior.head.in_features
    state_units = "the blocks' normalised inputs, oldest first (zeros: the start of a piece)"
    spec = GraphSpec(
        name="prior_step",
        description="one step of the autoregressive latent prior: the frame just sampled (zeros at the start) "
                    "and the state → the next frame's mixture of diagonal Gaussians and the next state",
        inputs=(TensorSpec("frame", ("B", d), LATENT_UNITS), TensorSpec("state", ("B", s, c), state_units)),
        outputs=(
            TensorSpec("params", ("B", k * (1 + 2 * d)),
                       f"[logits (K={k}) | means (K·D) | log-scales (K·D), natural log of the std, "
                       f"to be clamped at min_log_scale]"),
            TensorSpec("next_state", ("B", s, c), state_units),
        ),
    )
    example = (torch.randn(EXAMPLE_BATCH, d), torch.randn(EXAMPLE_BATCH, s, c))
    extra = {"num_mixtures": k, "latent_dim": d, "min_log_scale": prior.min_log_scale,
             "receptive_field": prior.receptive_field,
             "sampling": "per frame: pick component c by inverting the CDF of softmax(logits / temperature) at a "
                         "uniform u; frame = means[c] + exp(max(log_scales[c], min_log_scale)) · sqrt(temperature) · "
                         "eps, eps ~ N(0, I) (audiogen.mixture_prior.LatentPrior.draw)"}
    return ExportableGraph(spec, module, example, {"frame": {0: "B"}, "state": {0: "B"}}, extra)


class TokenTrunkStep(nn.Module):
    """One position of :class:`audiogen.token_prior.TokenPrior`'s trunk against fixed-size key/value caches.

    ``TransformerBlock.step`` concatenates and trims its cache, whose length a graph cannot carry;
    here each block's cache is ``slots = max(context_tokens - 1, 1)`` positions, one input per block
    (a slice of a stacked input would be a copy in onnxruntime), keys stored transposed (B, H, dh,
    slots) so the scores are one plain product. The first ``valid`` slots are real, in any order
    (attention does not depend on the keys' order, and rotary keys carry their positions). The new
    position attends to those and to itself (its own score computed apart, so the cache is never
    copied), so with a ring of the last ``context_tokens - 1`` positions it sees exactly the window
    of ``step``. The graph returns the new position's keys and values; the caller writes them into
    its ring. Same arithmetic as ``TokenPrior.begin(None)`` (``first``: the start embedding at
    position 0, no cache) and ``TokenPrior.advance``, to float rounding.
    """

    def __init__(self, prior: nn.Module):
        super().__init__()
        self.prior = prior
        self.slots = max(prior.context_tokens - 1, 1)
        self.scale = prior.head_dim ** -0.5

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                in_window: torch.Tensor) -> torch.Tensor:
        """q, k, v (B, H, 1, dh) against keys (B, H, dh, slots), values (B, H, slots, dh) → (B, H, 1, dh)."""
        cached = (q @ keys * self.scale).masked_fill(~in_window, float("-inf"))  # (B, H, 1, slots)
        own = (q * k).sum(-1, keepdim=True) * self.scale  # (B, H, 1, 1)
        weights = torch.softmax(torch.cat([cached, own], -1), -1)
        return weights[..., :-1] @ values + weights[..., -1:] * v

    def forward(self, codes: torch.Tensor, first: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                valid: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """codes (B, J) int64, first (B,) bool, cos/sin (1, dh/2), valid () int64, caches keys_0, values_0,
        keys_1, ... → summary (B, W), logits of slot 0 (B, K), frames of ``codes`` (B, D, frames), new
        keys and values (blocks, B, H, dh)."""
        prior = self.prior
        embedded = prior._embed_codes(codes[:, None])[:, 0]  # (B, W)
        x = torch.where(first[:, None], prior.start.expand_as(embedded), embedded)[:, None]  # (B, 1, W)
        in_window = torch.arange(self.slots, device=codes.device) < valid
        new_keys, new_values = [], []
        for i, block in enumerate(prior.blocks):
            q, k, v = block._qkv(x, cos, sin)
            x = block._finish(x, self._attend(q, k, v, caches[2 * i], caches[2 * i + 1], in_window))
            new_keys.append(k[:, :, 0])
            new_values.append(v[:, :, 0])
        summary = prior.norm(x)[:, -1]
        logits = prior.depth_out[0](prior.depth_norms[0](summary))
        return summary, logits, prior.to_frames(codes[:, None]), torch.stack(new_keys), torch.stack(new_values)


class TokenDepthStep(nn.Module):
    """One step of :class:`audiogen.token_prior.TokenPrior`'s depth head after the code of ``slot``: the
    residual update of ``TokenPrior.draw`` and the logits of the next slot, with the prior's own modules.

    One graph per slot: a graph taking the slot as an input would gather that slot's weights (a
    copy of the output layer's K × W each call, measured 3x slower)."""

    def __init__(self, prior: nn.Module, slot: int):
        super().__init__()
        self.norm, self.mlp = prior.depth_norms[slot], prior.depth_mlp[slot]
        self.embed = nn.Parameter(prior.depth_embed[slot].detach().clone(), requires_grad=False)  # (K, W)
        self.next_norm, self.next_out = prior.depth_norms[slot + 1], prior.depth_out[slot + 1]

    def forward(self, h: torch.Tensor, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, W), code (B,) int64 → next h (B, W), logits of slot + 1 (B, K)."""
        h = h + self.mlp(self.norm(h) + self.embed[code])
        return h, self.next_out(self.next_norm(h))


TOKEN_SAMPLING = ("per code, in slot order: the first code whose cumulative probability under softmax(logits / "
                  "temperature) (top_k likeliest codes when top_k > 0) passes u · total, u one uniform of the "
                  "generator (audiogen.token_prior.pick_code); temperature 0 takes the likeliest code")


def token_step_graph(prior: nn.Module) -> ExportableGraph:
    """The token prior's trunk step (see :class:`TokenTrunkStep`)."""
    module = TokenTrunkStep(folded_copy(prior))
    j, k, w, d = prior.codes_per_token, prior.codebook_size, prior.start.numel(), prior.latent_dim
    f, blocks, h, dh, slots = prior.frames_per_token, len(prior.blocks), prior.heads, prior.head_dim, module.slots
    angle_units = "cos / sin of position · 10000^(-2i/head_dim), formed in float64, rounded to float32"
    caches = []
    for i in range(blocks):
        caches += [TensorSpec(f"keys_{i}", ("B", h, dh, slots), f"block {i}'s rotated keys of earlier positions"),
                   TensorSpec(f"values_{i}", ("B", h, slots, dh), f"block {i}'s values of earlier positions")]
    new_units = "this position's rotated keys / values, per block"
    spec = GraphSpec(
        name="token_step",
        description="one position of the token prior's trunk: the token just drawn (or the start embedding) at "
                    "its position, against the key/value caches → the next token's summary and slot-0 logits, "
                    "the latent frames of the token fed in, and this position's keys and values",
        inputs=(TensorSpec("codes", ("B", j), f"codes in 0 .. {k - 1}, frame-major, coarse first", "int64"),
                TensorSpec("first", ("B",), "true: the start of a piece (codes ignored, the start embedding)", "bool"),
                TensorSpec("cos", (1, dh // 2), angle_units), TensorSpec("sin", (1, dh // 2), angle_units),
                TensorSpec("valid", (), "how many cache slots are real, the first ones", "int64"), *caches),
        outputs=(TensorSpec("summary", ("B", w), "the trunk's output (the depth head's h for slot 0)"),
                 TensorSpec("logits", ("B", k), "unnormalised log-probabilities of slot 0's code"),
                 TensorSpec("frames", ("B", d, f), f"{LATENT_UNITS}: the sums of the input codes' words"),
                 TensorSpec("new_keys", (blocks, "B", h, dh), new_units),
                 TensorSpec("new_values", (blocks, "B", h, dh), new_units)),
    )
    example = (torch.randint(k, (EXAMPLE_BATCH, j)), torch.tensor([True, False]), torch.randn(1, dh // 2),
               torch.randn(1, dh // 2), torch.tensor(3),
               *(torch.randn(EXAMPLE_BATCH, *c.shape[1:]) for c in caches))
    extra = {"kind": "token_prior", "latent_dim": d, "frames_per_token": f, "codes_per_token": j,
             "codebook_size": k, "top_k": prior.top_k, "context_tokens": prior.context_tokens, "blocks": blocks,
             "heads": h, "head_dim": dh, "cache_slots": slots,
             "cache": "a ring of the last context_tokens - 1 positions: position p's keys and values go to slot "
                      "p % cache_slots after its step; valid = min(p, context_tokens - 1) at position p",
             "sampling": TOKEN_SAMPLING}
    axes = {"codes": {0: "B"}, "first": {0: "B"}, **{c.name: {0: "B"} for c in caches}}
    return ExportableGraph(spec, module, example, axes, extra)


def token_depth_graph(prior: nn.Module, slot: int) -> ExportableGraph:
    """The token prior's depth-head step after ``slot`` (see :class:`TokenDepthStep`)."""
    from audiogen.onnx_generation import token_graphs

    w, k = prior.start.numel(), prior.codebook_size
    spec = GraphSpec(
        name=token_graphs(prior.codes_per_token)[1 + slot],
        description=f"one step of the token prior's depth head: h and the code just drawn for slot {slot} → h "
                    f"and the logits of slot {slot + 1}",
        inputs=(TensorSpec("h", ("B", w), f"the depth head's state at slot {slot} (token_step's summary at 0)"),
                TensorSpec("code", ("B",), f"slot {slot}'s code in 0 .. {k - 1}", "int64")),
        outputs=(TensorSpec("next_h", ("B", w), f"the depth head's state at slot {slot + 1}"),
                 TensorSpec("logits", ("B", k), f"unnormalised log-probabilities of slot {slot + 1}'s code")),
    )
    example = (torch.randn(EXAMPLE_BATCH, w), torch.randint(k, (EXAMPLE_BATCH,)))
    module = TokenDepthStep(folded_copy(prior), slot)
    return ExportableGraph(spec, module, example, {"h": {0: "B"}, "code": {0: "B"}}, {"slot": slot})


# --------------------------------------------------------------------------------------------
# Writing and running graphs


def export_graph(graph: ExportableGraph, path: str | Path) -> None:
    """Write one graph as a single self-contained .onnx file (weights inside, no .data file)."""
    import inspect
    import logging
    import warnings

    names = [t.name for t in graph.spec.inputs]
    dims: dict[str, torch.export.Dim] = {}
    shapes: list[Any] = [{axis: dims.setdefault(axis_name, torch.export.Dim(axis_name))
                          for axis, axis_name in graph.dynamic_axes.get(name, {}).items()} for name in names]
    # positional, in the forward's order; the inputs a *args parameter takes form one tuple at its place
    params = inspect.signature(graph.module.forward).parameters.values()
    fixed = sum(p.kind is not inspect.Parameter.VAR_POSITIONAL for p in params)
    if fixed < len(params):
        shapes = [*shapes[:fixed], tuple(shapes[fixed:])]
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter warns of every torchvision op it cannot register
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph.module, graph.example_inputs, str(path), input_names=names,
                output_names=[t.name for t in graph.spec.outputs], opset_version=OPSET, dynamo=True,
                dynamic_shapes=tuple(shapes), external_data=False, verbose=False,
            )  # fmt: skip
    finally:
        quiet.setLevel(level)


def run_graph(path: str | Path, inputs: dict[str, Any], threads: int = 1) -> list[Any]:
    """Run an exported graph under onnxruntime on the CPU; returns its outputs as numpy arrays."""
    return list(ort_session(path, threads).run(None, {k: _numpy(v) for k, v in inputs.items()}))


def _numpy(value: Any):
    import numpy as np

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    # codes, slots and flags keep their integer or bool type; everything else is the graphs' float32
    return np.ascontiguousarray(value, dtype=None if value.dtype.kind in "biu" else np.float32)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_onnx(
    out_dir: str | Path,
    model_dir: str | Path | None = None,
    vocoder_dir: str | Path | None = None,
    force: bool = False,
    progress: Any = None,
    generation_only: bool = False,
) -> dict[str, Any]:
    """Export the pipeline's networks to ``out_dir`` (see the module docstring); returns the manifest.

    The folder is built beside ``out_dir`` and renamed into place, so ``out_dir`` is either whole
    or absent. ``progress`` (a callable taking a line) hears of each graph as it is written.
    ``generation_only``: the graphs ``generate`` runs (:func:`audiogen.onnx_generation.is_generation_graph`:
    not the encoder). The manifest's ``sources`` name the weights by
    :class:`audiogen.onnx_generation.SourceIdentity` (weights and config.yaml), which is how
    ``generate`` finds the graphs of its models.

    Raises:
        ValueError: ``out_dir`` exists and ``force`` is not set, or its parent is missing; with
            ``generation_only``, a prior with no step graph.
        CheckpointError: a model folder is missing or incomplete.
    """
    import yaml

    from audiogen import __version__
    from audiogen.checkpoint import CheckpointError, publish_folder, read_model_dir
    from audiogen.generation import load_prior, load_vae, load_vocoder, pretrained_dir
    from audiogen.mel_sharpening import read_sharpening
    from audiogen.onnx_generation import SourceIdentity
    from audiogen.surprise_band import read_band

    model_name = "bundled" if model_dir is None else str(model_dir)
    vocoder_name = "bundled" if vocoder_dir is None else str(vocoder_dir)

    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise ValueError(f"{out_dir}: already exists (pass --force to replace it)")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: is a file, not a folder (--force replaces only a folder)")
    if not out_dir.parent.is_dir() or not os.access(out_dir.parent, os.W_OK):
        raise ValueError(f"{out_dir}: folder {out_dir.parent} does not exist or is not writable")
    model_dir = Path(model_dir) if model_dir is not None else pretrained_dir("spec")
    vocoder_dir = Path(vocoder_dir) if vocoder_dir is not None else pretrained_dir("vocoder")
    for path, what in ((model_dir, "spectrogram model"), (vocoder_dir, "vocoder")):
        if not path.is_dir():
            raise CheckpointError(f"{path}: {what} folder not found")
    vae, _ = load_vae(model_dir)
    vocoder = load_vocoder(vocoder_dir, vae.frontend_config)
    band, sharpening = read_band(model_dir), read_sharpening(model_dir)
    spec_config, _ = read_model_dir(model_dir, [])
    vocoder_config, _ = read_model_dir(vocoder_dir, [])
    graphs: list[ExportableGraph] = [vocoder_graph(vocoder), vae_decoder_graph(vae), vae_encoder_graph(vae)]
    not_exported: dict[str, str] = {}
    if (model_dir / "prior.safetensors").exists():
        steps = prior_graphs(load_prior(model_dir, vae.latent_dim))
        if isinstance(steps, str):
            not_exported["prior"] = steps
        else:
            graphs += steps
    else:
        not_exported["prior"] = f"{model_dir} holds no prior (a VAE-only model folder)"
    if generation_only:
        if "prior" in not_exported:
            raise ValueError(f"{model_dir}: no generation graphs: {not_exported['prior']} "
                             "(generate runs it on PyTorch)")
        graphs = [g for g in graphs if is_generation_graph(g.spec.name)]

    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        for graph in graphs:
            if progress:
                progress(f"exporting {graph.spec.file}")
            export_graph(graph, tmp / graph.spec.file)
        frontend = dataclasses.asdict(vae.frontend_config)
        (tmp / "frontend.yaml").write_text(yaml.safe_dump(frontend, sort_keys=False))
        (tmp / "spec_config.yaml").write_text(yaml.safe_dump(spec_config, sort_keys=False))
        (tmp / "vocoder_config.yaml").write_text(yaml.safe_dump(vocoder_config, sort_keys=False))
        manifest = {
            "format_version": MANIFEST_VERSION,
            "audiogen_version": __version__,
            "torch_version": torch.__version__,
            "opset": OPSET,
            "frontend": frontend,
            "axes": {"B": "batch", "F": "mel frames", "L": "latent frames",
                     "S": "prior state frames (fixed)", "C": "channels (fixed)"},
            "graphs": {g.spec.name: {**g.spec.to_dict(), **g.extra, "sha256": _sha256(tmp / g.spec.file)}
                       for g in graphs},
            "not_exported": not_exported,
            # the token prior's sampler keeps its surprise in this band (audiogen.surprise_band)
            "surprise_band": band.to_dict() if band is not None else None,
            # the log-mel of what the prior drew is sharpened before the vocoder (audiogen.mel_sharpening)
            "mel_sharpening": sharpening.to_dict() if sharpening is not None else None,
            "sources": {  # dir: as named ("bundled": the models shipped with audiogen)
                "model": {"dir": model_name, **dataclasses.asdict(SourceIdentity.of(model_dir)),
                          "vae_sha256": _sha256(model_dir / "vae.safetensors")},
                "vocoder": {"dir": vocoder_name, **dataclasses.asdict(SourceIdentity.of(vocoder_dir)),
                            "vocoder_sha256": _sha256(vocoder_dir / "vocoder.safetensors")},
            },
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        publish_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
