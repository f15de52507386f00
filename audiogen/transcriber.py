"""A small onsets-and-frames piano transcriber: log-mel in, 88-key onset / frame / velocity out.

After Hawthorne et al. 2018 ("Onsets and Frames"), shrunk to train on one CPU core: a 2-D
convolutional stack over (mel, time) pools the frequency axis, a linear map turns each frame's
features into a ``hidden``-channel sequence, dilated residual 1-D convolutions give it context
(instead of the paper's BiLSTMs, which are slow on a CPU), and three 1x1 heads read it. The
frame head also sees the onset head's (detached) probabilities, as in the paper, so a note's
frames lean on its onset.

The model reads mels in the project frontend's units (natural-log magnitude; see
:mod:`audiogen.frontend`) and normalises them with fixed constants; it never reads files.
:func:`load_transcriber` rebuilds one from an exported folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

N_KEYS = 88
# log-mel in the frontend's units spans about log(1e-5) = -11.5 (silence) to +3; these put
# piano music near zero mean and unit spread without a data pass
MEL_MEAN, MEL_STD = -5.0, 3.0


@dataclass(frozen=True)
class TranscriberConfig:
    """The transcriber's shape (the ``model:`` section of configs/transcriber/*.yaml)."""

    kind: str = "onsets_frames"
    conv_channels: tuple[int, ...] = (16, 32)
    hidden: int = 192
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    kernel_size: int = 3
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.kind != "onsets_frames":
            raise ValueError(f"model.kind must be 'onsets_frames', got {self.kind!r}")
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise ValueError(f"conv_channels must be positive, got {list(self.conv_channels)}")
        if self.hidden < 1 or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError("hidden must be >= 1 and kernel_size odd")
        if any(d < 1 for d in self.dilations):
            raise ValueError(f"dilations must be >= 1, got {list(self.dilations)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")


class _Residual(nn.Module):
    """x + conv(relu(norm(x))): one dilated temporal block, length preserved."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                              dilation=dilation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.conv(F.relu(self.norm(x))))


class Transcriber(nn.Module):
    """Log-mel (B, n_mels, T) to onset, frame and velocity logits (B, 88, T), one per mel frame.

    The 2-D stack pools frequency by 2 after each of ``conv_channels`` (time is never pooled,
    so outputs keep the mel frame rate). ``n_mels`` must be divisible by 2 ** len(conv_channels).
    """

    def __init__(self, *, n_mels: int = 80, conv_channels: tuple[int, ...] = (16, 32), hidden: int = 192,
                 dilations: tuple[int, ...] = (1, 2, 4, 8), kernel_size: int = 3, dropout: float = 0.1):
        super().__init__()
        if n_mels % 2 ** len(conv_channels):
            raise ValueError(f"n_mels {n_mels} must be divisible by 2 ** {len(conv_channels)} (one pooling per "
                             "conv_channels entry)")
        self.n_mels, self.hidden = n_mels, hidden
        layers: list[nn.Module] = [nn.Conv2d(1, conv_channels[0], 3, padding=1), nn.BatchNorm2d(conv_channels[0]),
                                   nn.ReLU()]
        previous = conv_channels[0]
        for channels in conv_channels:
            layers += [nn.Conv2d(previous, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
                       nn.MaxPool2d((2, 1))]
            previous = channels
        self.conv = nn.Sequential(*layers)
        bins = n_mels // 2 ** len(conv_channels)
        self.project = nn.Conv1d(previous * bins, hidden, 1)
        self.temporal = nn.Sequential(*[_Residual(hidden, kernel_size, d, dropout) for d in dilations])
        self.out_norm = nn.BatchNorm1d(hidden)
        self.onset_head = nn.Conv1d(hidden, N_KEYS, 1)
        self.frame_head = nn.Conv1d(hidden + N_KEYS, N_KEYS, 1)
        self.velocity_head = nn.Conv1d(hidden, N_KEYS, 1)

    @classmethod
    def from_config(cls, config: TranscriberConfig, n_mels: int) -> Transcriber:
        return cls(n_mels=n_mels, conv_channels=tuple(config.conv_channels), hidden=config.hidden,
                   dilations=tuple(config.dilations), kernel_size=config.kernel_size, dropout=config.dropout)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """The hidden sequence the heads read: (B, n_mels, T) -> (B, hidden, T), after ReLU."""
        x = ((mel - MEL_MEAN) / MEL_STD).unsqueeze(1)  # (B, 1, n_mels, T)
        x = self.conv(x)  # (B, C, n_mels / 2**L, T)
        x = self.project(x.flatten(1, 2))  # (B, hidden, T)
        return F.relu(self.out_norm(self.temporal(x)))

    def forward(self, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``{"onset", "frame", "velocity"}``, each (B, 88, T), T = mel frames."""
        h = self.features(mel)
        onset = self.onset_head(h)
        frame = self.frame_head(torch.cat([h, torch.sigmoid(onset).detach()], dim=1))
        return {"onset": onset, "frame": frame, "velocity": self.velocity_head(h)}


# Onset cells are about 0.3 % of (key, frame) cells; with plain BCE a run of 400 steps on one
# core had learnt nothing past that base rate (onset BCE 0.018 = the all-silent prediction,
# validation onset F1 0). Weighting the positives makes them count from the first steps; the
# decoder's onset threshold (chosen on validation) absorbs the shifted calibration.
ONSET_POS_WEIGHT = 5.0


def transcriber_losses(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                       onset_pos_weight: float = ONSET_POS_WEIGHT) -> dict[str, torch.Tensor]:
    """Onset and frame binary cross-entropy, and velocity MSE where an onset is labelled.

    Args:
        logits: the model's outputs, each (B, 88, T).
        labels: ``onset``, ``frame``, ``velocity`` targets in [0, 1], each (B, 88, T).
        onset_pos_weight: weight of the onset cells' positive term (see :data:`ONSET_POS_WEIGHT`).

    Returns:
        ``{"onset/bce", "frame/bce", "velocity/mse"}`` scalar tensors (fp32).
    """
    weight = torch.tensor(onset_pos_weight, device=labels["onset"].device)
    onset = F.binary_cross_entropy_with_logits(logits["onset"].float(), labels["onset"], pos_weight=weight)
    frame = F.binary_cross_entropy_with_logits(logits["frame"].float(), labels["frame"])
    mask = labels["onset"]
    # velocity is only defined where a note starts: averaged over those cells (0 where none)
    squared = (torch.sigmoid(logits["velocity"].float()) - labels["velocity"]) ** 2 * mask
    velocity = squared.sum() / mask.sum().clamp(min=1.0)
    return {"onset/bce": onset, "frame/bce": frame, "velocity/mse": velocity}


@torch.inference_mode()
def transcribe_mel(model: Transcriber, mel: torch.Tensor, chunk_frames: int = 4096,
                   context_frames: int = 64) -> dict[str, torch.Tensor]:
    """Probabilities of one whole clip, computed in overlapping chunks to bound memory.

    Each chunk carries ``context_frames`` of real neighbouring frames on each side (more than
    the network's receptive field), which are cut off again, so the result matches one pass.

    Args:
        mel: (n_mels, T) log-mel.

    Returns:
        ``{"onset", "frame", "velocity"}`` each (88, T) in [0, 1] (velocity / 127), and
        ``"features"`` (hidden, T).
    """
    total = mel.shape[-1]
    parts: dict[str, list[torch.Tensor]] = {"onset": [], "frame": [], "velocity": [], "features": []}
    for start in range(0, max(total, 1), chunk_frames):
        lo, hi = max(0, start - context_frames), min(total, start + chunk_frames + context_frames)
        window = mel[None, :, lo:hi]
        h = model.features(window)
        onset = model.onset_head(h)
        frame = model.frame_head(torch.cat([h, torch.sigmoid(onset)], dim=1))
        velocity = model.velocity_head(h)
        keep = slice(start - lo, start - lo + min(chunk_frames, total - start))
        parts["onset"].append(torch.sigmoid(onset)[0, :, keep])
        parts["frame"].append(torch.sigmoid(frame)[0, :, keep])
        parts["velocity"].append(torch.sigmoid(velocity)[0, :, keep])
        parts["features"].append(h[0, :, keep])
    return {k: torch.cat(v, dim=-1) for k, v in parts.items()}


def receptive_field(config: TranscriberConfig) -> int:
    """Frames of context on each side that one output frame sees."""
    conv = 1 + len(config.conv_channels)  # 3x3 convolutions, one frame each side apiece
    return conv + sum(d * (config.kernel_size - 1) // 2 for d in config.dilations)


def load_transcriber(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Transcriber, dict]:
    """A trained transcriber from an exported folder (``transcriber.safetensors`` + ``config.yaml``).

    Returns:
        (the model in eval mode, the folder's resolved config as plain data).

    Raises:
        CheckpointError: the folder is missing or its files do not fit each other.
    """
    from audiogen.checkpoint import CheckpointError, read_model_dir
    from audiogen.config import ConfigError, from_dict
    from audiogen.frontend import FrontendConfig

    saved, states = read_model_dir(model_dir, ["transcriber"])
    try:
        frontend = from_dict(FrontendConfig, saved.get("frontend") or {}, f"{model_dir}: frontend")
        config = from_dict(TranscriberConfig, saved.get("model") or {}, f"{model_dir}: model")
    except ConfigError as err:
        raise CheckpointError(str(err)) from err
    model = Transcriber.from_config(config, frontend.n_mels)
    try:
        model.load_state_dict(states["transcriber"])
    except RuntimeError as err:
        raise CheckpointError(f"{model_dir}: transcriber weights do not fit its config "
                              f"({str(err).strip().splitlines()[0]})") from err
    return model.to(device).eval(), saved


# Decoding settings of the CLI and the evaluation, chosen for the bundled model on the validation
# split (46 pieces x 30 s, tools/transcriber_eval.py --sweep): onset F1 0.907 at an onset threshold
# of 0.5, 0.940 at 0.7 and 0.8 (the onset loss weights positives x5, so its probabilities run
# high); a minimum gap between onsets of a key added 0.001 at best, so it stays off.
DEFAULT_ONSET_THRESHOLD = 0.7
DEFAULT_FRAME_THRESHOLD = 0.5
DEFAULT_MIN_GAP = 0.0  # seconds between two onsets of one key (audiogen.transcription.decode_notes)


def transcribe_audio(model: Transcriber, frontend: object, audio: object,
                     onset_threshold: float = DEFAULT_ONSET_THRESHOLD,
                     frame_threshold: float = DEFAULT_FRAME_THRESHOLD,
                     min_gap: float = DEFAULT_MIN_GAP) -> tuple[object, dict[str, torch.Tensor]]:
    """Notes of one clip of audio at the frontend's sample rate.

    Args:
        frontend: the :class:`audiogen.frontend.MelFrontend` the model was trained on.
        audio: (T,) float32 numpy samples.

    Returns:
        (:class:`audiogen.transcription.Notes` in seconds of the clip, the probabilities of
        :func:`transcribe_mel`).
    """
    from audiogen.transcription import decode_notes

    device = next(model.parameters()).device
    with torch.inference_mode():
        mel = frontend.to(device)(torch.as_tensor(audio, dtype=torch.float32, device=device)[None])[0]
    probs = transcribe_mel(model, mel)
    rate = frontend.config.frame_rate
    notes = decode_notes(*(probs[k].cpu().numpy() for k in ("onset", "frame", "velocity")), rate,
                         onset_threshold=onset_threshold, frame_threshold=frame_threshold, min_gap=min_gap)
    return notes, probs


def bundled_transcriber_dir() -> Path:
    """The folder of the transcriber shipped with the package."""
    from importlib import resources

    return Path(str(resources.files("audiogen") / "pretrained" / "transcriber"))
