"""The Ray path: Ray Data read_parquet -> flat_map -> iter_torch_batches, and Ray Train."""

from __future__ import annotations

import pytest
import torch

from dataset.loader import DataConfig, ray_dataset
from model.training import TrainConfig
from model.training.logs import read_metrics
from tests.pretrain.conftest import tiny_config
from tests.pretrain.synthetic import block_labels


def test_ray_data_batches_have_the_loader_shapes(ray_session, tmp_path):
    labels = block_labels(tmp_path, 10, errors=2, size=(32, 40))
    ds = ray_dataset(DataConfig(labels=str(labels), img_size=32))
    batches = list(ds.iter_torch_batches(batch_size=4, drop_last=False))
    assert sum(len(b["image"]) for b in batches) == 10  # error rows dropped
    b = batches[0]
    assert b["image"].shape[1:] == (3, 32, 32) and b["image"].dtype == torch.float32
    assert b["semantic"].shape[1:] == (8, 8) and b["semantic"].dtype == torch.int64
    assert set(b["semantic"].unique().tolist()) <= {-1, 0, 1, 2, 3}
    assert b["instance"].dtype == torch.int64


@pytest.mark.slow
def test_ray_train_runs_the_loop(ray_session, photo_dir, tmp_path):
    from pipelines.ray_train import train_with_ray

    cfg = TrainConfig.from_dict(tiny_config(photo_dir, tmp_path / "run", steps=3))
    train_with_ray(cfg, 1)
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]
    assert (tmp_path / "run" / "checkpoints" / "meta_000003.json").exists()
