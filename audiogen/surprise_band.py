"""Keep a token prior's surprise at its own sampled music within the range it has on real music.

A token prior sampled at one fixed temperature is unstable both ways over a minute: a stretch it
finds predictable (a held chord, a pause) makes the next one more predictable still, until it
holds one sparse chord or falls silent; a stretch it finds surprising (a smear, a wash) makes the
next more surprising, until the harmony washes out. Its surprise at what it draws — ``-log p`` of
the drawn codes under its own untempered distribution, in nats a token — tells the two apart, and
on real music it stays inside a band (the bundled model: 10.5–16.3 nats a token in 80 % of the
10-s windows of the validation split, where the windows of its own clips range 5.7–17.6). This
is Mirostat's observation (Basu et al., 2021) on text, the "boredom" and "confusion" traps; the
control here is simpler:

- the sampler keeps a moving average of the surprise of the tokens it drew (``memory_tokens``);
- while the average is below the band's ``low``, the temperature is raised by ``gain`` of its log
  per nat below; while above ``high``, lowered likewise; inside the band it is the one asked for;
- within ``[min_scale, max_scale]`` times the one asked for, and only once ``memory_tokens``
  tokens are drawn (the first tokens of a piece are surprising by nature: nothing comes before them).

The control is proportional, not integral: a first version that integrated the error (Mirostat's
way) swung between its bounds every few seconds, the average lagging behind the temperature, and
with the wide band (10.3–16.4) its clips scored FAD 150 against 16.6 without it (validation;
docs/priors.md).

The band is the model's own, measured on real music of the validation split, where its
temperature is chosen too (:func:`band_of_surprises`, ``tools/surprise_band.py``), and travels
with the export as ``surprise_band.json``; a model without one samples at a fixed temperature as
before. The controller is plain Python floats, so both runtimes (:mod:`audiogen.transformer`,
:mod:`audiogen.onnx_generation`) step it alike, and a checkpoint of a sampler is a copy of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiogen.generation import DEFAULT_TEMPERATURE

BAND_FILE = "surprise_band.json"
DEFAULT_QUANTILES = (0.25, 0.75)  # of the moving average on real music: the band's edges (docs/priors.md)
DEFAULT_MEMORY_TOKENS = 32.0  # the moving average's time constant (about 3 s for the bundled prior)
TEMPERATURE_STEP = 1e-3  # of the log-temperature a controller sets
DEFAULT_GAIN = 0.05  # log-temperature per nat outside the band: 4 nats below, 1.22 times as hot


@dataclass(frozen=True)
class SurpriseBand:
    """Where a sampler keeps the moving average of its surprise, and how hard it steers.

    Attributes:
        low, high: the band, nats a token.
        memory_tokens: time constant of the moving average of the surprise, in tokens; the
            sampler steers from this many tokens on.
        gain: the log-temperature's offset per nat the average is outside the band.
        min_scale, max_scale: bounds of the temperature over the one asked for.
        temperature: the temperature the band was chosen with on validation: the model's default
            while the band is on (a band lets a sampler run a little hotter without running away).
    """

    low: float
    high: float
    memory_tokens: float = DEFAULT_MEMORY_TOKENS
    gain: float = DEFAULT_GAIN
    min_scale: float = 0.8
    max_scale: float = 1.25
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and 0 <= self.low <= self.high):
            raise ValueError(f"surprise band needs 0 <= low <= high, got {self.low}, {self.high}")
        if self.memory_tokens < 1:
            raise ValueError(f"memory_tokens must be >= 1, got {self.memory_tokens}")
        if not 0 <= self.gain < math.inf:
            raise ValueError(f"gain must be >= 0, got {self.gain}")
        if not 0 < self.min_scale <= 1 <= self.max_scale:
            raise ValueError(f"need 0 < min_scale <= 1 <= max_scale, got {self.min_scale}, {self.max_scale}")
        if not 0 < self.temperature <= 10:
            raise ValueError(f"temperature must lie in (0, 10], got {self.temperature}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> SurpriseBand:
        from audiogen.folder_settings import setting_from_dict

        return setting_from_dict(cls, data, where, "surprise band", lambda _name, value: float(value))


class SurpriseController:
    """The temperature of the next token, from the surprise of the tokens drawn so far."""

    def __init__(self, band: SurpriseBand, temperature: float):
        self.band, self.base = band, temperature
        self.average: float | None = None
        self.tokens = 0
        self.log_scale = 0.0

    @property
    def temperature(self) -> float:
        # on a grid of 0.1 % steps: the two runtimes' logits agree only to float rounding, and so do
        # their surprises; a temperature rounded to the grid is the same on both nearly always
        return self.base * math.exp(round(self.log_scale / TEMPERATURE_STEP) * TEMPERATURE_STEP)

    def observe(self, surprise: float) -> None:
        """Take in the surprise (nats) of the token just drawn."""
        band = self.band
        self.tokens += 1
        if self.average is None:
            self.average = surprise
        else:
            self.average += (surprise - self.average) / band.memory_tokens
        if self.tokens < band.memory_tokens:
            return
        offset = band.gain * (max(band.low - self.average, 0.0) - max(self.average - band.high, 0.0))
        self.log_scale = min(max(offset, math.log(band.min_scale)), math.log(band.max_scale))

    def copy(self) -> SurpriseController:
        twin = SurpriseController(self.band, self.base)
        twin.average, twin.tokens, twin.log_scale = self.average, self.tokens, self.log_scale
        return twin


def default_temperature(band: SurpriseBand | None) -> float:
    """The temperature a generator samples at when none is asked for: its band's, else the one the
    prior was trained at (:data:`audiogen.generation.DEFAULT_TEMPERATURE`)."""
    return band.temperature if band is not None else DEFAULT_TEMPERATURE


def code_surprise(logits: np.ndarray, code: int) -> float:
    """``-log p(code)`` under the softmax of logits (K,) at temperature 1, in float64 (nats)."""
    scaled = np.asarray(logits, dtype=np.float64)
    top = scaled.max()
    return float(top + math.log(np.exp(scaled - top).sum()) - scaled[code])


def moving_average(surprises: Iterable[float], memory_tokens: float) -> np.ndarray:
    """The controller's moving average after each token of one piece's surprises."""
    out, average = [], None
    for surprise in surprises:
        average = surprise if average is None else average + (surprise - average) / memory_tokens
        out.append(average)
    return np.asarray(out, dtype=np.float64)


def band_of_surprises(pieces: Sequence[np.ndarray], quantiles: tuple[float, float] = DEFAULT_QUANTILES,
                      memory_tokens: float = DEFAULT_MEMORY_TOKENS, skip_tokens: int | None = None,
                      temperature: float = 1.0) -> SurpriseBand:
    """The band of real music: ``quantiles`` of the moving average over every piece's per-token
    surprises (the first ``skip_tokens`` of each, default ``memory_tokens``, left out while the
    average settles); ``temperature``: the band's (:attr:`SurpriseBand.temperature`)."""
    skip = int(memory_tokens if skip_tokens is None else skip_tokens)
    averages = [moving_average(piece, memory_tokens)[skip:] for piece in pieces]
    pooled = np.concatenate([a for a in averages if a.size] or [np.zeros(0)])
    if not pooled.size:
        raise ValueError(f"no piece is longer than {skip} tokens: nothing to measure a band on")
    low, high = np.quantile(pooled, quantiles)
    return SurpriseBand(low=float(low), high=float(high), memory_tokens=memory_tokens, temperature=temperature)


def read_band(model_dir: str | Path) -> SurpriseBand | None:
    """The band an exported model folder carries (``surprise_band.json``), or None."""
    from audiogen.folder_settings import read_setting

    found = read_setting(model_dir, BAND_FILE, "band")
    return SurpriseBand.from_dict(*found) if found is not None else None
