"""Checkpoints as nanochat lays them out: `model_{step:06d}.pt` (state_dict),
`optim_{step:06d}.pt` (optional) and `meta_{step:06d}.json` (meta + model config + step).
Every file is written to a temporary name and renamed, so a crash never leaves a torn file;
the JSON is written last, so a step counts as saved only once its meta exists.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.c2fmae import C2FMAE
from model.config import ModelConfig

log = logging.getLogger(__name__)
_META = re.compile(r"^meta_(\d{6,})\.json$")


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(directory: str | Path, step: int, model: C2FMAE, meta: dict[str, Any],
                    optimizer_state: dict | None = None) -> Path:
    """Write the model (and optimizer) state and the meta JSON of `step`; returns the model file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / f"model_{step:06d}.pt"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_write(model_path, lambda tmp: torch.save(state, tmp))
    if optimizer_state is not None:
        _atomic_write(directory / f"optim_{step:06d}.pt", lambda tmp: torch.save(optimizer_state, tmp))
    full_meta = {**meta, "model_config": model.config.to_dict(), "step": step}
    text = json.dumps(full_meta, indent=2, default=str)
    _atomic_write(directory / f"meta_{step:06d}.json", lambda tmp: Path(tmp).write_text(text))
    log.info("saved checkpoint step %d to %s", step, directory)
    return model_path


def latest_step(directory: str | Path) -> int | None:
    """The highest step with a meta JSON in `directory`, or None if there is none."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    steps = [int(m.group(1)) for p in directory.iterdir() if (m := _META.match(p.name))]
    return max(steps) if steps else None


def _resolve(directory_or_file: str | Path, step: int | None) -> tuple[Path, int]:
    path = Path(directory_or_file)
    if path.is_file():
        m = re.search(r"_(\d{6,})\.(pt|json)$", path.name)
        if not m:
            raise ValueError(f"not a checkpoint file (want model_NNNNNN.pt or meta_NNNNNN.json): {path}")
        return path.parent, int(m.group(1))
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if step is None:
        step = latest_step(path)
        if step is None:
            raise FileNotFoundError(f"no checkpoint (meta_*.json) in {path}")
    return path, step


def load_checkpoint(directory_or_file: str | Path, step: int | None = None,
                    device: str | torch.device = "cpu") -> tuple[C2FMAE, dict[str, Any], dict | None]:
    """Rebuild the model from the meta JSON and load its weights (latest step by default).

    Returns (model, meta, optimizer_state or None).
    """
    directory, step = _resolve(directory_or_file, step)
    meta_path = directory / f"meta_{step:06d}.json"
    model_path = directory / f"model_{step:06d}.pt"
    for p in (meta_path, model_path):
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint file missing: {p}")
    meta = json.loads(meta_path.read_text())
    if "model_config" not in meta:
        raise ValueError(f"{meta_path} has no 'model_config'")
    model = C2FMAE(ModelConfig.from_dict(meta["model_config"]))
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.to(device)
    optim_path = directory / f"optim_{step:06d}.pt"
    optimizer_state = (torch.load(optim_path, map_location="cpu", weights_only=True)
                       if optim_path.is_file() else None)
    log.info("loaded checkpoint step %d from %s", step, directory)
    return model, meta, optimizer_state
