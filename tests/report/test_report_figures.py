"""Report figures of the synthetic set A (see conftest.py) against hand-computed values."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from labeling.report import ReportConfig, build_report
from tests.report.report_synth import H, W, set_a_rows, write_photos, write_set


@pytest.fixture(scope="module")
def report_a(set_a: Path, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("report_a") / "report"
    summary = build_report(ReportConfig(labels=str(set_a), out=str(out), gallery=2))
    return summary, out


def test_totals_and_failure_reasons(report_a):
    summary, out = report_a
    totals = summary["sets"]["A"]["totals"]
    assert (totals["rows"], totals["ok"], totals["error"]) == (5, 3, 2)
    assert totals["semantic_masks"] == 4  # 2 + 1 + 1
    assert totals["instance_masks"] == 3  # 2 + 0 + 1
    # both failures differ only in their path: one reason, counted twice
    assert totals["failure_reasons"] == {"cannot decode <path> truncated": 2}
    assert [e["image_id"] for e in totals["failed_examples"]] == [
        "train/n1/img_2.JPEG", "train/n0/img_3.JPEG"]
    # summary.json holds the same figures (strict JSON)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["sets"]["A"]["totals"] == totals


def test_bytes_on_disk_match_the_files(report_a, set_a: Path):
    disk = report_a[0]["sets"]["A"]["disk"]
    files = sorted((set_a / "shards").glob("part-*.parquet"))
    assert disk["shards"] == len(files) == 2
    assert disk["shard_bytes"] == sum(f.stat().st_size for f in files)
    assert disk["bytes_per_row"] == pytest.approx(disk["shard_bytes"] / 5)
    assert disk["manifest_bytes"] == (set_a / "manifest.json").stat().st_size
    assert set(disk["columns"]) >= {"semantic", "instances", "image_id", "quality"}


def test_distributions(report_a):
    s = report_a[0]["sets"]["A"]
    d = s["distributions"]
    assert d["instances_per_image"]["counts"][:3] == [1, 1, 1]  # 0, 1 and 2 instances
    assert d["semantic_per_image"]["counts"][:3] == [0, 2, 1]
    lab = d["labeled_fraction"]
    assert lab["count"] == 3
    assert lab["mean"] == pytest.approx((450 / 600 + 1 + 1) / 3)
    assert lab["counts"][15] == 1 and lab["counts"][19] == 2  # 0.75 -> [.75, .8); 1.0 -> last
    area = d["instance_relative_area"]
    assert area["count"] == 3
    assert area["mean"] == pytest.approx((25 + 100 + 600) / 600 / 3)
    assert area["max"] == pytest.approx(1.0)
    assert s["instance_sizes"] == {"small": 3, "medium": 0, "large": 0}  # all < 32*32 px
    assert d["instance_score"]["mean"] == pytest.approx((0.9 + 0.8 + 0.7) / 3)
    assert d["instance_stability"]["min"] == pytest.approx(0.75)
    assert d["semantic_score"]["count"] == 4
    assert s["quality"]["semantic_confidence"]["mean"] == pytest.approx((0.9 + 0.5 + 0.7) / 3)
    assert s["quality"]["seconds"]["count"] == 0  # never filled: no data, no error


def test_semantic_categories_and_per_class_table(report_a):
    s = report_a[0]["sets"]["A"]
    cats = {c["name"]: c for c in s["semantic_categories"]}
    assert cats["sky"]["pixels"] == 300 + 600
    assert cats["dog"]["pixels"] == 150 + 600
    assert cats["sky"]["pixel_share"] == pytest.approx(900 / 1650)
    assert cats["sky"]["images"] == 2 and cats["dog"]["images"] == 2
    assert cats["sky"]["mean_score"] == pytest.approx(0.9)
    assert cats["sky"]["instances"] == 2  # img_0's 5x5 box and img_4's full mask
    assert s["semantic_categories"][0]["name"] == "sky"  # sorted by pixels
    classes = {c["class_index"]: c for c in s["classes"]}
    tench, goldfish = classes[0], classes[1]
    assert tench["name"] == "tench" and tench["images"] == 2  # the failed img_3 is not counted
    assert [(c["name"], c["pixel_share"]) for c in tench["categories"]] == [
        ("sky", pytest.approx(900 / 1200)), ("dog", pytest.approx(150 / 1200))]
    assert tench["unlabeled_share"] == pytest.approx(150 / 1200)
    assert tench["categories"][0]["image_share"] == pytest.approx(1.0)
    assert tench["categories"][1]["image_share"] == pytest.approx(0.5)
    assert goldfish["categories"][0]["pixel_share"] == pytest.approx(1.0)


def test_galleries_and_missing_images(report_a):
    summary, out = report_a
    # worst by semantic_confidence (lowest first), failed rows never included
    html = (out / "report.html").read_text()
    assert "worst by semantic_confidence (lowest first)" in html
    i1, i4 = html.index("semantic_confidence = 0.5"), html.index("semantic_confidence = 0.7")
    assert i1 < i4 and "semantic_confidence = 0.9" not in html  # gallery of 2
    # photos exist for img_0 and img_1 only; a missing photo is a note, not an error
    missing = summary["missing_images"]
    assert missing["images"] == {"train/n0/img_4.JPEG": "image file not found"}
    assert html.count('src="data:image/') >= 2 * 2 + 5  # two galleries of 2 + plots
    assert "train/n0/img_4.JPEG" in html


def test_sample_reads_exactly_n_rows(set_a: Path, tmp_path: Path):
    summary = build_report(ReportConfig(labels=str(set_a), out=str(tmp_path / "r"), sample=3,
                                        gallery=1))
    s = summary["sets"]["A"]
    assert s["rows_read"] == 3 and s["totals"]["rows"] == 3 and s["sampled"]
    assert s["rows_in_directory"] == 5
    again = build_report(ReportConfig(labels=str(set_a), out=str(tmp_path / "r2"), sample=3,
                                      gallery=1))
    assert again["sets"]["A"]["totals"] == s["totals"]  # seeded: the same rows


def test_worst_metric_high_end(set_a: Path, tmp_path: Path):
    summary = build_report(ReportConfig(labels=str(set_a), out=str(tmp_path / "r"), gallery=1,
                                        worst_metric="semantic_confidence:high"))
    assert "highest first" in summary["sets"]["A"]["worst_metric"]
    html = (tmp_path / "r" / "report.html").read_text()
    assert "semantic_confidence = 0.9" in html


def test_overlays_fall_back_to_stored_image_bytes(tmp_path: Path):
    """No input root: a row's photo comes from its optional image_bytes copy."""
    rows = [r for r in set_a_rows() if r["status"] == "ok"]
    buf = io.BytesIO()
    Image.new("RGB", (W, H), (200, 30, 30)).save(buf, "JPEG")
    rows[0]["image_bytes"] = buf.getvalue()
    labels = write_set(tmp_path / "labels", rows)
    summary = build_report(ReportConfig(labels=str(labels), out=str(tmp_path / "r"), gallery=3))
    missing = summary["missing_images"]["images"]
    assert rows[0]["image_id"] not in missing
    assert missing == {r["image_id"]: "no image root (pass --images)" for r in rows[1:]}
    # --images points at a folder with the other photos
    write_photos(tmp_path / "photos", [r["image_id"] for r in rows[1:]])
    summary = build_report(ReportConfig(labels=str(labels), out=str(tmp_path / "r2"), gallery=3,
                                        images=str(tmp_path / "photos")))
    assert summary["missing_images"]["count"] == 0
