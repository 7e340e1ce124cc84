"""From backend predictions to schema rows.

1. ``encode_semantic`` / ``encode_instances``: bring a prediction made on a (possibly
   shrunk) image back to the original resolution and encode it as COCO RLE.
2. ``fuse``: drop tiny instance masks, drop near-duplicates (greedy by score, pairwise IoU),
   and give each instance the semantic category that covers most of it.
3. ``ok_row`` / ``error_row``: the row dicts of the label schema (dataset/schema.py).

Everything after step 1 works on the run lengths of the RLEs (labeling/rle.py), so fusion
never decodes a mask: overlaps of masks are overlaps of their column-major 1-runs. The
numbers are exactly those of pycocotools: IoU = |a & b| / |a | b| (``iou``, not crowd), the
share of an instance in a semantic category = |instance & category| / |instance| (``iou``
with the category as a crowd region), covered pixels = area of the union (``merge``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataset import masks as mask_codec
from dataset.masks import Runs, resize_nearest
from dataset.schema import STATUS_ERROR, STATUS_OK
from labeling import rle
from labeling.backends.base import InstancePrediction, SemanticPrediction
from labeling.config import Thresholds


def _restore(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes of `array` (a map or a mask stack)."""
    return resize_nearest(array, size, axis=array.ndim - 2)


def label_map_entries(
    label_map: np.ndarray, scores: dict[int, float] | None = None,
) -> tuple[list[dict], rle.Segments]:
    """Label map int [H, W] (-1 unlabeled) -> (schema `semantic` entries, one per category
    present, and the map's segments, which fusion can use instead of decoding the entries)."""
    if not label_map.size:
        return [], rle.Segments(np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0)
    return segment_entries(*mask_codec.label_segments(label_map), label_map.shape, scores)


def segment_entries(
    start: np.ndarray, label: np.ndarray, shape: tuple[int, int],
    scores: dict[int, float] | None = None,
) -> tuple[list[dict], rle.Segments]:
    """label_map_entries from the map's segments (dataset.masks.label_segments)."""
    if label.min() < -1:  # every label starts a segment
        raise ValueError(f"semantic label map has ids below -1 (min {label.min()})")
    entries, index = mask_codec.segment_entries(start, label, shape, scores)
    return entries, rle.Segments(start, index, len(entries), int(np.prod(shape)))


def _handed_segments(segments: tuple[np.ndarray, np.ndarray], total: int) -> tuple[np.ndarray, np.ndarray]:
    """A backend's segments of its label map, checked: they must start at 0 and increase."""
    start, label = (np.asarray(a, dtype=np.int64).reshape(-1) for a in segments)
    if not len(start) or len(label) != len(start) or start[0] != 0 or start[-1] >= total \
            or (len(start) > 1 and np.diff(start).min() <= 0):
        raise ValueError("semantic segments handed over by the backend do not fit its label map")
    return start, label


def encode_label_map(label_map: np.ndarray, scores: dict[int, float] | None = None) -> list[dict]:
    """Label map int [H, W] (-1 unlabeled) -> schema `semantic` entries, one per category."""
    return label_map_entries(label_map, scores)[0]


def semantic_with_runs(
    pred: SemanticPrediction, size: tuple[int, int],
) -> tuple[list[dict], float | None, rle.Segments]:
    """Semantic prediction at model resolution -> (entries at `size`, mean confidence or
    None, the segments of the map at `size`). Segments and mean confidence the backend
    handed over are used where the map needs no resizing."""
    label_map = np.asarray(pred.label_map)
    if label_map.ndim != 2:
        raise ValueError(f"semantic label map must be [H, W], got shape {label_map.shape}")
    if pred.segments is not None and label_map.shape == tuple(size) and label_map.size:
        entries, segments = segment_entries(*_handed_segments(pred.segments, label_map.size),
                                            label_map.shape, pred.scores)
    else:
        entries, segments = label_map_entries(
            _restore(label_map.astype(np.int32, copy=False), size), pred.scores)
    confidence = pred.mean_confidence
    if confidence is None and pred.confidence is not None:
        labeled = label_map >= 0
        if labeled.any():
            confidence = float(np.asarray(pred.confidence)[labeled].mean())
    return entries, confidence, segments


def encode_semantic(pred: SemanticPrediction, size: tuple[int, int]) -> tuple[list[dict], float | None]:
    """Semantic prediction at model resolution -> (entries at `size`, mean confidence or None)."""
    return semantic_with_runs(pred, size)[:2]


def instances_with_runs(
    pred: InstancePrediction, model_size: tuple[int, int], size: tuple[int, int],
) -> tuple[list[dict], Runs | None]:
    """Instance prediction at `model_size` -> (instance entries (RLE at `size`), unfiltered;
    their runs where they were encoded here or the backend handed them over with its RLEs,
    else None)."""
    n, runs = len(pred), None
    if pred.masks is not None:
        masks = np.asarray(pred.masks, dtype=bool)
        if masks.shape != (n, *model_size):
            raise ValueError(f"instance masks have shape {masks.shape}, expected {(n, *model_size)}")
        masks = _restore(masks, size)
    elif pred.rles is not None and tuple(model_size) != tuple(size) and len(pred.rles):
        # re-encode at the original size
        stack = mask_codec.decode_many([e["counts"] for e in pred.rles], *model_size)
        masks = _restore(stack.transpose(2, 0, 1).astype(bool), size)
    else:
        masks = None
    if masks is not None and len(masks):
        runs = mask_codec.mask_runs(masks)
        encoded = mask_codec.encode_runs(*runs, *masks.shape[1:])
    else:
        encoded = [] if masks is not None or pred.rles is None else list(pred.rles)
        if masks is None and pred.rles is not None and pred.runs is not None:
            runs = _handed_runs(pred.runs, len(encoded))
    if len(encoded) != n:
        raise ValueError(f"instance prediction has {n} scores but {len(encoded)} masks")
    stability = np.asarray(pred.stability).tolist() if pred.stability is not None else [None] * n
    cats = np.asarray(pred.category_ids).tolist() if pred.category_ids is not None else [-1] * n
    return [
        {"counts": e["counts"].encode() if isinstance(e["counts"], str) else e["counts"],
         "bbox": [float(v) for v in e["bbox"]], "area": int(e["area"]),
         "score": float(s), "stability": None if st is None else float(st),
         "category_id": int(c), "source": pred.source}
        for e, s, st, c in zip(encoded, np.asarray(pred.scores).tolist(), stability, cats)
    ], runs


def _handed_runs(runs: Runs, n: int) -> Runs:
    """A backend's runs of its n RLEs, checked for shape (fusion checks their sums)."""
    lengths, offsets = (np.asarray(a, dtype=np.int64) for a in runs)
    if offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != len(lengths):
        raise ValueError(f"instance runs have offsets of shape {offsets.shape} for {n} RLEs")
    return lengths, offsets


def encode_instances(
    pred: InstancePrediction, model_size: tuple[int, int], size: tuple[int, int],
) -> list[dict]:
    """Instance prediction at `model_size` -> instance entries (RLE at `size`), unfiltered."""
    return instances_with_runs(pred, model_size, size)[0]


@dataclass
class Fused:
    instances: list[dict]
    dropped_tiny: int = 0
    dropped_duplicate: int = 0
    purity: list[float] = field(default_factory=list)  # share of each kept instance in its class
    covered: int = 0  # pixels inside any kept instance


@functools.lru_cache(maxsize=64)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs i < j of n masks, by i then j."""
    i, j = np.triu_indices(n, 1)
    i.flags.writeable = j.flags.writeable = False
    return i, j


def duplicates(
    intervals: rle.Intervals, areas: np.ndarray, max_iou: float, height: int,
) -> np.ndarray:
    """Masks (best first) to drop: each whose IoU with a better, kept one exceeds max_iou.

    IoU(a, b) <= min(area) / max(area) (`areas`: the stored areas, at least 1) and
    IoU(a, b) <= |box(a) & box(b)| / max(area): only pairs passing both are measured.
    """
    n = len(intervals)
    dropped = np.zeros(n, dtype=bool)
    i, j = _pairs(n)
    similar = np.minimum(areas[i], areas[j]) / np.maximum(areas[i], areas[j]) > max_iou
    i, j = i[similar], j[similar]
    if not len(i):
        return dropped
    area = intervals.area.astype(np.float64)
    box = intervals.boxes(height)
    side = np.minimum(box[i, 2:], box[j, 2:]) - np.maximum(box[i, :2], box[j, :2]) + 1
    overlap = np.prod(np.maximum(side, 0), axis=1)
    near = overlap > max_iou * np.maximum(area[i], area[j])
    i, j = i[near], j[near]
    inter = intervals.intersections(i, j).astype(np.float64)
    union = area[i] + area[j] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)
    for a, b in zip(i[iou > max_iou].tolist(), j[iou > max_iou].tolist()):  # a < b, by a
        if not dropped[a]:
            dropped[b] = True
    return dropped


def category_shares(intervals: rle.Intervals, segments: rle.Segments) -> np.ndarray:
    """float64 [N, C]: the share of each instance's pixels inside each semantic category."""
    inter = intervals.overlaps_with(segments).astype(np.float64)
    area = np.broadcast_to(intervals.area[:, None], inter.shape).astype(np.float64)
    return np.divide(inter, area, out=np.zeros_like(inter), where=inter > 0)


def fuse(
    semantic: list[dict] | None, instances: list[dict] | None, height: int, width: int,
    thresholds: Thresholds, semantic_segments: rle.Segments | None = None,
    instance_runs: Runs | None = None,
) -> Fused:
    """Filter instances (tiny, duplicate) and label them with the majority semantic class.

    Tiny: stored area below the thresholds. Duplicates: greedy, best score first, a mask
    whose IoU with a kept one exceeds `duplicate_iou` is dropped. Each kept instance gets
    the category of the semantic entry covering most of it (the first on ties), or -1 if
    that share is not above `min_category_share`. Without semantic entries (no semantic
    model) the backend's own category ids are kept. Instances come back sorted by score,
    best first. What the encoders made besides the entries (the semantic map's segments,
    the instances' runs) saves decoding the entries' counts; without it they are decoded.
    """
    if not instances:
        return Fused([])
    total = height * width
    min_area = max(thresholds.min_instance_area, thresholds.min_instance_fraction * total)
    big = [i for i, e in enumerate(instances) if e["area"] >= min_area]
    big.sort(key=lambda i: -(instances[i]["score"] or 0.0))
    if instance_runs is None:
        intervals = rle.Intervals.from_counts([instances[i]["counts"] for i in big], total)
    else:
        intervals = rle.Intervals.from_runs(*instance_runs, total).take(np.asarray(big, np.int64))
    areas = np.array([max(instances[i]["area"], 1) for i in big], dtype=np.float64)
    keep = np.flatnonzero(~duplicates(intervals, areas, thresholds.duplicate_iou, height))
    kept = [instances[big[k]] for k in keep.tolist()]
    intervals = intervals.take(keep)
    purity = []
    if semantic and kept:
        if semantic_segments is None:
            semantic_segments = rle.Segments.from_intervals(
                rle.Intervals.from_counts([e["counts"] for e in semantic], total))
        share = category_shares(intervals, semantic_segments.astype(np.int64))
        best = share.argmax(1)
        top = share[np.arange(len(kept)), best]
        for inst, b, p in zip(kept, best.tolist(), top.tolist()):
            inst["category_id"] = int(semantic[b]["category_id"]) if p > thresholds.min_category_share else -1
        purity = top.tolist()
    return Fused(kept, len(instances) - len(big), len(big) - len(kept), purity, intervals.union_area())


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
