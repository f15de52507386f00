"""Settings a model folder carries beside its weights as small JSON files (``surprise_band.json``,
``mel_sharpening.json``): how its samples are drawn and decoded. Read without torch, since the
onnxruntime path reads them too."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any


def read_setting(model_dir: str | Path, file: str, key: str) -> tuple[dict[str, Any], str] | None:
    """The ``key`` object of the folder's ``file`` and the path to name in errors; None without the file.

    Raises:
        ValueError: the file is not readable JSON, or holds no ``key`` object.
    """
    path = Path(model_dir) / file
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise ValueError(f"{path}: expected an object with a '{key}' object")
    return data[key], str(path)


def setting_from_dict(cls: type, data: dict[str, Any], where: str, what: str,
                      convert: Callable[[str, Any], Any]) -> Any:
    """``cls`` (a dataclass) from a settings object, each value through ``convert(name, value)``.

    Raises:
        ValueError: an unknown key, or a value ``convert`` or ``cls`` refuses; ``where`` first.
    """
    unknown = sorted(set(data) - {field.name for field in fields(cls)})
    if unknown:
        raise ValueError(f"{where}: unknown {what} keys {unknown}")
    try:
        return cls(**{name: convert(name, value) for name, value in data.items()})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
