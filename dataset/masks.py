"""Mask <-> COCO RLE, and the decoded label maps a trainer wants.

Encoding and decoding go through pycocotools, so what this module writes is exactly
what ``pycocotools.mask.decode({"size": [h, w], "counts": counts})`` reads.

Decoded maps:
- semantic label map: int32 [H, W], the category id of each pixel, -1 where unlabeled.
  Semantic masks are disjoint, so there is no overlap to resolve.
- instance-id map: int32 [H, W], 0 where no instance, otherwise 1 + the instance's index
  in the row's ``instances`` list. Where instances overlap, the smaller one (by stored
  area) wins, so small objects lying on larger ones stay visible. Ties go to the earlier one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict[str, Any]:
    """One boolean [H, W] mask -> {"counts": bytes, "area": int, "bbox": [x, y, w, h]}."""
    return encode_many(mask[None])[0]


def encode_many(masks: np.ndarray) -> list[dict[str, Any]]:
    """Boolean [N, H, W] masks -> one {"counts", "area", "bbox"} dict each (one C call)."""
    if masks.ndim != 3:
        raise ValueError(f"expected masks of shape [N, H, W], got {masks.shape}")
    if len(masks) == 0:
        return []
    fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8, copy=False))
    rles = mask_utils.encode(fortran)
    areas = mask_utils.area(rles)
    boxes = mask_utils.toBbox(rles)
    return [
        {"counts": r["counts"], "area": int(a), "bbox": [float(v) for v in b]}
        for r, a, b in zip(rles, areas, boxes)
    ]


def decode(counts: bytes | str, height: int, width: int) -> np.ndarray:
    """COCO compressed RLE -> boolean [H, W]."""
    return mask_utils.decode({"size": [int(height), int(width)], "counts": counts}).astype(bool)


def decode_many(counts: Sequence[bytes | str], height: int, width: int) -> np.ndarray:
    """Several RLEs of one image -> uint8 [H, W, N] (pycocotools decodes them in one call)."""
    size = [int(height), int(width)]
    return mask_utils.decode([{"size": size, "counts": c} for c in counts])


def semantic_entries(
    label_map: np.ndarray, scores: dict[int, float] | None = None
) -> list[dict[str, Any]]:
    """Label map int [H, W] (-1 unlabeled) -> schema `semantic` entries, one per category."""
    categories = [int(c) for c in np.unique(label_map) if c >= 0]
    if not categories:
        return []
    masks = np.stack([label_map == c for c in categories])
    entries = []
    for cat, enc in zip(categories, encode_many(masks)):
        score = None if scores is None else scores.get(cat)
        entries.append(
            {"category_id": cat, "counts": enc["counts"], "area": enc["area"],
             "score": None if score is None else float(score)}
        )
    return entries


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source rows (or columns) sampled by nearest-neighbour resizing from src to dst."""
    return np.minimum(((np.arange(dst) + 0.5) * src / dst).astype(np.int64), src - 1)


def _resize_nearest(label: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or tuple(size) == label.shape[:2]:
        return label
    rows = nearest_indices(label.shape[0], size[0])
    cols = nearest_indices(label.shape[1], size[1])
    return label[rows[:, None], cols[None, :]]


def semantic_map(
    entries: Sequence[dict[str, Any]], height: int, width: int,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Schema `semantic` entries -> int32 label map at (height, width) or at `size` (nearest)."""
    if not entries:
        shape = (height, width) if size is None else tuple(size)
        return np.full(shape, -1, dtype=np.int32)
    stack = _resize_nearest(decode_many([e["counts"] for e in entries], height, width), size)
    cats = np.array([e["category_id"] for e in entries], dtype=np.int32)
    return np.where(stack.any(-1), cats[stack.argmax(-1)], -1).astype(np.int32)


def instance_map(
    entries: Sequence[dict[str, Any]], height: int, width: int,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Schema `instances` entries -> int32 id map (0 none, i+1 for entry i; smaller wins)."""
    if not entries:
        shape = (height, width) if size is None else tuple(size)
        return np.zeros(shape, dtype=np.int32)
    order = np.argsort([e["area"] for e in entries], kind="stable")  # smallest first
    stack = decode_many([entries[i]["counts"] for i in order], height, width)
    stack = _resize_nearest(stack, size)
    ids = order.astype(np.int32) + 1
    return np.where(stack.any(-1), ids[stack.argmax(-1)], 0).astype(np.int32)
