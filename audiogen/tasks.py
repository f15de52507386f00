"""The trainers: what one step of each model means, plugged into :mod:`audiogen.training`.

Three tasks share the loop:

- ``vocoder``: a generator (HiFi-GAN / iSTFT) from mel to audio against MPD/MSD
  discriminators — the canonical GAN step (discriminator on the detached fake, then the
  generator with mel L1, adversarial and feature-matching terms).
- ``vae``: the spectrogram VAE/GAN — reconstruction L1 + KL (warm-up, free bits) + a
  spectrogram discriminator's adversarial and feature-matching terms.
- ``prior``: the latent prior, trained on a frozen VAE's latents by negative log-likelihood.

One config file describes a run (:class:`TrainerConfig`); loss weights are keyed by the names
that are logged.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiogen.config import ConfigError, from_dict, load_config, to_dict
from audiogen.frontend import FrontendConfig, MelFrontend, check_same_frontend
from audiogen.training import OptimConfig, StepContext, Task, TrainConfig, ValContext

TASKS = ("vocoder", "vae", "prior", "transcriber")  # transcriber: audiogen.transcriber_task


@dataclass(frozen=True)
class TrainerConfig:
    """A whole training run. ``model``/``discriminator`` are checked by the model modules."""

    task: str = "vocoder"
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    model: dict[str, Any] = field(default_factory=dict)
    discriminator: dict[str, Any] | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    vae_dir: str | None = None  # prior task: the exported VAE whose latents are modelled
    vocoder_dir: str | None = None  # vae/prior tasks: vocoder for validation audio (else Griffin-Lim)
    vae_model: dict[str, Any] | None = None  # prior task: filled from vae_dir so exports are self-contained
    init_from: str | None = None  # fine-tuning: start the trained network from this exported model folder
    midi_dir: str | None = None  # transcriber task: the MAESTRO-layout folder with each piece's MIDI (note labels)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "prior" and not self.vae_dir:
            raise ValueError("the prior task needs vae_dir: the exported VAE folder (e.g. RUN/best)")


def load_trainer_config(path: str | Path, overrides: list[str] | None = None) -> TrainerConfig:
    return load_config(TrainerConfig, path, overrides)


def _weight(weights: dict[str, float], name: str, default: float) -> float:
    return float(weights.get(name, default))


def _check_loss_names(weights: dict[str, float], known: set[str]) -> None:
    unknown = set(weights) - known
    if unknown:
        raise ConfigError(f"loss_weights: unknown name(s) {sorted(unknown)}; known: {sorted(known)}")
    negative = {k: v for k, v in weights.items() if not v >= 0}
    if negative:
        raise ConfigError(f"loss_weights: a weight must be >= 0, got {negative}")


def _val_audio(items: list[dict], seconds: float, frontend: FrontendConfig) -> list[dict]:
    """Crop validation pieces to ``seconds`` (mel frames and matching samples)."""
    frames = int(seconds * frontend.frame_rate)
    out = []
    for item in items:
        mel = torch.as_tensor(np.asarray(item["mel"]))[:, :frames]
        audio = item.get("audio")
        audio = torch.as_tensor(np.asarray(audio))[: mel.shape[-1] * frontend.hop_length] if audio is not None else None
        out.append({"name": item.get("name", f"piece{len(out)}"), "mel": mel.float(), "audio": audio})
    return out


# --------------------------------------------------------------------------------------------
# Vocoder


class VocoderTask(Task):
    """HiFi-GAN-style training of any :class:`audiogen.vocoder.Vocoder`."""

    ema_network = "generator"
    exported_as = "vocoder"  # the file of an exported folder that holds ema_network
    LOSSES = {"mel/l1", "adv/gen", "adv/feat", "stft/mr"}

    def __init__(self, config: TrainerConfig):
        from audiogen.discriminators import DiscriminatorConfig, build_discriminators
        from audiogen.losses import MultiResolutionSTFTLoss
        from audiogen.vocoder import build_vocoder, vocoder_config_from_dict

        _check_loss_names(config.loss_weights, self.LOSSES)
        self.config = config
        self.frontend = MelFrontend(config.frontend)
        self.model_config = vocoder_config_from_dict(config.model)
        generator = build_vocoder(self.model_config, config.frontend)
        self.weights = {
            "mel/l1": _weight(config.loss_weights, "mel/l1", 45.0),
            "adv/gen": _weight(config.loss_weights, "adv/gen", 1.0),
            "adv/feat": _weight(config.loss_weights, "adv/feat", 2.0),
            "stft/mr": _weight(config.loss_weights, "stft/mr", 0.0),
        }
        self.networks = {"generator": generator}
        self.use_gan = config.discriminator is not None and self.weights["adv/gen"] > 0
        if self.use_gan:
            self.networks["disc"] = build_discriminators(
                from_dict(DiscriminatorConfig, config.discriminator, "discriminator"))
        self.stft_loss = MultiResolutionSTFTLoss()

    def train_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, float]:
        from audiogen.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss

        mel, real = batch["mel"], batch["audio"].unsqueeze(1)  # (B, n_mels, F), (B, 1, F*hop)
        frontend = self.frontend.to(ctx.device)
        fake = ctx.networks["generator"](mel)  # (B, 1, F*hop)
        logs: dict[str, float] = {}
        if self.use_gan:
            real_scores, _ = ctx.networks["disc"](real)
            fake_scores, _ = ctx.networks["disc"](fake.detach())
            d_loss = discriminator_loss(real_scores, fake_scores)
            ctx.backward(d_loss)
            ctx.optimizer_step("disc")
            logs["disc/loss"] = d_loss.item()
        # Mel loss in fp32 on the frontend of both signals (same framing on both sides).
        real_mel = frontend(real.squeeze(1).float())
        fake_mel = frontend(fake.squeeze(1).float())
        mel_l1 = F.l1_loss(fake_mel, real_mel)
        total = self.weights["mel/l1"] * mel_l1
        logs["mel/l1"] = mel_l1.item()
        if self.weights["stft/mr"] > 0:
            stft = self.stft_loss(fake.squeeze(1).float(), real.squeeze(1).float())
            total = total + self.weights["stft/mr"] * stft
            logs["stft/mr"] = stft.item()
        if self.use_gan:
            with ctx.frozen("disc") as frozen:
                fake_scores, fake_feats = frozen["disc"](fake)
                with torch.no_grad():
                    _, real_feats = frozen["disc"](real)
            adv = generator_adversarial_loss(fake_scores)
            feat = feature_matching_loss(real_feats, fake_feats)
            total = total + self.weights["adv/gen"] * adv + self.weights["adv/feat"] * feat
            logs["adv/gen"], logs["adv/feat"] = adv.item(), feat.item()
        ctx.backward(total)
        ctx.optimizer_step("generator")
        logs["gen/loss"] = total.item()
        return logs

    def validate(self, ctx: ValContext) -> dict[str, float]:
        from audiogen.audio import save_audio
        from audiogen.losses import MultiResolutionSTFTLoss, copy_synthesis_scores
        from audiogen.plots import save_spectrograms
        from audiogen.vocoder import vocode

        generator = ctx.networks["generator"]
        frontend = self.frontend.to(ctx.device)
        stft = MultiResolutionSTFTLoss().to(ctx.device)
        items = _val_audio(ctx.val_items, self.config.train.val_seconds, self.config.frontend)
        scores = []
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        for index, item in enumerate(items):
            mel = item["mel"].to(ctx.device)
            target = item["audio"].to(ctx.device) if item["audio"] is not None else None
            audio = vocode(generator, mel).reshape(-1)
            score, rebuilt = copy_synthesis_scores(audio, mel, target, frontend, stft)
            scores.append(score)
            if index < 3:
                save_audio(ctx.out_dir / f"{item['name']}.wav", audio.cpu().numpy(), self.config.frontend.sample_rate)
                save_spectrograms(ctx.out_dir / f"{item['name']}.png",
                                  {"target": mel.cpu().numpy(), "vocoded": rebuilt.cpu().numpy()},
                                  self.config.frontend.frame_rate, f"step {ctx.step}")
        mel_l1 = float(np.mean([s["mel_l1"] for s in scores]))
        metrics = {"val/loss": mel_l1, "val/mel_l1": mel_l1}
        if any("stft_mr" in s for s in scores):
            metrics["val/stft_mr"] = float(np.mean([s["stft_mr"] for s in scores if "stft_mr" in s]))
        return metrics

    def export(self, ctx: ValContext) -> dict[str, nn.Module]:
        return {self.exported_as: ctx.networks["generator"]}


# --------------------------------------------------------------------------------------------
# Spectrogram VAE/GAN


class SpecVAETask(Task):
    """The spectrogram VAE with a spectrogram discriminator (a VAE/GAN)."""

    ema_network = "vae"
    exported_as = "vae"
    LOSSES = {"rec/l1", "kl/loss", "adv/gen", "adv/feat"}

    def __init__(self, config: TrainerConfig):
        from audiogen.discriminators import SpecDiscriminator, SpecDiscriminatorConfig
        from audiogen.spec import SpecVAE, SpecVAEConfig

        _check_loss_names(config.loss_weights, self.LOSSES)
        self.config = config
        self.frontend = MelFrontend(config.frontend)
        self.model_config = from_dict(SpecVAEConfig, config.model, "model")
        vae = SpecVAE.from_config(self.model_config, config.frontend)
        self.weights = {
            "rec/l1": _weight(config.loss_weights, "rec/l1", 1.0),
            "kl/loss": _weight(config.loss_weights, "kl/loss", 1e-2),
            "adv/gen": _weight(config.loss_weights, "adv/gen", 0.1),
            "adv/feat": _weight(config.loss_weights, "adv/feat", 1.0),
        }
        self.networks = {"vae": vae}
        self.use_gan = config.discriminator is not None and self.weights["adv/gen"] > 0
        if self.use_gan:
            disc_cfg = from_dict(SpecDiscriminatorConfig, config.discriminator, "discriminator")
            self.networks["disc"] = SpecDiscriminator.from_config(disc_cfg, config.frontend)
        self._vocoder = None

    def train_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, float]:
        from audiogen.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss
        from audiogen.spec import kl_divergence, kl_weight

        mel = batch["mel"]  # (B, n_mels, F)
        recon, mu, logvar = ctx.networks["vae"](mel)
        logs: dict[str, float] = {}
        if self.use_gan:
            real_scores, _ = ctx.networks["disc"](mel)
            fake_scores, _ = ctx.networks["disc"](recon.detach())
            d_loss = discriminator_loss(real_scores, fake_scores)
            ctx.backward(d_loss)
            ctx.optimizer_step("disc")
            logs["disc/loss"] = d_loss.item()
        rec = F.l1_loss(recon.float(), mel.float())
        kl = kl_divergence(mu.float(), logvar.float(), self.model_config.free_bits)
        beta = kl_weight(ctx.step, self.model_config.kl_warmup_steps, self.weights["kl/loss"])
        total = self.weights["rec/l1"] * rec + beta * kl
        logs["rec/l1"], logs["kl/loss"], logs["kl/weight"] = rec.item(), kl.item(), beta
        if self.use_gan:
            with ctx.frozen("disc") as frozen:
                fake_scores, fake_feats = frozen["disc"](recon)
                with torch.no_grad():
                    _, real_feats = frozen["disc"](mel)
            adv = generator_adversarial_loss(fake_scores)
            feat = feature_matching_loss(real_feats, fake_feats)
            total = total + self.weights["adv/gen"] * adv + self.weights["adv/feat"] * feat
            logs["adv/gen"], logs["adv/feat"] = adv.item(), feat.item()
        ctx.backward(total)
        ctx.optimizer_step("vae")
        return logs

    def validate(self, ctx: ValContext) -> dict[str, float]:
        from audiogen.plots import save_spectrograms

        vae = ctx.networks["vae"]
        items = _val_audio(ctx.val_items, self.config.train.val_seconds, self.config.frontend)
        errors = []
        for index, item in enumerate(items):
            mel = item["mel"].to(ctx.device)[None]
            mu, _ = vae.encode(mel)
            recon = vae.decode(mu)[..., : mel.shape[-1]]
            errors.append(F.l1_loss(recon, mel).item())
            if index < 2:
                panels = {"real": mel[0].cpu().numpy(), "reconstruction": recon[0].cpu().numpy()}
                save_spectrograms(ctx.out_dir / f"{item['name']}.png", panels, self.config.frontend.frame_rate,
                                  f"VAE step {ctx.step}")
                write_validation_audio(self, ctx, recon[0], f"{item['name']}-recon")
        return {"val/loss": float(np.mean(errors)), "val/rec_l1": float(np.mean(errors))}

    def export(self, ctx: ValContext) -> dict[str, nn.Module]:
        return {self.exported_as: ctx.networks["vae"]}


def write_validation_audio(task: Any, ctx: ValContext, mel: torch.Tensor, name: str) -> None:
    """Vocode a validation mel with the configured vocoder, or Griffin-Lim without one."""
    from audiogen.audio import peak_normalize, save_audio

    if task.config.vocoder_dir:
        if task._vocoder is None:
            from audiogen.generation import load_vocoder

            task._vocoder = load_vocoder(task.config.vocoder_dir, task.config.frontend, device=ctx.device)
        from audiogen.vocoder import vocode

        audio = vocode(task._vocoder, mel.float()).reshape(-1)
    else:
        audio = task.frontend.to(ctx.device).griffin_lim(mel.float(), n_iter=32)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    save_audio(ctx.out_dir / f"{name}.wav", peak_normalize(audio.cpu().numpy()), task.config.frontend.sample_rate)


# --------------------------------------------------------------------------------------------
# Latent prior


class PriorTask(Task):
    """The latent prior (any family of :mod:`audiogen.priors`), trained on a frozen VAE's posterior samples."""

    ema_network = "prior"
    exported_as = "prior"
    LOSSES = {"prior/nll", "prior/flow_mse", "prior/token_ce"}

    def __init__(self, config: TrainerConfig):
        from audiogen.generation import load_vae
        from audiogen.priors import build_prior

        _check_loss_names(config.loss_weights, self.LOSSES)
        self.config = config
        self.frontend = MelFrontend(config.frontend)
        self.vae, self.vae_config = load_vae(config.vae_dir, config.frontend)
        self.vae.requires_grad_(False).eval()
        self.networks = {"prior": build_prior(config.model, latent_dim=self.vae.latent_dim)}
        self.loss_name = self.networks["prior"].loss_name
        self._vocoder = None

    def _latents(self, mel: torch.Tensor) -> torch.Tensor:
        self.vae.to(mel.device)
        with torch.no_grad():
            mu, logvar = self.vae.encode(mel.float())
            # posterior samples, so the prior learns the spread the decoder was trained on
            return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def train_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, float]:
        z = self._latents(batch["mel"])  # (B, D, L)
        loss = ctx.networks["prior"](z)  # forward is the loss, so DDP syncs its gradients
        ctx.backward(loss)
        ctx.optimizer_step("prior")
        return {self.loss_name: loss.item()}

    def validate(self, ctx: ValContext) -> dict[str, float]:
        from audiogen.plots import save_spectrograms

        prior = ctx.networks["prior"]
        items = _val_audio(ctx.val_items, self.config.train.val_seconds, self.config.frontend)
        torch.manual_seed(0)
        losses = [prior.loss(self._latents(item["mel"].to(ctx.device)[None])).item() for item in items]
        generator = torch.Generator().manual_seed(ctx.step)
        frames = int(self.config.train.val_seconds * self.config.frontend.frame_rate) // self.vae.time_ratio
        z = prior.sample(frames, temperature=1.0, generator=generator).to(ctx.device)
        sample = self.vae.decode(z)[0]
        real = items[0]["mel"] if items else sample
        save_spectrograms(ctx.out_dir / "sample.png", {"real (validation)": real.cpu().numpy(),
                                                        "generated": sample.cpu().numpy()},
                          self.config.frontend.frame_rate, f"prior step {ctx.step}")
        write_validation_audio(self, ctx, sample, "sample")
        val_name = "val/" + self.loss_name.replace("/", "_")
        return {"val/loss": float(np.mean(losses)), val_name: float(np.mean(losses))}

    def export(self, ctx: ValContext) -> dict[str, nn.Module]:
        return {"vae": self.vae, self.exported_as: ctx.networks["prior"]}


# --------------------------------------------------------------------------------------------
# Entry point shared by train_vocoder.py and train_spec.py

# What may differ from the run's config.yaml on --resume: when, how long and how often, never what
# is learnt or how. Anything else (learning rate, batch, model shape, task, frontend, data
# settings, loss weights) would make the run's record false and needs --allow-config-change.
RESUME_SAFE_KEYS = ("train.max_steps", "train.max_minutes", "train.log_every", "train.val_every",
                    "train.ckpt_every", "train.keep_checkpoints", "train.num_workers", "train.early_stop_patience",
                    "train.max_bad_steps", "train.log_with", "vocoder_dir")
CHANGES_NAME = "config-changes.jsonl"


def run_trainer(default_task: str, argv: list[str] | None = None) -> int:
    """Parse the trainer command line and train (called under ``accelerate launch``).

    Exit status: 0 trained (or nothing left to train), 2 a bad option or input (one line), 3 the
    machine failed the run (disk full, out of memory, too many NaN steps), 130 interrupted.
    """
    import argparse

    from audiogen.cli import add_version_option, one_line_errors

    prog = {"vocoder": "train_vocoder.py", "transcriber": "train_transcriber.py"}.get(default_task, "train_spec.py")
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Train the {default_task} (run with `accelerate launch`, or plain python for one process). "
                    "One trainer per run folder: a second one on a folder a live trainer holds is refused.",
        epilog="Checked before the first step: the cache has validation pieces (the exported RUN/best is the "
               "model best on them), train.segment_frames is no longer than the longest training piece, and the "
               "memory one step needs (measured on a short dry step, scaled) fits the device. Exit status: 0 "
               "trained, 2 a bad option or input (one line), 3 the machine failed the run (disk full, out of "
               "memory, NaN steps; the last checkpoint is intact), 130 interrupted.")
    add_version_option(parser)
    parser.add_argument("--config", required=True, help="trainer YAML (configs/...)")
    parser.add_argument("--data", required=True, help="prepared cache folder (audiogen-prepare --out)")
    parser.add_argument("--out", required=True,
                        help="run folder (checkpoints, metrics, validation); a folder that holds checkpoints "
                             "needs --resume")
    parser.add_argument("--max-steps", type=int, help="override train.max_steps")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config value, e.g. --set optim.lr=1e-4 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from RUN/checkpoints/latest (without one: say so and start at step 0); "
                             "metrics.jsonl is cut back to the checkpoint's step. The config must equal the "
                             f"run's config.yaml except {', '.join(RESUME_SAFE_KEYS)}")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: accept other differences from the run's config.yaml too (each "
                             f"change is recorded in RUN/{CHANGES_NAME})")
    if default_task in ("vae", "prior"):
        parser.add_argument("--stage", choices=["vae", "prior"], help="override the config's task")
    parser.add_argument("--cpu", action="store_true", help="train on CPU even when a GPU is present")
    parser.set_defaults(prog=prog)
    args = parser.parse_args(argv)

    overrides = list(args.set)
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if getattr(args, "stage", None):
        overrides.append(f"task={args.stage}")

    def run() -> int:
        config = load_trainer_config(args.config, overrides)
        if (default_task == "transcriber") != (config.task == "transcriber"):
            owner = {"transcriber": "train_transcriber.py", "vocoder": "train_vocoder.py"}.get(config.task,
                                                                                            "train_spec.py")
            raise ConfigError(f"{args.config}: task {config.task!r} belongs to {owner}")
        if default_task == "vocoder" and config.task != "vocoder":
            raise ConfigError(f"{args.config}: task {config.task!r} belongs to train_spec.py")
        if default_task != "vocoder" and config.task == "vocoder":
            raise ConfigError(f"{args.config}: a vocoder config belongs to train_vocoder.py")
        return _train(config, args)

    return one_line_errors(prog, run)


def init_from_export(task: Task, config: TrainerConfig) -> None:
    """Start the task's trained network from the exported folder ``config.init_from``.

    Only the weights travel: optimiser, step and schedule start afresh (a new run), and the EMA
    copies the loaded weights when the loop builds it. A folder made for another frontend, or
    for another model shape, is refused before any step runs.
    """
    from audiogen.checkpoint import read_model_dir
    from audiogen.generation import frontend_of_model_config

    network, file = task.ema_network, task.exported_as  # the network each task trains and exports
    saved, states = read_model_dir(config.init_from, [file])
    check_same_frontend(config.frontend, frontend_of_model_config(saved, config.init_from),
                        f"init_from {config.init_from}")
    try:
        task.networks[network].load_state_dict(states[file])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"init_from {config.init_from}: its {file} does not fit this config's model ({first})") from err


def _check_run_frontend(frontend: FrontendConfig, run_dir: Path) -> None:
    """Refuse to resume a run whose checkpoints were made for another frontend: its weights
    would load (the shapes may well match) and go on training on other features. The run's
    ``config.yaml`` records the frontend its checkpoints were made with."""
    import yaml

    from audiogen.training import latest_checkpoint

    saved = run_dir / "config.yaml"
    if latest_checkpoint(run_dir) is None or not saved.is_file():
        return
    section = (yaml.safe_load(saved.read_text()) or {}).get("frontend") or {}
    check_same_frontend(frontend, from_dict(FrontendConfig, section, f"{saved}: frontend"),
                        f"run {run_dir} (its checkpoints)")


def _check_data(config: TrainerConfig, cache: Any, data: str, frames: int) -> None:
    """Refuse a cache this run cannot use well: no validation pieces (the exported model is the
    best on validation, so there would be none), or windows longer than every training piece
    (they would be mostly padding, and a window's memory grows with its length)."""
    if not cache.pieces("validation"):
        raise ConfigError(f"{data}: the validation split is empty; training exports the model that is best on "
                          "validation, so prepare the cache with validation pieces")
    hop = config.frontend.hop_length
    longest = max(p.n_samples // hop for p in cache.pieces("train"))
    if frames > longest:
        raise ConfigError(f"train.segment_frames {frames} is longer than the longest training piece of {data} "
                          f"({longest} frames, {longest * hop / config.frontend.sample_rate:.1f} s)")


def _decided_by_main(accelerator: Any, check: Any) -> Any:
    """Run ``check`` on the main process only and make every process follow its verdict: a
    refusal there stops all (the others quietly, with its status), so no rank waits forever."""
    from accelerate.utils import broadcast_object_list

    from audiogen.cli import EXIT_ENVIRONMENT, EXIT_USAGE

    result, error, failed = None, None, [False]
    if accelerator.is_main_process:
        try:
            result = check()
        except Exception as err:  # any: the other ranks must hear of it, or they wait in the broadcast
            error, failed = err, [EXIT_USAGE if isinstance(err, ValueError) else EXIT_ENVIRONMENT]
    if accelerator.num_processes > 1:
        broadcast_object_list(failed)
    if failed[0]:
        if error is not None:
            raise error
        raise SystemExit(failed[0])
    return result


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of nested mappings to their leaf values (lists are leaves)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(saved: dict[str, Any], resolved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key → (value in the run's config.yaml, value now) for every key that differs."""
    missing = "(absent)"
    old, new = _flat(saved), _flat(resolved)
    return {k: (old.get(k, missing), new.get(k, missing)) for k in sorted(set(old) | set(new))
            if old.get(k, missing) != new.get(k, missing)}


def _check_resume_config(run_dir: Path, resolved: dict[str, Any], allow: bool) -> dict[str, tuple[Any, Any]]:
    """The changes a resume makes to the run's config.yaml; refuses any beyond
    :data:`RESUME_SAFE_KEYS` unless ``allow``."""
    from audiogen.config import read_yaml

    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return {}
    changes = config_changes(read_yaml(saved_path), resolved)
    # what the run is (task, model family) first: it explains the rest of the list
    unsafe = sorted((k for k in changes if k not in RESUME_SAFE_KEYS),
                    key=lambda k: (k != "task", not k.endswith(".kind"), k))
    if unsafe and not allow:
        shown = "; ".join(f"{k} {changes[k][0]!r} -> {changes[k][1]!r}" for k in unsafe[:6])
        more = f" and {len(unsafe) - 6} more" if len(unsafe) > 6 else ""
        raise ConfigError(f"--resume: the config differs from {saved_path} in {shown}{more}; only "
                          f"{', '.join(RESUME_SAFE_KEYS)} may change on resume (or pass --allow-config-change "
                          f"to record the change in {run_dir / CHANGES_NAME})")
    return changes


def _record_config_changes(run_dir: Path, changes: dict[str, tuple[Any, Any]], step: int) -> None:
    """Append the resume's changes to RUN/config-changes.jsonl and say them in one line."""
    import json
    import time

    record = {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "changes": {k: list(v) for k, v in changes.items()}}
    with open(run_dir / CHANGES_NAME, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(f"{run_dir}: resuming at step {step} with " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in
                                                                    changes.items()) + f" (recorded in {CHANGES_NAME})")


def _synthetic_batch(config: TrainerConfig, device: torch.device) -> Any:
    """Frames → a batch of one random window shaped as the data gives it (the memory probe's)."""

    def make(frames: int) -> dict[str, torch.Tensor]:
        noise = torch.Generator().manual_seed(frames)  # its own: the run's RNG stream stays untouched
        mel = torch.randn(1, config.frontend.n_mels, frames, generator=noise) + config.frontend.log_silence / 2
        batch = {"mel": mel.to(device)}
        if config.task == "vocoder":
            audio = 0.1 * torch.randn(1, frames * config.frontend.hop_length, generator=noise)
            batch["audio"] = audio.to(device)
        if config.task == "transcriber":
            batch.update({k: torch.zeros(1, 88, frames, device=device) for k in ("onset", "frame", "velocity")})
        return batch

    return make


def _check_step_memory(task: Task, config: TrainerConfig, frames: int, multiple: int, accelerator: Any) -> None:
    """Refuse a batch and window that one training step cannot hold in this machine's memory."""
    from audiogen.training import available_memory, step_memory_estimate

    cfg = config.train
    micro = max(cfg.batch_size // cfg.grad_accum // accelerator.num_processes, 1)
    needed = step_memory_estimate(task, _synthetic_batch(config, accelerator.device), frames, multiple, micro,
                                  accelerator, config.optim, ema=bool(cfg.ema_decay))
    free = available_memory(accelerator.device)
    if needed > free:
        raise ConfigError(
            f"train.batch_size {cfg.batch_size} x train.segment_frames {frames} needs about {needed / 2**30:.1f} GiB "
            f"per training step, and {free / 2**30:.1f} GiB is available on {accelerator.device}; lower "
            f"train.segment_frames or train.batch_size (or raise train.grad_accum)")


def _final_message(run_dir: Path, state: Any) -> str:
    """What the run left: the exported model only when there is one (its step and validation loss)."""
    import json

    provenance = run_dir / "best" / "provenance.json"
    done = f"done: step {state.step}, {state.wall_seconds:.0f} s"
    if not provenance.is_file():
        why = "no step was trained (train.max_steps 0)" if state.step == 0 else "no validation gave a finite val/loss"
        return f"{done}; no model exported: {why}"
    record = json.loads(provenance.read_text())
    loss = (record.get("val_metrics") or {}).get("val/loss")
    loss_text = f", val/loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
    return f"{done}; best model (step {record.get('step', '?')}{loss_text}) in {run_dir / 'best'}"


def _train(config: TrainerConfig, args: Any) -> int:
    from accelerate import Accelerator

    from audiogen.cache import open_cache
    from audiogen.cli import EXIT_ENVIRONMENT
    from audiogen.trackers import parse_log_with
    from audiogen.training import (
        TrainingStopped,
        acquire_run_lock,
        as_disk_full,
        latest_checkpoint,
        release_run_lock,
        stale_lock_note,
    )

    run_dir = Path(args.out)
    if args.allow_config_change and not args.resume:
        raise ConfigError("--allow-config-change goes with --resume")
    cache = open_cache(args.data)
    check_same_frontend(config.frontend, cache.frontend, f"cache {args.data}")
    if args.resume:
        _check_run_frontend(config.frontend, run_dir)
    # Without a GPU, say so to accelerate: under a torchrun-style launcher (`accelerate launch
    # --multi_gpu`, configs/accelerate/cpu_2proc.yaml) it otherwise starts each process as a
    # separate single-process run, all writing the same run folder; with cpu=True they form one
    # gloo process group.
    cpu = args.cpu or not torch.cuda.is_available()
    mixed = config.train.mixed_precision if not cpu else "no"
    # trackers write under the run folder (TensorBoard: RUN/audiogen); checked before the first step
    trackers = parse_log_with(config.train.log_with) or None
    accelerator = Accelerator(mixed_precision=mixed, cpu=cpu, log_with=trackers, project_dir=str(run_dir))
    lock = None
    try:
        # only the main process writes the run folder, so only it takes the lock; the others follow.
        # Inside the try: a refusal must leave the process group cleanly too (see finally)
        lock = _decided_by_main(accelerator, lambda: acquire_run_lock(run_dir))
        if lock is not None and stale_lock_note(lock):
            print(stale_lock_note(lock))
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is not None and not args.resume:
            raise ConfigError(f"{run_dir} already holds a run (checkpoint {checkpoint.name}); add --resume to "
                              f"continue it, or choose another --out")
        return _train_locked(config, args, accelerator, cache, run_dir, checkpoint if args.resume else None)
    except TrainingStopped as err:
        print(f"{args.prog}: error: {err}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except Exception as err:
        if "can't allocate memory" in str(err) or isinstance(err, torch.OutOfMemoryError):
            raise MemoryError(str(err).splitlines()[0]) from err
        # a full disk in the words of safetensors, torch.save or libsndfile becomes OSError(ENOSPC)
        disk = as_disk_full(err, run_dir)
        if disk is err:
            raise
        raise disk from err
    finally:
        if lock is not None:
            release_run_lock(lock)
        if accelerator.num_processes > 1 and torch.distributed.is_initialized():
            # a rank that leaves with its process group alive aborts at exit (gloo's threads), and
            # its launcher then kills the others: leave it cleanly, refusals and errors included
            torch.distributed.destroy_process_group()


def _train_locked(config: TrainerConfig, args: Any, accelerator: Any, cache: Any, run_dir: Path,
                  checkpoint: Path | None) -> int:
    from audiogen.datasets import FullPieceDataset, SegmentDataset
    from audiogen.training import train

    mixed = accelerator.mixed_precision
    from audiogen.transcriber_task import TranscriberTask

    task_cls = {"vocoder": VocoderTask, "vae": SpecVAETask, "prior": PriorTask,
                "transcriber": TranscriberTask}[config.task]
    # The initial weights come from train.seed: torch seeds its generator at random in each new
    # process, so without this two runs of one config (or a run and its reference) differ.
    torch.manual_seed(config.train.seed)
    try:
        task = task_cls(config)
    except (RuntimeError, TypeError) as err:  # torch refusing a layer shape the config asks for
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{args.config}: the model cannot be built from this config ({first})") from err
    if config.init_from and checkpoint is None:
        init_from_export(task, config)  # a resumed run takes its own checkpoint's weights
    frames = config.train.segment_frames
    multiple = 1
    if config.task in ("vae", "prior"):
        multiple = task.networks.get("vae", getattr(task, "vae", None)).time_ratio
        frames = max(multiple, frames // multiple * multiple)
    _check_data(config, cache, args.data, frames)
    resolved = to_dict(config)
    # the starting weights are history (provenance records them), not part of the model: an
    # export's config must stay usable as a config after that folder is gone
    resolved["init_from"] = None
    if config.midi_dir is None:  # runs made before the field existed resume with their config.yaml unchanged
        resolved.pop("midi_dir")
    if config.task == "prior":
        resolved["vae_model"] = to_dict(task.vae_config)
    changes = _decided_by_main(accelerator, lambda: _check_resume_config(run_dir, resolved, args.allow_config_change)
                               if checkpoint is not None else {})
    micro = config.train.batch_size // config.train.grad_accum
    if micro % accelerator.num_processes:
        raise ConfigError(f"train.batch_size {config.train.batch_size} / grad_accum {config.train.grad_accum} "
                          f"must split evenly across {accelerator.num_processes} processes")
    _decided_by_main(accelerator, lambda: _check_step_memory(task, config, frames, multiple, accelerator))
    if changes and accelerator.is_main_process:
        _record_config_changes(run_dir, changes, int(checkpoint.name.removeprefix("step-")))
    dataset = SegmentDataset(args.data, "train", segment_frames=frames, with_audio=config.task == "vocoder",
                             seed=config.train.seed, expected_frontend=config.frontend)
    val_set = FullPieceDataset(args.data, "validation",
                               max_frames=int(config.train.val_seconds * config.frontend.frame_rate))
    val_items = [val_set[i] for i in range(min(len(val_set), config.train.val_pieces))]
    if config.task == "transcriber":  # windows and excerpts with note labels from each piece's MIDI
        dataset, val_items = task.make_data(args.data, frames, val_items)
    provenance = {
        "task": config.task,
        "data": str(Path(args.data).resolve()),
        "train_pieces": len(cache.pieces("train")),
        "train_hours": round(sum(p.n_samples for p in cache.pieces("train")) / config.frontend.sample_rate / 3600, 3),
        "processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "mixed_precision": mixed,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "parameters": {n: sum(p.numel() for p in m.parameters()) for n, m in task.networks.items()},
    }
    if config.task == "prior":
        provenance["vae_dir"] = str(Path(config.vae_dir).resolve())
    if config.init_from:
        provenance["init_from"] = str(Path(config.init_from).resolve())
    state = train(task, dataset, val_items, config.train, config.optim, run_dir, accelerator,
                  resume=args.resume, provenance=provenance, resolved_config=resolved)
    if accelerator.is_main_process:
        print(_final_message(run_dir, state))
    return 0
