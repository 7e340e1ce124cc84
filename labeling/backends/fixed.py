"""A backend that returns fixed synthetic masks: for the overhead benchmark and the tests.

The masks depend only on the image size, so runs are reproducible: a semantic map of
`num_categories` horizontal bands bent by a sine wave, and `num_instances` ellipses at
positions drawn from a fixed seed (relative coordinates, so they scale with the image).
Test hooks (all off by default): `delay` seconds per image; `fail_class` raises for images
of that class name; `crash_once` names a file: the first process to find it missing creates
it and exits hard, as a crashed or preempted worker would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from labeling.backends.base import Backend, InstancePrediction, Prediction, SemanticPrediction


class FixedBackend(Backend):
    name = "fixed"
    provides = frozenset({"semantic", "instances"})

    def __init__(
        self, device: str = "cpu", num_categories: int = 8, num_instances: int = 30,
        seed: int = 0, delay: float = 0.0, fail_class: str | None = None,
        crash_once: str | None = None, **params: Any,
    ):
        super().__init__(device, num_categories=num_categories, num_instances=num_instances,
                         seed=seed, delay=delay, fail_class=fail_class, crash_once=crash_once,
                         **params)
        rng = np.random.default_rng(seed)
        self.num_categories = num_categories
        # ellipses: centre (cy, cx), radii (ry, rx) as fractions of the image size, score
        self._ellipses = np.column_stack([
            rng.uniform(0.1, 0.9, num_instances), rng.uniform(0.1, 0.9, num_instances),
            rng.uniform(0.04, 0.3, num_instances), rng.uniform(0.04, 0.3, num_instances),
        ])
        self._scores = np.sort(rng.uniform(0.7, 1.0, num_instances))[::-1].astype(np.float32)
        self.delay, self.fail_class, self.crash_once = delay, fail_class, crash_once

    @property
    def vocabulary(self) -> dict[int, str]:
        return {i: f"band {i}" for i in range(self.num_categories)}

    def label_map(self, height: int, width: int) -> np.ndarray:
        rows = np.arange(height, dtype=np.float32)[:, None]
        wave = 0.04 * height * np.sin(np.arange(width, dtype=np.float32) / max(width, 1) * 6.28)
        band = ((rows + wave[None, :]) * self.num_categories / max(height, 1)).astype(np.int32)
        return np.clip(band, 0, self.num_categories - 1)

    def instance_masks(self, height: int, width: int) -> np.ndarray:
        masks = np.zeros((len(self._ellipses), height, width), dtype=bool)
        for k, (cy, cx, ry, rx) in enumerate(self._ellipses):
            cy, cx, ry, rx = cy * height, cx * width, max(ry * height, 1.0), max(rx * width, 1.0)
            y0, y1 = max(int(cy - ry), 0), min(int(cy + ry) + 1, height)
            x0, x1 = max(int(cx - rx), 0), min(int(cx + rx) + 1, width)
            yy = ((np.arange(y0, y1) - cy) / ry) ** 2
            xx = ((np.arange(x0, x1) - cx) / rx) ** 2
            masks[k, y0:y1, x0:x1] = (yy[:, None] + xx[None, :]) <= 1.0
        return masks

    def _maybe_crash(self) -> None:
        if self.crash_once and not Path(self.crash_once).exists():
            Path(self.crash_once).touch()
            os._exit(1)  # no cleanup: like a killed worker

    def predict(self, images: list[np.ndarray], class_names: list[str | None]) -> list[Prediction]:
        self._maybe_crash()
        out = []
        for image, name in zip(images, class_names):
            if self.fail_class is not None and name == self.fail_class:
                raise RuntimeError(f"fixed backend told to fail on class {name!r}")
            if self.delay:
                time.sleep(self.delay)
            h, w = image.shape[:2]
            label_map = self.label_map(h, w)
            scores = {c: 0.9 for c in range(self.num_categories)}
            masks = self.instance_masks(h, w)
            out.append(Prediction(
                semantic=SemanticPrediction(label_map, scores),
                instances=InstancePrediction(
                    scores=self._scores.copy(), stability=np.full(len(masks), 0.95, np.float32),
                    masks=masks, source=self.name,
                ),
            ))
        return out
