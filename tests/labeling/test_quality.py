"""Quality metrics on a hand-made 10 x 10 image whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataset.schema import QUALITY_FIELDS
from labeling.backends.base import InstancePrediction
from labeling.config import Thresholds
from labeling.fusion import encode_instances, encode_label_map, fuse
from labeling.quality import area_entropy, image_quality

H = W = 10


def rect(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def labels():
    label = np.full((H, W), -1, np.int32)
    label[:3] = 1  # 30 px
    label[3:5] = 2  # 20 px; the other 50 px are unlabeled
    semantic = encode_label_map(label, {1: 0.9, 2: 0.6})
    pred = InstancePrediction(
        scores=np.array([0.9, 0.7, 0.5], np.float32),
        stability=np.array([1.0, 0.8, 0.2], np.float32),
        masks=np.stack([rect(0, 4, 0, 5),  # 20 px: 15 in class 1, 5 in class 2
                        rect(2, 6, 3, 8),  # 20 px, overlaps the first by 4 px
                        rect(9, 10, 9, 10)]),  # 1 px: dropped as tiny
        source="t")
    instances = encode_instances(pred, (H, W), (H, W))
    fused = fuse(semantic, instances, H, W, Thresholds(min_instance_area=2,
                                                       min_instance_fraction=0.0))
    return semantic, fused


def test_quality_values(labels):
    semantic, fused = labels
    q = image_quality(H, W, semantic, fused, seconds=0.25)
    assert set(q) == set(QUALITY_FIELDS)
    assert q["num_semantic"] == 2 and q["num_instances"] == 2
    assert q["num_instances_dropped"] == 1
    assert q["unlabeled_fraction"] == pytest.approx(0.5)
    assert q["instance_coverage"] == pytest.approx((20 + 20 - 4) / 100)
    assert q["mean_instance_score"] == pytest.approx(0.8)
    assert q["mean_instance_stability"] == pytest.approx(0.9)
    assert q["semantic_entropy"] == pytest.approx(-(0.6 * math.log(0.6) + 0.4 * math.log(0.4)))
    # first instance: 15 of 20 px in class 1; second (rows 2-5 x cols 3-7): 5 px class 1,
    # 10 px class 2, 5 px unlabeled -> majority class 2 with share 0.5
    assert q["semantic_purity"] == pytest.approx((0.75 + 0.5) / 2)
    assert [e["category_id"] for e in fused.instances] == [1, 2]
    assert q["semantic_confidence"] == pytest.approx((0.9 * 30 + 0.6 * 20) / 50)  # area-weighted
    assert q["seconds"] == pytest.approx(0.25)


def test_quality_uses_model_confidence_and_nulls_for_missing_models(labels):
    semantic, fused = labels
    assert image_quality(H, W, semantic, fused, 0.42)["semantic_confidence"] == pytest.approx(0.42)
    only_sem = image_quality(H, W, semantic, None)
    assert only_sem["num_instances"] is None and only_sem["instance_coverage"] is None
    only_inst = image_quality(H, W, None, fused)
    assert only_inst["unlabeled_fraction"] is None and only_inst["num_instances"] == 2
    empty = image_quality(H, W, [], fuse([], [], H, W, Thresholds()))
    assert empty["unlabeled_fraction"] == 1.0 and empty["semantic_entropy"] is None
    assert empty["instance_coverage"] == 0.0 and empty["mean_instance_score"] is None


def test_helpers():
    assert area_entropy([5, 5]) == pytest.approx(math.log(2))
    assert area_entropy([7]) == 0.0 and area_entropy([]) is None
