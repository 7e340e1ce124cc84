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

import functools
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

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


def _distinct(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A non-decreasing array -> (its distinct values, the index of each among them)."""
    new = np.empty(len(sorted_values), bool)
    new[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new[1:])
    return sorted_values[new], np.cumsum(new) - 1


@functools.lru_cache(maxsize=8)
def _odd_numbers(n: int) -> np.ndarray:
    odd = np.arange(1, 2 * n, 2, dtype=np.int64)
    odd.flags.writeable = False
    return odd


class _Grid(NamedTuple):
    """The distinct sample points of a rows x cols grid as sorted column-major indices."""

    query: np.ndarray  # ascending: column-major over (distinct cols) x (distinct rows)
    row_of: np.ndarray | None  # grid row -> index among the distinct rows (None: identity)
    col_of: np.ndarray | None
    shape: tuple[int, int]  # (distinct cols, distinct rows)
    flip: bool = False  # reverse the columns of the expanded grid

    @classmethod
    def of(cls, rows: np.ndarray, cols: np.ndarray, height: int) -> _Grid:
        """Any rows and columns, in any order, repeats allowed."""
        urows, row_of = np.unique(rows, return_inverse=True)
        ucols, col_of = np.unique(cols, return_inverse=True)
        query = (ucols[:, None] * int(height) + urows[None, :]).ravel()
        return cls(query, row_of, col_of, (len(ucols), len(urows)))

    @classmethod
    def of_box(cls, box: CropBox, out: int, height: int) -> _Grid:
        """The label grid of a crop (as :func:`label_grid`, in integers): rows and columns
        ascend (unflipped) and repeat only where the box is narrower than `out`."""
        odd = _odd_numbers(out)  # cell i samples floor((i + 0.5) * side / out)
        rows = box.top + odd * box.height // (2 * out)
        cols = box.left + odd * box.width // (2 * out)
        row_of = col_of = None
        if box.height < out:
            rows, row_of = _distinct(rows)
        if box.width < out:
            cols, col_of = _distinct(cols)
        query = (cols[:, None] * int(height) + rows).ravel()
        return cls(query, row_of, col_of, (len(cols), len(rows)), box.flip)

    def expand(self, values: np.ndarray) -> np.ndarray:
        """[..., distinct points] in query order -> [..., len(rows), len(cols)]."""
        v = values.reshape(*values.shape[:-1], *self.shape).swapaxes(-1, -2)
        if self.row_of is not None:
            v = v[..., self.row_of, :]
        if self.col_of is not None:
            v = v[..., self.col_of]
        return np.ascontiguousarray(v[..., ::-1] if self.flip else v)


def _covered(counts: Sequence[bytes | str], query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (mask, grid point) pair where the mask is 1, as (owner, point) arrays with the
    owners ascending: point p is query[p]. All strings are parsed in one call; the
    foreground runs (odd places) are matched to the sorted query points with two binary
    searches, and only the runs that cover some point are expanded."""
    runs, offsets = masks.counts_runs(counts)
    n, per = len(offsets) - 1, np.diff(offsets)
    ends = np.zeros(len(runs) + 1, np.int64)  # ends[j + 1]: where run j ends, column-major
    np.cumsum(runs, out=ends[1:])  # over all masks at once; each mask's start is taken off
    fg_per = per >> 1
    fg_before = np.cumsum(fg_per) - fg_per
    fg_total = int(fg_per.sum())
    # places of the foreground runs: 1, 3, 5, ... of each mask
    fg = np.repeat(offsets[:-1] + 1 - 2 * fg_before, fg_per) + 2 * np.arange(fg_total)
    shift = np.repeat(ends[offsets[:-1]], fg_per)
    lo = np.searchsorted(query, ends[fg] - shift)  # run fg covers [ends[fg], ends[fg + 1])
    hi = np.searchsorted(query, ends[fg + 1] - shift)
    hit = np.flatnonzero(hi > lo)
    owner = np.repeat(np.arange(n), fg_per)[hit]
    lo, size = lo[hit], (hi - lo)[hit]
    upto = np.cumsum(size)
    total = int(upto[-1]) if len(upto) else 0
    points = np.arange(total) + np.repeat(lo - (upto - size), size)
    return np.repeat(owner, size), points


def sample_masks(counts: Sequence[bytes | str], height: int, width: int,
                 rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values of each RLE mask at the grid rows x cols: bool [N, len(rows), len(cols)].

    Equal to ``pycocotools.mask.decode(...)[rows][:, cols]`` without building the full
    masks: the distinct sample points, as sorted column-major indices, are matched against
    each foreground run with two binary searches (see :func:`_covered`).
    """
    if len(counts) == 0:
        return np.zeros((0, len(rows), len(cols)), dtype=bool)
    grid = _Grid.of(rows, cols, height)
    owner, points = _covered(counts, grid.query)
    covered = np.zeros((len(counts), len(grid.query)), dtype=bool)
    covered[owner, points] = True
    return grid.expand(covered)


def _overlapping(entries: Sequence[dict[str, Any]], box: CropBox) -> list[int]:
    """Indices of the instances whose bbox meets the crop box (the others cannot show)."""
    top, left, bottom, right = box.top, box.left, box.top + box.height, box.left + box.width
    near = []
    for i, e in enumerate(entries):
        x, y, w, h = e["bbox"]
        if x < right and x + w > left and y < bottom and y + h > top:
            near.append(i)
    return near


def crop_labels(row: dict[str, Any], box: CropBox, out: int,
                lookup: dict[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Semantic and instance maps of the crop, both int64 [out, out], in one pass over the RLEs.

    semantic: the category under each sample (-1 unlabeled); `lookup` maps stored ids to
    contiguous training ids, ids missing from it become -1. Semantic masks are disjoint,
    so each covered point takes the category of the one mask covering it.
    instance: 0 none, i + 1 for `instances[i]`; where instances overlap the smaller (by
    stored area) wins, ties to the earlier one, as :func:`dataset.masks.instance_map`.
    Instances whose box misses the crop are not decoded at all.
    """
    sem = row.get("semantic") or []
    inst = row.get("instances") or []
    by_area = sorted(_overlapping(inst, box), key=lambda i: inst[i]["area"])  # stable
    if not sem and not by_area:
        return np.full((out, out), -1, dtype=np.int64), np.zeros((out, out), dtype=np.int64)
    grid = _Grid.of_box(box, out, int(row["height"]))
    counts = [e["counts"] for e in sem] + [inst[i]["counts"] for i in by_area]
    owner, points = _covered(counts, grid.query)
    q, ns = len(grid.query), len(sem)
    split = int(np.searchsorted(owner, ns))  # semantic masks come first
    semantic = np.full(q, -1, dtype=np.int64)
    if sem:
        cats = [int(e["category_id"]) for e in sem]
        if lookup is not None:
            cats = [lookup.get(c, -1) for c in cats]
        semantic[points[:split]] = np.array(cats, dtype=np.int64)[owner[:split]]
    instance = np.zeros(q, dtype=np.int64)
    if by_area:
        first = np.full(q, len(counts), dtype=np.int64)  # the smallest instance on each point
        np.minimum.at(first, points[split:], owner[split:])
        ids = np.array(by_area + [-1], dtype=np.int64) + 1  # past the last: none (0)
        instance = ids[first - ns]
    return grid.expand(semantic), grid.expand(instance)


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
    semantic, instance = crop_labels(row, box, out, lookup)
    return Sample(image=normalize(pixels), semantic=semantic, instance=instance)


def vocabulary_lookup(vocab: dict[int, str]) -> dict[int, int]:
    """Stored category id -> contiguous id 0..C-1, in increasing id order."""
    return {cid: i for i, cid in enumerate(sorted(int(k) for k in vocab))}
