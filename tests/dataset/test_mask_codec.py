"""The numpy RLE codec of dataset/masks.py against plain pycocotools: same bytes, areas, boxes."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dataset import masks


def coco(stack: np.ndarray) -> list[dict]:
    """The plain route: a transposed uint8 copy of [N, H, W] through pycocotools."""
    return mask_utils.encode(np.asfortranarray(stack.transpose(1, 2, 0).astype(np.uint8)))


def assert_like_coco(stack: np.ndarray) -> None:
    ours, ref = masks.encode_many(stack), coco(stack)
    assert [o["counts"] for o in ours] == [r["counts"] for r in ref]
    assert [o["area"] for o in ours] == [int(a) for a in mask_utils.area(ref)]
    assert [o["bbox"] for o in ours] == [[float(v) for v in b] for b in mask_utils.toBbox(ref)]
    runs, offsets = masks.mask_runs(stack)
    back, back_offsets = masks.counts_runs([r["counts"] for r in ref])
    assert np.array_equal(runs, back) and np.array_equal(offsets, back_offsets)
    assert np.all(np.add.reduceat(runs, offsets[:-1]) == stack[0].size)


def test_random_stacks_of_every_small_shape():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, h, w = rng.integers(1, 5), rng.integers(1, 12), rng.integers(1, 12)
        stack = rng.random((n, h, w)) < rng.random()
        if rng.random() < 0.2:
            stack[:] = stack[:, :1, :1]  # all ones or all zeros
        assert_like_coco(stack)


def test_long_runs_and_each_sort_path():
    yy, xx = np.mgrid[:200, :300]
    blobs = np.stack([(yy - 100) ** 2 + (xx - 150) ** 2 < r * r for r in (3, 60, 250)])
    assert_like_coco(np.concatenate([blobs, np.ones((1, 200, 300), bool)]))  # 5-group values
    rng = np.random.default_rng(1)
    assert_like_coco(rng.random((140, 3, 500)) < 0.5)  # N * W > 2**16: two radix passes
    assert_like_coco(rng.random((2, 2, 70_000)) < 0.01)  # W > 2**16: lexsort


def test_any_layout_and_dtype():
    rng = np.random.default_rng(2)
    stack = rng.random((3, 9, 7)) < 0.5
    ref = [r["counts"] for r in coco(stack)]
    fortran = np.asfortranarray(stack.transpose(1, 2, 0)).transpose(2, 0, 1)  # not C-contiguous
    assert [e["counts"] for e in masks.encode_many(fortran)] == ref
    assert [e["counts"] for e in masks.encode_many(stack.astype(np.uint8))] == ref
    assert masks.encode(stack[1])["counts"] == ref[1]
    with pytest.raises(ValueError, match="empty side"):
        masks.encode_many(np.zeros((2, 0, 4), bool))


def test_label_runs_match_per_category_masks():
    rng = np.random.default_rng(3)
    for _ in range(200):
        h, w = rng.integers(1, 12, 2)
        label = rng.integers(-1, 5, (h, w))
        if rng.random() < 0.3:
            label = np.where(label >= 0, label * 70_000, label)  # ids beyond 16 bits
        present = [int(c) for c in np.unique(label) if c >= 0]
        cats, runs, offsets = masks.label_runs(label)
        assert cats == present
        if present:
            ref = coco(np.stack([label == c for c in present]))
            assert [r["counts"] for r in masks.coco_rles(runs, offsets, h, w)] == \
                [r["counts"] for r in ref]
        candidates = np.concatenate([np.unique(label), [7, 99]])  # 7 and 99 are never present
        wanted = [int(c) for c in rng.permutation(candidates)[: rng.integers(0, 6)]]
        cats, runs, offsets = masks.label_runs(label, wanted)  # any order, absent ones too
        assert cats == wanted
        if wanted:
            ref = coco(np.stack([label == c for c in wanted]))
            assert [e["counts"] for e in masks.encode_runs(runs, offsets, h, w)] == \
                [r["counts"] for r in ref]


def test_segments_tile_the_column_major_map():
    rng = np.random.default_rng(4)
    label = rng.integers(-1, 3, (7, 5))
    start, seg_label = masks.label_segments(label)
    flat = label.T.reshape(-1)
    stop = np.append(start[1:], flat.size)
    assert start[0] == 0 and np.all(stop > start)
    assert all((flat[a:b] == v).all() for a, b, v in zip(start, stop, seg_label))
    assert np.all(seg_label[1:] != seg_label[:-1])
    cats, _, _, index = masks.segment_runs(start, seg_label, flat.size)
    assert [cats[i] if i >= 0 else -1 for i in index] == seg_label.tolist()


def test_semantic_entries_like_pycocotools():
    rng = np.random.default_rng(5)
    label = rng.integers(-1, 6, (30, 40))
    entries = masks.semantic_entries(label, {2: 0.5})
    cats = [int(c) for c in np.unique(label) if c >= 0]
    ref = coco(np.stack([label == c for c in cats]))
    assert [e["category_id"] for e in entries] == cats
    assert [e["counts"] for e in entries] == [r["counts"] for r in ref]
    assert [e["area"] for e in entries] == [int(a) for a in mask_utils.area(ref)]
    assert [e["score"] for e in entries] == [0.5 if c == 2 else None for c in cats]


def test_counts_runs_reads_str_and_rejects_bad_strings():
    stack = np.zeros((2, 4, 4), bool)
    stack[0, 1:3, 1:3] = True
    ref = [r["counts"] for r in coco(stack)]
    runs, offsets = masks.counts_runs([ref[0].decode(), ref[1]])
    assert np.array_equal(runs, masks.mask_runs(stack)[0]) and offsets.tolist() == [0, 5, 6]
    assert masks.counts_runs([])[1].tolist() == [0]
    for bad in (b"\x01\x02", b"0a", b"@"):  # outside '0'..'o'; ends inside a value; negative
        with pytest.raises(ValueError):
            masks.counts_runs([bad])
