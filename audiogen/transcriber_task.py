"""The transcriber's trainer: one step of :class:`audiogen.transcriber.Transcriber` in the shared loop.

Registered in :mod:`audiogen.tasks` as task ``transcriber`` (``train_transcriber.py``). The
data are the cache's log-mel windows with note labels read from each piece's MIDI in
``midi_dir`` (:class:`audiogen.transcription.TranscriptionDataset`); validation reports the
label losses (``val/loss`` is their weighted sum, which picks the exported model) and the
note-level onset F1 of a few validation excerpts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from audiogen.training import StepContext, Task, ValContext

LOSS_DEFAULTS = {"onset/bce": 1.0, "frame/bce": 1.0, "velocity/mse": 1.0}


class TranscriberTask(Task):
    """Onsets-and-frames training: onset and frame BCE plus velocity MSE at onsets."""

    ema_network = "transcriber"
    exported_as = "transcriber"
    LOSSES = set(LOSS_DEFAULTS)

    def __init__(self, config: Any):
        from audiogen.config import ConfigError, from_dict
        from audiogen.tasks import _check_loss_names
        from audiogen.transcriber import Transcriber, TranscriberConfig

        _check_loss_names(config.loss_weights, self.LOSSES)
        if not config.midi_dir:
            raise ConfigError("the transcriber task needs midi_dir: the MAESTRO-layout folder whose MIDI files "
                              "sit beside the rendered audio the cache was prepared from (e.g. data/demo)")
        self.config = config
        self.model_config = from_dict(TranscriberConfig, config.model, "model")
        self.weights = {name: float(config.loss_weights.get(name, default)) for name, default in LOSS_DEFAULTS.items()}
        self.networks = {"transcriber": Transcriber.from_config(self.model_config, config.frontend.n_mels)}

    def make_data(self, cache_dir: str, frames: int, val_items: list[dict]) -> tuple[Any, list[dict]]:
        """Training windows with labels, and the validation excerpts with their notes added."""
        from audiogen.cache import open_cache
        from audiogen.transcription import NoteLabels, TranscriptionDataset

        dataset = TranscriptionDataset(cache_dir, "train", frames, self.config.midi_dir, seed=self.config.train.seed,
                                       expected_frontend=self.config.frontend)
        labels = NoteLabels(self.config.midi_dir)
        entries = {e.name: e for e in open_cache(cache_dir).pieces("validation")}
        rate = self.config.frontend.frame_rate
        with_notes = []
        for item in val_items:
            frames_here = item["mel"].shape[-1]
            notes = labels.notes(entries[item["name"]]).between(0.0, frames_here / rate)
            with_notes.append({**item, "notes": notes})
        return dataset, with_notes

    def train_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, float]:
        from audiogen.transcriber import transcriber_losses

        logits = ctx.networks["transcriber"](batch["mel"])  # each (B, 88, F)
        losses = transcriber_losses(logits, batch)
        total = sum(self.weights[k] * v for k, v in losses.items())
        ctx.backward(total)
        ctx.optimizer_step("transcriber")
        return {**{k: v.item() for k, v in losses.items()}, "transcriber/loss": total.item()}

    def validate(self, ctx: ValContext) -> dict[str, float]:
        from audiogen.transcriber import transcribe_mel, transcriber_losses
        from audiogen.transcription import decode_notes, frame_labels, note_scores, pooled_scores

        model = ctx.networks["transcriber"]
        rate = self.config.frontend.frame_rate
        losses: dict[str, list[float]] = {k: [] for k in LOSS_DEFAULTS}
        per_clip = []
        for item in ctx.val_items:
            mel = item["mel"].to(ctx.device)
            notes = item["notes"]
            labels = frame_labels(notes, 0, mel.shape[-1], rate)
            probs = transcribe_mel(model, mel)
            logits = {k: torch.logit(probs[k].clamp(1e-6, 1 - 1e-6))[None] for k in ("onset", "frame", "velocity")}
            targets = {k: torch.from_numpy(v)[None].to(ctx.device) for k, v in labels.items()}
            for name, value in transcriber_losses(logits, targets).items():
                losses[name].append(value.item())
            estimate = decode_notes(*(probs[k].cpu().numpy() for k in ("onset", "frame", "velocity")), rate)
            per_clip.append((note_scores(notes, estimate), len(notes), len(estimate)))
        means = {f"val/{k.replace('/', '_')}": float(np.mean(v)) for k, v in losses.items()}
        total = sum(self.weights[k] * float(np.mean(v)) for k, v in losses.items())
        scores = pooled_scores(per_clip)
        return {"val/loss": total, **means, "val/onset_f1": scores["f1"], "val/onset_precision": scores["precision"],
                "val/onset_recall": scores["recall"]}

    def export(self, ctx: ValContext) -> dict[str, nn.Module]:
        return {self.exported_as: ctx.networks["transcriber"]}
