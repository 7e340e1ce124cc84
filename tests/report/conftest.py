"""Fixtures of the report tests; the synthetic label sets are built in report_synth.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.report_synth import set_a_rows, write_photos, write_set


@pytest.fixture(scope="module")
def set_a(tmp_path_factory) -> Path:
    """Set A, with photos in its input root for img_0 and img_1 only (img_4's is missing)."""
    tmp = tmp_path_factory.mktemp("set_a")
    images = tmp / "images"
    write_photos(images, [r["image_id"] for r in set_a_rows() if r["status"] == "ok"][:2])
    return write_set(tmp / "labels_a", set_a_rows(), input_root=str(images))
