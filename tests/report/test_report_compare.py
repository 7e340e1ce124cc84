"""--compare: per-image agreement of two label sets, by hand, for every join method.

Set B labels the images of set A (conftest.py) with its own vocabulary
{0: dog, 1: sky, 2: grass} (the ids of sky and dog are swapped, grass is new):

img_0  semantic: sky rows 0-14, dog rows 15-19
       vs A (sky rows 0-9, dog rows 10-19 x cols 0-14): agree on rows 0-9 (300 px) and on
       rows 15-19 x cols 0-14 (75 px) -> 375 / 600 = 0.625
       instances: 5x5 box (= A's, IoU 1) and rows 10-19 x cols 0-4 (50 px; A's 10x10 box
       holds it: IoU 50 / 100 = 0.5) -> (1 + 0.5) / max(2, 2) = 0.75, 2 matches >= 0.5
img_1  semantic: grass rows 0-9, dog rows 10-19 vs A (dog everywhere): 300 / 600 = 0.5;
       no instances on either side -> instance agreement undefined
img_2  failed in both
img_3  failed in A, ok in B (sky everywhere)
img_4  semantic: sky everywhere = A -> 1.0; A has 1 instance, B none -> 0 / 1 = 0
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labeling.report import ReportConfig, build_report
from tests.report.report_synth import H, W, label_row, rect, set_a_rows, write_set

VOCAB_B = {0: "dog", 1: "sky", 2: "grass"}
SKY, DOG, GRASS = 1, 0, 2


def set_b_rows() -> list[dict]:
    sem0 = np.full((H, W), DOG, np.int32)
    sem0[:15] = SKY
    sem1 = np.full((H, W), DOG, np.int32)
    sem1[:10] = GRASS
    return [
        label_row("train/n0/img_0.JPEG", 0, sem0, [rect(0, 5, 0, 5), rect(10, 20, 0, 5)]),
        label_row("train/n1/img_1.JPEG", 1, sem1),
        label_row("train/n1/img_2.JPEG", 1, None, error="out of memory"),
        label_row("train/n0/img_3.JPEG", 0, np.full((H, W), SKY, np.int32)),
        label_row("train/n0/img_4.JPEG", 0, np.full((H, W), SKY, np.int32)),
    ]


def check_agreement(c: dict) -> None:
    assert (c["both_ok"], c["ok_only_a"], c["ok_only_b"], c["both_error"]) == (3, 0, 1, 1)
    sem = c["semantic_agreement"]
    assert sem["count"] == 3
    assert sem["mean"] == pytest.approx((0.625 + 0.5 + 1.0) / 3)
    assert (sem["min"], sem["max"]) == (pytest.approx(0.5), pytest.approx(1.0))
    assert c["pixel_agreement"] == pytest.approx((375 + 300 + 600) / 1800)
    inst = c["instance_agreement"]
    assert inst["count"] == 2 and inst["missing"] == 1
    assert inst["mean"] == pytest.approx((0.75 + 0.0) / 2)
    assert (c["instances_a"], c["instances_b"], c["matched_iou50"]) == (3, 2, 2)
    assert c["matched_share_a"] == pytest.approx(2 / 3)
    pairs = {(p["a"], p["b"]): p["pixels"] for p in c["category_pairs"]}
    assert pairs[("sky", "sky")] == 300 + 600  # img_0 rows 0-9, all of img_4
    assert pairs[("dog", "grass")] == 300  # what A calls dog, B calls grass on img_1
    assert pairs[("(unlabeled)", "sky")] == 75  # img_0 rows 10-14 x cols 15-29
    assert sum(pairs.values()) == 1800


def _report(a: Path, b: Path, out: Path, **kw) -> dict:
    return build_report(ReportConfig(labels=str(a), out=str(out), compare=str(b), gallery=2, **kw))


def test_compare_same_order_zips(set_a: Path, tmp_path: Path):
    b = write_set(tmp_path / "b", set_b_rows(), per_shard=2, vocab=VOCAB_B)  # other shard layout
    summary = _report(set_a, b, tmp_path / "r")
    c = summary["compare"]
    assert c["join"]["method"] == "zip" and c["join"]["joined"] == 5
    check_agreement(c)
    # side by side: both sets' figures are in the summary and on the page
    assert summary["sets"]["B"]["totals"]["ok"] == 4
    html = (tmp_path / "r" / "report.html").read_text()
    assert "A vs B: per-image agreement" in html and "Least agreeing images" in html
    # the least agreeing image (img_1, 0.5) comes first in the gallery
    assert html.index("train/n1/img_1.JPEG", html.index("Least agreeing")) < html.index(
        "train/n0/img_0.JPEG", html.index("Least agreeing"))


def test_compare_unordered_sets_hash_join(set_a: Path, tmp_path: Path):
    rows = set_b_rows()
    extra = label_row("train/n9/img_9.JPEG", 9, np.full((H, W), SKY, np.int32))
    shuffled = [rows[3], extra, rows[0], rows[4], rows[2], rows[1]]
    b = write_set(tmp_path / "b", shuffled, per_shard=4, vocab=VOCAB_B)
    c = _report(set_a, b, tmp_path / "r", partition_rows=2)["compare"]  # 3 partitions
    assert c["join"]["method"] == "hash"
    assert (c["join"]["joined"], c["join"]["only_a"], c["join"]["only_b"]) == (5, 0, 1)
    assert c["join"]["examples_only_b"] == ["train/n9/img_9.JPEG"]
    check_agreement(c)


def test_compare_sorted_sets_merge_join(tmp_path: Path):
    a_rows = sorted(set_a_rows(), key=lambda r: r["image_id"])
    b_rows = sorted(set_b_rows(), key=lambda r: r["image_id"])
    extra = label_row("train/n0/img_00.JPEG", 0, np.full((H, W), SKY, np.int32))
    a = write_set(tmp_path / "a", a_rows + [], per_shard=3)
    b = write_set(tmp_path / "b", sorted(b_rows + [extra], key=lambda r: r["image_id"]),
                  per_shard=2, vocab=VOCAB_B)
    c = _report(a, b, tmp_path / "r")["compare"]
    assert c["join"]["method"] == "merge"
    assert (c["join"]["joined"], c["join"]["only_a"], c["join"]["only_b"]) == (5, 0, 1)
    check_agreement(c)


def test_compare_with_sample_uses_sampled_rows_only(set_a: Path, tmp_path: Path):
    b = write_set(tmp_path / "b", set_b_rows(), vocab=VOCAB_B)
    summary = _report(set_a, b, tmp_path / "r", sample=2)
    c = summary["compare"]
    assert c["join"]["method"] == "hash" and c["join"]["joined"] == 2
    assert summary["sets"]["A"]["rows_read"] == 2


def test_rle_pair_counts_equal_decoded_counts():
    """The no-decode path gives exactly the pixel counts of the decoded label maps."""
    from dataset import masks
    from labeling.report.compare import label_map, pair_counts, rle_pair_counts

    rng = np.random.default_rng(0)
    for _ in range(5):
        h, w = int(rng.integers(20, 90)), int(rng.integers(20, 90))
        maps = []
        for _ in range(2):
            m = rng.integers(-1, 6, size=(h // 5 + 1, w // 5 + 1)).astype(np.int32)
            maps.append(np.kron(m, np.ones((5, 5), np.int32))[:h, :w])  # blocky regions
        rows = [{"height": h, "width": w, "semantic": masks.semantic_entries(m)} for m in maps]
        expected = pair_counts(maps[0], maps[1])
        assert rle_pair_counts(rows[0], rows[1]) == expected
        assert pair_counts(label_map(rows[0]), label_map(rows[1])) == expected
