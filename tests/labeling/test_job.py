"""The labeling job end to end on Ray: exactly-once output, error rows, resume, retries, CLI."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dataset.reader import LabelReader
from dataset.validate import validate
from labeling.config import resolve
from labeling.demo import DEMO_FILES, build_demo_folder
from labeling.images import list_images
from pipelines.cli import main

labels = pytest.importorskip("pipelines.labels")

# the fixed backend on the demo photos: 9 files, 2 broken, shards of 4 -> 3 shards
FIXED = ["semantic.backend=fixed", "instances.backend=fixed", "semantic.params.num_instances=6",
         "instances.params.num_instances=6", "semantic.num_cpus=0.5", "instances.num_cpus=0.5",
         "decode_num_cpus=0.5", "shard_size=4"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return build_demo_folder(tmp_path_factory.mktemp("demo") / "images")


@pytest.fixture(scope="module")
def reference(ray_session, demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "labels"
    summary = labels.label_images(demo_root, out, resolve("demo", None, FIXED), progress=False)
    return out, summary


def _rows(out: Path) -> list[dict]:
    rows = pq.read_table(Path(out) / "shards").to_pylist()
    for row in rows:  # wall time differs between runs; everything else must not
        if row["quality"]:
            row["quality"].pop("seconds")
    return rows


def test_every_image_exactly_once_with_error_rows(reference, demo_root):
    out, summary = reference
    assert summary.processed == 9 and (summary.ok, summary.failed) == (7, 2)
    assert summary.shards_written == 3 and summary.shards_skipped == 0
    assert sorted(p.name for p in (out / "shards").iterdir()) == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    rows = _rows(out)
    assert [r["image_id"] for r in rows] == [r.image_id for r in list_images(demo_root)]
    assert len(rows) == len(DEMO_FILES)
    errors = {r["image_id"]: r["error"] for r in rows if r["status"] == "error"}
    assert errors == {"train/n01440764/empty.JPEG": "empty file (0 bytes)",
                      "train/n01440764/truncated.JPEG": errors["train/n01440764/truncated.JPEG"]}
    assert "truncated" in errors["train/n01440764/truncated.JPEG"]
    ok = {r["image_id"]: r for r in rows if r["status"] == "ok"}
    cat = ok["train/n02123045/chelsea_cmyk.JPEG"]
    assert (cat["height"], cat["width"], cat["class_index"]) == (300, 451, 281)
    assert len(cat["semantic"]) == 8 and 1 <= len(cat["instances"]) <= 6
    assert cat["quality"]["num_instances"] == len(cat["instances"])
    assert ok["extra/astronaut.JPEG"]["class_index"] == -1
    assert ok["train/n04485082/camera.JPEG"]["height"] == 512  # grayscale JPEG labeled
    assert validate(out, progress=False) == (9, [])


def test_metadata_and_manifest(reference, demo_root):
    out, _ = reference
    reader = LabelReader(out)
    meta = reader.metadata
    assert meta["input_root"] == str(demo_root.resolve())
    assert meta["config"] == resolve("demo", None, FIXED).to_dict()
    assert [p["backend"] for p in meta["producers"]] == ["fixed"]
    assert meta["producers"][0]["roles"] == ["semantic", "instances"]
    assert meta["vocabularies"]["semantic"][0] == "band 0"
    assert meta["vocabularies"]["classes"][281] == "tabby"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"] == {**manifest["totals"], "shards": 3, "rows": 9, "ok": 7, "error": 2}


def test_resume_after_interrupt_gives_identical_output(reference, demo_root, tmp_path):
    config = resolve("demo", None, FIXED)
    out = tmp_path / "labels"

    def stop_after_first(info):
        raise KeyboardInterrupt  # as if the driver was stopped right after one shard

    with pytest.raises(KeyboardInterrupt):
        labels.label_images(demo_root, out, config, progress=False, on_shard=stop_after_first)
    assert [p.name for p in (out / "shards").glob("part-*")] == ["part-00000.parquet"]
    stale = out / "shards" / ".part-00001.parquet.abc123.tmp"
    stale.write_bytes(b"half a shard")  # what a killed writer leaves behind

    summary = labels.label_images(demo_root, out, config, progress=False)
    assert (summary.shards_skipped, summary.shards_written, summary.processed) == (1, 2, 5)
    assert not stale.exists()
    assert _rows(out) == _rows(reference[0])
    assert validate(out, progress=False) == (9, [])
    assert json.loads((out / "manifest.json").read_text())["totals"]["rows"] == 9

    again = labels.label_images(demo_root, out, config, progress=False)
    assert (again.processed, again.shards_skipped) == (0, 3)


def test_rerun_refuses_to_mix_configs_or_lists(reference, demo_root):
    out, _ = reference
    changed = resolve("demo", None, [*FIXED, "thresholds.min_instance_area=1"])
    with pytest.raises(ValueError, match="different labeling config"):
        labels.label_images(demo_root, out, changed, progress=False)
    with pytest.raises(ValueError, match="holds other images"):
        labels.label_images(demo_root, out, resolve("demo", None, FIXED), limit=5, progress=False)
    scaled = resolve("demo", None, [*FIXED, "semantic.batch_size=1", "instances.batch_size=1"])
    assert labels.label_images(demo_root, out, scaled, progress=False).processed == 0


def test_separate_model_pools_a_failing_model_and_a_crashed_actor(ray_session, demo_root,
                                                                  tmp_path):
    marker = tmp_path / "crashed"
    config = resolve("demo", None, [
        *FIXED, "semantic.params.num_categories=3", "instances.params.fail_class=tabby",
        f"instances.params.crash_once={marker}", "image_max_side=128", "store_images=true"])
    assert not config.shared_model()
    summary = labels.label_images(demo_root, tmp_path / "labels", config, limit=6, progress=False)
    assert marker.exists()  # the first instance actor died; Ray restarted it and redid its batch
    rows = {r["image_id"]: r for r in _rows(tmp_path / "labels")}
    assert list(rows) == [r.image_id for r in list_images(demo_root, limit=6)]
    assert summary.failed == 4  # empty, truncated and the two cats
    cat = rows["train/n02123045/chelsea.JPEG"]
    assert cat["status"] == "error" and "instances model 'fixed' failed" in cat["error"]
    assert (cat["height"], cat["width"]) == (300, 451)  # decoded before the model failed
    astronaut = rows["extra/astronaut.JPEG"]
    assert astronaut["status"] == "ok" and len(astronaut["semantic"]) == 3
    # the models saw a 128 px image; the masks are back at the original 512 x 512
    assert (astronaut["height"], astronaut["width"]) == (512, 512)
    assert sum(e["area"] for e in astronaut["semantic"]) == 512 * 512
    assert astronaut["image_bytes"] == (demo_root / "extra/astronaut.JPEG").read_bytes()
    assert rows["train/n01440764/empty.JPEG"]["image_bytes"] is None
    assert validate(tmp_path / "labels", progress=False) == (6, [])
    producers = LabelReader(tmp_path / "labels").metadata["producers"]
    assert [p["roles"] for p in producers] == [["semantic"], ["instances"]]


def test_cli_demo_profile_builds_its_input(ray_session, tmp_path, capsys):
    out = tmp_path / "out" / "labels"
    assert main(["labels", "--profile", "demo", "--output", str(out), "--limit", "4"]) == 0
    assert "labeled 4 images (2 ok, 2 failed)" in capsys.readouterr().out
    demo = tmp_path / "out" / "demo_images"
    assert (demo / "train/n02123045/chelsea.JPEG").exists()
    reader = LabelReader(out)
    assert reader.input_root == str(demo.resolve())
    assert reader.metadata["producers"][0]["backend"] == "saliency"
    rows = {r["image_id"]: r for r in reader}
    cat = rows["train/n02123045/chelsea.JPEG"]
    assert {e["category_id"] for e in cat["semantic"]} == {0, 282}  # background, tabby
    assert validate(out, progress=False) == (4, [])


@pytest.mark.parametrize("argv, message", [
    (["--input", "/no/such/folder"], "does not exist"),
    (["--profile", "imagenet"], "--input is required"),
    (["--profile", "nope"], "unknown profile"),
    (["--profile", "demo", "semantic.num_cpus=64", "instances.num_cpus=64"], "needs 65 CPUs"),
])
def test_cli_errors_are_one_line(ray_session, tmp_path, capsys, argv, message):
    assert main(["labels", "--output", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("c2fmae labels: error: ") and message in err[-1]


def test_an_image_that_kills_its_model_process_every_time_becomes_an_error_row(
        ray_session, demo_root, tmp_path):
    # the chelsea photos (tabby) crash the instance actor whenever they are in its batch;
    # Ray restarts it and retries without limit: the ledger must end this
    config = resolve("demo", None, [*FIXED, "instances.params.crash_class=tabby",
                                    "instances.batch_size=3", "max_model_deaths=1"])

    def endless(*_):  # without the ledger the job never ends: fail instead of hanging
        raise TimeoutError("the job did not finish in 240 s")

    previous = signal.signal(signal.SIGALRM, endless)
    signal.alarm(240)
    try:
        summary = labels.label_images(demo_root, tmp_path / "labels", config, progress=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    rows = {r["image_id"]: r for r in _rows(tmp_path / "labels")}
    assert list(rows) == [r.image_id for r in list_images(demo_root)]
    tabby = {k for k in rows if k.startswith("train/n02123045/")}
    assert len(tabby) == 2 and summary.failed == 2 + len(tabby)  # + empty, truncated
    for image_id in tabby:
        assert rows[image_id]["status"] == "error"
        assert "process died 1 times on this image" in rows[image_id]["error"]
    # everything else went through, the neighbours of the tabbies in their batch included
    ok = [k for k, r in rows.items() if r["status"] == "ok"]
    assert len(ok) == 9 - 2 - len(tabby) and all(rows[k]["instances"] for k in ok)
    assert validate(tmp_path / "labels", progress=False) == (9, [])


def test_death_ledger_counts_only_attempts_that_never_finished():
    ledger = labels.DeathLedger()
    assert ledger.begin("instances", [1, 2, 3]) is False  # first time: run the batch
    assert ledger.begin("semantic", [1, 2, 3]) is False  # stages count apart
    # the instances process died; Ray hands the batch over again
    assert ledger.begin("instances", [1, 2, 3]) is True
    assert ledger.begin_alone("instances", 1) == 0
    ledger.survived("instances", 1)
    assert ledger.begin_alone("instances", 2) == 0  # ... and it dies here
    assert ledger.begin("instances", [1, 2, 3]) is True
    assert ledger.begin_alone("instances", 1) == 0  # survived before: not counted
    assert ledger.begin_alone("instances", 2) == 1  # died once on its own
    ledger.finish("instances", [1, 2, 3])
    assert ledger.begin("instances", [2, 3]) is False  # finished: a fresh start
    assert ledger.begin_alone("instances", 2) == 0
