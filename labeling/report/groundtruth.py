"""Pseudo-labels against human label maps (`--ground-truth GT_DIR`): mIoU, per-class IoU.

Ground truth for a row is the PNG at ``GT_DIR/<image_id with its suffix replaced by .png>``
(rows without one are skipped and counted). ImageNet-S style maps are read as:
- RGB(A) PNG: id = R + 256 * G (ImageNet-S's encoding; 0 = background, 1000 = ignore);
- single-channel PNG (L, P, I, I;16): the pixel value (255 = ignore by default).

How pseudo-label categories become GT ids is a mapping file (YAML or JSON, `--gt-mapping`):

    categories:          # pseudo category (id or name) -> GT id, or "class" = the GT id
      background: 0      #   of the image's own ImageNet class (see `classes`)
      salient object: class
    classes: {0: 1, 1: 2}   # ImageNet class_index -> GT id (used by "class")
    ignore: [1000]          # GT ids not scored (default: 1000 for RGB maps, 255 otherwise)
    unlabeled: 0            # GT id for pixels the pseudo-labels leave unlabeled
    names: {0: background, 1: tench}   # GT id -> name, for the table

Without a file the mapping is the identity (pseudo id = GT id). Pseudo categories the file
does not name, and unlabeled pixels when `unlabeled` is unset, are "no prediction": they
count against the GT class (a miss) but as no other class.

One sparse confusion matrix (GT id, predicted id) is summed over all images; per class
IoU = TP / (TP + FP + FN) over the classes that occur in the GT or the predictions, and
mIoU is their mean (the usual definition, as in mmsegmentation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataset.schema import STATUS_OK
from labeling.report.compare import compact, label_map, pair_counts

NO_PREDICTION = -1
RGB_IGNORE, GRAY_IGNORE = 1000, 255


def gt_path(root: Path, image_id: str) -> Path:
    return (root / image_id).with_suffix(".png")


def read_label_png(path: Path) -> tuple[np.ndarray, bool]:
    """(int64 id map [H, W], whether it was RGB-encoded as R + 256 * G)."""
    with Image.open(path) as im:
        if im.mode in ("RGB", "RGBA"):
            arr = np.asarray(im.convert("RGB")).astype(np.int64)
            return arr[..., 0] + 256 * arr[..., 1], True
        if im.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(f"{path}: unsupported PNG mode {im.mode} for a label map")
        return np.asarray(im).astype(np.int64), False


@dataclass
class GtMapping:
    categories: dict[int, int | str] = field(default_factory=dict)
    classes: dict[int, int] = field(default_factory=dict)
    identity: bool = True
    ignore: list[int] | None = None
    unlabeled: int | None = None
    names: dict[int, str] = field(default_factory=dict)
    source: str = "identity"

    @classmethod
    def load(cls, path: str | Path | None, vocab: dict[int, str]) -> GtMapping:
        if path is None:
            return cls(names=dict(vocab))
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ground-truth mapping file not found: {path}")
        text = path.read_text()
        if path.suffix == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a mapping with 'categories', 'classes', ...")
        by_name = {name.strip().lower(): cid for cid, name in vocab.items()}
        categories: dict[int, int | str] = {}
        for key, value in (doc.get("categories") or {}).items():
            cid = _category_id(key, by_name, path)
            if value != "class" and not isinstance(value, int):
                raise ValueError(f"{path}: category {key!r} maps to {value!r}; use a GT id or 'class'")
            categories[cid] = value
        return cls(
            categories=categories,
            classes={int(k): int(v) for k, v in (doc.get("classes") or {}).items()},
            identity=False,
            ignore=[int(v) for v in doc["ignore"]] if doc.get("ignore") is not None else None,
            unlabeled=None if doc.get("unlabeled") is None else int(doc["unlabeled"]),
            names={int(k): str(v) for k, v in (doc.get("names") or {}).items()},
            source=str(path),
        )

    def to_gt(self, pseudo: np.ndarray, class_index: int) -> np.ndarray:
        """Pseudo label map (-1 unlabeled) -> GT ids (NO_PREDICTION where none applies)."""
        local, values = compact(pseudo)
        lut = np.array([self._one(int(i), class_index) for i in values], dtype=np.int64)
        return lut[local]

    def _one(self, cid: int, class_index: int) -> int:
        if cid < 0:
            return NO_PREDICTION if self.unlabeled is None else self.unlabeled
        if self.identity:
            return cid
        target = self.categories.get(cid)
        if target == "class":
            return self.classes.get(class_index, NO_PREDICTION)
        return NO_PREDICTION if target is None else int(target)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "identity": self.identity,
                "categories": {str(k): v for k, v in self.categories.items()},
                "classes": len(self.classes), "ignore": self.ignore, "unlabeled": self.unlabeled}


def _category_id(key: Any, by_name: dict[str, int], path: Path) -> int:
    if isinstance(key, int) or (isinstance(key, str) and key.lstrip("-").isdigit()):
        return int(key)
    cid = by_name.get(str(key).strip().lower())
    if cid is None:
        raise ValueError(f"{path}: category {key!r} is not in the labels' semantic vocabulary")
    return cid


class GroundTruthScore:
    """Accumulates the confusion matrix of pseudo-labels against GT maps."""

    def __init__(self, root: Path, mapping: GtMapping):
        if not root.is_dir():
            raise FileNotFoundError(f"ground-truth directory not found: {root}")
        self.root, self.mapping = root, mapping
        self.confusion: dict[tuple[int, int], int] = {}
        self.images = self.without_gt = self.failed_rows = self.resized = 0
        self.unreadable: list[str] = []

    def update(self, row: dict[str, Any]) -> None:
        path = gt_path(self.root, row["image_id"])
        if not path.is_file():
            self.without_gt += 1
            return
        if row["status"] != STATUS_OK:
            self.failed_rows += 1
            return
        try:
            gt, rgb = read_label_png(path)
        except (OSError, ValueError) as exc:
            if len(self.unreadable) < 20:
                self.unreadable.append(f"{path}: {str(exc).splitlines()[0]}")
            return
        size = None
        if gt.shape != (row["height"], row["width"]):
            size = gt.shape
            self.resized += 1
        pred = self.mapping.to_gt(label_map(row, size), int(row["class_index"]))
        ignore = self.mapping.ignore if self.mapping.ignore is not None else (
            [RGB_IGNORE] if rgb else [GRAY_IGNORE])
        keep = ~np.isin(gt, ignore)
        self._add(gt[keep], pred[keep])
        self.images += 1

    def _add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        if gt.size == 0:
            return
        for key, n in pair_counts(gt, pred).items():
            self.confusion[key] = self.confusion.get(key, 0) + n

    def per_class(self) -> list[dict[str, Any]]:
        gt_total: dict[int, int] = {}
        pred_total: dict[int, int] = {}
        for (g, p), n in self.confusion.items():
            gt_total[g] = gt_total.get(g, 0) + n
            pred_total[p] = pred_total.get(p, 0) + n
        classes = sorted(set(gt_total) | {p for p in pred_total if p != NO_PREDICTION})
        rows = []
        for c in classes:
            tp = self.confusion.get((c, c), 0)
            fn = gt_total.get(c, 0) - tp
            fp = pred_total.get(c, 0) - tp
            union = tp + fp + fn
            rows.append({"gt_id": c, "name": self.mapping.names.get(c, f"#{c}"),
                         "iou": tp / union if union else None, "tp": tp, "fp": fp, "fn": fn,
                         "gt_pixels": gt_total.get(c, 0)})
        return rows

    def to_dict(self) -> dict[str, Any]:
        rows = self.per_class()
        ious = [r["iou"] for r in rows if r["iou"] is not None]
        total = sum(self.confusion.values())
        correct = sum(n for (g, p), n in self.confusion.items() if g == p)
        return {
            "images": self.images, "rows_without_gt": self.without_gt,
            "failed_rows_with_gt": self.failed_rows, "resized_to_gt": self.resized,
            "unreadable": self.unreadable, "mapping": self.mapping.describe(),
            "miou": float(np.mean(ious)) if ious else None,
            "pixel_accuracy": correct / total if total else None,
            "scored_pixels": total, "per_class": rows,
        }
