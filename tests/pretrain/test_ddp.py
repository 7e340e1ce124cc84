"""DDP with 2 CPU processes (gloo) equals one process on the same global batches."""

from __future__ import annotations

import socket

import torch
import torch.multiprocessing as mp

from dataset.loader import DataConfig, PretrainLoader
from model.training import TrainConfig, Trainer
from model.training.logs import read_metrics
from tests.pretrain.conftest import tiny_config
from tests.pretrain.fixed_batches import FixedBatches, run_rank

STEPS, GLOBAL = 3, 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one_process_on_the_same_global_batch(photo_dir, tmp_path):
    # real batches from the shards: STEPS global batches of GLOBAL rows
    loader = PretrainLoader(DataConfig(labels=str(photo_dir), img_size=32, num_workers=0), GLOBAL, seed=1)
    batches = [{k: b[k] for k in ("image", "semantic", "instance")} for _, b in zip(range(STEPS), loader)]
    batches_file = tmp_path / "batches.pt"
    torch.save(batches, batches_file)

    base = tiny_config(photo_dir, tmp_path / "x", steps=STEPS, batch_size=GLOBAL,
                       **{"optim.warmup_epochs": 0, "optim.clip_grad": 0.5})
    ddp_cfg = {**base, "output": str(tmp_path / "ddp")}
    mp.start_processes(run_rank, args=(2, free_port(), str(batches_file), ddp_cfg, str(tmp_path / "ddp.pt")),
                       nprocs=2, join=True, start_method="spawn")

    # one process, same global batches, as 2 accumulated micro-batches (= the 2 ranks' shares)
    single_cfg = TrainConfig.from_dict({**base, "output": str(tmp_path / "single"), "accum_steps": 2})
    trainer = Trainer(single_cfg, loader=FixedBatches(batches, 0, 1, 2, num_classes=4))
    trainer.fit()

    ddp_losses = [r["loss"] for r in read_metrics(tmp_path / "ddp")]
    single_losses = [r["loss"] for r in read_metrics(tmp_path / "single")]
    assert len(ddp_losses) == STEPS
    torch.testing.assert_close(torch.tensor(ddp_losses), torch.tensor(single_losses), rtol=1e-5, atol=1e-6)
    # Weights: equal to float precision, except entries whose gradient is zero in exact
    # arithmetic (the attention key biases: softmax ignores a constant logit shift). There
    # Adam turns rounding noise of either run into steps of up to lr, so they only agree
    # within lr x steps.
    ddp_state = torch.load(tmp_path / "ddp.pt", weights_only=True)
    strict_entries = 0
    for name, p in trainer.model.named_parameters():
        diff = (ddp_state[name] - p.detach()).abs()
        strict = p.grad.abs() > 1e-6
        strict_entries += int(strict.sum())
        assert float(torch.where(strict, diff, 0).max()) < 2e-6, name
        assert diff.max() <= 1e-3 * STEPS, name
    assert strict_entries > 0.9 * sum(p.numel() for p in trainer.model.parameters())
