"""--ground-truth: mIoU of set A (conftest.py) against synthetic PNG label maps.

GT of img_0 (single-channel PNG, 255 = ignore): rows 0-9 = 0, rows 10-18 = 1, row 19 = 255.
  A predicts 0 on rows 0-9, 1 on rows 10-19 x cols 0-14, nothing on cols 15-29.
  -> (gt 0, pred 0) 300; (1, 1) 9 * 15 = 135; (1, none) 135.
GT of img_1 (RGB PNG, id = R + 256 G, 1000 = ignore): row 0 = 1000, rows 1-19: cols 0-14 = 1,
  cols 15-29 = 2. A predicts 1 everywhere -> (1, 1) 19 * 15 = 285; (2, 1) 285.
img_4 has no GT file.
Totals: IoU0 = 300 / 300 = 1; IoU1 = 420 / (420 + FN 135 + FP 285) = 0.5; IoU2 = 0 / 285 = 0.
mIoU = 0.5; pixel accuracy = 720 / 1140.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeling.report import ReportConfig, build_report
from labeling.report.groundtruth import GtMapping, read_label_png
from tests.report.report_synth import H, W


def write_gt(root: Path) -> Path:
    (root / "train/n0").mkdir(parents=True)
    (root / "train/n1").mkdir(parents=True)
    gt0 = np.zeros((H, W), np.uint8)
    gt0[10:19] = 1
    gt0[19] = 255
    Image.fromarray(gt0, mode="L").save(root / "train/n0/img_0.png")
    ids = np.ones((H, W), np.int64)
    ids[:, 15:] = 2
    ids[0] = 1000
    rgb = np.stack([ids % 256, ids // 256, np.zeros_like(ids)], -1).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(root / "train/n1/img_1.png")
    return root


def test_label_png_decoding(tmp_path: Path):
    gt = write_gt(tmp_path / "gt")
    ids, rgb = read_label_png(gt / "train/n1/img_1.png")
    assert rgb and ids[0, 0] == 1000 and ids[5, 0] == 1 and ids[5, 20] == 2
    ids, rgb = read_label_png(gt / "train/n0/img_0.png")
    assert not rgb and ids[19, 0] == 255


def test_miou_identity_mapping(set_a: Path, tmp_path: Path):
    gt = write_gt(tmp_path / "gt")
    summary = build_report(ReportConfig(labels=str(set_a), out=str(tmp_path / "r"),
                                        ground_truth=str(gt), gallery=1))
    g = summary["ground_truth"]
    assert g["images"] == 2
    assert g["rows_without_gt"] == 3  # img_2, img_3 (failed) and img_4
    per = {r["gt_id"]: r for r in g["per_class"]}
    assert (per[0]["tp"], per[0]["fp"], per[0]["fn"]) == (300, 0, 0)
    assert (per[1]["tp"], per[1]["fp"], per[1]["fn"]) == (420, 285, 135)
    assert (per[2]["tp"], per[2]["fp"], per[2]["fn"]) == (0, 0, 285)
    assert per[1]["iou"] == pytest.approx(0.5) and per[2]["iou"] == 0.0
    assert g["miou"] == pytest.approx(0.5)
    assert g["pixel_accuracy"] == pytest.approx(720 / 1140)
    assert g["scored_pixels"] == 1140
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Against ground truth" in html and "mIoU" in html


def test_miou_with_mapping_file(set_a: Path, tmp_path: Path):
    """sky -> 5, dog -> the GT id of the image's class (tench -> 7), unlabeled -> 0.

    GT of img_0: rows 0-9 = 5, rows 10-19 = 7. Prediction: 5 on rows 0-9, 7 on rows 10-19 x
    cols 0-14, 0 (unlabeled) on cols 15-29 -> IoU5 = 1, IoU7 = 150 / 300, IoU0 = 0 / 150.
    """
    gt = tmp_path / "gt"
    (gt / "train/n0").mkdir(parents=True)
    gt0 = np.full((H, W), 5, np.uint8)
    gt0[10:] = 7
    Image.fromarray(gt0, mode="L").save(gt / "train/n0/img_0.png")
    mapping = tmp_path / "map.yaml"
    mapping.write_text("categories:\n  sky: 5\n  dog: class\nclasses: {0: 7, 1: 8}\n"
                       "unlabeled: 0\nnames: {5: sky, 7: tench, 0: background}\n")
    summary = build_report(ReportConfig(labels=str(set_a), out=str(tmp_path / "r"),
                                        ground_truth=str(gt), gt_mapping=str(mapping), gallery=0))
    g = summary["ground_truth"]
    per = {r["gt_id"]: r for r in g["per_class"]}
    assert set(per) == {0, 5, 7}
    assert per[5]["iou"] == 1.0 and per[7]["iou"] == pytest.approx(0.5) and per[0]["iou"] == 0.0
    assert per[7]["name"] == "tench"
    assert g["miou"] == pytest.approx(0.5)


def test_mapping_errors(tmp_path: Path):
    vocab = {0: "sky", 1: "dog"}
    with pytest.raises(FileNotFoundError, match="mapping file not found"):
        GtMapping.load(tmp_path / "nope.yaml", vocab)
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories:\n  cat: 3\n")
    with pytest.raises(ValueError, match="'cat' is not in the labels' semantic vocabulary"):
        GtMapping.load(bad, vocab)
    bad.write_text("categories:\n  sky: sometimes\n")
    with pytest.raises(ValueError, match="use a GT id or 'class'"):
        GtMapping.load(bad, vocab)


def test_missing_gt_dir_is_a_clear_error(set_a: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="ground-truth directory not found"):
        build_report(ReportConfig(labels=str(set_a), out=str(tmp_path / "r"),
                                  ground_truth=str(tmp_path / "nope")))
