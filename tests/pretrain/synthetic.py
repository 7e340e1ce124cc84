"""Small label directories for the loader and training tests, built on the fly.

`block_rows`: images made of flat coloured rectangles whose semantic and instance maps are
known exactly (colour = category), saved as PNG, so alignment can be checked pixel by pixel.
`photo_rows`: real photographs shipped with scikit-image, saved as JPEG, with labels derived
from their luminance (terciles -> 3 classes; bright connected components -> instances).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dataset import masks
from dataset.schema import file_metadata
from dataset.shards import shard_info, write_manifest, write_shard

# Non-contiguous stored ids, so the loader's remap to 0..C-1 is exercised.
VOCAB = {3: "sky", 7: "grass", 11: "road", 20: "car"}
PALETTE = np.array([(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20)], dtype=np.uint8)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field", "retina")


def block_maps(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 3x3 grid of rectangles: (semantic map of stored ids, instance-id map 0/1..N)."""
    ys = np.sort(rng.choice(np.arange(8, height - 8), 2, replace=False))
    xs = np.sort(rng.choice(np.arange(8, width - 8), 2, replace=False))
    ids = np.array(sorted(VOCAB))
    semantic = np.zeros((height, width), np.int32)
    instance = np.zeros((height, width), np.int32)
    y_edges, x_edges, n = [0, *ys, height], [0, *xs, width], 0
    for i in range(3):
        for j in range(3):
            cat = ids[(i * 3 + j + rng.integers(0, 4)) % len(ids)]
            sl = np.s_[y_edges[i]:y_edges[i + 1], x_edges[j]:x_edges[j + 1]]
            semantic[sl] = cat
            if (i + j) % 2 == 0:
                n += 1
                instance[sl] = n
    return semantic, instance


def block_image(semantic: np.ndarray) -> np.ndarray:
    index = {cid: k for k, cid in enumerate(sorted(VOCAB))}
    lut = np.zeros(max(VOCAB) + 1, np.int64)
    for cid, k in index.items():
        lut[cid] = k
    return PALETTE[lut[semantic]]


def instance_entries(instance: np.ndarray, semantic: np.ndarray) -> list[dict]:
    ids = [int(i) for i in np.unique(instance) if i > 0]
    stack = np.stack([instance == i for i in ids]) if ids else np.zeros((0, *instance.shape), bool)
    out = []
    for m, enc in zip(stack, masks.encode_many(stack)):
        cats, counts = np.unique(semantic[m], return_counts=True)
        out.append({"counts": enc["counts"], "bbox": enc["bbox"], "area": enc["area"], "score": 0.9,
                    "stability": 0.95, "category_id": int(cats[counts.argmax()]), "source": "synthetic"})
    return out


def label_row(image_id: str, semantic: np.ndarray, instance: np.ndarray, class_index: int,
              image_bytes: bytes | None = None) -> dict:
    h, w = semantic.shape
    return {"image_id": image_id, "class_index": class_index, "height": h, "width": w,
            "status": "ok", "error": None, "semantic": masks.semantic_entries(semantic),
            "instances": instance_entries(instance, semantic), "quality": None,
            "image_bytes": image_bytes}


def error_row(image_id: str) -> dict:
    return {"image_id": image_id, "class_index": -1, "height": 0, "width": 0, "status": "error",
            "error": "synthetic failure", "semantic": None, "instances": None, "quality": None}


def write_labels(root: Path, rows: list[dict], *, shards: int = 1, row_group: int = 256,
                 input_root: Path | None = None, classes: dict[int, str] | None = None) -> Path:
    """Rows -> ROOT/labels/{manifest.json, shards/}; returns the label directory."""
    out = root / "labels"
    meta = file_metadata(semantic_vocab=VOCAB, classes=classes or {0: "a", 1: "b"},
                         input_root=str(input_root) if input_root else None)
    per = -(-len(rows) // shards)
    for s in range(shards):
        write_shard(out, s, rows[s * per:(s + 1) * per], meta, row_group_size=row_group)
    write_manifest(out, [shard_info(p) for p in sorted((out / "shards").glob("*.parquet"))], meta)
    return out


def block_labels(root: Path, n: int, *, size=(48, 64), shards: int = 1, row_group: int = 256,
                 errors: int = 0, as_bytes: bool = False, seed: int = 0) -> Path:
    """n block images (PNG files, or bytes in the shard) + `errors` error rows."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        semantic, instance = block_maps(*size, rng)
        image_id = f"train/c{i % 2}/img_{i:04d}.png"
        path = images / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(block_image(semantic)).save(path)
        data = path.read_bytes() if as_bytes else None
        rows.append(label_row(image_id, semantic, instance, i % 2, data))
    rows += [error_row(f"train/bad/err_{i:04d}.png") for i in range(errors)]
    order = rng.permutation(len(rows))
    return write_labels(root, [rows[i] for i in order], shards=shards, row_group=row_group,
                        input_root=images)


def photo_labels(root: Path, n: int, *, size=(72, 96), seed: int = 0) -> Path:
    """n JPEG crops of scikit-image photos, labelled from luminance; class = photo index % 2."""
    import skimage.data
    from skimage.measure import label as connected

    rng = np.random.default_rng(seed)
    images = root / "images"
    rows = []
    for i in range(n):
        name = PHOTOS[i % len(PHOTOS)]
        photo = np.asarray(getattr(skimage.data, name)())
        photo = np.stack([photo] * 3, -1) if photo.ndim == 2 else photo[..., :3]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        img = Image.fromarray(photo[y:y + ch, x:x + cw]).resize(size[::-1], Image.Resampling.BILINEAR)
        pixels = np.asarray(img)
        lum = pixels.mean(-1)
        tiers = np.digitize(lum, np.quantile(lum, [1 / 3, 2 / 3]))
        semantic = np.array(sorted(VOCAB))[tiers].astype(np.int32)
        comps = connected(tiers == 2)
        keep = [c for c in np.argsort(-np.bincount(comps.ravel()))[:9] if c > 0]
        instance = np.zeros_like(comps, dtype=np.int32)
        for k, c in enumerate(keep):
            instance[comps == c] = k + 1
        image_id = f"train/{name}/{name}_{i:04d}.jpg"
        path = images / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=90)
        rows.append(label_row(image_id, semantic, instance, i % 2))
    return write_labels(root, rows, input_root=images)
