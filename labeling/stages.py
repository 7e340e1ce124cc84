"""The steps of the labeling job, as plain functions over lists of per-image dicts.

The steps know nothing of Ray: pipelines/labels.py runs them as Ray Data stages, the
overhead benchmark calls them in one process. An item is a dict that grows step by step:

    decode:  idx, image_id, path, class_index, size (H, W), image (RGB, maybe shrunk),
             error (None or one line), image_bytes (if kept), seconds
    model:   semantic (entries at original size) + semantic_confidence, and/or
             instances (entries, unfiltered); with each, what it was encoded from
             (semantic_segments: the map's runs of one label, as int32 where they fit,
             for the move to the instance stage; instance_runs: run lengths, None where a
             backend handed over RLEs without them), so fusion need not decode the
             entries; a failing image gets `error` set instead
    fuse:    -> one schema row dict per item (ok or error)

A step never raises for a bad image: the image's item carries the reason to its error row.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from labeling.backends.base import Backend, Prediction, build_backend
from labeling.config import ModelConfig, Thresholds
from labeling.fusion import error_row, fuse, instances_with_runs, ok_row, semantic_with_runs
from labeling.images import ImageDecodeError, class_name, decode_image, read_bytes
from labeling.quality import image_quality

log = logging.getLogger(__name__)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def decode_items(
    records: list[dict[str, Any]], max_side: int | None = None, store_images: bool = False,
) -> list[dict[str, Any]]:
    """Records (idx, image_id, path, class_index) -> items with the decoded image or an error."""
    items = []
    for rec in records:
        t0 = time.perf_counter()
        item = {**rec, "image": None, "size": (0, 0), "error": None, "image_bytes": None}
        try:
            data = read_bytes(rec["path"])
            item["image"], item["size"] = decode_image(data, max_side)
            if store_images:
                item["image_bytes"] = data
        except ImageDecodeError as exc:
            item["error"] = str(exc)
        except Exception as exc:  # anything else about one file must not stop the job
            item["error"] = f"decode failed ({_one_line(exc)})"
        item["seconds"] = time.perf_counter() - t0
        items.append(item)
    return items


class ModelStage:
    """Runs one backend over items and attaches the granularities in `roles` to them."""

    def __init__(
        self, config: ModelConfig, roles: tuple[str, ...], device: str = "cpu",
        drop_images: bool = False, backend: Backend | None = None,
    ):
        self.config, self.roles, self.drop_images = config, tuple(roles), drop_images
        self.backend = backend or build_backend(config.backend, device=device, **config.params)
        missing = set(self.roles) - set(self.backend.provides)
        if missing:
            raise ValueError(f"backend {config.backend!r} does not provide {', '.join(sorted(missing))}")

    def _predict(self, chunk: list[dict]) -> list[Prediction | BaseException]:
        images = [it["image"] for it in chunk]
        names = [class_name(it["class_index"]) for it in chunk]
        try:
            preds = self.backend.predict(images, names)
            if len(preds) != len(chunk):
                raise RuntimeError(f"returned {len(preds)} predictions for {len(chunk)} images")
            return preds
        except Exception as exc:
            if len(chunk) == 1:
                return [exc]
            log.warning("backend %s failed on a batch (%s); retrying image by image",
                        self.config.backend, _one_line(exc))
            return [self._predict([it])[0] for it in chunk]

    def _attach(self, item: dict, pred: Prediction) -> None:
        model_size = item["image"].shape[:2]
        if "semantic" in self.roles:
            if pred.semantic is None:
                raise ValueError("backend returned no semantic prediction")
            item["semantic"], item["semantic_confidence"], segments = \
                semantic_with_runs(pred.semantic, item["size"])
            # int32 where positions fit: half the bytes to move to the next model stage
            item["semantic_segments"] = \
                segments.astype(np.int32) if segments.total < 1 << 31 else segments
        if "instances" in self.roles:
            if pred.instances is None:
                raise ValueError("backend returned no instance prediction")
            # the instance model is the last stage: its runs go straight to fusion
            item["instances"], item["instance_runs"] = \
                instances_with_runs(pred.instances, model_size, item["size"])

    def __call__(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        todo = [it for it in items if it["error"] is None]
        size = max(1, self.config.batch_size)
        for start in range(0, len(todo), size):
            chunk = todo[start:start + size]
            t0 = time.perf_counter()
            preds = self._predict(chunk)
            share = (time.perf_counter() - t0) / len(chunk)
            for item, pred in zip(chunk, preds):
                t1 = time.perf_counter()
                try:
                    if isinstance(pred, BaseException):
                        raise pred
                    self._attach(item, pred)
                except Exception as exc:
                    item["error"] = f"{'+'.join(self.roles)} model {self.config.backend!r} failed ({_one_line(exc)})"
                item["seconds"] += share + time.perf_counter() - t1
        if self.drop_images:
            for item in items:
                item["image"] = None
        return items


def fuse_items(
    items: list[dict[str, Any]], thresholds: Thresholds,
) -> list[dict[str, Any]]:
    """Items after the model stages -> schema rows (fusion + quality), in the same order."""
    rows = []
    for item in items:
        t0 = time.perf_counter()
        height, width = item["size"]
        if item["error"] is not None:
            rows.append(error_row(item["image_id"], item["class_index"], item["error"],
                                  height, width, item["seconds"]))
            continue
        semantic, instances = item.get("semantic"), item.get("instances")
        try:
            fused = None if instances is None else fuse(
                semantic, instances, height, width, thresholds,
                item.get("semantic_segments"), item.get("instance_runs"))
        except Exception as exc:  # e.g. a backend's RLE that does not fit the image
            rows.append(error_row(item["image_id"], item["class_index"],
                                  f"fusion failed ({_one_line(exc)})", height, width,
                                  item["seconds"] + time.perf_counter() - t0))
            continue
        seconds = item["seconds"] + time.perf_counter() - t0
        quality = image_quality(height, width, semantic, fused,
                                item.get("semantic_confidence"), seconds)
        rows.append(ok_row(
            item["image_id"], item["class_index"], height, width, semantic=semantic,
            instances=None if fused is None else fused.instances, quality=quality,
            image_bytes=item.get("image_bytes"),
        ))
    return rows
