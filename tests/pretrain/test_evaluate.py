"""k-NN and linear-probe evaluation: the classifiers, the CLI, and the hook in the loop."""

from __future__ import annotations

import torch

from dataset.loader import is_held_out
from model.training import TrainConfig, Trainer
from model.training.logs import read_metrics
from pipelines import cli
from pipelines.evaluate import knn_accuracy, linear_accuracy, split_rows
from tests.pretrain.conftest import tiny_config


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.eye(3, 16) * 6
    return centres[y] + torch.randn(n, 16, generator=gen), y


def test_knn_and_linear_probe_separate_clusters_and_not_noise():
    xf, xy = blobs(90, 0)
    tf, ty = blobs(30, 1)
    assert knn_accuracy(xf, xy, tf, ty, k=5) > 0.95
    assert linear_accuracy(xf, xy, tf, ty, epochs=50) > 0.95
    shuffled = xy[torch.randperm(90, generator=torch.Generator().manual_seed(2))]
    assert knn_accuracy(xf, shuffled, tf, ty, k=5) < 0.7


def test_split_is_by_image_id_hash_and_disjoint(photo_dir):
    train, test = split_rows(str(photo_dir), 0.3, 0)
    ids = [r["image_id"] for r in train + test]
    assert len(ids) == len(set(ids)) == 24 and test
    assert all(is_held_out(r["image_id"], 0.3) for r in test)
    capped, _ = split_rows(str(photo_dir), 0.3, 5)
    assert len(capped) == 5


def test_periodic_evaluation_and_the_cli_on_its_checkpoint(photo_dir, tmp_path, capsys):
    cfg = tiny_config(photo_dir, tmp_path / "run", steps=4, **{"eval.every": 2, "eval.holdout": 0.3})
    assert cli.main(["pretrain", "--config", _write(tmp_path, cfg)]) == 0
    evals = [r for r in read_metrics(tmp_path / "run") if "eval_knn_top1" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(0.0 <= r["eval_knn_top1"] <= 1.0 and r["eval_test_rows"] > 0 for r in evals)
    capsys.readouterr()
    ckpt = str(tmp_path / "run" / "checkpoints")
    assert cli.main(["eval-knn", ckpt, "--labels", str(photo_dir), "--holdout", "0.3", "--k", "5"]) == 0
    assert "eval-knn: step 4: top-1" in capsys.readouterr().out
    assert cli.main(["eval-linear", ckpt, "--labels", str(photo_dir), "--holdout", "0.3", "--epochs", "5"]) == 0
    assert "eval-linear: step 4: top-1" in capsys.readouterr().out
    assert cli.main(["eval-knn", str(tmp_path / "nothing"), "--labels", str(photo_dir)]) == 2
    assert capsys.readouterr().err.startswith("c2fmae eval-knn: error: checkpoint not found")


def test_trainer_accepts_an_evaluator(photo_dir, tmp_path):
    seen = []
    cfg = TrainConfig.from_dict(tiny_config(photo_dir, tmp_path / "run", steps=2, **{"eval.at_end": True}))
    Trainer(cfg, evaluator=lambda model, step: seen.append(step) or {"x": 1.0}).fit()
    assert seen == [2]


def _write(tmp_path, cfg: dict) -> str:
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)
