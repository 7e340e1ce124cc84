"""Fixtures for the labeling tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """No network, and an empty HF cache and weights dir, whatever this machine holds."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("C2FMAE_WEIGHTS", str(tmp_path / "weights"))
