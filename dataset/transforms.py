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
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

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


def rle_run_ends(counts: Sequence[bytes | str]) -> tuple[np.ndarray, ...]:
    """COCO compressed RLE strings -> run ends of all masks concatenated, the first run of
    each mask, and for each run its mask and its index inside the mask.

    Vectorised form of pycocotools' rleFrString: each value is 5-bit groups, low first,
    0x20 = more groups follow, 0x10 in the last group = negative; from the third value on,
    each is a delta to the value two places back. Run ends are column-major pixel indices;
    runs alternate background / foreground, starting with background.
    """
    raw = [c.encode() if isinstance(c, str) else bytes(c) for c in counts]
    chars = np.frombuffer(b"".join(raw), dtype=np.uint8) - np.uint8(48)
    last = np.flatnonzero(chars < 0x20)  # the last character of each value (0x20 clear)
    start = np.concatenate([[0], last[:-1] + 1]).astype(np.int64)
    size = last - start + 1  # characters per value, rarely more than 4
    low = (chars & 0x1F).astype(np.int64)
    x = low[start]
    for k in range(1, int(size.max(initial=1))):
        sel = np.flatnonzero(size > k)
        x[sel] |= low[start[sel] + k] << (5 * k)
    negative = np.flatnonzero(chars[last] & 0x10)
    x[negative] |= np.left_shift(-1, 5 * size[negative])
    # the mask of each value, the first value of each mask, and m = index inside its mask
    mask = np.searchsorted(np.cumsum([len(r) for r in raw]), start, side="right")
    mask_first = np.searchsorted(mask, np.arange(len(raw)))
    value_starts = mask_first[mask]
    m = np.arange(len(x)) - value_starts
    before, has_before = np.maximum(value_starts - 1, 0), value_starts > 0

    def per_mask_cumsum(v: np.ndarray) -> np.ndarray:
        total = np.cumsum(v)
        return total - np.where(has_before, total[before], 0)

    # counts[m] = x[m] + counts[m - 2] for m > 2: cumulative sums per mask over the odd
    # values and over the even values from m = 2 on; m = 0 stands alone
    odd = (m & 1).astype(bool)
    runs = np.where(odd, per_mask_cumsum(np.where(odd, x, 0)),
                    per_mask_cumsum(np.where(~odd & (m >= 2), x, 0)))
    runs[m == 0] = x[m == 0]
    ends = per_mask_cumsum(runs)
    return ends, mask_first, mask, m


class _Grid(NamedTuple):
    """The distinct sample points of a rows x cols grid as sorted column-major indices."""

    query: np.ndarray  # ascending: column-major over (distinct cols) x (distinct rows)
    row_of: np.ndarray  # grid row -> index among the distinct rows
    col_of: np.ndarray
    shape: tuple[int, int]  # (distinct cols, distinct rows)

    @classmethod
    def of(cls, rows: np.ndarray, cols: np.ndarray, height: int) -> _Grid:
        urows, row_of = np.unique(rows, return_inverse=True)
        ucols, col_of = np.unique(cols, return_inverse=True)
        query = (ucols[:, None] * int(height) + urows[None, :]).ravel()
        return cls(query, row_of, col_of, (len(ucols), len(urows)))

    def expand(self, values: np.ndarray) -> np.ndarray:
        """[..., distinct points] in query order -> [..., len(rows), len(cols)]."""
        v = values.reshape(*values.shape[:-1], *self.shape).swapaxes(-1, -2)
        return v[..., self.row_of[:, None], self.col_of[None, :]]


def _covered_ranges(counts: Sequence[bytes | str], grid: _Grid) -> tuple[np.ndarray, ...]:
    """Which grid points each foreground run covers: run [start, end) covers the points
    grid.query[lo:hi]. Returns (owner mask of each foreground run, lo, hi)."""
    ends, _, mask, local = rle_run_ends(counts)
    fg = np.flatnonzero(local & 1)  # odd runs are foreground; each starts at the previous end
    lo = np.searchsorted(grid.query, ends[fg - 1], side="left")
    hi = np.searchsorted(grid.query, ends[fg], side="left")
    return mask[fg], lo, hi


def _coverage(owner: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int, q: int,
              weights: np.ndarray | None = None) -> np.ndarray:
    """Per-mask coverage counts of the grid points, [n, q] (difference arrays)."""
    size = n * (q + 1)
    diff = (np.bincount(owner * (q + 1) + lo, weights=weights, minlength=size)
            - np.bincount(owner * (q + 1) + hi, weights=weights, minlength=size))
    return np.cumsum(diff.reshape(n, q + 1), axis=1)[:, :q]


def sample_masks(counts: Sequence[bytes | str], height: int, width: int,
                 rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values of each RLE mask at the grid rows x cols: bool [N, len(rows), len(cols)].

    Equal to ``pycocotools.mask.decode(...)[rows][:, cols]`` without building the full
    masks: the distinct sample points, as sorted column-major indices, are matched against
    each foreground run with two binary searches, and difference arrays mark what it covers.
    """
    if len(counts) == 0:
        return np.zeros((0, len(rows), len(cols)), dtype=bool)
    grid = _Grid.of(rows, cols, height)
    owner, lo, hi = _covered_ranges(counts, grid)
    return grid.expand(_coverage(owner, lo, hi, len(counts), len(grid.query)) > 0)


def _overlapping(entries: Sequence[dict[str, Any]], box: CropBox) -> np.ndarray:
    """Indices of the instances whose bbox meets the crop box (the others cannot show)."""
    if not entries:
        return np.zeros(0, np.int64)
    b = np.array([e["bbox"] for e in entries], dtype=np.float64).reshape(-1, 4)
    meets = ((b[:, 0] < box.left + box.width) & (b[:, 0] + b[:, 2] > box.left)
             & (b[:, 1] < box.top + box.height) & (b[:, 1] + b[:, 3] > box.top))
    return np.flatnonzero(meets)


def crop_labels(row: dict[str, Any], box: CropBox, out: int,
                lookup: dict[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Semantic and instance maps of the crop, both int64 [out, out], in one pass over the RLEs.

    semantic: the category under each sample (-1 unlabeled); `lookup` maps stored ids to
    contiguous training ids, ids missing from it become -1. Semantic masks are disjoint,
    so each run adds its category + 1 to the points it covers and one sum gives the map.
    instance: 0 none, i + 1 for `instances[i]`; where instances overlap the smaller (by
    stored area) wins, ties to the earlier one, as :func:`dataset.masks.instance_map`.
    Instances whose box misses the crop are not decoded at all.
    """
    sem = row.get("semantic") or []
    inst = row.get("instances") or []
    near = _overlapping(inst, box)
    by_area = near[np.argsort([inst[i]["area"] for i in near], kind="stable")]
    if not sem and not len(by_area):
        return np.full((out, out), -1, dtype=np.int64), np.zeros((out, out), dtype=np.int64)
    grid = _Grid.of(*label_grid(box, out), int(row["height"]))
    counts = [e["counts"] for e in sem] + [inst[i]["counts"] for i in by_area]
    owner, lo, hi = _covered_ranges(counts, grid)
    q, ns = len(grid.query), len(sem)
    semantic = np.full(q, -1, dtype=np.int64)
    if sem:
        cats = np.array([e["category_id"] for e in sem], dtype=np.int64)
        if lookup is not None:
            cats = np.array([lookup.get(int(c), -1) for c in cats], dtype=np.int64)
        keep = owner < ns
        total = _coverage(np.zeros(int(keep.sum()), np.int64), lo[keep], hi[keep], 1, q,
                          weights=(cats[owner[keep]] + 1).astype(np.float64))[0]
        semantic = np.rint(total).astype(np.int64) - 1
    instance = np.zeros(q, dtype=np.int64)
    if len(by_area):
        keep = owner >= ns
        covered = _coverage(owner[keep] - ns, lo[keep], hi[keep], len(by_area), q) > 0
        instance = np.where(covered.any(axis=0), by_area[covered.argmax(axis=0)] + 1, 0)
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
