"""Pre-training under Ray Train: a TorchTrainer whose workers run the same Trainer loop.

    c2fmae pretrain --config vit_b16_imagenet --ray-workers 32 --ray-gpu [--ray-address auto]

Data flows through Ray Data (dataset.loader.ray_dataset: read_parquet -> flat_map -> each
worker's shard.iter_torch_batches), so decoding scales with the cluster's CPUs rather than
the GPU nodes'. Ray Train creates the process group (NCCL on GPUs, gloo on CPUs); the loop
wraps the model in DDP as under torchrun. Rank 0 writes checkpoints, metrics and grids to
`output`, which must be a path every node can reach (shared file system) for --resume.
Differences from torchrun: batches are not reproduced bit for bit, and --resume continues
at the start of the epoch it was in (Ray Data has no mid-epoch position).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("c2fmae.ray_train")


class RayBatches:
    """Micro-batches from this worker's Ray Data shard, epoch after epoch."""

    def __init__(self, shard: Any, batch_size: int, source: Any):
        self.shard, self.batch_size, self.source = shard, batch_size, source
        self.epoch, self.served = 0, 0

    def __iter__(self):
        while True:
            empty = True
            for batch in self.shard.iter_torch_batches(batch_size=self.batch_size, drop_last=True):
                empty = False
                self.served += self.batch_size
                yield batch
            if empty:
                raise ValueError("a Ray worker's data shard has fewer rows than one micro-batch")
            self.epoch += 1

    def counts(self) -> dict[str, int]:
        return {"served": self.served}

    def state_dict(self) -> dict[str, Any]:
        return {"ray_epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state.get("ray_epoch", 0))


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    from dataset.loader import LabelSource
    from model.training.config import TrainConfig
    from model.training.distributed import DistInfo
    from model.training.trainer import Trainer

    cfg = TrainConfig.from_dict(loop_config["config"])
    ctx = ray.train.get_context()
    info = DistInfo(ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank(),
                    ray.train.torch.get_device())
    source = LabelSource(cfg.data, readers=1)
    loader = RayBatches(ray.train.get_dataset_shard("train"), cfg.micro_batch(info.world_size), source)
    summary = Trainer(cfg, resume=loop_config["resume"], info=info, loader=loader).fit()
    ray.train.report({k: v for k, v in summary.items() if isinstance(v, (int, float))})


def train_with_ray(cfg: Any, num_workers: int, *, use_gpu: bool = False, address: str | None = None,
                   resume: bool = False) -> Any:
    """Run the pre-training on `num_workers` Ray Train workers; returns Ray's Result."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from dataset.loader import LabelSource, ray_dataset
    from model.training.trainer import model_for

    if not ray.is_initialized():
        ray.init(address=address)
    source = LabelSource(cfg.data, readers=1)
    cfg.data.img_size = model_for(cfg, source.num_classes).config.img_size
    if cfg.device == "auto":
        cfg.device = "cuda" if use_gpu else "cpu"
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg.to_dict(), "resume": resume},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(name="c2fmae-pretrain", storage_path=str(Path(cfg.output).resolve() / "ray")),
        datasets={"train": ray_dataset(cfg.data, source)},
    )
    result = trainer.fit()
    log.info("Ray Train finished: %s", result.metrics)
    return result
