"""Storage benchmark: bytes per image of labels, write and read images/s on one core.

Masks come from real photos (the scikit-image ones, resized to 500x375 like a typical
ImageNet image), so boundaries have realistic complexity:
- semantic: SLIC with ~8 segments (disjoint, one category each);
- instances: ~30 segments plus a few nested unions (AMG returns parts and wholes).
Two flavours: "smooth" finds the segments (SLIC) at 1/4 resolution and upsamples them
bilinearly, which is how Mask2Former and SAM produce full-size masks from stride-4
logits (the realistic case); "jagged" segments at full resolution (SLIC + Felzenszwalb),
with pixel-ragged edges: a worst case for RLE.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from dataset import masks
from dataset.reader import LabelReader, instance_map, semantic_map
from dataset.schema import file_metadata
from dataset.shards import write_shard

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "motorcycle", "immunohistochemistry",
          "hubble_deep_field", "retina"]


def _photos() -> list[np.ndarray]:
    from skimage import data

    return [data.stereo_motorcycle()[0] if n == "motorcycle" else getattr(data, n)() for n in PHOTOS]


def _random_view(photo: np.ndarray, h: int, w: int, rng) -> np.ndarray:
    """A random crop (25-100% of the area) resized to h x w, randomly flipped: every row
    gets its own masks, so compression cannot profit from repeated rows."""
    import cv2

    H, W = photo.shape[:2]
    scale = np.sqrt(rng.uniform(0.25, 1.0))
    ch, cw = max(16, int(H * scale)), max(16, int(W * scale))
    y, x = rng.integers(0, H - ch + 1), rng.integers(0, W - cw + 1)
    view = cv2.resize(photo[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_AREA)
    return view[:, ::-1] if rng.random() < 0.5 else view


def _upsample_onehot(labels: np.ndarray, h: int, w: int) -> np.ndarray:
    """Low-resolution label map -> bool [K, h, w] masks, bilinear then threshold/argmax,
    as Mask2Former and SAM turn their stride-4 mask logits into full-size masks."""
    import cv2

    ids = np.unique(labels)
    soft = np.stack([cv2.resize((labels == i).astype(np.float32), (w, h),
                                interpolation=cv2.INTER_LINEAR) for i in ids])
    return soft


def _labels_for(img: np.ndarray, flavour: str, n_sem: int, n_inst: int, rng) -> tuple:
    import cv2
    from skimage import segmentation

    h, w = img.shape[:2]
    if flavour == "smooth":  # segments found at 1/4 resolution, upsampled like model outputs
        small = cv2.resize(img, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        sem = _upsample_onehot(segmentation.slic(small, n_segments=n_sem, compactness=20), h, w)
        sem = sem.argmax(0)
        soft = _upsample_onehot(segmentation.slic(small, n_segments=n_inst, compactness=10), h, w)
        seg = soft.argmax(0)
    else:  # full-resolution, pixel-ragged boundaries: a worst case for RLE
        sem = segmentation.slic(img, n_segments=n_sem, compactness=20, start_label=0)
        seg = segmentation.felzenszwalb(img, scale=400, sigma=0.8, min_size=200)
    ids, areas = np.unique(seg, return_counts=True)
    ids = ids[np.argsort(-areas)][:n_inst]
    inst = [seg == i for i in ids]
    for _ in range(max(1, n_inst // 10)):  # a few nested (part-of) masks, as AMG gives
        a, b = rng.choice(len(ids), 2, replace=False)
        inst.append((seg == ids[a]) | (seg == ids[b]))
    return sem, np.stack(inst)


def _row(i: int, img, sem, inst) -> dict:
    encs = masks.encode_many(inst)
    return {
        "image_id": f"train/n{i % 1000:08d}/img_{i:07d}.JPEG", "class_index": i % 1000,
        "height": img.shape[0], "width": img.shape[1], "status": "ok",
        "semantic": masks.semantic_entries(sem, {int(c): 0.9 for c in np.unique(sem)}),
        "instances": [
            {"counts": e["counts"], "bbox": e["bbox"], "area": e["area"], "score": 0.93,
             "stability": 0.96, "category_id": int(np.bincount(sem[m]).argmax()), "source": "bench"}
            for e, m in zip(encs, inst)
        ],
        "quality": {"num_instances": len(encs), "num_semantic": int(sem.max()) + 1},
    }


def run_flavour(flavour: str, rows: int, h: int, w: int, tmp: Path) -> dict:
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    rng = np.random.default_rng(0)
    photos = _photos()
    views = [_random_view(photos[i % len(photos)], h, w, rng) for i in range(rows)]
    label_sets = [(v, *_labels_for(v, flavour, 8, 30, rng)) for v in views]
    t0 = time.perf_counter()
    table_rows = [_row(i, *label_sets[i]) for i in range(rows)]
    t_encode = time.perf_counter() - t0
    meta = file_metadata(semantic_vocab={i: f"c{i}" for i in range(8)})
    t0 = time.perf_counter()
    info = write_shard(tmp / flavour, 0, table_rows, meta)
    t_write = time.perf_counter() - t0
    reader = LabelReader(tmp / flavour)
    t0 = time.perf_counter()
    n = sum(1 for _ in reader)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    for row in reader:
        semantic_map(row), instance_map(row)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    for row in reader:
        semantic_map(row, (h // 4, w // 4)), instance_map(row, (h // 4, w // 4))
    t_quarter = time.perf_counter() - t0
    n_inst = np.mean([len(r["instances"]) for r in table_rows])
    return {
        "flavour": flavour, "rows": n, "instances/img": n_inst,
        "bytes/img": info.bytes / n,
        "encode img/s": rows / t_encode, "write img/s": rows / t_write,
        "read rows/s": n / t_read, "read+decode full img/s": n / t_full,
        "read+decode 1/4 img/s": n / t_quarter,
    }


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="c2fmae bench storage")
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--height", type=int, default=375)
    p.add_argument("--width", type=int, default=500)
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for flavour in ("smooth", "jagged"):
            results.append(run_flavour(flavour, args.rows, args.height, args.width, Path(tmp)))
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in results:
        print("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return {"results": results}
