"""A stand-in loader that serves fixed global batches, split by rank and micro-batch.

Rank r of W with `accum` micro-batches per step serves, at each step, global rows
[(r * accum + m) * micro, ... + micro) for m = 0..accum-1: the same rows land in the same
global micro-batch index whatever W is, which is what the DDP test compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Source:
    num_classes: int
    rows: int


class FixedBatches:
    def __init__(self, batches: list[dict[str, torch.Tensor]], rank: int, world: int, accum: int,
                 num_classes: int):
        self.batches, self.rank, self.world, self.accum = batches, rank, world, accum
        self.source = Source(num_classes, sum(len(b["image"]) for b in batches))

    def __iter__(self):
        for batch in self.batches:
            micro = len(batch["image"]) // (self.world * self.accum)
            for m in range(self.accum):
                start = (self.rank * self.accum + m) * micro
                yield {k: v[start:start + micro] for k, v in batch.items()}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def run_rank(rank: int, world: int, port: int, batches_file: str, config: dict, result_file: str) -> None:
    """One DDP rank (gloo) training on its share of the fixed batches; rank 0 saves its weights."""
    import os

    from model.training import TrainConfig, Trainer

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from model.training.distributed import init_distributed, shutdown

    info = init_distributed("cpu")
    try:
        batches = torch.load(batches_file, weights_only=True)
        cfg = TrainConfig.from_dict(config)
        loader = FixedBatches(batches, rank, world, cfg.accum_steps, num_classes=4)
        trainer = Trainer(cfg, info=info, loader=loader)
        trainer.fit()
        if rank == 0:
            torch.save(trainer.model.state_dict(), result_file)
    finally:
        shutdown(info)
