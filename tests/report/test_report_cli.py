"""`c2fmae report` on the command line: outputs, overrides, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.cli import main


def test_cli_writes_report_and_summary(set_a: Path, tmp_path: Path, capsys):
    out = tmp_path / "r"
    code = main(["report", str(set_a), "--out", str(out), "--gallery", "1", "--sample", "4",
                 "--set", "thumbnail=64", "top_categories=1"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["thumbnail"] == 64 and summary["config"]["sample"] == 4
    assert summary["sets"]["A"]["rows_read"] == 4
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "report.html: 4 rows" in capsys.readouterr().out


def test_cli_errors_are_one_line(set_a: Path, tmp_path: Path, capsys):
    cases = [
        ([str(tmp_path / "missing"), "--out", str(tmp_path / "r")], "no such label directory"),
        ([str(set_a), "--out", str(tmp_path / "r"), "--worst-metric", "nope"],
         "unknown quality metric 'nope'"),
        ([str(set_a), "--out", str(tmp_path / "r"), "--sample", "0"], "--sample must be"),
        ([str(set_a), "--out", str(tmp_path / "r"), "--set", "colour=red"],
         "unknown override 'colour'"),
        ([str(set_a), "--out", str(tmp_path / "r"), "--compare", str(tmp_path / "nope")],
         "no such label directory"),
    ]
    for args, message in cases:
        assert main(["report", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("c2fmae report: error:"), err
        assert message in err[0]


def test_not_a_label_directory(tmp_path: Path, capsys):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "part-00000.parquet").write_bytes(b"not parquet")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "part-00000.parquet" in err and "not a readable Parquet file" in err
