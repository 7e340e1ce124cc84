"""Mask <-> COCO RLE, and the decoded label maps a trainer wants.

What this module writes is exactly what ``pycocotools.mask.decode({"size": [h, w],
"counts": counts})`` reads: the same bytes, areas and boxes as ``pycocotools.mask.encode``
/ ``area`` / ``toBbox`` (tests/dataset/test_mask_codec.py checks this), only faster:

- COCO counts run down the columns (Fortran order) while numpy masks are stored row by
  row. pycocotools.mask.encode needs a transposed uint8 copy of every mask; here the run
  boundaries are found on the row-major stack (one comparison of vertical neighbours for
  all masks) and sorted into column order (``mask_runs``); a label map is scanned once for
  all its categories (``label_segments``, ``segment_runs``).
- "Runs" are the uncompressed counts: alternating 0-run / 1-run lengths starting with a
  (possibly empty) 0-run and summing to H * W. Several masks' runs travel as one flat int64
  array plus offsets [N + 1] (mask i owns ``runs[offsets[i]:offsets[i + 1]]``).
  pycocotools compresses them (``coco_rles``: views of one uint32 array, no Python lists)
  and ``counts_runs`` reads compressed strings back into runs with array operations
  (5-bit groups, chars 48..111, bit 0x20 = more groups follow, bit 0x10 of the last group
  = sign, from the third value on the difference to the value two places before).

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

Runs = tuple[np.ndarray, np.ndarray]  # (int64 run lengths of all masks, int64 offsets [N + 1])


# ---- runs: finding them in masks and label maps ----

def _column_order(mask: np.ndarray, col: np.ndarray, n: int, w: int) -> np.ndarray:
    """Stable order by (mask, column), with radix sorts of 16-bit keys where they fit."""
    if n * w <= 1 << 16:
        return np.argsort((mask * w + col).astype(np.uint16), kind="stable")
    if max(n, w) <= 1 << 16:
        by_col = np.argsort(col.astype(np.uint16), kind="stable")
        return by_col[np.argsort(mask[by_col].astype(np.uint16), kind="stable")]
    return np.lexsort((col, mask))


def _runs_from_sorted(mask: np.ndarray, pos: np.ndarray, n: int, total: int) -> Runs:
    """Where runs start (column-major positions > 0 except an empty first 0-run, < total),
    sorted by mask, then position -> runs, offsets of the n masks."""
    per_mask = np.bincount(mask, minlength=n)
    block = np.zeros(n + 1, np.int64)  # mask i's edges: 0, its run starts..., total
    np.cumsum(per_mask + 2, out=block[1:])
    edges = np.empty(block[-1], np.int64)
    edges[block[:-1]] = 0
    edges[block[1:] - 1] = total
    edges[np.arange(len(pos)) + 2 * mask + 1] = pos
    runs = np.delete(np.diff(edges), block[1:-1] - 1)  # no run across two masks
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(per_mask + 1, out=offsets[1:])
    return runs, offsets


def _changes(flat: np.ndarray, shift: int) -> np.ndarray:
    """Indices i with flat[i] != flat[i + shift] of a bool array, where few differ: the
    comparison is scanned 8 bytes at a time and only non-zero words are looked into."""
    m = flat.size - shift
    diff = np.empty(-(-m // 8) * 8, bool)
    diff[m:] = False
    np.not_equal(flat[shift:], flat[:m], out=diff[:m])
    words = np.flatnonzero(diff.view(np.uint64) != 0)
    hits = np.flatnonzero(diff.reshape(-1, 8)[words])
    return words[hits >> 3] * 8 + (hits & 7)


def mask_runs(masks: np.ndarray) -> Runs:
    """Boolean [N, H, W] (row-major, N >= 1, H, W >= 1) -> the runs of each mask."""
    masks = np.ascontiguousarray(masks, dtype=bool)
    n, h, w = masks.shape
    k = np.flatnonzero(masks[:, 0, 0])  # a mask starting with 1 has an empty first 0-run
    parts = [(k, 0, 0)]
    if w > 1:  # from the bottom of column x - 1 to the top of column x
        k, x = np.divmod(np.flatnonzero(masks[:, 0, 1:] != masks[:, -1, :-1]), w - 1)
        parts.append((k, x + 1, (x + 1) * h))
    if h > 1:  # vertical neighbours: flat[i] = (k, y, x) vs flat[i + w] = (k, y + 1, x)
        k, rest = np.divmod(_changes(masks.reshape(-1), w), h * w)
        inside = rest < (h - 1) * w  # pairs across two masks are no change
        y, x = np.divmod(rest[inside], w)
        parts.append((k[inside], x, x * h + y + 1))
    mask, col, pos = (np.concatenate([np.broadcast_to(p[i], p[0].shape) for p in parts])
                      .astype(np.int64, copy=False) for i in range(3))
    order = _column_order(mask, col, n, w)  # found row by row: sort into column order
    return _runs_from_sorted(mask[order], pos[order], n, h * w)


def _group_segments(
    label: np.ndarray, categories: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels of segments (in position order) -> (categories, the segments of each wanted
    category grouped by category in position order, the category index of each)."""
    if categories is None and len(label) and label.min() >= -1 and label.max() < (1 << 16) - 1:
        seg = np.argsort((label + 1).astype(np.uint16), kind="stable")  # a radix sort
        seg = seg[label[seg] >= 0]
        first = np.diff(label[seg], prepend=-1) != 0  # the first segment of each category
        return label[seg][first], seg, np.cumsum(first) - 1
    if categories is None:
        categories = np.unique(label[label >= 0])
    cats = np.asarray(categories, np.int64).reshape(-1)
    if not len(cats):
        return cats, np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(cats, kind="stable")
    at = order[np.minimum(np.searchsorted(cats, label, sorter=order), len(cats) - 1)]
    seg = np.flatnonzero(cats[at] == label)
    seg = seg[np.argsort(at[seg].astype(np.uint16) if len(cats) <= 1 << 16 else at[seg], kind="stable")]
    return cats, seg, at[seg]


def label_segments(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label map int [H, W] -> (start, label): its column-major runs of one label; run i
    covers positions start[i] up to start[i + 1] (the last one up to H * W)."""
    h, w = label_map.shape
    top = np.flatnonzero(label_map[0, 1:] != label_map[-1, :-1]) + 1  # differs from the
    y, x = np.divmod(np.flatnonzero(label_map[1:] != label_map[:-1]), w)  # pixel before
    col = np.concatenate([top, x])
    pos = np.concatenate([top * h, x * h + y + 1])
    # found row by row; a stable sort by column puts them in column-major order
    order = np.argsort(col.astype(np.uint16) if w <= 1 << 16 else col, kind="stable")
    start = np.concatenate(([0], pos[order]))
    x, y = np.divmod(start, h)
    return start, label_map[y, x].astype(np.int64)


def segment_runs(
    start: np.ndarray, label: np.ndarray, total: int, categories: Sequence[int] | None = None,
) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """label_segments' output -> (categories, runs, offsets) of `label == c` for each
    category c (default: every id >= 0 present, sorted), and the index in categories of
    every segment's label (-1 for the others)."""
    cats, seg, key = _group_segments(label, categories)
    index = np.full(len(label), -1, np.int64)
    index[seg] = key
    if not len(cats):
        return [], np.zeros(0, np.int64), np.zeros(1, np.int64), index
    if not len(seg):  # none of the categories is present: one 0-run each
        return cats.tolist(), np.full(len(cats), total, np.int64), np.arange(len(cats) + 1), index
    stop = np.empty_like(start)
    stop[:-1], stop[-1] = start[1:], total
    first_pos, last_pos = start[seg], stop[seg]
    # a category's runs: 0 -> its first segment's start -> its stop -> the next start ...
    edges = np.empty(2 * len(seg), np.int64)
    edges[0::2], edges[1::2] = first_pos, last_pos
    runs = np.diff(edges, prepend=0)
    count = np.bincount(key, minlength=len(cats))
    end = np.cumsum(count)  # one past each category's last segment
    head = (end - count)[count > 0]
    runs[2 * head] = first_pos[head]  # each category's first 0-run counts from position 0
    # and its last 0-run up to the end, if not empty (all of it for an absent category)
    tail = total - np.where(count > 0, last_pos[np.maximum(end - 1, 0)], 0)
    more = tail > 0
    runs = np.insert(runs, 2 * end[more], tail[more])
    offsets = np.zeros(len(cats) + 1, np.int64)
    np.cumsum(2 * count + more, out=offsets[1:])
    return cats.tolist(), runs, offsets, index


def label_runs(
    label_map: np.ndarray, categories: Sequence[int] | None = None,
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Label map int [H, W] -> (categories, runs, offsets): the runs of `label_map == c` for
    each category, from one scan. Categories default to every id >= 0 present, sorted."""
    return segment_runs(*label_segments(label_map), label_map.size, categories)[:3]


# ---- runs <-> COCO records ----

def run_index(offsets: np.ndarray) -> np.ndarray:
    """For a flat runs array: each run's index inside its own mask."""
    return np.arange(offsets[-1]) - np.repeat(offsets[:-1], np.diff(offsets))


def coco_rles(runs: np.ndarray, offsets: np.ndarray, height: int, width: int) -> list[dict]:
    """Runs, offsets -> pycocotools RLE dicts ({"size", "counts": bytes}): pycocotools
    compresses the counts, handed over as views of one uint32 array (no Python lists)."""
    if len(offsets) < 2:
        return []
    size = [int(height), int(width)]
    parts = np.split(runs.astype(np.uint32), offsets[1:-1])
    return mask_utils.frPyObjects([{"size": size, "counts": p} for p in parts], *size)


def encode_runs(runs: np.ndarray, offsets: np.ndarray, height: int, width: int) -> list[dict[str, Any]]:
    """Runs, offsets -> one {"counts": bytes, "area": int, "bbox": [x, y, w, h]} per mask."""
    rles = coco_rles(runs, offsets, height, width)
    if not rles:
        return []
    return [{"counts": r["counts"], "area": a, "bbox": b} for r, a, b in
            zip(rles, rle_areas(rles).tolist(), mask_utils.toBbox(rles).tolist())]


def _chain_sums(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Value m >= 3 of each string was stored as the difference to value m - 2: running sums
    along the two interleaved chains (even and odd places), restarting at places 0, 1, 2
    of every string. The even chain then the odd one are laid end to end and summed in one
    pass, each restart taking off what was gathered since the restart before it."""
    k = len(x)
    if not k:
        return x
    even = (k + 1) >> 1
    chains = np.concatenate((x[0::2], x[1::2]))
    heads = (offsets[:-1, None] + np.arange(3)).ravel()
    heads = heads[heads < np.repeat(offsets[1:], 3)]
    restart = np.sort((heads & 1) * even + (heads >> 1))  # places in `chains`; 0 is one
    total = np.cumsum(chains)
    gathered = total[restart - 1]
    gathered[0] = 0
    chains[restart] -= np.diff(gathered, prepend=0)
    np.cumsum(chains, out=chains)
    runs = np.empty(k, np.int64)
    runs[0::2], runs[1::2] = chains[:even], chains[even:]
    return runs


def _counts_values(counts: Sequence[bytes | str]) -> tuple[np.ndarray, np.ndarray]:
    """COCO compressed counts strings -> their values (differences not undone), offsets.
    A value is 5-bit groups, least significant first: it ends at the first character
    without bit 0x20 (after subtracting 48), whose bit 0x10 is the sign. Read from its
    top group down, one pass per group count (most values have one or two groups)."""
    data = [c if isinstance(c, bytes) else c.encode() if isinstance(c, str) else bytes(c)
            for c in counts]
    digits = np.frombuffer(b"".join(data), np.uint8) - np.uint8(48)  # '0'..'o' -> 0..63
    if digits.size and digits.max() > 63:
        raise ValueError("RLE string has a character outside '0'..'o'")
    string_end = np.fromiter(map(len, data), np.int64, len(data)).cumsum()
    top = digits < 0x20  # the last (top) group of a value
    if not top[string_end[string_end > 0] - 1].all():
        raise ValueError("RLE string ends inside a value")
    last = np.flatnonzero(top)
    groups = np.diff(last, prepend=-1)
    if groups.size and groups.max() > 12:
        raise ValueError("RLE string has a value too large")
    x = digits[last].astype(np.int64)
    x -= (x & 0x10) << 1  # the top group carries the sign
    more, k = np.flatnonzero(groups > 1), 1
    while more.size:  # values with more than k groups take the group k places down
        x[more] = (x[more] << 5) | (digits[last[more] - k] & 0x1F)
        k += 1
        more = more[groups[more] > k]
    offsets = np.zeros(len(data) + 1, np.int64)
    offsets[1:] = np.searchsorted(last, string_end)
    return x, offsets


def counts_runs(counts: Sequence[bytes | str]) -> Runs:
    """COCO compressed counts strings -> runs, offsets (the inverse of coco_rles).
    Raises ValueError on a malformed string or a negative run."""
    x, offsets = _counts_values(counts)
    runs = _chain_sums(x, offsets)
    if runs.size and runs.min() < 0:
        raise ValueError("RLE has a negative run length")
    return runs, offsets


# ---- the public helpers on masks and schema entries ----

def encode(mask: np.ndarray) -> dict[str, Any]:
    """One boolean [H, W] mask -> {"counts": bytes, "area": int, "bbox": [x, y, w, h]}."""
    return encode_many(mask[None])[0]


# pycocotools 2.0.x builds area()'s result with np.array((n,), dtype=np.uint8), which
# numpy 2 refuses for n > 255 RLEs ("Python integer 300 out of bounds for uint8").
_AREA_CHUNK = 255


def rle_areas(rles: Sequence[dict[str, Any]]) -> np.ndarray:
    """pycocotools.mask.area for any number of RLEs (uint32 [N])."""
    if not rles:
        return np.zeros(0, dtype=np.uint32)
    rles = list(rles)
    return np.concatenate([mask_utils.area(rles[i:i + _AREA_CHUNK])
                           for i in range(0, len(rles), _AREA_CHUNK)])


def encode_many(masks: np.ndarray) -> list[dict[str, Any]]:
    """Boolean [N, H, W] masks -> one {"counts", "area", "bbox"} dict each."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected masks of shape [N, H, W], got {masks.shape}")
    if len(masks) == 0:
        return []
    if 0 in masks.shape:
        raise ValueError(f"masks have an empty side: {masks.shape}")
    return encode_runs(*mask_runs(masks), *masks.shape[1:])


def decode(counts: bytes | str, height: int, width: int) -> np.ndarray:
    """COCO compressed RLE -> boolean [H, W]."""
    return mask_utils.decode({"size": [int(height), int(width)], "counts": counts}).astype(bool)


def decode_many(counts: Sequence[bytes | str], height: int, width: int) -> np.ndarray:
    """Several RLEs of one image -> uint8 [H, W, N] (pycocotools decodes them in one call)."""
    size = [int(height), int(width)]
    return mask_utils.decode([{"size": size, "counts": c} for c in counts])


def segment_entries(
    start: np.ndarray, label: np.ndarray, shape: tuple[int, int],
    scores: dict[int, float] | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """A label map's segments (``label_segments``) -> (schema `semantic` entries, one per
    category id >= 0 present, sorted; the index in them of each segment's label, -1 for
    the others)."""
    categories, runs, offsets, index = segment_runs(start, label, int(shape[0]) * int(shape[1]))
    rles = coco_rles(runs, offsets, *shape)
    scores = scores or {}
    entries = [
        {"category_id": cat, "counts": rle["counts"], "area": area,
         "score": None if scores.get(cat) is None else float(scores[cat])}
        for cat, rle, area in zip(categories, rles, rle_areas(rles).tolist())
    ]
    return entries, index


def semantic_entries(
    label_map: np.ndarray, scores: dict[int, float] | None = None
) -> list[dict[str, Any]]:
    """Label map int [H, W] (-1 unlabeled) -> schema `semantic` entries, one per category."""
    label_map = np.asarray(label_map)
    if label_map.size == 0:
        return []
    return segment_entries(*label_segments(label_map), label_map.shape, scores)[0]


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source rows (or columns) sampled by nearest-neighbour resizing from src to dst."""
    return np.minimum(((np.arange(dst) + 0.5) * src / dst).astype(np.int64), src - 1)


def resize_nearest(array: np.ndarray, size: tuple[int, int] | None, axis: int = 0) -> np.ndarray:
    """Nearest-neighbour resize of axes `axis` and `axis + 1` (H, W) of `array` to `size`
    (h, w); `array` itself when the size is None or already right."""
    h, w = array.shape[axis:axis + 2]
    if size is None or (h, w) == tuple(size):
        return array
    rows, cols = nearest_indices(h, size[0]), nearest_indices(w, size[1])
    return array[(slice(None),) * axis + (rows[:, None], cols[None, :])]


def _first_cover(
    counts: Sequence[bytes | str], values: np.ndarray, fill: int, height: int, width: int,
    size: tuple[int, int] | None,
) -> np.ndarray:
    """int32 map at (height, width) or `size`: each pixel gets values[k] of the first RLE k
    covering it, `fill` where none does."""
    if not len(counts):
        return np.full((height, width) if size is None else tuple(size), fill, dtype=np.int32)
    stack = resize_nearest(decode_many(counts, height, width), size)
    return np.where(stack.any(-1), values[stack.argmax(-1)], fill).astype(np.int32)


def semantic_map(
    entries: Sequence[dict[str, Any]], height: int, width: int,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Schema `semantic` entries -> int32 label map at (height, width) or at `size` (nearest)."""
    cats = np.array([e["category_id"] for e in entries], dtype=np.int32)
    return _first_cover([e["counts"] for e in entries], cats, -1, height, width, size)


def instance_map(
    entries: Sequence[dict[str, Any]], height: int, width: int,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Schema `instances` entries -> int32 id map (0 none, i+1 for entry i; smaller wins)."""
    order = np.argsort([e["area"] for e in entries], kind="stable")  # smallest first
    ids = order.astype(np.int32) + 1
    return _first_cover([entries[i]["counts"] for i in order], ids, 0, height, width, size)
