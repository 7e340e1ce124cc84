"""Saving and restoring everything a run needs to continue exactly.

A checkpoint step is the files of model/checkpoint.py (`model_*.pt`, `optim_*.pt`,
`meta_*.json`) in OUTPUT/checkpoints. The optimizer file holds the optimizer, the
gradient scaler (fp16 only) and every rank's RNG states; the meta JSON holds the
resolved run config, the step, and every rank's loader position.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_generator(device: torch.device, seed: int, step: int, index: int) -> torch.Generator:
    """The generator of one forward pass: a function of (seed, step, global micro-batch index),
    so masking is the same after a resume and the same for DDP and for one process that
    accumulates the same micro-batches."""
    value = int(np.random.SeedSequence([seed, step, index]).generate_state(1, np.uint64)[0])
    gen = torch.Generator(device=device)
    gen.manual_seed(value & ((1 << 63) - 1))
    return gen


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoint steps (keep <= 0: keep all)."""
    if keep <= 0:
        return
    directory = Path(directory)
    steps = sorted({int(m.group(1)) for p in directory.glob("meta_*.json")
                    if (m := re.match(r"meta_(\d+)\.json$", p.name))})
    for step in steps[:-keep]:
        for prefix in ("meta", "model", "optim"):  # meta first: the step stops counting at once
            (directory / f"{prefix}_{step:06d}.{'json' if prefix == 'meta' else 'pt'}").unlink(missing_ok=True)
