"""Export labels as a COCO-format JSON (images, categories, RLE annotations).

Instances become COCO annotations with their majority semantic category; instances with
no category (-1) go to an extra category named "object". With ``kind="semantic"``, each
semantic region becomes one annotation instead (iscrowd=1, as COCO stores stuff regions).
Segmentations keep the stored compressed RLE, so COCO tools decode them as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dataset.reader import LabelReader
from dataset.schema import STATUS_OK
from dataset.shards import atomic_write_bytes


def to_coco(reader: LabelReader, limit: int | None = None, kind: str = "instances") -> dict[str, Any]:
    if kind not in ("instances", "semantic"):
        raise ValueError(f"kind must be 'instances' or 'semantic', not {kind!r}")
    vocab = reader.metadata["vocabularies"]["semantic" if kind == "semantic" else "instance"]
    unknown_id = max(vocab, default=-1) + 1
    images, annotations, used_unknown = [], [], False
    for row in reader:
        if row["status"] != STATUS_OK:
            continue
        if limit is not None and len(images) >= limit:
            break
        image_id = len(images) + 1
        h, w = row["height"], row["width"]
        images.append({"id": image_id, "file_name": row["image_id"], "height": h, "width": w,
                       "class_index": row["class_index"]})
        for e in row["semantic" if kind == "semantic" else "instances"] or []:
            cat = e["category_id"]
            if cat < 0:
                cat, used_unknown = unknown_id, True
            ann = {
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                "segmentation": {"size": [h, w], "counts": e["counts"].decode("ascii")},
                "area": e["area"], "iscrowd": 1 if kind == "semantic" else 0,
                "score": e["score"],
            }
            if kind == "instances":
                ann.update(bbox=list(e["bbox"]), stability=e["stability"], source=e["source"])
            else:
                from pycocotools import mask as mask_utils

                ann["bbox"] = mask_utils.toBbox(ann["segmentation"]).tolist()
            annotations.append(ann)
    categories = [{"id": k, "name": v} for k, v in sorted(vocab.items())]
    if used_unknown:
        categories.append({"id": unknown_id, "name": "object"})
    return {
        "info": {"description": "c2fmae pseudo-labels", "version": reader.metadata["schema_version"],
                 "producers": reader.metadata.get("producers", [])},
        "images": images, "annotations": annotations, "categories": categories,
    }


def export_coco(directory: str | Path, out: str | Path, limit: int | None = None,
                kind: str = "instances") -> dict[str, int]:
    """Write the COCO JSON atomically; returns counts of images and annotations."""
    doc = to_coco(LabelReader(directory), limit, kind)
    atomic_write_bytes(Path(out), json.dumps(doc).encode())
    return {"images": len(doc["images"]), "annotations": len(doc["annotations"]),
            "categories": len(doc["categories"])}
