"""The one training loop every trainer uses, on ``accelerate``.

A trainer is a :class:`Task`: its networks, how to build its optimisers, one training step and
one validation pass. This module supplies everything around that, once for all tasks: devices
and mixed precision (``Accelerator``), gradient accumulation, per-network gradient clipping,
EMA of the generator, NaN/Inf step skipping, deterministic and rank-disjoint data order,
checkpoints that resume exactly, validation with early stopping, JSONL metrics and a progress
bar. Only the main process writes files.

Run folder layout::

    RUN_DIR/config.yaml                 resolved config
    RUN_DIR/config-changes.jsonl        each change of config.yaml at a resume (step, key: [old, new])
    RUN_DIR/trainer.lock                pid and host of the live trainer (one per run folder)
    RUN_DIR/metrics.jsonl               one JSON object per log/validation event, up to the checkpoint
    RUN_DIR/checkpoints/step-0001000/   resumable state (weights, EMA, optimisers, RNG, counters)
    RUN_DIR/checkpoints/latest          name of the newest complete checkpoint
    RUN_DIR/best/                       exported model (safetensors + config), best validation
    RUN_DIR/val/step-0001000/           validation audio and spectrogram pictures
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import shutil
import socket
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiogen.checkpoint import CheckpointError, atomic_write_text, load_state_dict, save_state_dict

LOCK_NAME = "trainer.lock"
METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class OptimConfig:
    """AdamW settings shared by every network of a task (per-network overrides by name)."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.0
    lr_decay: float = 1.0  # multiplicative learning-rate factor per 1000 optimiser steps
    warmup_steps: int = 0
    grad_clip: float | None = 1000.0  # per-network max gradient norm; None disables
    lr_scale: dict[str, float] = field(default_factory=dict)  # e.g. {"disc": 1.0}

    def __post_init__(self) -> None:
        _check_at_least(self, {"weight_decay": 0, "warmup_steps": 0})
        _check_positive(self, ("lr", "lr_decay", "grad_clip"))
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {list(self.betas)}")
        bad = {k: v for k, v in self.lr_scale.items() if not v > 0}
        if bad:
            raise ValueError(f"lr_scale must be positive, got {bad}")


def _check_at_least(config: Any, minimums: dict[str, int]) -> None:
    """Refuse a field below its minimum, naming it (None means unset and passes)."""
    for name, minimum in minimums.items():
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_positive(config: Any, names: tuple[str, ...]) -> None:
    """Refuse a field that is not > 0 (NaN included), naming it (None passes)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings. ``batch_size`` is the global batch (split across processes)."""

    batch_size: int = 16
    segment_frames: int = 32
    max_steps: int = 100_000
    grad_accum: int = 1
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (GPU); CPU runs in fp32
    ema_decay: float | None = 0.999
    log_every: int = 50
    val_every: int = 1000
    ckpt_every: int = 1000
    keep_checkpoints: int = 2
    early_stop_patience: int | None = None  # validations without improvement before stopping
    max_minutes: float | None = None  # wall-time budget (resumes included): validate, checkpoint, stop
    max_bad_steps: int = 5  # consecutive NaN/Inf steps before the run stops
    val_pieces: int = 4
    val_seconds: float = 6.0
    seed: int = 0
    num_workers: int = 0
    log_with: str | None = None  # trackers beside metrics.jsonl: "tensorboard", "wandb" or both, comma-separated

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no|bf16|fp16, got {self.mixed_precision!r}")
        _check_at_least(self, {"batch_size": 1, "grad_accum": 1, "max_steps": 0, "segment_frames": 1, "log_every": 1,
                               "val_every": 1, "ckpt_every": 1, "keep_checkpoints": 1, "max_bad_steps": 1,
                               "val_pieces": 1, "seed": 0, "num_workers": 0, "early_stop_patience": 1})
        _check_positive(self, ("max_minutes", "val_seconds"))
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} must split into grad_accum {self.grad_accum} "
                             "equal micro-batches")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1) or be null, got {self.ema_decay}")


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (too many bad steps); the last good checkpoint is intact."""


class RunFolderBusy(ValueError):
    """Another live trainer holds the run folder's lock."""


# --------------------------------------------------------------------------------------------
# One live trainer per run folder


@dataclass
class RunLock:
    """The held lock of a run folder; ``stale`` is the record of a dead holder it replaced."""

    path: Path
    fd: int
    stale: dict[str, Any] | None = None
    made_folder: bool = False  # the run folder did not exist: a refused run removes it again


def _lock_record(fd: int) -> dict[str, Any]:
    text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    try:
        record = json.loads(text) if text else {}
    except json.JSONDecodeError:
        record = {"unreadable": text[:80]}
    return record if isinstance(record, dict) else {"unreadable": text[:80]}


def acquire_run_lock(run_dir: Path) -> RunLock:
    """Take ``RUN_DIR/trainer.lock`` for this process, or refuse when a live trainer holds it.

    The lock is an exclusive ``flock`` on the file, which the kernel drops when its holder dies
    however it dies (``kill -9`` included), so a stale file never blocks; the file's text (pid,
    host, start time) only names the holder in messages. Held until :func:`release_run_lock`
    or the process's end.

    Raises:
        RunFolderBusy: a live process holds the lock.
    """
    import fcntl

    made_folder = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_record(fd)
            os.close(fd)
            if made_folder:
                run_dir.rmdir()
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')}"
            raise RunFolderBusy(f"{run_dir}: another trainer is training into this folder ({who}); "
                                f"stop it first, or choose another --out") from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # its holder removed the file between our open and our lock: try again
            os.close(fd)
            continue
        stale = _lock_record(fd) or None
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        return RunLock(path, fd, stale, made_folder)


def release_run_lock(lock: RunLock) -> None:
    """Remove the lock file and drop the lock (the file goes first, so no one locks a removed file),
    and the run folder too when this run made it and left nothing in it (a refused request)."""
    lock.path.unlink(missing_ok=True)
    os.close(lock.fd)
    if lock.made_folder:
        with contextlib.suppress(OSError):
            lock.path.parent.rmdir()


def stale_lock_note(lock: RunLock) -> str | None:
    """One line about a dead holder's lock that was taken over, or None."""
    if not lock.stale:
        return None
    holder = lock.stale
    return (f"{lock.path}: took over the stale lock of pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"(started {holder.get('started', '?')}), which no longer runs")


class Task:
    """One trainer's networks and step; the loop does everything else.

    Subclasses set ``networks`` (name → module; all are trained, checkpointed and prepared
    with accelerate), ``ema_network`` (the name whose weights get an EMA copy, or None) and
    implement :meth:`train_step` and :meth:`validate`.
    """

    networks: dict[str, nn.Module]
    ema_network: str | None = None

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Optimiser name → parameters. Default: one optimiser per network."""
        return {name: [p for p in net.parameters() if p.requires_grad] for name, net in self.networks.items()}

    def train_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, float]:
        """Compute losses for one micro-batch, calling ``ctx.backward`` and ``ctx.optimizer_step``."""
        raise NotImplementedError

    def validate(self, ctx: ValContext) -> dict[str, float]:
        """Validation metrics; must include ``"val/loss"`` (lower is better)."""
        raise NotImplementedError

    def export(self, ctx: ValContext) -> dict[str, nn.Module | dict]:
        """The networks that make up the exported model (EMA weights where there are)."""
        raise NotImplementedError


@dataclass
class StepContext:
    """What a task's ``train_step`` may use: the accelerator, its (prepared) networks, and
    ``backward``/``optimizer_step`` that implement accumulation, clipping and NaN skipping."""

    accelerator: Any
    networks: dict[str, nn.Module]
    raw_networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    optim: OptimConfig
    step: int
    sync: bool
    grad_accum: int
    bad: bool = False
    grad_norms: dict[str, float] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def backward(self, loss: torch.Tensor) -> bool:
        """Backpropagate ``loss / grad_accum`` unless it is NaN/Inf on any process."""
        finite = torch.isfinite(loss.detach()).float().reshape(1)
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.gather(finite).min().reshape(1)
        if finite.item() < 1 or self.bad:
            self.bad = True
            return False
        self.accelerator.backward(loss / self.grad_accum)
        return True

    def optimizer_step(self, name: str) -> None:
        """Clip and apply the accumulated gradients of optimiser ``name`` (on sync steps)."""
        optimizer = self.optimizers[name]
        if not self.sync:
            return
        if self.bad:
            optimizer.zero_grad(set_to_none=True)
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        clip = self.optim.grad_clip if self.optim.grad_clip is not None else float("inf")
        norm = self.accelerator.clip_grad_norm_(params, clip)
        norm = float(norm) if norm is not None else 0.0
        self.grad_norms[name] = norm
        if not math.isfinite(norm):
            self.bad = True
            optimizer.zero_grad(set_to_none=True)
            return
        optimizer.step()
        self.schedulers[name].step()
        optimizer.zero_grad(set_to_none=True)

    @contextlib.contextmanager
    def frozen(self, *names: str) -> Iterator[dict[str, nn.Module]]:
        """Use networks without accumulating gradients in them (e.g. the discriminator while
        the generator learns), yielding the unwrapped modules so DDP hooks are not involved."""
        params = [p for n in names for p in self.raw_networks[n].parameters()]
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            yield {n: self.raw_networks[n] for n in names}
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)


@dataclass
class ValContext:
    """What a task's ``validate``/``export`` may use (main process, unwrapped EMA networks)."""

    device: torch.device
    networks: dict[str, nn.Module]
    step: int
    out_dir: Path
    val_items: list[dict[str, Any]]


@dataclass
class TrainState:
    """Counters that a checkpoint restores."""

    step: int = 0
    best_val: float = float("inf")
    evals_since_best: int = 0
    bad_steps_in_row: int = 0
    skipped_steps: int = 0
    wall_seconds: float = 0.0


class EMA:
    """Exponential moving average of a network's floating-point parameters and buffers."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used after ``step`` updates: warmed up as (1 + step) / (10 + step), so the
        average does not hold on to the random initial weights for thousands of steps."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        decay = self.decay_at(step)
        ema_state = self.module.state_dict()
        for name, value in module.state_dict().items():
            target = ema_state[name]
            if value.dtype.is_floating_point:
                target.lerp_(value.detach().to(target.dtype), 1.0 - decay)
            else:
                target.copy_(value)


def global_batch_indices(
    step: int, micro: int, grad_accum: int, batch_size: int, dataset_len: int, seed: int
) -> tuple[int, list[int]]:
    """The dataset indices of one global micro-batch, and the epoch they belong to.

    The stream of samples is a seeded permutation of the dataset per epoch, read in order, so
    the data a run sees depends only on (seed, step): a resumed run continues exactly, and a
    run on N processes sees the same global batches as one process (each rank takes a slice).
    """
    micro_size = batch_size // grad_accum
    start = (step * grad_accum + micro) * micro_size
    epoch = start // dataset_len
    out = []
    perm_cache: dict[int, np.ndarray] = {}
    for position in range(start, start + micro_size):
        e = position // dataset_len
        if e not in perm_cache:
            perm_cache[e] = np.random.default_rng([seed, e]).permutation(dataset_len)
        out.append(int(perm_cache[e][position % dataset_len]))
    return epoch, out


class _EpochView(torch.utils.data.Dataset):
    """Lets a sampler choose (epoch, index) pairs from a dataset with ``set_epoch``."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class _RankBatches(torch.utils.data.Sampler):
    """This rank's slice of every global micro-batch, from ``start_step`` on, forever."""

    def __init__(self, cfg: TrainConfig, dataset_len: int, start_step: int, rank: int, world: int):
        self.cfg, self.dataset_len, self.start_step = cfg, dataset_len, start_step
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            for micro in range(self.cfg.grad_accum):
                epoch, indices = global_batch_indices(
                    step, micro, self.cfg.grad_accum, self.cfg.batch_size, self.dataset_len, self.cfg.seed
                )
                per_rank = len(indices) // self.world
                mine = indices[self.rank * per_rank : (self.rank + 1) * per_rank]
                yield [(epoch, i) for i in mine]
            step += 1


def make_batch_stream(dataset: Any, cfg: TrainConfig, start_step: int, rank: int, world: int):
    """Iterator of this rank's micro-batches starting at ``start_step``."""
    micro = cfg.batch_size // cfg.grad_accum
    if micro * cfg.grad_accum != cfg.batch_size or micro % world:
        raise ValueError(
            f"batch_size {cfg.batch_size} must split into grad_accum {cfg.grad_accum} micro-batches "
            f"divisible by {world} processes"
        )
    loader = torch.utils.data.DataLoader(
        _EpochView(dataset),
        batch_sampler=_RankBatches(cfg, len(dataset), start_step, rank, world),
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
        # its own generator: making the iterator draws a seed, which must not shift the global
        # RNG stream (dropout, VAE noise) that a resumed run restores
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    return iter(loader)


def _build_optimizers(task: Task, optim: OptimConfig) -> tuple[dict, dict]:
    optimizers, schedulers = {}, {}
    gamma = optim.lr_decay ** (1 / 1000)
    for name, params in task.param_groups().items():
        lr = optim.lr * optim.lr_scale.get(name, 1.0)
        opt = torch.optim.AdamW(params, lr=lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
        warmup = max(optim.warmup_steps, 0)

        def factor(s: int, warmup: int = warmup) -> float:
            return min(1.0, (s + 1) / warmup if warmup else 1.0) * gamma**s

        optimizers[name] = opt
        schedulers[name] = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return optimizers, schedulers


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(run_dir: Path, state: TrainState, task: Task, raw: dict, ema: EMA | None,
                    optimizers: dict, schedulers: dict, rank_rng: list[dict], keep: int) -> Path:
    """Write a complete checkpoint folder atomically, then point ``latest`` at it."""
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{state.step:07d}"
    tmp = ckpt_root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, net in raw.items():
            save_state_dict(net.state_dict(), tmp / f"{name}.safetensors")
        if ema is not None:
            save_state_dict(ema.module.state_dict(), tmp / "ema.safetensors")
        torch.save(
            {
                "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
                "schedulers": {k: v.state_dict() for k, v in schedulers.items()},
                "rng": rank_rng,
            },
            tmp / "optim.pt",
        )
        (tmp / "state.json").write_text(json.dumps(state.__dict__, indent=2))
    except BaseException as err:
        disk = as_disk_full(err, final)  # before the clean-up below frees space again
        # a failed write (a full disk) must not strand a half checkpoint that fills the disk
        # further; `latest` still names the previous, complete one
        shutil.rmtree(tmp, ignore_errors=True)
        if disk is err:
            raise
        raise disk from err
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(ckpt_root / "latest", final.name + "\n")
    old = sorted(p for p in ckpt_root.glob("step-*") if p.is_dir() and p != final)
    for stale in old[: max(len(old) - (keep - 1), 0)]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def as_disk_full(err: BaseException, where: Path) -> BaseException:
    """``err`` as ``OSError(ENOSPC)`` naming ``where`` when it is a full disk in another library's
    words (safetensors, torch.save, libsndfile do not raise OSError), else ``err`` itself."""
    import errno

    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return err if err.filename else OSError(err.errno, err.strerror, str(where))
    text = str(err).lower()
    # torch.save's short write reads "unexpected pos N vs M"; libsndfile's names no cause at all
    hints = ("no space left", "storagefull", "os error 28", "errno 28", "disk quota", "file write failed",
             "unexpected pos")
    full = any(h in text for h in hints)
    if not full and isinstance(err, (OSError, RuntimeError)):
        with contextlib.suppress(OSError):
            full = shutil.disk_usage(where if where.exists() else where.parent).free < 1 << 20
    return OSError(errno.ENOSPC, "No space left on device", str(where)) if full else err


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / "state.json").exists() else None


def _load_weights(net: nn.Module, path: Path) -> None:
    """Load a checkpoint's weights into ``net``; a mismatch (a checkpoint of another model shape
    or family) is one line naming the file, not torch's list of keys."""
    try:
        net.load_state_dict(load_state_dict(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: does not fit this config's model ({first})") from err


def _load_training_state(path: Path) -> dict[str, Any]:
    """A checkpoint's optimiser, scheduler and RNG state. ``weights_only`` unpickles tensors and
    plain containers only, so a tampered file cannot run code; its refusal (torch's message is
    many lines long) becomes one line naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refusals, a damaged zip, a missing file
        lines = str(err).strip().splitlines()
        raise CheckpointError(f"{path}: not a loadable training state ({lines[0] if lines else type(err).__name__})"
                              ) from err


# --------------------------------------------------------------------------------------------
# The memory a step needs, checked before the first one


class _DryStepContext(StepContext):
    """A step context that backpropagates but never updates (the memory probe's)."""

    def backward(self, loss: torch.Tensor) -> bool:
        loss.backward()
        return True

    def optimizer_step(self, name: str) -> None:
        for net in self.raw_networks.values():
            net.zero_grad(set_to_none=True)


def activation_bytes(task: Task, batch: dict[str, torch.Tensor], accelerator: Any, optim: OptimConfig) -> int:
    """Peak bytes of the tensors autograd keeps for backward during one training step of ``batch``.

    The step runs on copies of the networks (the task's weights, optimiser state and RNG stream
    are left as they were). Saved tensors are counted per storage while they live, weights
    excluded, so shared views count once and a graph freed by its backward stops counting: the
    figure is the step's activation memory, which grows with batch and segment length, unlike
    the weights'.
    """
    networks = {name: copy.deepcopy(net).train() for name, net in task.networks.items()}
    weights = {p.untyped_storage().data_ptr() for net in networks.values() for p in net.parameters()}
    holders: dict[int, int] = {}
    live = [0, 0]  # bytes now, peak

    def release(pointer: int, size: int) -> None:
        holders[pointer] -= 1
        if not holders[pointer]:
            live[0] -= size

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        try:
            storage = tensor.untyped_storage()
            pointer, size = storage.data_ptr(), storage.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without a plain storage
            return tensor
        if pointer in weights:
            return tensor
        if not holders.get(pointer):
            live[0] += size
            live[1] = max(live[1], live[0])
        holders[pointer] = holders.get(pointer, 0) + 1
        weakref.finalize(tensor, release, pointer, size)
        return tensor

    ctx = _DryStepContext(accelerator, networks, networks, {}, {}, optim, 0, True, 1)
    rng = _rng_state()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), accelerator.autocast():
            task.train_step(batch, ctx)
    finally:
        _set_rng_state(rng)
    return live[1]


def step_memory_estimate(task: Task, make_batch: Callable[[int], dict[str, torch.Tensor]], frames: int,
                         multiple: int, micro_batch: int, accelerator: Any, optim: OptimConfig,
                         ema: bool) -> int:
    """Bytes one training step of ``micro_batch`` windows of ``frames`` will need, measured on a
    dry step of one short window (two lengths) and scaled.

    Activations grow linearly with the window for the convolutional networks; a growth faster
    than linear between the two probes (attention) is extrapolated as the power it shows. On
    top: weights, gradients, AdamW's two moments, the EMA copy and DDP's gradient buckets.

    Args:
        make_batch: window length in frames → a batch of one window, as the data gives it.
        multiple: probe lengths are multiples of it (the VAE's time ratio).
    """
    short = max(multiple, -(-min(frames, 32) // multiple) * multiple)
    sizes = [short] if frames <= 2 * short else [short, 2 * short]
    measured = [activation_bytes(task, make_batch(size), accelerator, optim) for size in sizes]
    if len(sizes) == 1:
        per_window = measured[0] * frames / short
    else:
        (f1, f2), (a1, a2) = sizes, measured
        power = math.log2(a2 / a1) if a1 > 0 and a2 > 0 else 1.0
        if power > 1.1:
            per_window = a2 * (frames / f2) ** min(power, 2.0)
        else:
            slope = max(a2 - a1, 0) / (f2 - f1)
            per_window = max(a1 - slope * f1, 0) + slope * frames
    weights = sum(p.numel() * p.element_size() for net in task.networks.values() for p in net.parameters())
    ema_bytes = sum(p.numel() * p.element_size() for p in task.networks[task.ema_network].parameters()) \
        if ema and task.ema_network else 0
    return int(micro_batch * per_window + 5 * weights + ema_bytes)


def available_memory(device: torch.device) -> int:
    """Bytes this process may still use on ``device``: the GPU's free memory, or the host's
    ``MemAvailable`` (capped by a cgroup limit), shared by the processes of this host."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available, int(limit) - used)
    return available // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)


def _mean_over_processes(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    """The mean of each logged value over the processes (a collective: every rank calls it).

    A rank's losses describe only its slice of the global batch; with equal slices and losses
    that average over samples, their mean is the loss of the whole batch, which is what a
    one-process run with the same global batch logs.
    """
    keys = sorted(values)  # the same order on every rank
    local = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    return dict(zip(keys, accelerator.reduce(local, reduction="mean").tolist(), strict=True))


def _log(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one record; a write that fails (a full disk) leaves the file as it was, not a torn line."""
    path = run_dir / METRICS_NAME
    with open(path, "a") as handle:
        size = handle.tell()
        try:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
        except BaseException as err:
            with contextlib.suppress(OSError):
                handle.truncate(size)
            disk = as_disk_full(err, path)
            if disk is err:
                raise
            raise disk from err


def cut_metrics(run_dir: Path, step: int) -> int:
    """Drop the records logged after ``step`` (a killed run's, past its last checkpoint) and a
    torn last line, atomically; returns how many records were dropped.

    A resumed run logs those steps again, so without this the log holds two histories.
    """
    path = run_dir / METRICS_NAME
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the torn line of a write cut short by a kill
            dropped += 1
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        mode = path.stat().st_mode & 0o777
        atomic_write_text(path, "".join(line + "\n" for line in kept))
        os.chmod(path, mode)  # the new file keeps the log's mode, not mkstemp's 0600
    return dropped


def train(
    task: Task,
    dataset: Any,
    val_items: list[dict[str, Any]],
    cfg: TrainConfig,
    optim: OptimConfig,
    run_dir: str | Path,
    accelerator: Any,
    resume: bool = False,
    provenance: dict[str, Any] | None = None,
    resolved_config: dict[str, Any] | None = None,
) -> TrainState:
    """Train ``task`` until ``cfg.max_steps`` or early stopping; returns the final state.

    Args:
        dataset: map-style dataset of training windows (items are dicts of tensors).
        val_items: whole validation pieces given to ``task.validate`` on the main process.
        accelerator: an ``accelerate.Accelerator`` (its options pick devices and precision).
        resume: continue from ``RUN_DIR/checkpoints/latest`` when there is one.
    """
    from accelerate.utils import broadcast_object_list
    from tqdm.auto import tqdm

    from audiogen.checkpoint import export_model
    from audiogen.trackers import TrackerLog, parse_log_with

    run_dir = Path(run_dir)
    main = accelerator.is_main_process
    trackers = TrackerLog(accelerator, parse_log_with(cfg.log_with))
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resolved_config is not None:
            import yaml

            atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved_config, sort_keys=False))
    trackers.start(resolved_config)
    torch.manual_seed(cfg.seed + accelerator.process_index)
    random.seed(cfg.seed)

    raw = dict(task.networks)
    for net in raw.values():
        net.to(accelerator.device)
    optimizers, schedulers = _build_optimizers(task, optim)
    ema = EMA(raw[task.ema_network], cfg.ema_decay) if task.ema_network and cfg.ema_decay else None

    state = TrainState()
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None and main:
        print(f"{run_dir}: no checkpoint to resume from; starting at step 0")
    if checkpoint is not None:
        for name, net in raw.items():
            _load_weights(net, checkpoint / f"{name}.safetensors")
        if ema is not None:
            _load_weights(ema.module, checkpoint / "ema.safetensors")
        extra = _load_training_state(checkpoint / "optim.pt")
        for name, opt in optimizers.items():
            opt.load_state_dict(extra["optimizers"][name])
            schedulers[name].load_state_dict(extra["schedulers"][name])
        rng = extra["rng"]
        _set_rng_state(rng[accelerator.process_index % len(rng)])
        state = TrainState(**json.loads((checkpoint / "state.json").read_text()))
        if main:
            print(f"resumed from {checkpoint} at step {state.step}")
    if resume and main:
        dropped = cut_metrics(run_dir, state.step)
        if dropped:
            print(f"{run_dir / METRICS_NAME}: dropped {dropped} record(s) logged after step {state.step} "
                  f"by the interrupted run")
    if ema is not None:
        ema.module.to(accelerator.device)

    names = list(raw)
    prepared = accelerator.prepare(*[raw[n] for n in names], *[optimizers[n] for n in optimizers])
    if not isinstance(prepared, (list, tuple)):
        prepared = [prepared]
    networks = dict(zip(names, prepared[: len(names)], strict=True))
    opt_names = list(optimizers)
    optimizers = dict(zip(opt_names, prepared[len(names) :], strict=True))

    stream = make_batch_stream(dataset, cfg, state.step, accelerator.process_index, accelerator.num_processes)
    bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not main, dynamic_ncols=True, desc="train")
    started = time.time() - state.wall_seconds
    window: dict[str, list[float]] = {}
    stop = False

    def validate_and_maybe_export() -> None:
        nonlocal stop
        verdict = [False]
        if main:
            eval_nets = dict(raw)
            if ema is not None:
                eval_nets[task.ema_network] = ema.module
            out_dir = run_dir / "val" / f"step-{state.step:07d}"
            ctx = ValContext(accelerator.device, eval_nets, state.step, out_dir, val_items)
            for net in eval_nets.values():
                net.eval()
            with torch.inference_mode():
                metrics = task.validate(ctx)
            for net in raw.values():
                net.train()
            value = metrics["val/loss"]
            improved = value < state.best_val
            if improved:
                state.best_val, state.evals_since_best = value, 0
                prov = dict(provenance or {}, step=state.step, wall_seconds=round(time.time() - started, 1),
                            val_metrics=metrics)
                export_model(run_dir / "best", task.export(ctx), resolved_config or {}, prov)
            else:
                state.evals_since_best += 1
            record = {"step": state.step, "time": round(time.time() - started, 2), **metrics, "best": improved}
            _log(run_dir, record)
            trackers.scalars(record)
            trackers.validation_media(out_dir, state.step)
            bar.write(f"step {state.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            patience = cfg.early_stop_patience
            verdict = [patience is not None and state.evals_since_best >= patience]
        if accelerator.num_processes > 1:
            broadcast_object_list(verdict)
        if verdict[0]:
            if main:
                bar.write(f"early stopping: no improvement in {cfg.early_stop_patience} validations")
            stop = True

    def checkpoint_now() -> None:
        state.wall_seconds = time.time() - started
        rng = [_rng_state()]
        if accelerator.num_processes > 1:
            gathered = [None] * accelerator.num_processes
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if main:
            save_checkpoint(run_dir, state, task, raw, ema, optimizers, schedulers, rng, cfg.keep_checkpoints)
        accelerator.wait_for_everyone()

    for net in raw.values():
        net.train()
    try:
        while state.step < cfg.max_steps and not stop:
            ctx = None
            losses: dict[str, float] = {}
            for micro in range(cfg.grad_accum):
                batch = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in next(stream).items()}
                sync = micro == cfg.grad_accum - 1
                if ctx is None:
                    ctx = StepContext(accelerator, networks, raw, optimizers, schedulers, optim, state.step, sync,
                                      cfg.grad_accum)
                ctx.sync = sync
                no_sync = contextlib.ExitStack()
                if not sync and accelerator.num_processes > 1:
                    for net in networks.values():
                        no_sync.enter_context(accelerator.no_sync(net))
                with no_sync, accelerator.autocast():
                    micro_losses = task.train_step(batch, ctx)
                for k, v in micro_losses.items():
                    losses[k] = losses.get(k, 0.0) + v / cfg.grad_accum
            if ctx.bad:
                # The step index still advances (its data is consumed), so data order stays a
                # function of the step and a resumed run lines up; no weight or EMA changed.
                state.bad_steps_in_row += 1
                state.skipped_steps += 1
                state.step += 1
                bar.update(1)
                if main:
                    bar.write(f"warning: step {state.step} skipped (NaN/Inf in loss or gradient)")
                    _log(run_dir, {"step": state.step, "warning": "non-finite loss or gradient, step skipped"})
                if state.bad_steps_in_row >= cfg.max_bad_steps:
                    raise TrainingStopped(
                        f"{state.bad_steps_in_row} steps in a row had NaN/Inf losses or gradients; stopping. "
                        f"The last good checkpoint is {latest_checkpoint(run_dir)}."
                    )
                continue
            state.bad_steps_in_row = 0
            if ema is not None:
                ema.update(raw[task.ema_network], state.step)
            state.step += 1
            for k, v in {**losses, **{f"grad_norm/{n}": g for n, g in ctx.grad_norms.items()}}.items():
                window.setdefault(k, []).append(v)
            bar.update(1)
            if state.step % cfg.log_every == 0:
                means = {k: float(np.mean(v)) for k, v in window.items()}
                if accelerator.num_processes > 1:
                    means = _mean_over_processes(accelerator, means)
                if main:
                    lrs = {f"lr/{n}": s.get_last_lr()[0] for n, s in schedulers.items()}
                    record = {"step": state.step, "time": round(time.time() - started, 2), **means, **lrs}
                    _log(run_dir, record)
                    trackers.scalars(record)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in means.items() if "/" in k and "grad" not in k})
                window = {}
            validated = state.step % cfg.val_every == 0 or state.step == cfg.max_steps
            if validated:
                validate_and_maybe_export()
            if cfg.max_minutes is not None and state.step % cfg.log_every == 0 and not stop:
                # every rank must agree, or one would wait forever for the others' gradients
                out_of_time = [time.time() - started >= cfg.max_minutes * 60]
                if accelerator.num_processes > 1:
                    broadcast_object_list(out_of_time)
                if out_of_time[0]:
                    if main:
                        bar.write(f"stopping at step {state.step}: the {cfg.max_minutes:g}-minute budget is spent")
                    if not validated:
                        validate_and_maybe_export()
                    stop = True
            if state.step % cfg.ckpt_every == 0 or state.step == cfg.max_steps or stop:
                checkpoint_now()
    finally:
        # on every exit, so an error's one line starts on a line of its own
        bar.close()
        trackers.finish()
    state.wall_seconds = time.time() - started
    return state
