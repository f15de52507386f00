"""Self-describing model folders: safetensors weights + the resolved config + provenance.

An exported model folder (what ``generate --model DIR`` and ``--vocoder DIR`` read) holds::

    DIR/config.yaml          the resolved trainer config (frontend, model, ...)
    DIR/<name>.safetensors   one file per network (``vocoder``, ``vae``, ``prior``)
    DIR/provenance.json      steps, wall time, data, versions, validation figures

Nothing here unpickles: weights are safetensors only, so loading a file cannot run code. The
resumable training state (optimisers, EMA, RNG) lives apart, in the run's ``checkpoints/``
folder (see :mod:`audiogen.training`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn


class CheckpointError(ValueError):
    """A model folder that is missing, incomplete or of the wrong kind."""


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state_dict(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Save tensors as safetensors (contiguous CPU copies; shared storage is split)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(path))


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; anything else (a pickle) is refused."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a safetensors file ({err}); pickled weights are refused") from err


def export_model(
    out_dir: str | Path,
    networks: dict[str, nn.Module | dict[str, torch.Tensor]],
    config: dict[str, Any],
    provenance: dict[str, Any],
) -> Path:
    """Write a model folder atomically (built beside ``out_dir``, then swapped in)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        for name, net in networks.items():
            state = net.state_dict() if isinstance(net, nn.Module) else net
            save_state_dict(state, tmp / f"{name}.safetensors")
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True))
        publish_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def publish_folder(tmp: Path, out_dir: Path) -> None:
    """Rename a finished folder into place (replacing an old one) with the modes a plain mkdir
    and plain files would get (mkdtemp and safetensors leave owner-only modes)."""
    umask = os.umask(0)
    os.umask(umask)
    for item in tmp.iterdir():
        os.chmod(item, 0o666 & ~umask)
    os.chmod(tmp, 0o777 & ~umask)
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_model_dir(model_dir: str | Path, names: list[str]) -> tuple[dict[str, Any], dict[str, dict]]:
    """Read a model folder: (config dict, {name: state_dict}) for the networks asked for.

    Raises:
        CheckpointError: a missing folder, config.yaml or weights file, or a config.yaml that is
            not the mapping an export writes (not YAML, empty, a list, an unknown top-level key);
            one line that names the file.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: model folder not found")
    config_path = model_dir / "config.yaml"
    if not config_path.exists():
        raise CheckpointError(f"{model_dir}: no config.yaml (not an audiogen model folder)")
    config = _read_model_config(config_path)
    states = {}
    for name in names:
        path = model_dir / f"{name}.safetensors"
        if not path.exists():
            present = sorted(p.stem for p in model_dir.glob("*.safetensors"))
            raise CheckpointError(f"{model_dir}: no {name}.safetensors (this folder holds {present or 'no weights'})")
        states[name] = load_state_dict(path)
    return config, states


def _read_model_config(path: Path) -> dict[str, Any]:
    """The mapping in a model folder's config.yaml: a resolved trainer config, as exported."""
    import dataclasses

    from audiogen.tasks import TrainerConfig  # what an export writes (imported here: tasks imports this module)

    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not a text file (an exported config.yaml is YAML)") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        reason = getattr(err, "problem", None) or type(err).__name__
        raise CheckpointError(f"{path}: not valid YAML ({where}{reason})") from None
    if config is None:
        raise CheckpointError(f"{path}: empty (an exported config.yaml holds the frontend and model of its weights)")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a mapping at the top level, got a {type(config).__name__}")
    known = [field.name for field in dataclasses.fields(TrainerConfig)]
    unknown = sorted(str(key) for key in config if key not in known)
    if unknown:
        raise CheckpointError(f"{path}: unknown top-level key(s) {unknown}; known: {known}")
    return config


def read_provenance(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "provenance.json"
    return json.loads(path.read_text()) if path.exists() else {}
