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

from dataset.masks import encode_runs


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


def _change_points(masks: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean [N, H, W] -> (positions where a new run starts, sorted by mask then position;
    how many per mask; each mask's first pixel), found on the device, one transfer back."""
    n, h, w = masks.shape
    flat = masks.transpose(1, 2).reshape(n, h * w)
    changes = flat[:, 1:] != flat[:, :-1]  # [N, HW - 1]
    where = changes.nonzero()  # [K, 2], sorted by mask then position
    per_mask = torch.bincount(where[:, 0], minlength=n)
    positions = (where[:, 1] + 1).to(torch.int64)  # index where a new run starts
    header = torch.stack([per_mask, flat[:, 0].to(torch.int64)], dim=1).reshape(-1)
    host = torch.cat([header, positions]).cpu().numpy()
    return host[2 * n:], host[: 2 * n : 2], host[1 : 2 * n : 2]


def label_segments(label: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Integer label map [H, W] on any device -> (start, label): its column-major runs of one
    label as dataset.masks.label_segments returns them, found on the device, one transfer."""
    flat = label.t().reshape(-1)
    start = (flat[1:] != flat[:-1]).nonzero().reshape(-1) + 1
    start = torch.cat([start.new_zeros(1), start])
    host = torch.stack([start, flat[start].to(torch.int64)]).cpu().numpy()
    return host[0], host[1]


def mask_runs(masks: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Boolean [N >= 1, H, W] -> COCO uncompressed counts of all masks (column-major, each
    starting with a run of zeros) as one int64 array plus int64 offsets [N + 1]: mask i owns
    runs[offsets[i]:offsets[i + 1]] (dataset.masks.Runs)."""
    n, h, w = masks.shape
    positions, per_mask, lead = _change_points(masks)
    # mask i's edges: 0, [0 again if it starts with a 1: an empty first 0-run], its run
    # starts, h * w; its runs are the differences of consecutive edges
    sizes = per_mask + lead + 2
    block = np.zeros(n + 1, np.int64)
    np.cumsum(sizes, out=block[1:])
    edges = np.zeros(block[-1], np.int64)  # every mask's first edge (and a lead's) is 0
    edges[block[1:] - 1] = h * w
    before = np.cumsum(per_mask) - per_mask  # positions of the masks before mask i
    shift = np.repeat(block[:-1] + 1 + lead - before, per_mask)
    edges[np.arange(len(positions)) + shift] = positions
    runs = np.delete(np.diff(edges), block[1:-1] - 1)  # no run across two masks
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(sizes - 1, out=offsets[1:])
    return runs, offsets


def run_lengths(masks: torch.Tensor) -> list[np.ndarray]:
    """Boolean [N, H, W] -> per mask, uint32 COCO uncompressed counts (column-major).

    The change points are found on the device; one transfer brings back their positions,
    the number per mask and each mask's first pixel. Counts start with a run of zeros.
    """
    if len(masks) == 0:
        return []
    runs, offsets = mask_runs(masks)
    return np.split(runs.astype(np.uint32), offsets[1:-1])


def encode_rles_with_runs(
    masks: torch.Tensor,
) -> tuple[list[dict[str, Any]], tuple[np.ndarray, np.ndarray] | None]:
    """Boolean [N, H, W] on any device -> (records like dataset.masks.encode_many, their
    runs as mask_runs returns them; None for no masks)."""
    n, h, w = masks.shape
    if n == 0:
        return [], None
    runs, offsets = mask_runs(masks)
    return encode_runs(runs, offsets, h, w), (runs, offsets)


def encode_rles(masks: torch.Tensor) -> list[dict[str, Any]]:
    """Boolean [N, H, W] on any device -> records like dataset.masks.encode_many."""
    return encode_rles_with_runs(masks)[0]
