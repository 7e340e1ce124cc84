"""The streaming building blocks: histograms, capped counters, bottom-k samples."""

from __future__ import annotations

import random

import numpy as np
import pytest

from labeling.report.collect import WorstMetric
from labeling.report.stats import BottomK, CappedCounter, Histogram, reason_key, sample_key


def test_histogram_bins_edges_and_moments():
    h = Histogram.linear(0.0, 1.0, 4)  # [0, .25) [.25, .5) [.5, .75) [.75, 1]
    h.update([0.0, 0.1, 0.25, 0.5, 0.99, 1.0, -0.5, 2.0, float("nan")])
    assert h.counts.tolist() == [2, 1, 1, 2]
    assert (h.underflow, h.overflow, h.missing) == (1, 1, 1)
    d = h.to_dict()
    values = [0.0, 0.1, 0.25, 0.5, 0.99, 1.0, -0.5, 2.0]
    assert d["count"] == 8
    assert d["mean"] == pytest.approx(np.mean(values))
    assert d["std"] == pytest.approx(np.std(values))
    assert (d["min"], d["max"]) == (-0.5, 2.0)


def test_histogram_updates_in_pieces_equal_one_update():
    rng = np.random.default_rng(0)
    v = rng.normal(0.5, 0.3, 1000)
    whole, parts = Histogram.linear(0, 1, 10), Histogram.linear(0, 1, 10)
    whole.update(v)
    for chunk in np.array_split(v, 7):
        parts.update(chunk)
    a, b = whole.to_dict(), parts.to_dict()
    for key in ("counts", "underflow", "overflow", "missing", "count", "min", "max"):
        assert a[key] == b[key]
    assert a["mean"] == pytest.approx(b["mean"])
    assert a["std"] == pytest.approx(b["std"])


def test_integer_histogram_and_bad_edges():
    h = Histogram.integers(3)
    h.update([0, 1, 1, 2, 3, 7])
    assert h.counts.tolist() == [1, 2, 2]  # 3 lands in the closed last bin [2, 3]
    assert h.overflow == 1
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(np.array([0.0, 0.0, 1.0]))


def test_capped_counter_pools_new_keys():
    c = CappedCounter(cap=2)
    for key in ["a", "b", "a", "c", "d", "b"]:
        c.add(key)
    assert c.to_dict() == {"a": 2, "b": 2, "(other)": 2}


def test_reason_key_blanks_paths_and_numbers():
    a = reason_key("cannot identify image file '/data/train/n01/x_12.JPEG' (3 bytes)")
    b = reason_key("cannot identify image file '/data/train/n02/y_9.JPEG' (17 bytes)")
    assert a == b
    assert reason_key(None) == "unknown error"


def test_bottom_k_is_order_independent_and_keeps_smallest():
    items = [(sample_key(f"id{i}"), f"id{i}") for i in range(200)]
    expected = sorted(items)[:5]
    for seed in range(3):
        shuffled = items[:]
        random.Random(seed).shuffle(shuffled)
        heap = BottomK(5)
        for key, name in shuffled:
            if heap.would_accept(key):
                heap.push(key, name, name)
        assert [(k, v) for k, v in heap.items()] == expected


def test_bottom_k_ties_broken_by_id():
    heap = BottomK(2)
    for name in ["c", "a", "d", "b"]:
        heap.push(0.5, name, name)
    assert [v for _, v in heap.items()] == ["a", "b"]


def test_worst_metric_parsing():
    assert WorstMetric.parse("semantic_confidence").high_is_bad is False
    assert WorstMetric.parse("unlabeled_fraction").high_is_bad is True
    assert WorstMetric.parse("semantic_confidence:high").high_is_bad is True
    with pytest.raises(ValueError, match="unknown quality metric 'bogus'"):
        WorstMetric.parse("bogus")
    with pytest.raises(ValueError, match="suffix"):
        WorstMetric.parse("seconds:up")
