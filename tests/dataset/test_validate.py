import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from dataset import masks
from dataset.shards import write_manifest, write_shard
from dataset.validate import validate
from pipelines.cli import main
from tests.dataset.synth import error_row, make_row, metadata


def _write(root, shards):
    infos = [write_shard(root, i, rows, metadata()) for i, rows in enumerate(shards)]
    write_manifest(root, infos, metadata())


@pytest.fixture
def clean(tmp_path):
    rng = np.random.default_rng(0)
    shards = [[make_row(rng, i)[0] for i in range(6)] + [error_row(6)],
              [make_row(rng, i)[0] for i in range(10, 14)]]
    _write(tmp_path, shards)
    return tmp_path, shards


def test_clean_directory_passes(clean, capsys):
    root, _ = clean
    assert validate(root, progress=False) == (11, [])
    assert main(["validate", str(root), "--quiet", "--workers", "2"]) == 0
    assert "11 rows, all checks passed" in capsys.readouterr().out


def _corrupt(root, shards, edit):
    rows = [dict(r) for r in shards[0]]
    edit(rows)
    _write(root, [rows, shards[1]])
    return validate(root, progress=False)[1]


def test_each_kind_of_bad_row_is_reported(clean):
    root, shards = clean
    h, w = 37, 53

    def wrong_area(rows):
        rows[0]["instances"] = [dict(rows[0]["instances"][0], area=1)]

    def wrong_box(rows):
        rows[1]["instances"] = [dict(rows[1]["instances"][0], bbox=[0.0, 0.0, 1.0, 1.0])]

    def wrong_size_rle(rows):
        other = masks.encode(np.ones((h + 1, w), bool))
        rows[2]["semantic"] = [dict(rows[2]["semantic"][0], counts=other["counts"])]

    def overlapping_semantic(rows):
        full = masks.encode(np.ones((h, w), bool))
        sem = rows[3]["semantic"][0]
        rows[3]["semantic"] = [sem, dict(sem, category_id=9, counts=full["counts"], area=h * w)]

    def duplicate_id(rows):
        rows[4]["image_id"] = shards[1][0]["image_id"]

    def garbage_rle(rows):
        rows[5]["instances"] = [dict(rows[5]["instances"][0], counts=b"\x01\x02")]

    def unknown_category(rows):
        rows[0]["semantic"] = [dict(rows[0]["semantic"][0], category_id=99)]

    def error_without_reason(rows):
        rows[6]["error"] = None

    cases = {
        wrong_area: "row 0 (train/n00000000/img_00000.JPEG): instances[0]: area says 1",
        wrong_box: "row 1 (train/n00000001/img_00001.JPEG): instances[0]: bbox [0.0, 0.0, 1.0, 1.0] differs",
        wrong_size_rle: f"semantic[0]: RLE covers {(h + 1) * w} pixels, image is {h}x{w}",
        overlapping_semantic: "semantic masks overlap on",
        duplicate_id: "appears 2 times (part-00000.parquet, part-00001.parquet)",
        garbage_rle: "instances[0]: malformed RLE",
        unknown_category: "category_id 99 is not in the semantic vocabulary",
        error_without_reason: "status 'error' without a reason",
    }
    for edit, expected in cases.items():
        problems = _corrupt(root, shards, edit)
        assert len(problems) >= 1, edit.__name__
        assert any(expected in p for p in problems), (edit.__name__, problems)


def test_broken_files_are_named_not_tracebacks(clean, capsys):
    root, _ = clean
    shard = root / "shards" / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:200])  # truncated
    (root / "shards" / "part-00002.parquet").write_bytes(b"hello")  # foreign file
    assert main(["validate", str(root), "--quiet", "--workers", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(str(shard)) and "not a readable Parquet file" in line for line in out)
    assert any("part-00002.parquet" in line and "not a readable Parquet file" in line for line in out)
    assert any("size or sha256 of part-00001.parquet differs" in line for line in out)
    assert any("does not list part-00002.parquet" in line for line in out)
    assert all("Traceback" not in line for line in out)


def test_missing_directory(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope"), "--quiet"]) == 1
    assert "no such label directory" in capsys.readouterr().out


def test_export_coco_opens_in_pycocotools(clean, tmp_path):
    root, shards = clean
    out = tmp_path / "coco.json"
    assert main(["export-coco", str(root), "--out", str(out), "--limit", "5"]) == 0
    coco = COCO(str(out))
    assert len(coco.getImgIds()) == 5
    ann_ids = coco.getAnnIds(imgIds=[1])
    assert len(ann_ids) == len(shards[0][0]["instances"])
    ann = coco.loadAnns(ann_ids[0])[0]
    m = coco.annToMask(ann)
    assert m.sum() == ann["area"] and m.shape == (37, 53)
    cats = {c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert "object" in cats  # instances without a semantic class
    sem = tmp_path / "sem.json"
    assert main(["export-coco", str(root), "--out", str(sem), "--kind", "semantic"]) == 0
    doc = json.loads(sem.read_text())
    assert len(doc["images"]) == 10 and all(a["iscrowd"] == 1 for a in doc["annotations"])
