"""Per-image agreement between two label sets of the same images (`--compare`).

For each image_id present and `ok` in both sets:
- semantic pixel agreement: the share of pixels whose category is the same in both maps
  (unlabeled = unlabeled counts as agreeing). Set B's ids are first translated to set A's
  by category name (case-insensitive); a B category with no namesake in A never agrees.
  The pixel counts of every (A category, B category) pair are kept too, so the report
  shows what one segmenter calls what the other calls "wall". They are computed on the RLEs
  (pairwise intersections), with no mask decoded, unless the two rows differ in size;
- instance agreement: masks are matched one-to-one, greedily by mask IoU (highest first,
  IoU > 0), straight on the RLEs with pycocotools; the image's score is the sum of the
  matched IoUs divided by max(#A, #B) (1 = same masks, 0 = nothing overlaps; undefined
  when neither has instances). Matches with IoU >= 0.5 are counted separately.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from dataset import masks
from dataset.masks import rle_areas
from dataset.schema import STATUS_OK
from labeling.report.stats import BottomK, Histogram

MATCH_IOU = 0.5
NO_COUNTERPART = -2  # a B category without a namesake in A


def category_translation(vocab_a: dict[int, str], vocab_b: dict[int, str]) -> dict[int, int]:
    """B id -> A id for categories with the same name (case and spaces ignored)."""
    by_name = {name.strip().lower(): cid for cid, name in vocab_a.items()}
    return {cid: by_name.get(name.strip().lower(), NO_COUNTERPART) for cid, name in vocab_b.items()}


def label_map(row: dict[str, Any], size: tuple[int, int] | None = None) -> np.ndarray:
    """The row's semantic label map (int32, -1 unlabeled), like dataset.reader.semantic_map
    but several times faster on big images: the masks are disjoint (the schema says so), so
    each decoded mask (a contiguous slice of pycocotools' Fortran-order stack) is painted in."""
    h, w = int(row["height"]), int(row["width"])
    entries = row["semantic"] or []
    out = np.full((h, w), -1, dtype=np.int32)
    if entries:
        stack = masks.decode_many([e["counts"] for e in entries], h, w)
        for k, e in enumerate(entries):
            out[stack[:, :, k] > 0] = e["category_id"]
    return masks.resize_nearest(out, size)


def compact(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local index of each pixel's value, the distinct values in order), for maps of small
    non-negative-plus-(-1) ids; a bincount, much faster than np.unique's sort on big maps."""
    shifted = label_map.astype(np.int64).ravel() + 1
    values = np.flatnonzero(np.bincount(shifted)) - 1
    lut = np.zeros(int(values[-1]) + 2 if len(values) else 1, dtype=np.int64)
    lut[values + 1] = np.arange(len(values))
    return lut[shifted].reshape(label_map.shape), values


def rle_pair_counts(row_a: dict[str, Any], row_b: dict[str, Any]) -> dict[tuple[int, int], int]:
    """Pixels per (A category, B category) pair (-1 = unlabeled) of two same-size rows,
    straight from the RLEs: intersections come from pycocotools' RLE IoU, no mask is decoded.
    With disjoint semantic masks, inter = iou * (area_a + area_b) / (1 + iou)."""
    size = [int(row_a["height"]), int(row_a["width"])]
    ea, eb = row_a["semantic"] or [], row_b["semantic"] or []
    ra = [{"size": size, "counts": e["counts"]} for e in ea]
    rb = [{"size": size, "counts": e["counts"]} for e in eb]
    area_a = rle_areas(ra).astype(np.float64)
    area_b = rle_areas(rb).astype(np.float64)
    inter = np.zeros((len(ra), len(rb)))
    if ra and rb:
        iou = np.asarray(mask_utils.iou(ra, rb, [0] * len(rb)), np.float64).reshape(len(ra), len(rb))
        inter = np.rint(iou * (area_a[:, None] + area_b[None, :]) / (1.0 + iou))
    out: dict[tuple[int, int], int] = {}

    def add(key: tuple[int, int], n: float) -> None:
        if n > 0:
            out[key] = out.get(key, 0) + int(n)

    for i, e in enumerate(ea):
        for j, f in enumerate(eb):
            add((e["category_id"], f["category_id"]), inter[i, j])
        add((e["category_id"], -1), area_a[i] - inter[i].sum())
    for j, f in enumerate(eb):
        add((-1, f["category_id"]), area_b[j] - inter[:, j].sum())
    add((-1, -1), size[0] * size[1] - area_a.sum() - area_b.sum() + inter.sum())
    return out


def pair_counts(map_a: np.ndarray, map_b: np.ndarray) -> dict[tuple[int, int], int]:
    """Pixels per (value in A, value in B) pair, for the pairs that occur."""
    local_a, values_a = compact(map_a)
    local_b, values_b = compact(map_b)
    counts = np.bincount((local_a * len(values_b) + local_b).ravel(),
                         minlength=len(values_a) * len(values_b))
    return {(int(values_a[k // len(values_b)]), int(values_b[k % len(values_b)])): int(counts[k])
            for k in np.flatnonzero(counts).tolist()}


def greedy_matches(iou: np.ndarray) -> list[float]:
    """IoUs of a one-to-one greedy matching (highest IoU first, only IoU > 0)."""
    if iou.size == 0:
        return []
    order = np.argsort(-iou, axis=None, kind="stable")
    used_a, used_b, out = set(), set(), []
    for flat in order.tolist():
        i, j = divmod(flat, iou.shape[1])
        v = float(iou[i, j])
        if v <= 0:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append(v)
    return out


def instance_ious(row_a: dict[str, Any], row_b: dict[str, Any]) -> np.ndarray:
    """Mask IoU matrix [#A, #B] computed on the RLEs (same image size required)."""
    size = [int(row_a["height"]), int(row_a["width"])]
    ra = [{"size": size, "counts": e["counts"]} for e in row_a["instances"] or []]
    rb = [{"size": size, "counts": e["counts"]} for e in row_b["instances"] or []]
    if not ra or not rb:
        return np.zeros((len(ra), len(rb)))
    return np.asarray(mask_utils.iou(ra, rb, [0] * len(rb)), dtype=np.float64).reshape(len(ra), len(rb))


class Agreement:
    """Accumulates the per-image agreement of joined row pairs."""

    def __init__(self, vocab_a: dict[int, str], vocab_b: dict[int, str], gallery: int = 8):
        self.translate = category_translation(vocab_a, vocab_b)
        self.vocab_a, self.vocab_b = vocab_a, vocab_b
        self.semantic = Histogram.linear(0.0, 1.0, 20)
        self.instance = Histogram.linear(0.0, 1.0, 20)
        self.pairs: dict[tuple[int, int], int] = {}
        self.pixels = self.agreeing_pixels = 0
        self.instances_a = self.instances_b = self.matched = 0
        self.both_ok = self.ok_only_a = self.ok_only_b = self.both_error = 0
        self.size_mismatch = 0
        self.worst = BottomK(gallery)

    def update(self, row_a: dict, pos_a: tuple, row_b: dict, pos_b: tuple) -> None:
        ok_a, ok_b = row_a["status"] == STATUS_OK, row_b["status"] == STATUS_OK
        if not (ok_a and ok_b):
            if ok_a:
                self.ok_only_a += 1
            elif ok_b:
                self.ok_only_b += 1
            else:
                self.both_error += 1
            return
        self.both_ok += 1
        h, w = int(row_a["height"]), int(row_a["width"])
        same_size = (h, w) == (int(row_b["height"]), int(row_b["width"]))
        self.size_mismatch += not same_size
        if same_size:
            pairs = rle_pair_counts(row_a, row_b)
        else:  # decode, and bring B to A's size
            pairs = pair_counts(label_map(row_a), label_map(row_b, (h, w)))
        agree = sum(n for (a, b), n in pairs.items()
                    if (a == b == -1) or (a >= 0 and self.translate.get(b) == a))
        sem = agree / (h * w)
        self.semantic.update([sem])
        self.pixels += h * w
        self.agreeing_pixels += agree
        for key, n in pairs.items():
            self.pairs[key] = self.pairs.get(key, 0) + n
        inst = float("nan")
        if same_size:
            inst = self._instances(row_a, row_b)
        self.instance.update([inst])
        if self.worst.would_accept(sem):
            self.worst.push(sem, row_a["image_id"], {
                "image_id": row_a["image_id"], "semantic_agreement": sem,
                "instance_agreement": inst, "row_a": row_a, "row_b": row_b,
                "position_a": pos_a, "position_b": pos_b})

    def _instances(self, row_a: dict, row_b: dict) -> float:
        na, nb = len(row_a["instances"] or []), len(row_b["instances"] or [])
        self.instances_a += na
        self.instances_b += nb
        if na == 0 and nb == 0:
            return float("nan")
        matches = greedy_matches(instance_ious(row_a, row_b))
        self.matched += sum(v >= MATCH_IOU for v in matches)
        return sum(matches) / max(na, nb)

    def to_dict(self, top_pairs: int = 30) -> dict[str, Any]:
        total = sum(self.pairs.values()) or 1
        pairs = sorted(self.pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top_pairs]
        name_a = lambda c: "(unlabeled)" if c < 0 else self.vocab_a.get(c, f"#{c}")  # noqa: E731
        name_b = lambda c: "(unlabeled)" if c < 0 else self.vocab_b.get(c, f"#{c}")  # noqa: E731
        return {
            "both_ok": self.both_ok, "ok_only_a": self.ok_only_a, "ok_only_b": self.ok_only_b,
            "both_error": self.both_error, "size_mismatch": self.size_mismatch,
            "semantic_agreement": self.semantic.to_dict(),
            "pixel_agreement": self.agreeing_pixels / self.pixels if self.pixels else None,
            "instance_agreement": self.instance.to_dict(),
            "instances_a": self.instances_a, "instances_b": self.instances_b,
            "matched_iou50": self.matched,
            "matched_share_a": self.matched / self.instances_a if self.instances_a else None,
            "matched_share_b": self.matched / self.instances_b if self.instances_b else None,
            "category_pairs": [
                {"a": name_a(a), "b": name_b(b), "a_id": a, "b_id": b, "pixels": n,
                 "share": n / total} for (a, b), n in pairs],
        }
