"""Mask arithmetic that stays on the accelerator: stability, boxes, run-length encoding.

Only the run boundaries of the final masks travel to the host, where pycocotools turns
them into COCO compressed RLE. Conventions follow segment-anything's AMG so the fast path
can be checked against it: boxes are XYXY with inclusive max coordinates, [0, 0, 0, 0] for
an empty mask; RLE runs are over the column-major (Fortran) flattening, first run = zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from dataset.masks import rle_areas


def stability_scores(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks cut at threshold + offset and threshold - offset. logits: [N, H, W]."""
    inner = (logits > threshold + offset).sum(dim=(-2, -1), dtype=torch.int32)
    outer = (logits > threshold - offset).sum(dim=(-2, -1), dtype=torch.int32)
    return inner / outer  # the inner mask lies inside the outer one


def _first_true(flags: torch.Tensor) -> torch.Tensor:
    """Index of the first True along the last axis (0 where there is none). flags: [N, L]."""
    return flags.to(torch.uint8).argmax(dim=-1)


def mask_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """Boolean [N, H, W] -> int64 [N, 4] boxes (x0, y0, x1, y1), max inclusive."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, dtype=torch.int64, device=masks.device)
    rows = masks.any(dim=-1)  # [N, H]
    cols = masks.any(dim=-2)  # [N, W]
    y0 = _first_true(rows)
    y1 = (h - 1) - _first_true(rows.flip(-1))
    x0 = _first_true(cols)
    x1 = (w - 1) - _first_true(cols.flip(-1))
    boxes = torch.stack([x0, y0, x1, y1], dim=-1).to(torch.int64)
    return boxes * rows.any(dim=-1, keepdim=True)  # empty masks -> zeros


def run_lengths(masks: torch.Tensor) -> list[np.ndarray]:
    """Boolean [N, H, W] -> per mask, uint32 COCO uncompressed counts (column-major).

    The change points are found on the device; one transfer brings back their positions,
    the number per mask and each mask's first pixel. Counts start with a run of zeros.
    """
    n, h, w = masks.shape
    if n == 0:
        return []
    flat = masks.transpose(1, 2).reshape(n, h * w)
    changes = flat[:, 1:] != flat[:, :-1]  # [N, HW - 1]
    where = changes.nonzero()  # [K, 2], sorted by mask then position
    per_mask = torch.bincount(where[:, 0], minlength=n)
    positions = (where[:, 1] + 1).to(torch.int64)  # index where a new run starts
    header = torch.stack([per_mask, flat[:, 0].to(torch.int64)], dim=1).reshape(-1)
    host = torch.cat([header, positions]).cpu().numpy()
    per_mask, first = host[: 2 * n : 2], host[1 : 2 * n : 2]
    starts = np.split(host[2 * n :], np.cumsum(per_mask)[:-1])
    total = h * w
    out = []
    for s, lead in zip(starts, first):
        bounds = np.concatenate([[0], s, [total]])
        counts = np.diff(bounds)
        if lead:
            counts = np.concatenate([[0], counts])
        out.append(counts.astype(np.uint32))
    return out


def encode_rles(masks: torch.Tensor) -> list[dict[str, Any]]:
    """Boolean [N, H, W] on any device -> records like dataset.masks.encode_many."""
    n, h, w = masks.shape
    if n == 0:
        return []
    uncompressed = [{"size": [h, w], "counts": c} for c in run_lengths(masks)]
    rles = mask_utils.frPyObjects(uncompressed, h, w)
    areas = rle_areas(rles)
    boxes = mask_utils.toBbox(rles)
    return [{"counts": r["counts"], "area": int(a), "bbox": [float(v) for v in b]}
            for r, a, b in zip(rles, areas, boxes)]
