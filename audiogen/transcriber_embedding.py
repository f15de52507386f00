"""The transcriber's hidden features as an audio embedding (``--embedding transcriber``): one that hears notes.

Each clip goes through the frontend and the transcriber's trunk once
(:meth:`audiogen.transcriber.Transcriber.features`: the (hidden, T) sequence its onset, frame
and velocity heads read), and each patch of the framing is the per-channel mean and standard
deviation of the frames centred inside it: a (2 * hidden)-d vector. A whole-clip pass gives
every patch the same context the model was trained with, instead of zero padding at each
patch's edges. Weights are the bundled transcriber's unless a folder is given; the identity
carries their SHA-256, so cached embeddings of another model never match. Like ``mel``, it is
not comparable to published FAD values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

NOT_COMPARABLE_NOTE = ("transcriber embedding: audiogen's piano transcriber's hidden features; NOT comparable "
                       "to published FAD")


class TranscriberEmbedder:
    """Mono audio at the transcriber's sample rate → (P, 2 * hidden) float32, one row per patch.

    Args:
        model_dir: an exported transcriber folder (None: the bundled one).
        framing: a framing name of :data:`audiogen.vggish.FRAMINGS`.
        device: torch device.
    """

    name = "transcriber"
    comparable_to_published = False

    def __init__(self, model_dir: str | Path | None = None, framing: str = "torchvggish", device: str = "cpu"):
        from audiogen.download import sha256_file
        from audiogen.frontend import FrontendConfig, MelFrontend
        from audiogen.transcriber import bundled_transcriber_dir, load_transcriber
        from audiogen.vggish import get_framing

        self.model_dir = Path(model_dir) if model_dir is not None else bundled_transcriber_dir()
        self.model, saved = load_transcriber(self.model_dir, device)
        self.config = FrontendConfig(**(saved.get("frontend") or {}))
        self.frontend = MelFrontend(self.config).to(device)
        self.framing = get_framing(framing)
        self.sample_rate = self.config.sample_rate
        self.dim = 2 * self.model.hidden
        self.weights_sha256 = sha256_file(self.model_dir / "transcriber.safetensors")

    def identity(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "weights_sha256": self.weights_sha256,
            "frontend": self.config.to_dict(),
            "framing": self.framing.name,
            "dim": self.dim,
            "sample_rate": self.sample_rate,
            "comparable_to_published": False,
            "note": NOT_COMPARABLE_NOTE,
        }

    def embed(self, audio: np.ndarray) -> np.ndarray:
        import torch

        from audiogen.transcriber import transcribe_mel

        prepared = np.ascontiguousarray(self.framing.prepare(audio), dtype=np.float32)
        count = self.framing.num_patches(prepared.shape[0], self.sample_rate)
        out = np.zeros((count, self.dim), dtype=np.float32)
        if count == 0:
            return out
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            mel = self.frontend(torch.from_numpy(prepared).to(device))  # (n_mels, F)
            features = transcribe_mel(self.model, mel)["features"].cpu().numpy()  # (hidden, F)
        segment = self.framing.segment_samples(self.sample_rate)
        hop = self.framing.hop_samples(self.sample_rate)
        frame_hop = self.config.hop_length
        for p in range(count):
            # frames centred on samples [p * hop, p * hop + segment)
            first = -(-(p * hop) // frame_hop)
            last = max((p * hop + segment - 1) // frame_hop + 1, first + 1)
            window = features[:, first:min(last, features.shape[1])]
            out[p] = np.concatenate([window.mean(axis=1), window.std(axis=1)])
        return out
