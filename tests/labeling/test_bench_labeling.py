"""The overhead benchmark's harness runs the job's steps: every mode writes the same labels."""

from __future__ import annotations

import pyarrow.parquet as pq

from dataset.validate import validate
from pipelines.benchmarks import labeling as bench


def test_every_mode_writes_the_same_valid_shard(tmp_path):
    root = bench.make_jpegs(tmp_path / "img", 5, (60, 80))
    params = {"num_instances": 6, "num_categories": 3}
    tables = {}
    for mode, extra in bench.MODES.items():
        out = tmp_path / mode
        t = bench.run_steps(root, out, None, {**params, **extra}, batch=2)
        assert all(t[k] >= 0 for k in bench.OVERHEAD) and t["bare decode"] > 0
        assert validate(out, progress=False) == (5, [])
        rows = pq.read_table(out / "shards").to_pylist()
        for row in rows:
            row["quality"].pop("seconds")
        tables[mode] = rows
    first = tables.pop("masks")
    assert all(r["status"] == "ok" and r["instances"] for r in first)
    assert all(rows == first for rows in tables.values())


def test_main_reports_each_mode(capsys):
    result = bench.main(["--images", "3", "--size", "40x50", "--repeats", "1",
                         "--instances", "4", "--categories", "2"])
    assert result["images"] == 3 and set(bench.MODES) <= set(result)
    for mode in bench.MODES:
        assert result[mode]["ratio"] > 0 and result[mode]["ratio_two_models"] >= result[mode]["ratio"]
    assert "total, two-model profiles" in capsys.readouterr().out
