"""One random-resized crop + flip, applied to an image and its label maps together.

Geometry convention: a crop is a box in the coordinates of the *label* grid (the original
image, ``row["height"] x row["width"]``). The image is resampled from that box with PIL
(bilinear, antialiased) to ``size x size``; the label maps are sampled from the same box by
nearest neighbour at ``size/4 x size/4``, taking the source pixel under the centre of each
output cell. Label cell (i, j) therefore covers image pixels [4i, 4i+4) x [4j, 4j+4), and
its centre is the centre of that 4x4 block. A flip mirrors the image and reverses the label
columns, so they stay aligned.

If the decoded image is not the size the labels were made at, the box is scaled to it:
image and labels are taken to cover the same field of view.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataset import masks

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
LABEL_STRIDE = 4  # label maps are at 1/4 of the image resolution


@dataclass(frozen=True)
class CropBox:
    """A crop in label-grid pixels (top, left, height, width) and whether to mirror it."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False


def sample_crop(
    rng: np.random.Generator, height: int, width: int,
    scale: Sequence[float] = (0.2, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
) -> CropBox:
    """RandomResizedCrop's box (area share in `scale`, log-uniform aspect in `ratio`).

    Ten tries, then a centre crop clamped to the ratio range, as torchvision does; the
    draws come from `rng`, so a per-row generator gives a per-row, reproducible crop.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    box = None
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            box = (top, left, h, w)
            break
    if box is None:
        box = _centre_box(height, width, ratio)
    flip = bool(rng.uniform() < flip_prob)
    return CropBox(*box, flip=flip)


def _centre_box(height: int, width: int, ratio: Sequence[float]) -> tuple[int, int, int, int]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def centre_crop(height: int, width: int, crop_fraction: float = 0.875) -> CropBox:
    """The evaluation crop: a centred square of `crop_fraction` of the shorter side."""
    side = max(1, int(round(min(height, width) * crop_fraction)))
    return CropBox((height - side) // 2, (width - side) // 2, side, side, flip=False)


def open_image(source: str | Path | bytes) -> Image.Image:
    """A lazily decoded PIL image from a path or the encoded bytes of a file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(source)))
    return Image.open(source)


def crop_image(
    image: Image.Image, box: CropBox, size: int, label_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """Resample `box` of `image` to uint8 [size, size, 3] RGB (bilinear), mirrored if asked.

    `label_hw` is the (height, width) the box refers to; the default is the image's own
    size. JPEGs are decoded at a reduced scale (DCT draft) when the box still has at least
    `size` pixels per side there, which saves most of the decode for large photos.
    """
    full_w, full_h = image.size
    ref_h, ref_w = label_hw if label_hw is not None else (full_h, full_w)
    sx, sy = full_w / ref_w, full_h / ref_h
    if image.format == "JPEG":
        need_w = math.ceil(full_w * size / max(box.width * sx, 1))
        need_h = math.ceil(full_h * size / max(box.height * sy, 1))
        image.draft("RGB", (min(need_w, full_w), min(need_h, full_h)))
    if image.mode != "RGB":
        image = image.convert("RGB")
    sx, sy = image.size[0] / ref_w, image.size[1] / ref_h
    region = (box.left * sx, box.top * sy, (box.left + box.width) * sx, (box.top + box.height) * sy)
    out = image.resize((size, size), Image.Resampling.BILINEAR, box=region)
    if box.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out, dtype=np.uint8)


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [3, H, W] with the ImageNet mean and std."""
    scaled = image.astype(np.float32) * (1.0 / 255.0)
    return ((scaled - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy()


def label_grid(box: CropBox, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source rows and columns (label grid) sampled by the `out x out` label crop."""
    rows = box.top + np.minimum(((np.arange(out) + 0.5) * box.height / out).astype(np.int64), box.height - 1)
    cols = box.left + np.minimum(((np.arange(out) + 0.5) * box.width / out).astype(np.int64), box.width - 1)
    return rows, (cols[::-1].copy() if box.flip else cols)


def _sampled_stack(entries: Sequence[dict[str, Any]], order: np.ndarray, height: int, width: int,
                   box: CropBox, out: int) -> np.ndarray:
    """Decode the entries' masks (in `order`) and sample them on the crop grid: [out, out, N]."""
    stack = masks.decode_many([entries[i]["counts"] for i in order], height, width)
    rows, cols = label_grid(box, out)
    return stack[rows[:, None], cols[None, :]]


def crop_semantic(
    entries: Sequence[dict[str, Any]] | None, height: int, width: int, box: CropBox, out: int,
    lookup: dict[int, int] | None = None,
) -> np.ndarray:
    """Semantic label map of the crop, int64 [out, out], -1 unlabeled.

    `lookup` maps stored category ids to contiguous training ids; ids missing from it
    become -1 (unlabeled), so a vocabulary subset can be trained on.
    """
    if not entries:
        return np.full((out, out), -1, dtype=np.int64)
    stack = _sampled_stack(entries, np.arange(len(entries)), height, width, box, out)
    cats = np.array([e["category_id"] for e in entries], dtype=np.int64)
    if lookup is not None:
        cats = np.array([lookup.get(int(c), -1) for c in cats], dtype=np.int64)
    return np.where(stack.any(-1), cats[stack.argmax(-1)], -1)


def crop_instance(
    entries: Sequence[dict[str, Any]] | None, height: int, width: int, box: CropBox, out: int,
) -> np.ndarray:
    """Instance-id map of the crop, int64 [out, out]: 0 none, i+1 for entry i.

    Overlaps follow :func:`dataset.masks.instance_map`: the smaller instance (by stored
    area) wins, ties to the earlier one.
    """
    if not entries:
        return np.zeros((out, out), dtype=np.int64)
    order = np.argsort([e["area"] for e in entries], kind="stable")
    stack = _sampled_stack(entries, order, height, width, box, out)
    ids = order.astype(np.int64) + 1
    return np.where(stack.any(-1), ids[stack.argmax(-1)], 0)


@dataclass(frozen=True)
class Sample:
    """One transformed row: image float32 [3, S, S]; semantic, instance int64 [S/4, S/4]."""

    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray


def transform_row(
    row: dict[str, Any], image: Image.Image, box: CropBox, size: int,
    lookup: dict[int, int] | None = None,
) -> Sample:
    """Apply `box` to a label row and its decoded image; labels at size / LABEL_STRIDE."""
    if size % LABEL_STRIDE:
        raise ValueError(f"img_size {size} is not a multiple of the label stride {LABEL_STRIDE}")
    h, w, out = int(row["height"]), int(row["width"]), size // LABEL_STRIDE
    pixels = crop_image(image, box, size, label_hw=(h, w))
    return Sample(
        image=normalize(pixels),
        semantic=crop_semantic(row.get("semantic"), h, w, box, out, lookup),
        instance=crop_instance(row.get("instances"), h, w, box, out),
    )


def vocabulary_lookup(vocab: dict[int, str]) -> dict[int, int]:
    """Stored category id -> contiguous id 0..C-1, in increasing id order."""
    return {cid: i for i, cid in enumerate(sorted(int(k) for k in vocab))}
