import json

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from dataset import LabelReader, Position, instance_map, semantic_map
from dataset.masks import instance_map as _unused  # noqa: F401
from dataset.schema import LABEL_SCHEMA, SCHEMA_VERSION, read_metadata
from dataset.shards import (
    ShardError,
    list_shards,
    read_manifest,
    rebuild_manifest,
    write_manifest,
    write_shard,
)
from tests.dataset.synth import error_row, make_row, metadata


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    """Two shards, 50 + 30 rows (one error row in each), small row groups."""
    root = tmp_path_factory.mktemp("labels")
    rng = np.random.default_rng(0)
    truth, infos, index = {}, [], 0
    for shard, n in enumerate([50, 30]):
        rows = []
        for _ in range(n - 1):
            row, label, inst = make_row(rng, index)
            truth[row["image_id"]] = (label, inst)
            rows.append(row)
            index += 1
        rows.insert(7, error_row(index))
        index += 1
        infos.append(write_shard(root, shard, rows, metadata(), row_group_size=16))
    write_manifest(root, infos, metadata())
    return root, truth


def test_round_trip_gives_identical_masks(labels):
    root, truth = labels
    reader = LabelReader(root)
    seen = 0
    for row in reader:
        if row["status"] != "ok":
            assert row["error"] and row["semantic"] is None
            continue
        label, inst = truth[row["image_id"]]
        assert (semantic_map(row) == label).all()
        got = instance_map(row)
        assert ((got > 0) == inst.any(0)).all()
        for i in range(len(inst)):  # every pixel shown as instance i lies in mask i
            assert inst[i][got == i + 1].all()
        seen += 1
    assert seen == len(truth) == 78


def test_metadata_and_manifest(labels):
    root, _ = labels
    reader = LabelReader(root)
    assert reader.metadata["schema_version"] == SCHEMA_VERSION
    assert reader.semantic_vocab[3] == "category-3"
    manifest = read_manifest(root)
    assert manifest["totals"] == {"shards": 2, "rows": 80, "ok": 78, "error": 2,
                                  "bytes": sum(p.stat().st_size for p in list_shards(root))}
    assert [s["name"] for s in manifest["shards"]] == ["part-00000.parquet", "part-00001.parquet"]
    rebuilt = rebuild_manifest(root)
    assert rebuilt["shards"] == manifest["shards"]


def test_resume_from_any_position_continues_exactly(labels):
    root, _ = labels
    reader = LabelReader(root)
    full = [(r["image_id"], pos) for r, pos in reader.rows()]
    assert len(full) == 80 and full[-1][1] == Position(1, 30)
    for cut in (0, 1, 15, 16, 17, 49, 50, 63, 79):
        start = full[cut - 1][1] if cut else Position()
        rest = [r["image_id"] for r, _ in reader.rows(start)]
        assert rest == [i for i, _ in full[cut:]]
    only_second = [r["image_id"] for r, _ in reader.rows(shards=[1])]
    assert only_second == [i for i, _ in full[50:]]


def test_other_tools_read_the_shards(labels):
    root, _ = labels
    df = pd.read_parquet(root / "shards")
    assert len(df) == 80 and set(df["status"]) == {"ok", "error"}
    ds = pads.dataset(root / "shards", format="parquet")
    assert ds.count_rows() == 80
    assert ds.schema.remove_metadata().equals(LABEL_SCHEMA)
    pf = pq.ParquetFile(list_shards(root)[0])
    assert pf.metadata.num_row_groups == 4  # 50 rows in groups of 16
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    assert read_metadata(pf.schema_arrow)["vocabularies"]["semantic"][0] == "category-0"


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    rows = [make_row(rng, i)[0] for i in range(3)]
    write_shard(tmp_path, 0, rows, metadata())
    before = (tmp_path / "shards" / "part-00000.parquet").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        write_shard(tmp_path, 0, rows[:1], metadata())
    assert (tmp_path / "shards" / "part-00000.parquet").read_bytes() == before
    assert [p.name for p in (tmp_path / "shards").iterdir()] == ["part-00000.parquet"]


def test_malformed_inputs_give_one_clear_line(tmp_path):
    with pytest.raises(ShardError, match="no such label directory"):
        LabelReader(tmp_path / "missing")
    (tmp_path / "shards").mkdir()
    with pytest.raises(ShardError, match="no shards"):
        LabelReader(tmp_path)
    (tmp_path / "shards" / "part-00000.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ShardError, match=r"part-00000.parquet: not a readable Parquet file") as e:
        LabelReader(tmp_path)
    assert "\n" not in str(e.value)
    pq.write_table(pd.DataFrame({"a": [1]}).pipe(__import__("pyarrow").Table.from_pandas),
                   tmp_path / "shards" / "part-00000.parquet")
    with pytest.raises(ShardError, match="no c2fmae metadata"):
        LabelReader(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(ShardError, match="manifest.json: not valid JSON"):
        read_manifest(tmp_path)
    json.loads("{}")


def test_published_files_follow_the_umask(tmp_path):
    import os
    import stat

    from dataset.shards import FILE_MODE

    rng = np.random.default_rng(2)
    info = write_shard(tmp_path, 3, [make_row(rng, 0)[0]], metadata())
    write_manifest(tmp_path, [info], metadata())
    for p in (tmp_path / "shards" / "part-00003.parquet", tmp_path / "manifest.json"):
        assert stat.S_IMODE(os.stat(p).st_mode) == FILE_MODE
    assert FILE_MODE & stat.S_IRGRP or os.umask(os.umask(0)) & 0o040


def test_reader_holds_no_open_shards(labels):
    root, _ = labels
    reader = LabelReader(root)
    assert reader.row_groups == [[16, 16, 16, 2], [16, 14]]
    assert reader.shard_rows() == [50, 30] and len(reader) == 80
    assert not any(isinstance(v, pq.ParquetFile) for v in vars(reader).values())
