"""Random but well-formed label rows for the dataset tests."""

from __future__ import annotations

import numpy as np

from dataset import masks
from dataset.schema import file_metadata

VOCAB = {i: f"category-{i}" for i in range(10)}


def random_label_map(rng, h: int, w: int, n: int) -> np.ndarray:
    """A disjoint map of up to n categories from random rectangles, -1 elsewhere."""
    label = np.full((h, w), -1, dtype=np.int32)
    for cat in rng.choice(len(VOCAB), size=n, replace=False):
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
        label[y0:y1, x0:x1] = cat
    return label


def random_instances(rng, h: int, w: int, n: int) -> np.ndarray:
    """n overlapping boolean masks (ellipses), [n, h, w]."""
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1.5, h / 2), rng.uniform(1.5, w / 2)
        out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        out[i, int(min(cy, h - 1)), int(min(cx, w - 1))] = True  # never empty
    return out


def make_row(rng, index: int, h: int = 37, w: int = 53, n_sem: int = 3, n_inst: int = 4):
    label = random_label_map(rng, h, w, n_sem)
    inst = random_instances(rng, h, w, n_inst)
    encs = masks.encode_many(inst)
    row = {
        "image_id": f"train/n{index % 7:08d}/img_{index:05d}.JPEG",
        "class_index": index % 7, "height": h, "width": w, "status": "ok", "error": None,
        "semantic": masks.semantic_entries(label, {int(c): 0.5 for c in np.unique(label) if c >= 0}),
        "instances": [
            {"counts": e["counts"], "bbox": e["bbox"], "area": e["area"], "score": 0.9,
             "stability": 0.95, "category_id": -1, "source": "test"} for e in encs
        ],
        "quality": {"num_instances": n_inst},
    }
    return row, label, inst


def error_row(index: int, reason: str = "cannot identify image file"):
    return {"image_id": f"bad/img_{index:05d}.JPEG", "class_index": -1, "height": 0, "width": 0,
            "status": "error", "error": reason}


def metadata():
    return file_metadata(semantic_vocab=VOCAB, input_root="/nowhere")
