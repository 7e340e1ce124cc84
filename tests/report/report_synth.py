"""Small synthetic label sets whose report figures can be worked out by hand.

Every image is 20 x 30 = 600 pixels. Set A (two shards, row groups of 2 rows):

row  image_id                 class  status  semantic (category: pixels)        instances (pixels)
0    train/n0/img_0.JPEG       0     ok      0: rows 0-9 (300), 1: rows 10-19    5x5 (25), 10x10 (100)
                                             x cols 0-14 (150), rest unlabeled
1    train/n1/img_1.JPEG       1     ok      1: all (600)                         none
2    train/n1/img_2.JPEG       1     error   -                                    -
3    train/n0/img_3.JPEG       0     error   -                                    -
4    train/n0/img_4.JPEG       0     ok      0: all (600)                         whole image (600)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dataset import masks
from dataset.schema import file_metadata
from dataset.shards import rebuild_manifest, write_shard

H, W = 20, 30
VOCAB = {0: "sky", 1: "dog"}
CLASSES = {0: "tench", 1: "goldfish"}


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def label_row(image_id: str, class_index: int, sem: np.ndarray | None,
              inst: list[np.ndarray] | None = None, scores=None, stability=None,
              quality: dict | None = None, error: str | None = None) -> dict:
    if error is not None:
        return {"image_id": image_id, "class_index": class_index, "height": H, "width": W,
                "status": "error", "error": error}
    inst = inst or []
    encs = masks.encode_many(np.stack(inst)) if inst else []
    return {
        "image_id": image_id, "class_index": class_index, "height": H, "width": W,
        "status": "ok", "semantic": masks.semantic_entries(sem, {0: 0.9, 1: 0.6}),
        "instances": [
            {"counts": e["counts"], "bbox": e["bbox"], "area": e["area"],
             "score": (scores or [0.9] * len(encs))[k],
             "stability": (stability or [0.95] * len(encs))[k],
             "category_id": int(np.bincount(sem[m][sem[m] >= 0]).argmax()) if (sem[m] >= 0).any() else -1,
             "source": "synthetic"}
            for k, (e, m) in enumerate(zip(encs, inst))],
        "quality": quality or {},
    }


def set_a_rows() -> list[dict]:
    sem0 = np.full((H, W), -1, np.int32)
    sem0[:10] = 0
    sem0[10:, :15] = 1
    return [
        label_row("train/n0/img_0.JPEG", 0, sem0, [rect(0, 5, 0, 5), rect(10, 20, 0, 10)],
                  scores=[0.9, 0.8], stability=[0.95, 0.85],
                  quality={"semantic_confidence": 0.9, "num_instances": 2}),
        label_row("train/n1/img_1.JPEG", 1, np.full((H, W), 1, np.int32),
                  quality={"semantic_confidence": 0.5, "num_instances": 0}),
        label_row("train/n1/img_2.JPEG", 1, None, error="cannot decode /data/n1/img_2.JPEG: truncated"),
        label_row("train/n0/img_3.JPEG", 0, None, error="cannot decode /data/n0/img_3.JPEG: truncated"),
        label_row("train/n0/img_4.JPEG", 0, np.zeros((H, W), np.int32), [rect(0, 20, 0, 30)],
                  scores=[0.7], stability=[0.75],
                  quality={"semantic_confidence": 0.7, "num_instances": 1}),
    ]


def write_set(directory: Path, rows: list[dict], per_shard: int = 3, vocab=None,
              input_root: str | None = None) -> Path:
    meta = file_metadata(semantic_vocab=vocab or VOCAB, classes=CLASSES, input_root=input_root,
                         producers=[{"backend": "synthetic"}])
    for s in range(0, len(rows), per_shard):
        write_shard(directory, s // per_shard, rows[s:s + per_shard], meta, row_group_size=2)
    rebuild_manifest(directory)
    return directory


def write_photos(root: Path, image_ids: list[str]) -> None:
    """Real photos (scikit-image's coffee, resized to the labels' size) as JPEG files."""
    from skimage import data

    photo = Image.fromarray(data.coffee()).resize((W, H))
    for image_id in image_ids:
        path = root / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        photo.save(path, "JPEG", quality=90)
