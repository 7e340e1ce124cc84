"""From backend predictions to schema rows.

1. ``encode_semantic`` / ``encode_instances``: bring a prediction made on a (possibly
   shrunk) image back to the original resolution and encode it as COCO RLE.
2. ``fuse``: drop tiny instance masks, drop near-duplicates (greedy by score, pairwise IoU),
   and give each instance the semantic category that covers most of it.
3. ``ok_row`` / ``error_row``: the row dicts of the label schema (dataset/schema.py).

Everything after step 1 works on RLEs through pycocotools, so fusion never decodes a mask:
the share of an instance inside each semantic category comes from one ``iou`` call with the
semantic masks marked as crowd regions, where pycocotools divides by the instance's area.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from dataset.masks import nearest_indices
from dataset.schema import STATUS_ERROR, STATUS_OK
from labeling import rle
from labeling.backends.base import InstancePrediction, SemanticPrediction
from labeling.config import Thresholds


def _restore(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes of `array` to `size` (h, w)."""
    h, w = array.shape[-2:]
    if (h, w) == tuple(size):
        return array
    rows, cols = nearest_indices(h, size[0]), nearest_indices(w, size[1])
    return array[..., rows[:, None], cols[None, :]]


def encode_label_map(label_map: np.ndarray, scores: dict[int, float] | None = None) -> list[dict]:
    """Label map int [H, W] (-1 unlabeled) -> schema `semantic` entries, one per category."""
    flat = label_map.ravel()
    if flat.size and flat.min() < -1:
        raise ValueError(f"semantic label map has ids below -1 (min {flat.min()})")
    present = np.flatnonzero(np.bincount(flat + 1)) - 1  # bincount beats np.unique here
    categories = [int(c) for c in present if c >= 0]
    if not categories:
        return []
    encoded = rle.records(rle.label_runs(label_map, categories), *label_map.shape)
    scores = scores or {}
    return [
        {"category_id": c, "counts": e["counts"], "area": e["area"],
         "score": None if scores.get(c) is None else float(scores[c])}
        for c, e in zip(categories, encoded)
    ]


def encode_semantic(pred: SemanticPrediction, size: tuple[int, int]) -> tuple[list[dict], float | None]:
    """Semantic prediction at model resolution -> (entries at `size`, mean confidence or None)."""
    label_map = np.asarray(pred.label_map)
    if label_map.ndim != 2:
        raise ValueError(f"semantic label map must be [H, W], got shape {label_map.shape}")
    entries = encode_label_map(_restore(label_map.astype(np.int32, copy=False), size), pred.scores)
    confidence = None
    if pred.confidence is not None:
        labeled = label_map >= 0
        if labeled.any():
            confidence = float(np.asarray(pred.confidence)[labeled].mean())
    return entries, confidence


def encode_instances(
    pred: InstancePrediction, model_size: tuple[int, int], size: tuple[int, int],
) -> list[dict]:
    """Instance prediction at `model_size` -> instance entries (RLE at `size`), unfiltered."""
    n = len(pred)
    if pred.masks is not None:
        masks = np.asarray(pred.masks, dtype=bool)
        if masks.shape != (n, *model_size):
            raise ValueError(f"instance masks have shape {masks.shape}, expected {(n, *model_size)}")
        encoded = rle.encode_masks(_restore(masks, size))
    elif pred.rles is not None:
        encoded = list(pred.rles)
        if tuple(model_size) != tuple(size) and encoded:  # re-encode at the original size
            stack = mask_utils.decode([{"size": list(model_size), "counts": e["counts"]} for e in encoded])
            encoded = rle.encode_masks(_restore(stack.transpose(2, 0, 1).astype(bool), size))
    else:
        encoded = []
    if len(encoded) != n:
        raise ValueError(f"instance prediction has {n} scores but {len(encoded)} masks")
    stability = pred.stability if pred.stability is not None else [None] * n
    cats = pred.category_ids if pred.category_ids is not None else [-1] * n
    return [
        {"counts": e["counts"].encode() if isinstance(e["counts"], str) else e["counts"],
         "bbox": [float(v) for v in e["bbox"]], "area": int(e["area"]),
         "score": float(s), "stability": None if st is None else float(st),
         "category_id": int(c), "source": pred.source}
        for e, s, st, c in zip(encoded, pred.scores, stability, cats)
    ]


@dataclass
class Fused:
    instances: list[dict]
    dropped_tiny: int = 0
    dropped_duplicate: int = 0
    purity: list[float] = field(default_factory=list)  # share of each kept instance in its class
    covered: int = 0  # pixels inside any kept instance


def _rles(entries: list[dict], height: int, width: int) -> list[dict]:
    return [{"size": [height, width], "counts": e["counts"]} for e in entries]


def dedupe(instances: list[dict], height: int, width: int, max_iou: float) -> list[dict]:
    """Keep instances best score first, dropping any whose IoU with a kept one > max_iou."""
    ordered = sorted(instances, key=lambda e: -(e["score"] or 0.0))
    areas = np.array([max(e["area"], 1) for e in ordered], dtype=np.float64)
    rles = _rles(ordered, height, width)
    dropped = np.zeros(len(ordered), dtype=bool)
    for i in range(len(ordered)):
        if dropped[i]:
            continue
        later = np.arange(i + 1, len(ordered))
        later = later[~dropped[later]]
        # IoU(a, b) <= min(area) / max(area): only masks of similar area can be duplicates
        later = later[np.minimum(areas[later], areas[i]) / np.maximum(areas[later], areas[i])
                      > max_iou]
        if len(later):
            iou = np.asarray(mask_utils.iou([rles[j] for j in later], [rles[i]], [0])).ravel()
            dropped[later[iou > max_iou]] = True
    return [e for e, d in zip(ordered, dropped) if not d]


def assign_categories(
    instances: list[dict], semantic: list[dict], height: int, width: int, min_share: float,
) -> list[float]:
    """Set each instance's category_id to its majority semantic class; returns the shares."""
    if not instances or not semantic:
        return []
    # crowd IoU = |instance & region| / |instance|: the share of the instance in each class
    share = np.asarray(mask_utils.iou(
        _rles(instances, height, width), _rles(semantic, height, width), [1] * len(semantic)
    )).reshape(len(instances), len(semantic))
    best = share.argmax(1)
    purity = share[np.arange(len(instances)), best]
    cats = [e["category_id"] for e in semantic]
    for inst, b, p in zip(instances, best, purity):
        inst["category_id"] = int(cats[b]) if p > min_share else -1
    return [float(p) for p in purity]


def union_area(entries: list[dict], height: int, width: int) -> int:
    """Pixels covered by any of the RLE entries (one pycocotools merge)."""
    if len(entries) < 2:
        return int(entries[0]["area"]) if entries else 0
    return int(mask_utils.area(mask_utils.merge(_rles(entries, height, width), intersect=False)))


def fuse(
    semantic: list[dict] | None, instances: list[dict] | None, height: int, width: int,
    thresholds: Thresholds,
) -> Fused:
    """Filter instances (tiny, duplicate) and label them with the majority semantic class.

    Without semantic entries (no semantic model) the backend's own category ids are kept.
    Instances come back sorted by score, best first.
    """
    if not instances:
        return Fused([])
    min_area = max(thresholds.min_instance_area, thresholds.min_instance_fraction * height * width)
    big = [e for e in instances if e["area"] >= min_area]
    kept = dedupe(big, height, width, thresholds.duplicate_iou)
    purity = []
    if semantic is not None:
        purity = assign_categories(kept, semantic, height, width, thresholds.min_category_share)
    return Fused(kept, len(instances) - len(big), len(big) - len(kept), purity,
                 union_area(kept, height, width))


def ok_row(
    image_id: str, class_index: int, height: int, width: int, *,
    semantic: list[dict] | None, instances: list[dict] | None, quality: dict[str, Any],
    image_bytes: bytes | None = None,
) -> dict[str, Any]:
    """A `status="ok"` row. None for semantic/instances means that model was not run."""
    return {
        "image_id": image_id, "class_index": int(class_index), "height": int(height),
        "width": int(width), "status": STATUS_OK, "error": None, "semantic": semantic,
        "instances": instances, "quality": quality, "image_bytes": image_bytes,
    }


def error_row(
    image_id: str, class_index: int, reason: str, height: int = 0, width: int = 0,
    seconds: float | None = None,
) -> dict[str, Any]:
    """A `status="error"` row: no masks, a one-line reason; size 0 x 0 when never decoded."""
    reason = " ".join(str(reason).split()) or "unknown error"
    return {
        "image_id": image_id, "class_index": int(class_index), "height": int(height),
        "width": int(width), "status": STATUS_ERROR, "error": reason[:500], "semantic": None,
        "instances": None, "quality": {"seconds": seconds}, "image_bytes": None,
    }
