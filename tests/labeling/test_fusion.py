"""Fusion: back to the original size, RLE encoding, tiny/duplicate filtering, majority class, rows."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dataset import masks
from dataset.reader import LabelReader, instance_masks, semantic_map
from dataset.schema import file_metadata
from dataset.shards import write_shard
from labeling.backends.base import InstancePrediction, SemanticPrediction
from labeling.config import Thresholds
from labeling.fusion import (
    encode_instances,
    encode_label_map,
    encode_semantic,
    error_row,
    fuse,
    ok_row,
)

H, W = 40, 60


def rect(y0, y1, x0, x1, h=H, w=W) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def decode(entry, h=H, w=W) -> np.ndarray:
    return mask_utils.decode({"size": [h, w], "counts": entry["counts"]}).astype(bool)


def test_encode_label_map_matches_the_dataset_helper():
    rng = np.random.default_rng(0)
    label = rng.integers(-1, 5, (H, W)).astype(np.int32)
    label[label == 3] = -1  # a category that is absent
    ours = encode_label_map(label, {0: 0.5})
    ref = masks.semantic_entries(label, {0: 0.5})
    assert [e["category_id"] for e in ours] == [0, 1, 2, 4]
    assert ours == ref
    with pytest.raises(ValueError, match="below -1"):
        encode_label_map(np.full((2, 2), -2, np.int32))


def test_encode_semantic_restores_original_size():
    small = np.zeros((20, 30), np.int32)
    small[:, 15:] = 7
    small[:5] = -1
    conf = np.full((20, 30), 0.8, np.float32)
    conf[:5] = 0.1  # unlabeled pixels do not count
    entries, confidence = encode_semantic(SemanticPrediction(small, {7: 0.9}, conf), (H, W))
    got = masks.semantic_map(entries, H, W)
    assert got.shape == (H, W)
    assert np.array_equal(got, np.repeat(np.repeat(small, 2, 0), 2, 1))
    assert confidence == pytest.approx(0.8)
    assert {e["category_id"]: e["score"] for e in entries} == {0: None, 7: pytest.approx(0.9)}


def test_encode_instances_from_masks_and_from_rles_at_reduced_size():
    small = np.stack([rect(2, 10, 3, 12, 20, 30), rect(0, 20, 0, 5, 20, 30)])
    big = np.repeat(np.repeat(small, 2, 1), 2, 2)
    pred = InstancePrediction(scores=np.array([0.9, 0.8]), stability=np.array([0.95, 0.5]),
                              masks=small, source="t")
    from_masks = encode_instances(pred, (20, 30), (H, W))
    rles = masks.encode_many(small)
    rles[0]["counts"] = rles[0]["counts"].decode()  # pycocotools gives str in some paths
    from_rles = encode_instances(
        InstancePrediction(scores=np.array([0.9, 0.8]), rles=rles, source="t"), (20, 30), (H, W))
    for entries in (from_masks, from_rles):
        assert [e["area"] for e in entries] == [int(m.sum()) for m in big]
        for e, m in zip(entries, big):
            assert np.array_equal(decode(e), m)
            assert e["bbox"] == [float(v) for v in mask_utils.toBbox(
                mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))]
    assert from_masks[1]["stability"] == pytest.approx(0.5)
    assert from_rles[0]["stability"] is None and from_rles[0]["category_id"] == -1
    with pytest.raises(ValueError, match="expected"):
        encode_instances(pred, (10, 30), (H, W))


def _instances(*mask_scores):
    pred = InstancePrediction(scores=np.array([s for _, s in mask_scores], np.float32),
                              masks=np.stack([m for m, _ in mask_scores]), source="t")
    return encode_instances(pred, (H, W), (H, W))


def test_fuse_drops_tiny_and_duplicates_and_sorts_by_score():
    big = rect(0, 20, 0, 30)
    near_copy = big.copy()
    near_copy[19, :] = False  # IoU 0.95 with `big`
    other = rect(20, 40, 30, 60)
    tiny = rect(0, 2, 50, 53)  # 6 pixels
    inst = _instances((other, 0.7), (near_copy, 0.95), (big, 0.8), (tiny, 0.99))
    fused = fuse(None, inst, H, W, Thresholds(min_instance_area=10, min_instance_fraction=0.0,
                                              duplicate_iou=0.9))
    assert fused.dropped_tiny == 1 and fused.dropped_duplicate == 1
    assert [e["score"] for e in fused.instances] == pytest.approx([0.95, 0.7])
    assert np.array_equal(decode(fused.instances[0]), near_copy)
    assert fused.purity == []  # no semantic model: nothing to be pure about
    loose = fuse(None, inst, H, W, Thresholds(min_instance_area=10, min_instance_fraction=0.0,
                                              duplicate_iou=0.99))
    assert len(loose.instances) == 3
    by_fraction = fuse(None, inst, H, W, Thresholds(min_instance_area=0,
                                                    min_instance_fraction=0.5))
    assert by_fraction.instances == []  # every mask is under half the image


def test_fuse_assigns_majority_semantic_class_and_purity():
    label = np.full((H, W), -1, np.int32)
    label[:, :30] = 3
    label[:, 30:] = 5
    semantic = encode_label_map(label)
    mostly_3 = rect(0, 10, 0, 40)  # 300 px in class 3, 100 in class 5
    only_5 = rect(20, 30, 40, 50)
    inst = _instances((mostly_3, 0.9), (only_5, 0.8))
    fused = fuse(semantic, inst, H, W, Thresholds(min_instance_area=1))
    assert [e["category_id"] for e in fused.instances] == [3, 5]
    assert fused.purity == pytest.approx([0.75, 1.0])
    strict = fuse(semantic, inst, H, W, Thresholds(min_instance_area=1, min_category_share=0.8))
    assert [e["category_id"] for e in strict.instances] == [-1, 5]
    # an instance entirely on unlabeled pixels has no class
    label[:] = -1
    label[:5, :5] = 3
    fused = fuse(encode_label_map(label), _instances((rect(20, 40, 20, 40), 0.5)), H, W,
                 Thresholds(min_instance_area=1))
    assert fused.instances[0]["category_id"] == -1 and fused.purity == [0.0]


def test_fuse_keeps_backend_categories_without_semantic_and_handles_empty():
    pred = InstancePrediction(scores=np.array([0.9]), masks=rect(0, 10, 0, 10)[None],
                              category_ids=np.array([42]), source="t")
    fused = fuse(None, encode_instances(pred, (H, W), (H, W)), H, W, Thresholds(min_instance_area=1))
    assert fused.instances[0]["category_id"] == 42
    assert fuse([], [], H, W, Thresholds()).instances == []
    assert fuse(None, None, H, W, Thresholds()).instances == []


def test_rows_fit_the_schema_and_round_trip(tmp_path):
    label = np.zeros((H, W), np.int32)
    label[10:] = 1
    semantic = encode_label_map(label, {0: 0.9, 1: 0.8})
    inst = fuse(semantic, _instances((rect(5, 25, 5, 25), 0.9)), H, W, Thresholds()).instances
    rows = [
        ok_row("a/x.JPEG", 3, H, W, semantic=semantic, instances=inst,
               quality={"num_semantic": 2, "seconds": 0.1}),
        ok_row("a/y.JPEG", -1, H, W, semantic=None, instances=inst, quality={}),
        error_row("a/z.JPEG", 3, "corrupt\nimage (line two)"),
    ]
    assert rows[2]["error"] == "corrupt image (line two)"
    assert rows[2]["height"] == 0 and rows[2]["semantic"] is None
    write_shard(tmp_path, 0, rows, file_metadata(semantic_vocab={0: "a", 1: "b"}))
    back = list(LabelReader(tmp_path))
    assert [r["status"] for r in back] == ["ok", "ok", "error"]
    assert np.array_equal(semantic_map(back[0]), label)
    assert np.array_equal(instance_masks(back[0])[0], rect(5, 25, 5, 25))
    assert back[0]["instances"][0]["category_id"] == 1  # 5 of its 20 rows are class 0, 15 class 1
