import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dataset import masks
from tests.dataset.synth import random_instances, random_label_map


def test_encode_matches_pycocotools_and_decodes_back():
    rng = np.random.default_rng(0)
    inst = random_instances(rng, 31, 47, 5)
    encs = masks.encode_many(inst)
    for m, e in zip(inst, encs):
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert e["counts"] == ref["counts"]
        assert e["area"] == m.sum()
        ys, xs = np.nonzero(m)
        assert e["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        decoded = mask_utils.decode({"size": [31, 47], "counts": e["counts"]})
        assert (decoded.astype(bool) == m).all()


def test_semantic_entries_round_trip_to_label_map():
    rng = np.random.default_rng(1)
    label = random_label_map(rng, 40, 30, 4)
    entries = masks.semantic_entries(label)
    assert sorted(e["category_id"] for e in entries) == sorted(int(c) for c in np.unique(label) if c >= 0)
    assert sum(e["area"] for e in entries) == (label >= 0).sum()
    assert (masks.semantic_map(entries, 40, 30) == label).all()


def test_instance_map_smaller_mask_wins_overlap():
    big = np.zeros((20, 20), bool)
    big[2:18, 2:18] = True
    small = np.zeros((20, 20), bool)
    small[5:8, 5:8] = True
    entries = [dict(e) for e in masks.encode_many(np.stack([big, small]))]
    got = masks.instance_map(entries, 20, 20)
    assert (got[5:8, 5:8] == 2).all()  # the small one (index 1) is on top
    assert (got[big & ~small] == 1).all()
    assert (got[~big] == 0).all()


def test_reduced_size_is_nearest_sampling_of_full_map():
    rng = np.random.default_rng(2)
    label = random_label_map(rng, 64, 48, 5)
    entries = masks.semantic_entries(label)
    small = masks.semantic_map(entries, 64, 48, size=(16, 12))
    rows, cols = masks.nearest_indices(64, 16), masks.nearest_indices(48, 12)
    assert (small == label[rows[:, None], cols[None, :]]).all()
    assert list(rows) == [2 + 4 * i for i in range(16)]  # centres of 4-pixel cells


def test_empty_inputs():
    assert masks.semantic_entries(np.full((4, 4), -1)) == []
    assert (masks.semantic_map([], 4, 5) == -1).all()
    assert masks.instance_map([], 4, 5, size=(2, 2)).shape == (2, 2)
    with pytest.raises(ValueError, match="N, H, W"):
        masks.encode_many(np.zeros((4, 4), bool))


def test_rle_parser_agrees_with_pycocotools():
    rng = np.random.default_rng(3)
    for m in random_instances(rng, 50, 60, 6):
        fortran = np.asfortranarray(m.astype(np.uint8))
        runs = masks.counts_runs([mask_utils.encode(fortran)["counts"]])[0].tolist()
        assert sum(runs) == 50 * 60
        flat = m.T.reshape(-1)  # column-major, as COCO counts
        assert runs[0] == (np.argmax(flat) if flat.any() else flat.size)
        assert sum(runs[1::2]) == m.sum()
    with pytest.raises(ValueError):
        masks.counts_runs([b"\x01\x02"])


def test_areas_of_more_than_255_rles():
    # pycocotools' own area() fails above 255 RLEs under numpy 2 (SAM AMG gives more)
    m = np.zeros((300, 6, 7), bool)
    for i in range(300):
        m[i, : 1 + i % 6, : 1 + i % 7] = True
    encs = masks.encode_many(m)
    got = masks.rle_areas([{"size": [6, 7], "counts": e["counts"]} for e in encs])
    assert got.tolist() == m.sum((1, 2)).tolist()
    assert masks.rle_areas([]).shape == (0,)
