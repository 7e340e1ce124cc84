"""Fusion on run lengths against the plain pycocotools route it replaced: identical rows.

The reference below filters, deduplicates and labels instances the straightforward way
(pycocotools ``iou`` pair by pair, ``iou`` with crowd regions for the class shares,
``merge`` for the covered pixels); labeling.fusion must give the same instances (same
order, categories), counts of dropped masks, purities and coverage, to the last bit.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from labeling import rle
from labeling.backends.base import InstancePrediction, Prediction, SemanticPrediction
from labeling.backends.fixed import FixedBackend
from labeling.config import ModelConfig, Thresholds
from labeling.fusion import fuse, instances_with_runs, label_map_entries
from labeling.stages import ModelStage, fuse_items


def _rles(entries, h, w):
    return [{"size": [h, w], "counts": e["counts"]} for e in entries]


def reference_fuse(semantic, instances, h, w, th):
    """(kept, dropped tiny, dropped duplicate, purity, covered) the pycocotools way."""
    min_area = max(th.min_instance_area, th.min_instance_fraction * h * w)
    big = [e for e in instances if e["area"] >= min_area]
    ordered = sorted(big, key=lambda e: -(e["score"] or 0.0))
    dropped = [False] * len(ordered)
    for i, a in enumerate(ordered):
        if dropped[i]:
            continue
        for j in range(i + 1, len(ordered)):
            if not dropped[j]:
                iou = mask_utils.iou(_rles([ordered[j]], h, w), _rles([a], h, w), [0])[0][0]
                dropped[j] = iou > th.duplicate_iou
    kept = [e for e, d in zip(ordered, dropped) if not d]
    purity = []
    if semantic and kept:
        share = np.asarray(mask_utils.iou(_rles(kept, h, w), _rles(semantic, h, w),
                                          [1] * len(semantic))).reshape(len(kept), -1)
        for inst, row in zip(kept, share):
            best = int(row.argmax())
            inst["category_id"] = semantic[best]["category_id"] if row[best] > th.min_category_share else -1
            purity.append(float(row[best]))
    covered = int(mask_utils.area(mask_utils.merge(_rles(kept, h, w), intersect=False))) if kept else 0
    return kept, len(instances) - len(big), len(big) - len(kept), purity, covered


def random_case(rng):
    h, w = int(rng.integers(2, 30)), int(rng.integers(2, 30))
    n = int(rng.integers(1, 12))
    masks = rng.random((n, h, w)) < rng.random()
    for k in range(1, n):  # near-duplicates of earlier masks
        if rng.random() < 0.4:
            masks[k] = masks[rng.integers(0, k)] ^ (rng.random((h, w)) < 0.05)
    scores = rng.choice([0.5, 0.9], n) if rng.random() < 0.5 else rng.random(n)  # ties too
    label = rng.integers(-1, int(rng.integers(1, 6)), (h, w)).astype(np.int32)
    if rng.random() < 0.5:
        label = np.repeat(label[:, :1], w, 1)  # long runs across columns
    return h, w, InstancePrediction(scores=scores.astype(np.float32), masks=masks), label


def check(semantic, segments, instances, runs, h, w, th):
    want = reference_fuse(copy.deepcopy(semantic), copy.deepcopy(instances), h, w, th)
    for seg, run in ((None, None), (segments, runs)):  # decoded from counts / carried along
        got = fuse(copy.deepcopy(semantic), copy.deepcopy(instances), h, w, th, seg, run)
        assert got.instances == want[0]
        assert (got.dropped_tiny, got.dropped_duplicate, got.purity, got.covered) == want[1:]


def test_fuse_equals_pycocotools_reference_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w, pred, label = random_case(rng)
        instances, runs = instances_with_runs(pred, (h, w), (h, w))
        semantic, segments = label_map_entries(label)
        th = Thresholds(min_instance_area=int(rng.integers(0, 4)), min_instance_fraction=0.0,
                        duplicate_iou=float(rng.choice([0.0, 0.3, 0.9])),
                        min_category_share=float(rng.choice([0.0, 0.5])))
        check(semantic, segments, instances, runs, h, w, th)
        check(None, None, instances, runs, h, w, th)


def test_fuse_equals_reference_on_fixed_backend_masks():
    backend = FixedBackend(num_instances=25, num_categories=6)
    for seed in range(3):
        image = np.full((90, 120, 3), seed * 40, np.uint8)
        pred = backend.predict([image], [None])[0]
        instances, runs = instances_with_runs(pred.instances, (90, 120), (90, 120))
        semantic, segments = label_map_entries(pred.semantic.label_map)
        for th in (Thresholds(min_instance_area=1), Thresholds(duplicate_iou=0.2, min_category_share=0.6)):
            check(semantic, segments, instances, runs, 90, 120, th)


def brute(stack, label, cats):
    n = len(stack)
    inter = np.array([[np.sum(stack[a] & stack[b]) for b in range(n)] for a in range(n)])
    share = np.array([[np.sum(m & (label == c)) for c in cats] for m in stack])
    return inter, share, int(stack.any(0).sum())


def test_interval_geometry_against_decoded_masks():
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w, pred, label = random_case(rng)
        stack = pred.masks
        instances, runs = instances_with_runs(pred, (h, w), (h, w))
        semantic, segments = label_map_entries(label)
        cats = [e["category_id"] for e in semantic]
        inter, share, union = brute(stack, label, cats)
        for intervals in (rle.Intervals.from_runs(*runs, h * w),
                          rle.Intervals.from_counts([e["counts"] for e in instances], h * w)):
            assert intervals.area.tolist() == stack.sum((1, 2)).tolist()
            a, b = np.triu_indices(len(stack))
            assert np.array_equal(intervals.intersections(a, b), inter[a, b])
            assert np.array_equal(intervals.overlaps_with(segments), share)
            decoded = rle.Segments.from_intervals(
                rle.Intervals.from_counts([e["counts"] for e in semantic], h * w))
            assert np.array_equal(intervals.overlaps_with(decoded), share)
            assert intervals.union_area() == union
            order = rng.permutation(len(stack))
            assert np.array_equal(intervals.take(order).intersections(a, b), inter[order[a], order[b]])
            boxes = intervals.boxes(h)
            for m, (x0, y0, x1, y1) in zip(stack, boxes):
                ys, xs = np.nonzero(m)
                assert [x0, y0, x1, y1] == ([xs.min(), ys.min(), xs.max(), ys.max()] if len(xs) else [0] * 4)


def test_rle_that_does_not_fit_the_image_becomes_an_error_row():
    good = np.zeros((1, 6, 6), bool)
    good[0, 1:4, 1:4] = True
    item = {"idx": 0, "image_id": "a.jpg", "class_index": -1, "size": (6, 6), "error": None,
            "seconds": 0.0, "image_bytes": None}
    instances, _ = instances_with_runs(InstancePrediction(scores=np.ones(1), masks=good), (6, 6), (6, 6))
    bad = dict(item, instances=[dict(instances[0], counts=b"0")], semantic=None)  # 0 pixels
    rows = fuse_items([dict(item, instances=instances, semantic=None), bad], Thresholds(min_instance_area=1))
    assert rows[0]["status"] == "ok" and rows[1]["status"] == "error"
    assert "fusion failed" in rows[1]["error"] and "pixels" in rows[1]["error"]


class _OneShot:
    name, provides = "fixed", frozenset({"semantic", "instances"})

    def __init__(self, preds):
        self.preds = preds

    def predict(self, images, names):
        return self.preds[: len(images)]


@pytest.mark.parametrize("size", [(40, 50), (80, 100)])  # same size / restored from 40x50
def test_stage_rows_do_not_depend_on_the_carried_runs(size):
    backend = FixedBackend(num_instances=12, num_categories=4)
    image = np.zeros((40, 50, 3), np.uint8)
    pred = backend.predict([image], [None])[0]
    stage = ModelStage(ModelConfig(backend="fixed"), ("semantic", "instances"),
                       backend=_OneShot([Prediction(SemanticPrediction(pred.semantic.label_map, {}),
                                                    pred.instances)]))
    item = {"idx": 0, "image_id": "x.jpg", "class_index": 3, "path": "", "image": image,
            "size": size, "error": None, "seconds": 0.0, "image_bytes": None}
    [item] = stage([item])
    assert item["semantic_segments"] is not None and item["instance_runs"] is not None
    bare = {k: v for k, v in item.items() if k not in ("semantic_segments", "instance_runs")}
    th = Thresholds(min_instance_area=1)
    with_runs, without = fuse_items([copy.deepcopy(item)], th), fuse_items([bare], th)
    for row in (with_runs[0], without[0]):
        row["quality"]["seconds"] = None
    assert with_runs == without and with_runs[0]["status"] == "ok"
