"""One pass over label tables -> every figure of the report, in memory bounded by the
number of bins, categories and classes (never by the number of rows).

Tables are processed a row group at a time with pyarrow/numpy (no Python loop over masks):
list columns are flattened, and `list_parent_indices` ties each mask back to its image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataset.schema import QUALITY_FIELDS, STATUS_OK
from labeling.report.stats import BottomK, CappedCounter, Histogram, reason_key, sample_key

# Which end of each metric is bad, for the "worst images" gallery.
LOW_IS_BAD = {"instance_coverage", "mean_instance_score", "mean_instance_stability",
              "semantic_confidence", "semantic_purity", "num_instances", "num_semantic",
              "labeled_fraction"}
HIGH_IS_BAD = {"unlabeled_fraction", "semantic_entropy", "seconds", "num_instances_dropped"}
DERIVED_METRICS = ("labeled_fraction",)  # computed by the report from the semantic areas
SMALL_AREA, MEDIUM_AREA = 32 * 32, 96 * 96  # COCO's object size limits, in pixels
MAX_FAILED_LISTED = 20


def quality_histogram(name: str) -> Histogram:
    """Fixed bins for a quality metric (ranges known from its definition)."""
    if name.startswith("num_"):
        return Histogram.integers(64)
    if name == "semantic_entropy":
        return Histogram.linear(0.0, 5.0, 25)  # ln(150 ADE20K classes) ~ 5.0
    if name == "seconds":
        return Histogram.log(1e-3, 1e3, 24)
    return Histogram.linear(0.0, 1.0, 20)  # shares and scores


@dataclass(frozen=True)
class WorstMetric:
    name: str
    high_is_bad: bool

    @classmethod
    def parse(cls, text: str) -> WorstMetric:
        """'NAME' (built-in direction) or 'NAME:high' / 'NAME:low' (which end is bad)."""
        name, _, end = text.partition(":")
        known = sorted(set(QUALITY_FIELDS) | set(DERIVED_METRICS))
        if name not in known:
            raise ValueError(f"unknown quality metric {name!r}; known: {', '.join(known)}")
        if end not in ("", "high", "low"):
            raise ValueError(f"--worst-metric {text!r}: the suffix must be ':high' or ':low'")
        high = (name in HIGH_IS_BAD) if end == "" else (end == "high")
        return cls(name, high)

    def describe(self) -> str:
        return f"{self.name} ({'highest' if self.high_is_bad else 'lowest'} first)"


def f64(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Any numeric arrow array -> float64 numpy, nulls as NaN."""
    return pc.cast(arr, pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False)


def _list_parts(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.StructArray, np.ndarray]:
    """(entries per row, flattened struct entries, row index of each entry)."""
    col = col.combine_chunks()
    lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(col)
    parents = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
    return lengths.astype(np.int64), flat, parents.astype(np.int64)


class LabelStats:
    """Accumulates the report's figures over tables of the label schema."""

    def __init__(self, gallery: int = 12, worst: WorstMetric | None = None, seed: int = 0):
        self.rows = self.ok = self.error = 0
        self.semantic_masks = self.instance_masks = 0
        self.reasons = CappedCounter(50)
        self.failed: list[dict[str, str]] = []  # the first few failed rows, as examples
        self.hist = {
            "semantic_per_image": Histogram.integers(32),
            "instances_per_image": Histogram.integers(128),
            "instance_relative_area": Histogram.log(1e-5, 1.0, 25),
            "labeled_fraction": Histogram.linear(0.0, 1.0, 20),
            "instance_score": Histogram.linear(0.0, 1.0, 20),
            "instance_stability": Histogram.linear(0.0, 1.0, 20),
            "semantic_score": Histogram.linear(0.0, 1.0, 20),
        }
        self.quality = {name: quality_histogram(name) for name in QUALITY_FIELDS}
        self.instance_sizes = {"small": 0, "medium": 0, "large": 0}
        self.sources = CappedCounter(50)
        self.categories: dict[int, dict[str, float]] = {}  # id -> pixels, images, score_sum, instances
        self.classes: dict[int, dict[str, Any]] = {}  # class -> images, pixels, per-category
        self.image_height = Histogram.log(8, 8192, 20)
        self.image_width = Histogram.log(8, 8192, 20)
        self.seed = seed
        self.worst_metric = worst
        self.sample = BottomK(gallery)
        self.worst = BottomK(gallery)

    # ------------------------------------------------------------------ update
    def update(self, table: pa.Table, shard: int = 0, first_row: int = 0) -> None:
        """Add one table of rows; (shard, first_row) locate them for the galleries."""
        n = table.num_rows
        if n == 0:
            return
        ids = table.column("image_id").to_pylist()
        ok = (table.column("status").to_numpy(zero_copy_only=False) == STATUS_OK)
        self.rows += n
        self.ok += int(ok.sum())
        self.error += int(n - ok.sum())
        self._update_errors(table, ok, ids)
        hw = f64(table.column("height")) * f64(table.column("width"))
        self.image_height.update(f64(table.column("height"))[ok])
        self.image_width.update(f64(table.column("width"))[ok])
        classes = table.column("class_index").to_numpy(zero_copy_only=False).astype(np.int64)
        labeled = self._update_semantic(table, ok, hw, classes)
        self._update_instances(table, ok, hw)
        metrics = self._update_quality(table, ok)
        metrics["labeled_fraction"] = labeled
        self._update_galleries(ids, ok, metrics, shard, first_row)

    def _update_errors(self, table: pa.Table, ok: np.ndarray, ids: list[str]) -> None:
        if ok.all():
            return
        errors = table.column("error").to_pylist()
        for i in np.flatnonzero(~ok):
            self.reasons.add(reason_key(errors[i]))
            if len(self.failed) < MAX_FAILED_LISTED:
                self.failed.append({"image_id": ids[i], "error": str(errors[i])[:300]})

    def _update_semantic(self, table, ok, hw, classes) -> np.ndarray:
        lengths, flat, parents = _list_parts(table.column("semantic"))
        self.semantic_masks += int(lengths.sum())
        self.hist["semantic_per_image"].update(lengths[ok])
        cats = flat.field("category_id").to_numpy(zero_copy_only=False).astype(np.int64)
        areas = f64(flat.field("area"))
        scores = f64(flat.field("score"))
        self.hist["semantic_score"].update(scores)
        labeled_pixels = np.bincount(parents, weights=areas, minlength=len(ok))
        with np.errstate(divide="ignore", invalid="ignore"):
            labeled = np.where(ok & (hw > 0), labeled_pixels / hw, np.nan)
        self.hist["labeled_fraction"].update(labeled[ok])
        scored = ~np.isnan(scores)
        for cat, sums in _group_sums(cats, areas, np.ones_like(areas),
                                     np.where(scored, scores, 0.0), scored.astype(float)):
            entry = self.categories.setdefault(cat, _new_category())
            for key, value in zip(("pixels", "images", "score_sum", "scored"), sums):
                entry[key] += value
        self._update_classes(classes, ok, hw, cats, areas, parents)
        return labeled

    def _update_classes(self, classes, ok, hw, cats, areas, parents) -> None:
        for c in np.unique(classes[ok]).tolist():
            rows = ok & (classes == c)
            entry = self.classes.setdefault(c, {"images": 0, "pixels": 0.0, "categories": {}})
            entry["images"] += int(rows.sum())
            entry["pixels"] += float(hw[rows].sum())
        keep = ok[parents]
        pairs = np.stack([classes[parents][keep], cats[keep]], axis=1)
        if len(pairs) == 0:
            return
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        pixels = np.bincount(inverse, weights=areas[keep], minlength=len(uniq))
        images = np.bincount(inverse, minlength=len(uniq))
        for (c, cat), px, im in zip(uniq.tolist(), pixels.tolist(), images.tolist()):
            per = self.classes[c]["categories"].setdefault(cat, [0.0, 0])
            per[0] += px
            per[1] += im

    def _update_instances(self, table, ok, hw) -> None:
        lengths, flat, parents = _list_parts(table.column("instances"))
        self.instance_masks += int(lengths.sum())
        self.hist["instances_per_image"].update(lengths[ok])
        if len(parents) == 0:
            return
        areas = f64(flat.field("area"))
        with np.errstate(divide="ignore", invalid="ignore"):
            self.hist["instance_relative_area"].update(areas / hw[parents])
        self.instance_sizes["small"] += int((areas < SMALL_AREA).sum())
        self.instance_sizes["medium"] += int(((areas >= SMALL_AREA) & (areas < MEDIUM_AREA)).sum())
        self.instance_sizes["large"] += int((areas >= MEDIUM_AREA).sum())
        self.hist["instance_score"].update(f64(flat.field("score")))
        self.hist["instance_stability"].update(f64(flat.field("stability")))
        inst_cats = flat.field("category_id").to_numpy(zero_copy_only=False).astype(np.int64)
        for cat, (count,) in _group_sums(inst_cats, np.ones(len(inst_cats))):
            self.categories.setdefault(cat, _new_category())["instances"] += int(count)
        for entry in pc.value_counts(flat.field("source")).to_pylist():
            self.sources.add(entry["values"] if entry["values"] is not None else "(none)",
                             entry["counts"])

    def _update_quality(self, table, ok) -> dict[str, np.ndarray]:
        quality = table.column("quality").combine_chunks()
        children = quality.flatten()  # parent nulls propagate into the fields
        out = {}
        for name, child in zip([f.name for f in quality.type], children):
            values = f64(child)
            out[name] = values
            if name in self.quality:
                self.quality[name].update(values[ok])
        return out

    def _update_galleries(self, ids, ok, metrics, shard, first_row) -> None:
        for i in np.flatnonzero(ok).tolist():
            key = sample_key(ids[i], self.seed)
            if self.sample.would_accept(key):
                self.sample.push(key, ids[i], {"image_id": ids[i], "position": (shard, first_row + i)})
        if self.worst_metric is None or self.worst_metric.name not in metrics:
            return
        values = metrics[self.worst_metric.name]
        keys = -values if self.worst_metric.high_is_bad else values
        for i in np.flatnonzero(ok & ~np.isnan(values)).tolist():
            if self.worst.would_accept(keys[i]):
                self.worst.push(float(keys[i]), ids[i], {
                    "image_id": ids[i], "position": (shard, first_row + i),
                    "value": float(values[i])})

    # ------------------------------------------------------------------ results
    def category_table(self, vocab: dict[int, str]) -> list[dict[str, Any]]:
        """Semantic categories by total pixels, with image counts and mean score."""
        total = sum(e["pixels"] for e in self.categories.values()) or 1.0
        rows = []
        for cat, e in sorted(self.categories.items(), key=lambda kv: (-kv[1]["pixels"], kv[0])):
            rows.append({
                "category_id": cat, "name": vocab.get(cat, f"#{cat}" if cat >= 0 else "(none)"),
                "pixels": int(e["pixels"]), "pixel_share": e["pixels"] / total,
                "images": int(e["images"]), "instances": int(e["instances"]),
                "mean_score": e["score_sum"] / e["scored"] if e["scored"] else None,
            })
        return rows

    def class_table(self, classes: dict[int, str], vocab: dict[int, str], top: int = 5) -> list[dict]:
        """Per ImageNet class: images, and its top semantic categories by pixel share."""
        out = []
        for c in sorted(self.classes):
            e = self.classes[c]
            pixels = e["pixels"] or 1.0
            cats = sorted(e["categories"].items(), key=lambda kv: (-kv[1][0], kv[0]))
            labeled = sum(v[0] for v in e["categories"].values())
            out.append({
                "class_index": c, "name": classes.get(c, "" if c < 0 else f"class {c}"),
                "images": e["images"], "unlabeled_share": 1.0 - labeled / pixels,
                "categories": [
                    {"category_id": cat, "name": vocab.get(cat, f"#{cat}"),
                     "pixel_share": v[0] / pixels, "image_share": v[1] / max(e["images"], 1)}
                    for cat, v in cats[:top]],
            })
        return out

    def to_dict(self, vocab: dict[int, str], classes: dict[int, str]) -> dict[str, Any]:
        return {
            "totals": {
                "rows": self.rows, "ok": self.ok, "error": self.error,
                "semantic_masks": self.semantic_masks, "instance_masks": self.instance_masks,
                "failure_reasons": self.reasons.to_dict(), "failed_examples": self.failed,
            },
            "distributions": {k: h.to_dict() for k, h in self.hist.items()},
            "quality": {k: h.to_dict() for k, h in self.quality.items()},
            "instance_sizes": dict(self.instance_sizes),
            "instance_sources": self.sources.to_dict(),
            "image_size": {"height": self.image_height.moments.to_dict(),
                           "width": self.image_width.moments.to_dict()},
            "semantic_categories": self.category_table(vocab),
            "classes": self.class_table(classes, vocab),
        }


def _group_sums(keys: np.ndarray, *values: np.ndarray) -> list[tuple[int, list[float]]]:
    """(key, [sum of each value array over the entries with that key]) per distinct key."""
    if len(keys) == 0:
        return []
    uniq, inverse = np.unique(keys, return_inverse=True)
    sums = [np.bincount(inverse.ravel(), weights=v, minlength=len(uniq)) for v in values]
    return [(int(k), [float(s[j]) for s in sums]) for j, k in enumerate(uniq.tolist())]


def _new_category() -> dict[str, float]:
    return {"pixels": 0.0, "images": 0, "score_sum": 0.0, "scored": 0, "instances": 0}
