"""A backend that returns fixed synthetic masks: for the overhead benchmark and the tests.

The masks depend only on the image (its size and a few of its pixels), so runs are
reproducible while images differ from each other, as real labels do: a semantic map of
`num_categories` horizontal bands bent by a sine wave, and `num_instances` ellipses whose
positions and sizes are drawn from a seed mixed from `seed` and the image.
With `as_rles` the instances come back already run-length encoded, as the SAM backends
hand them over (encoded inside the model step); with `with_runs` as well their run
lengths, as sam-amg-fast hands them over; with `with_segments` the semantic map's
segments, as the transformers backends hand them over. Test hooks (all off by default): `delay` seconds per image; `fail_class` raises for
images of that class name; `crash_class` exits hard on every batch holding an image of
that class name (an image that kills its process every time); `crash_once` names a file:
the first process to find it missing creates it and exits hard, as a crashed or
preempted worker would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from dataset.masks import encode_many, encode_runs, label_segments, mask_runs
from labeling.backends.base import Backend, InstancePrediction, Prediction, SemanticPrediction


class FixedBackend(Backend):
    name = "fixed"
    provides = frozenset({"semantic", "instances"})

    def __init__(
        self, device: str = "cpu", num_categories: int = 8, num_instances: int = 30,
        seed: int = 0, as_rles: bool = False, with_runs: bool = False,
        with_segments: bool = False, delay: float = 0.0,
        fail_class: str | None = None, crash_class: str | None = None,
        crash_once: str | None = None, **params: Any,
    ):
        super().__init__(device, num_categories=num_categories, num_instances=num_instances,
                         seed=seed, as_rles=as_rles, with_runs=with_runs,
                         with_segments=with_segments, delay=delay,
                         fail_class=fail_class, crash_class=crash_class,
                         crash_once=crash_once, **params)
        self.as_rles, self.with_runs, self.with_segments = as_rles, with_runs, with_segments
        self.num_categories, self.num_instances, self.seed = num_categories, num_instances, seed
        self.delay, self.fail_class, self.crash_once = delay, fail_class, crash_once
        self.crash_class = crash_class

    def _rng(self, image: np.ndarray) -> np.random.Generator:
        h, w = image.shape[:2]
        probe = int(image[:: max(1, h // 7), :: max(1, w // 7)].sum())
        return np.random.default_rng([self.seed, h, w, probe])

    @property
    def vocabulary(self) -> dict[int, str]:
        return {i: f"band {i}" for i in range(self.num_categories)}

    def label_map(self, height: int, width: int, phase: float = 0.0) -> np.ndarray:
        rows = np.arange(height, dtype=np.float32)[:, None]
        cols = np.arange(width, dtype=np.float32) / max(width, 1)
        wave = 0.04 * height * np.sin(cols * 6.28 + phase)
        band = ((rows + wave[None, :]) * self.num_categories / max(height, 1)).astype(np.int32)
        return np.clip(band, 0, self.num_categories - 1)

    def instance_masks(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        n = self.num_instances
        # ellipses: centre (cy, cx) and radii (ry, rx) as fractions of the image size
        ellipses = np.column_stack([rng.uniform(0.1, 0.9, n), rng.uniform(0.1, 0.9, n),
                                    rng.uniform(0.04, 0.3, n), rng.uniform(0.04, 0.3, n)])
        masks = np.zeros((n, height, width), dtype=bool)
        for k, (cy, cx, ry, rx) in enumerate(ellipses):
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

    def _encoded(self, masks: np.ndarray) -> dict[str, Any]:
        if not self.with_runs or not len(masks):
            return {"rles": encode_many(masks)}
        runs = mask_runs(masks)
        return {"rles": encode_runs(*runs, *masks.shape[1:]), "runs": runs}

    def predict(self, images: list[np.ndarray], class_names: list[str | None]) -> list[Prediction]:
        self._maybe_crash()
        if self.crash_class is not None and self.crash_class in class_names:
            os._exit(1)
        out = []
        for image, name in zip(images, class_names):
            if self.fail_class is not None and name == self.fail_class:
                raise RuntimeError(f"fixed backend told to fail on class {name!r}")
            if self.delay:
                time.sleep(self.delay)
            h, w = image.shape[:2]
            rng = self._rng(image)
            label_map = self.label_map(h, w, phase=rng.uniform(0, 6.28))
            scores = {c: 0.9 for c in range(self.num_categories)}
            masks = self.instance_masks(h, w, rng)
            instances = InstancePrediction(
                scores=np.sort(rng.uniform(0.7, 1.0, len(masks)))[::-1].astype(np.float32),
                stability=np.full(len(masks), 0.95, np.float32), source=self.name,
                **(self._encoded(masks) if self.as_rles else {"masks": masks}),
            )
            semantic = SemanticPrediction(label_map, scores)
            if self.with_segments:
                semantic.segments = label_segments(label_map)
            out.append(Prediction(semantic, instances))
        return out
