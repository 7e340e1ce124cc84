"""The model benchmark runs end to end on tiny presets (numbers are not checked)."""

from __future__ import annotations

import pytest
import torch

from pipelines.benchmarks.model import main, synthetic_batch


def test_bench_model_smoke(capsys):
    result = main(["--models", "c2fmae_micro,mae_micro", "--batch", "2", "--rounds", "1",
                   "--steps", "1", "--warmup", "0", "--set", "img_size=32", "--threads", "0"])
    assert result["ratio"] > 0 and 0 < result["masking_share"]
    assert set(result["step_s"]) == {"c2fmae_micro", "mae_micro"}
    assert "| c2fmae_micro |" in capsys.readouterr().out


def test_synthetic_labels_have_regions():
    b = synthetic_batch(2, 64, 150, torch.device("cpu"))
    assert b["semantic"].shape == (2, 16, 16) and b["semantic"].dtype == torch.long
    assert b["instance"].min() > 0 and len(b["instance"][0].unique()) > 3


def test_bench_model_rejects_bad_arguments():
    with pytest.raises(SystemExit, match="exactly two presets"):
        main(["--models", "c2fmae_micro"])
