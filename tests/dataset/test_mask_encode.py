"""The numpy RLE encoder against pycocotools: byte-identical strings, areas and boxes."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dataset.masks import encode_many, encode_runs, label_runs, mask_runs


def coco(masks: np.ndarray) -> list[dict]:
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def assert_same_as_coco(masks: np.ndarray) -> None:
    ours, ref = encode_many(masks), coco(masks)
    assert [o["counts"] for o in ours] == [r["counts"] for r in ref]
    assert [o["area"] for o in ours] == [int(a) for a in mask_utils.area(ref)]
    assert [o["bbox"] for o in ours] == [[float(v) for v in b] for b in mask_utils.toBbox(ref)]


def test_random_masks_of_every_shape():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, h, w = rng.integers(1, 4), rng.integers(1, 13), rng.integers(1, 13)
        assert_same_as_coco(rng.random((n, h, w)) < rng.random())


def test_blobs_edges_and_long_runs():
    yy, xx = np.mgrid[:300, :400]
    blobs = np.stack([(yy - 150) ** 2 + (xx - 200) ** 2 < r * r for r in (5, 80, 140)])
    edges = np.zeros((6, 300, 400), bool)
    edges[0] = True  # one run of 120000: five 5-bit groups
    edges[1, :, 0] = True  # first column only
    edges[2, -1, :] = True  # last row only: runs crossing columns
    edges[3, 0, 0] = True
    edges[4, -1, -1] = True
    assert_same_as_coco(np.concatenate([blobs, edges]))  # edges[5] is empty


def test_label_runs_equal_per_category_masks():
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = rng.integers(1, 15), rng.integers(1, 15)
        label = rng.integers(-1, 4, (h, w))
        cats = [int(c) for c in np.unique(label) if c >= 0]
        if not cats:
            continue
        _, runs, offsets = label_runs(label, cats)
        ref_runs, ref_offsets = mask_runs(np.stack([label == c for c in cats]))
        assert np.array_equal(runs, ref_runs) and np.array_equal(offsets, ref_offsets)
        assert [r["counts"] for r in encode_runs(runs, offsets, h, w)] == [
            r["counts"] for r in coco(np.stack([label == c for c in cats]))]


def test_bad_shapes():
    assert encode_many(np.zeros((0, 4, 4), bool)) == []
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        encode_many(np.zeros((4, 4), bool))
