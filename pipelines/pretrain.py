"""`c2fmae pretrain --config NAME_OR_FILE [key=value ...] [--resume]`: pre-train from label shards.

One process:   c2fmae pretrain --config demo data.labels=out/labels output=out/pretrain
Several GPUs:  torchrun --nproc_per_node 8 -m pipelines pretrain --config vit_b16_imagenet ...
Several nodes: torchrun --nnodes 4 --node_rank R --master_addr HOST --master_port 29500 \\
                   --nproc_per_node 8 -m pipelines pretrain --config vit_b16_imagenet ...
Ray cluster:   c2fmae pretrain --config vit_b16_imagenet --ray-workers 32 --ray-gpu

`batch_size` is the global batch; each rank takes batch_size / (world_size x accum_steps).
With --resume the run continues from the newest checkpoint in OUTPUT/checkpoints, with the
config saved there (key=value overrides still apply), mid-epoch and with the same batches.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dataset.shards import ShardError

log = logging.getLogger("c2fmae.pretrain")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo",
                        help="a name under configs/pretrain/ (demo, vit_b16_imagenet) or a YAML file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. data.labels=out/labels output=out/run steps=100")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in OUTPUT/checkpoints (if any)")
    parser.add_argument("--ray-workers", type=int, default=0,
                        help="run under Ray Train (TorchTrainer) with this many workers")
    parser.add_argument("--ray-gpu", action="store_true", help="one GPU per Ray worker")
    parser.add_argument("--ray-address", default=None, help="Ray cluster address (default: local or RAY_ADDRESS)")


def resolve_config(name: str, overrides: list[str], resume: bool):
    """The run's config: the preset + overrides, or with --resume the checkpoint's saved one."""
    import json

    from model.checkpoint import latest_step
    from model.training.config import load_config

    cfg = load_config(name, overrides)
    if resume:
        ckpt = f"{cfg.output}/checkpoints"
        step = latest_step(ckpt)
        if step is not None:
            saved = json.loads(open(f"{ckpt}/meta_{step:06d}.json").read())["train_config"]
            log.info("resuming with the config saved at step %d (command-line overrides applied)", step)
            cfg = load_config(None, overrides, base=saved)
    return cfg


def train(cfg, resume: bool = False) -> dict:
    """Run the loop in this process (one rank of torchrun, or the only one)."""
    from model.training import distributed
    from model.training.trainer import Trainer
    from pipelines.evaluate import make_evaluator

    info = distributed.init_distributed(cfg.device)
    if not info.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        evaluator = make_evaluator(cfg) if (cfg.eval.every > 0 or cfg.eval.at_end) else None
        trainer = Trainer(cfg, resume=resume, info=info, evaluator=evaluator)
        summary = trainer.fit()
        if info.is_main:
            log.info("done: step %d, loss %.4f; checkpoints in %s, grids in %s", summary["step"],
                     summary.get("loss", float("nan")), trainer.ckpt_dir, trainer.output / "vis")
        return summary
    finally:
        distributed.shutdown(info)


def run(args: argparse.Namespace) -> int:
    from model.training.trainer import NonFiniteLossError

    try:
        cfg = resolve_config(args.config, args.overrides, args.resume)
        if args.ray_workers > 0:
            from pipelines.ray_train import train_with_ray

            train_with_ray(cfg, args.ray_workers, use_gpu=args.ray_gpu, address=args.ray_address,
                           resume=args.resume)
        else:
            train(cfg, resume=args.resume)
    except (ValueError, FileNotFoundError, ShardError, NonFiniteLossError) as exc:
        print(f"c2fmae pretrain: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="c2fmae pretrain", description=__doc__.splitlines()[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
