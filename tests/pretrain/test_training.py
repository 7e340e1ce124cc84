"""The training loop on a CPU: config, optimizer, a short run, outputs, the non-finite guard."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from model import build_model
from model.training import NonFiniteLossError, TrainConfig, Trainer, load_config
from model.training.logs import read_metrics
from model.training.optim import lr_at, param_groups
from pipelines import cli
from tests.pretrain.conftest import tiny_config


def test_presets_load_and_overrides_are_checked():
    for name in ("demo", "vit_b16_imagenet"):
        cfg = load_config(name)
        assert cfg.batch_size >= 1 and cfg.model["preset"]
    cfg = load_config("demo", ["data.labels=/x", "optim.base_lr=1e-3", "batch_size=32", "model.depth=2"])
    assert (cfg.data.labels, cfg.optim.base_lr, cfg.batch_size, cfg.model["depth"]) == ("/x", 1e-3, 32, 2)
    with pytest.raises(ValueError, match="unknown key.*'bogus'"):
        load_config("demo", ["data.bogus=1"])
    with pytest.raises(ValueError, match="expected an integer"):
        load_config("demo", ["batch_size=2.5"])
    with pytest.raises(FileNotFoundError, match="known names: .*demo"):
        load_config("no_such_config")
    with pytest.raises(ValueError, match="not divisible"):
        load_config("demo", ["batch_size=10", "accum_steps=4"]).micro_batch(1)
    assert TrainConfig.from_dict(load_config("vit_b16_imagenet").to_dict()).to_dict() == \
        load_config("vit_b16_imagenet").to_dict()


def test_imagenet_preset_is_the_paper_setting():
    cfg = load_config("vit_b16_imagenet")
    assert (cfg.batch_size, cfg.epochs, cfg.model["preset"]) == (4096, 1600, "c2fmae_vit_b16")
    assert math.isclose(cfg.peak_lr(), 1.5e-4 * 4096 / 256)


def test_no_weight_decay_on_norms_biases_and_tokens():
    model = build_model("c2fmae_micro")
    decay, plain = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert all(n.endswith(".weight") and "norm" not in n for n in decayed)
    assert "encoder.cls_token" in {names[id(p)] for p in plain["params"]}
    assert any("blocks.0.attn.qkv.weight" in n for n in decayed)
    assert plain["weight_decay"] == 0.0


def test_lr_warms_up_linearly_then_follows_a_cosine():
    lrs = [lr_at(s, 100, 10, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lrs[-1] > 0.1 and lr_at(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_short_run_writes_checkpoint_metrics_and_grid(photo_dir, tmp_path):
    cfg = TrainConfig.from_dict(tiny_config(photo_dir, tmp_path / "run", steps=5, ckpt_every=2,
                                            vis_every=4, keep_checkpoints=2, **{"data.num_workers": 1}))
    summary = Trainer(cfg).fit()
    assert summary["step"] == 5 and math.isfinite(summary["loss"])
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("meta_*.json"))
    assert ckpts == ["meta_000004.json", "meta_000005.json"]  # 2 kept
    meta = json.loads((tmp_path / "run" / "checkpoints" / "meta_000005.json").read_text())
    assert meta["train_config"]["data"]["img_size"] == 32 and meta["model_config"]["img_size"] == 32
    assert meta["loader"][0]["readers"]  # the loader position is saved
    assert meta["model_config"]["num_semantic_classes"] == 4  # from the shards' vocabulary
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(k in rows[0] for k in ("loss", "loss_semantic", "loss_instance", "loss_pixel", "lr", "grad_norm"))
    grid = Image.open(tmp_path / "run" / "vis" / "step_000004.png")
    assert grid.size[0] > 7 * 32 and grid.size[1] > 2 * 32
    assert (tmp_path / "run" / "vis" / "step_000005.png").exists()
    assert any((tmp_path / "run" / "tb").iterdir())


def test_loss_falls_on_the_photos(photo_dir, tmp_path):
    cfg = TrainConfig.from_dict(tiny_config(photo_dir, tmp_path / "run", steps=30, batch_size=8,
                                            **{"optim.lr": 3e-3, "data.unit_rows": 64}))
    Trainer(cfg).fit()
    losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


class NaNBatches:
    """A loader whose images are NaN: the loss cannot be finite."""

    def __init__(self, source):
        self.source = source

    def __iter__(self):
        while True:
            yield {"image": torch.full((4, 3, 32, 32), float("nan")),
                   "semantic": torch.zeros(4, 8, 8, dtype=torch.long),
                   "instance": torch.zeros(4, 8, 8, dtype=torch.long)}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_non_finite_loss_stops_with_a_clear_message_before_the_update(photo_dir, tmp_path):
    cfg = TrainConfig.from_dict(tiny_config(photo_dir, tmp_path / "run"))
    real = Trainer(cfg)
    trainer = Trainer(cfg, loader=NaNBatches(real.loader.source))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 0 .*weights were not updated"):
        trainer.fit()
    for k, v in trainer.model.state_dict().items():
        torch.testing.assert_close(v, before[k], equal_nan=True)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["pretrain", "--config", "no_such_config"]) == 2
    assert capsys.readouterr().err.startswith("c2fmae pretrain: error: no pretrain config")
    assert cli.main(["pretrain", "--config", "demo", f"data.labels={tmp_path / 'none'}",
                     f"output={tmp_path / 'out'}"]) == 2
    assert "no such label directory" in capsys.readouterr().err
