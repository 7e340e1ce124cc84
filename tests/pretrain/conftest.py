"""Shared fixtures: a small photo label directory and a tiny run config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pretrain.synthetic import photo_labels


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """24 JPEG crops of scikit-image photos with luminance labels (built once per session)."""
    return photo_labels(tmp_path_factory.mktemp("photos"), 24, size=(48, 64))


def tiny_config(labels: Path, output: Path, **extra) -> dict:
    """A run that takes a fraction of a second per step on a CPU."""
    cfg = {
        "model": {"preset": "c2fmae_micro", "img_size": 32},
        "data": {"labels": str(labels), "num_workers": 0, "unit_rows": 8},
        "output": str(output), "batch_size": 4, "steps": 6, "precision": "fp32", "device": "cpu",
        "optim": {"lr": 1e-3, "warmup_epochs": 0.5}, "log_every": 1, "ckpt_every": 0,
        "vis_every": 0, "vis_images": 2, "seed": 3,
    }
    for key, value in extra.items():
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return cfg
