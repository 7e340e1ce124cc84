"""The pre-training loop: one optimizer step = `accum_steps` micro-batches on every rank.

    trainer = Trainer(load_config("demo", ["data.labels=out/labels"]), resume=True)
    summary = trainer.fit()

Per step: lr from the warmup + cosine schedule; for each micro-batch a forward pass under
autocast with a generator seeded by (seed, step, global micro-batch index), backward
(DDP synchronises on the last micro-batch only); the mean loss over ranks is checked
(a non-finite value stops the run before the weights change); gradients are unscaled
(fp16), clipped and applied. Checkpoints, metrics, grids and evaluations happen between
steps on the schedule of the config.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from dataset.loader import PretrainLoader
from dataset.shards import atomic_write_bytes
from model import C2FMAE, build_model
from model.checkpoint import latest_step, load_checkpoint, save_checkpoint
from model.training import distributed as dist_utils
from model.training import optim as optim_utils
from model.training.config import TrainConfig
from model.training.logs import MetricsLog
from model.training.state import prune_checkpoints, rng_state, set_rng_state, step_generator
from model.training.visualize import reconstruction_grid

log = logging.getLogger(__name__)
LOSS_KEYS = ("loss", "loss_semantic", "loss_instance", "loss_pixel")
MODEL_INPUTS = ("image", "semantic", "instance")
VIS_INDEX = 2**31 - 1  # generator index of the grid's forward pass (no training micro-batch)

Evaluator = Callable[[C2FMAE, int], dict[str, float]]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message says where and what to try."""


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32."""
    if precision == "auto":
        ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if ok else None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (use bf16 or fp32 on a CPU)")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def cpu_threads(cfg: TrainConfig) -> int:
    """Torch threads of one CPU rank: as configured, or the cores this rank's share of the
    machine has left after its loader workers (oversubscribed cores make OpenMP spin)."""
    if cfg.threads > 0:
        return cfg.threads
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, (os.cpu_count() or 1) // local_world - cfg.data.num_workers)


def model_for(cfg: TrainConfig, num_classes: int) -> C2FMAE:
    spec = dict(cfg.model)
    preset = spec.pop("preset")
    spec["num_semantic_classes"] = max(1, num_classes)
    return build_model(preset, **spec)


class Trainer:
    def __init__(self, cfg: TrainConfig, *, resume: bool = False, info: dist_utils.DistInfo | None = None,
                 loader: Any = None, evaluator: Evaluator | None = None):
        self.cfg, self.evaluator = cfg, evaluator
        self.info = info or dist_utils.init_distributed(cfg.device)
        self.device = self.info.device
        self.output = Path(cfg.output)
        self.ckpt_dir = self.output / "checkpoints"
        self.micro = cfg.micro_batch(self.info.world_size)
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads(cfg))
        torch.manual_seed(cfg.seed)
        self.loader = loader or PretrainLoader(
            cfg.data, self.micro, rank=self.info.rank, world_size=self.info.world_size,
            seed=cfg.seed, pin_memory=self.device.type == "cuda")
        self.model = model_for(cfg, self.loader.source.num_classes).to(self.device)
        if self.model.config.img_size != cfg.data.img_size:
            cfg.data.img_size = self.model.config.img_size  # the model decides the image size
        self.ddp: DistributedDataParallel | None = None
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.engine: torch.nn.Module = self.ddp or self.model
        if cfg.compile:  # after DDP, as torch's DDP + compile guide does it
            self.engine = torch.compile(self.engine)
        self.optimizer = optim_utils.build_optimizer(self.model, cfg, fused=self.device.type == "cuda")
        self.amp = resolve_precision(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        rows = self.loader.source.rows * (1.0 - cfg.data.holdout)
        self.steps_per_epoch = cfg.steps_per_epoch(int(rows))
        self.total = cfg.total_steps(int(rows))
        self.warmup = int(round(cfg.optim.warmup_epochs * self.steps_per_epoch))
        self.step = 0
        resumed = self._resume() if resume else None
        self.metrics = MetricsLog(self.output, enabled=self.info.is_main, resume_step=resumed)
        if self.info.is_main:
            text = json.dumps({"train": cfg.to_dict(), "model": self.model.config.to_dict()}, indent=2)
            atomic_write_bytes(self.output / "config.json", text.encode())
        log.info("model %s: %.2fM parameters, %d semantic classes; %d steps (%d per epoch, warmup %d), "
                 "batch %d = %d ranks x %d accum x %d, peak lr %.3g, autocast %s, device %s",
                 self.model.config.name, sum(p.numel() for p in self.model.parameters()) / 1e6,
                 self.model.config.num_semantic_classes, self.total, self.steps_per_epoch,
                 self.warmup, cfg.batch_size, self.info.world_size, cfg.accum_steps, self.micro,
                 cfg.peak_lr(), self.amp, self.device)

    # ------------------------------------------------------------------ resume / save
    def _resume(self) -> int | None:
        step = latest_step(self.ckpt_dir)
        if step is None:
            log.info("no checkpoint in %s: starting from scratch", self.ckpt_dir)
            return None
        saved, meta, extra = load_checkpoint(self.ckpt_dir, step)
        self.model.load_state_dict(saved.state_dict())
        rank, world = self.info.rank, self.info.world_size
        if extra is not None:
            self.optimizer.load_state_dict(extra["optimizer"])
            if self.scaler is not None and extra.get("scaler"):
                self.scaler.load_state_dict(extra["scaler"])
            if len(extra.get("rng", [])) == world:
                set_rng_state(extra["rng"][rank])
        states = meta.get("loader") or [{}]
        self.loader.load_state_dict(states[rank] if len(states) == world else states[0])
        self.step = int(meta["step"])
        log.info("resumed from step %d of %s", self.step, self.ckpt_dir)
        return self.step

    def save(self) -> None:
        loader_states = dist_utils.all_gather_object(self.loader.state_dict(), self.info)
        rngs = dist_utils.all_gather_object(rng_state(), self.info)
        if self.info.is_main:
            meta = {"train_config": self.cfg.to_dict(), "loader": loader_states,
                    "world_size": self.info.world_size, "total_steps": self.total,
                    "epoch": self.step / self.steps_per_epoch}
            extra = {"optimizer": self.optimizer.state_dict(), "rng": rngs,
                     "scaler": self.scaler.state_dict() if self.scaler is not None else None}
            save_checkpoint(self.ckpt_dir, self.step, self.model, meta, extra)
            prune_checkpoints(self.ckpt_dir, self.cfg.keep_checkpoints)
        dist_utils.barrier(self.info)

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {k: batch[k].to(self.device, non_blocking=True) for k in MODEL_INPUTS if k in batch}

    def train_step(self, batches: Iterator[dict[str, Any]]) -> dict[str, float]:
        cfg, accum = self.cfg, self.cfg.accum_steps
        lr = optim_utils.lr_at(self.step, self.total, self.warmup, cfg.peak_lr(), cfg.optim.min_lr)
        optim_utils.set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        progress = min(1.0, self.step / max(1, self.total))
        sums = torch.zeros(len(LOSS_KEYS), device=self.device)
        wait = 0.0
        for micro in range(accum):
            t0 = time.perf_counter()
            batch = self._to_device(next(batches))
            wait += time.perf_counter() - t0
            gen = step_generator(self.device, cfg.seed, self.step, self.info.rank * accum + micro)
            sync = micro == accum - 1 or self.ddp is None
            with (contextlib.nullcontext() if sync else self.ddp.no_sync()), self._autocast():
                out = self.engine(batch, progress, generator=gen)
                loss = out["loss"] / accum
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            sums += torch.stack([out[k].detach().float() for k in LOSS_KEYS]) / accum
        self.last_batch = batch
        values = dist_utils.mean_across_ranks(sums, self.info).tolist()
        if not all(math.isfinite(v) for v in values):
            self._non_finite(dict(zip(LOSS_KEYS, values)), lr)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = cfg.optim.clip_grad if cfg.optim.clip_grad > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return {**dict(zip(LOSS_KEYS, values)), "lr": lr, "grad_norm": grad_norm, "data_wait_s": wait}

    def _non_finite(self, losses: dict[str, float], lr: float) -> None:
        last = latest_step(self.ckpt_dir)
        parts = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        raise NonFiniteLossError(
            f"non-finite loss at step {self.step} ({parts}; lr {lr:.3g}); the weights were not "
            f"updated. Last checkpoint: {'none' if last is None else f'step {last} in {self.ckpt_dir}'}. "
            "Try a lower optim.base_lr, optim.clip_grad > 0, or precision=fp32.")

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        from tqdm import tqdm

        cfg, main = self.cfg, self.info.is_main
        batches = iter(self.loader)
        bar = tqdm(total=self.total, initial=self.step, disable=not main, desc="pretrain", unit="step")
        images = cfg.batch_size
        last: dict[str, float] = {}
        tick, done_since = time.perf_counter(), 0
        while self.step < self.total:
            last = self.train_step(batches)
            self.step += 1
            done_since += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == self.total:
                elapsed = time.perf_counter() - tick
                last["img_per_s"] = images * done_since / max(elapsed, 1e-9)
                last["epoch"] = self.step / self.steps_per_epoch
                self._log(last, bar)
                tick, done_since = time.perf_counter(), 0
            if self.step < self.total:
                self._periodic()
        self._finish()
        bar.close()
        self.metrics.close()
        return {"step": self.step, **last}

    def _log(self, values: dict[str, float], bar: Any) -> None:
        mine = self.loader.counts() if hasattr(self.loader, "counts") else {}
        every = dist_utils.all_gather_object(mine, self.info)  # rows of all ranks together
        counts = {k: sum(c.get(k, 0) for c in every) for k in mine}
        self.metrics.write(self.step, {**values, **{f"rows_{k}": v for k, v in counts.items()}})
        bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}")

    def _periodic(self) -> None:
        cfg = self.cfg
        if cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0:
            self.save()
        if cfg.vis_every > 0 and self.step % cfg.vis_every == 0:
            self.visualize()
        if self.evaluator is not None and cfg.eval.every > 0 and self.step % cfg.eval.every == 0:
            self.evaluate()

    def _finish(self) -> None:
        if latest_step(self.ckpt_dir) != self.step:
            self.save()
        self.visualize()
        if self.evaluator is not None and (self.cfg.eval.at_end or self.cfg.eval.every > 0):
            self.evaluate()

    def visualize(self) -> Path | None:
        """Write OUTPUT/vis/step_NNNNNN.png from the last batch (main rank only)."""
        if not self.info.is_main or getattr(self, "last_batch", None) is None:
            return None
        batch = {k: v[: self.cfg.vis_images] for k, v in self.last_batch.items()}
        progress = min(1.0, self.step / max(1, self.total))
        was_training = self.model.training
        self.model.eval()
        gen = step_generator(self.device, self.cfg.seed, self.step, VIS_INDEX)
        with torch.no_grad(), self._autocast():
            out = self.model(batch, progress, generator=gen)
        self.model.train(was_training)
        path = reconstruction_grid(self.model, batch, out, self.output / "vis" / f"step_{self.step:06d}.png",
                                   self.cfg.vis_images)
        log.info("reconstruction grid: %s", path)
        return path

    def evaluate(self) -> dict[str, float]:
        result: dict[str, float] = {}
        if self.info.is_main and self.evaluator is not None:
            was_training = self.model.training
            self.model.eval()
            result = self.evaluator(self.model, self.step)
            self.model.train(was_training)
            self.metrics.write(self.step, {f"eval_{k}": v for k, v in result.items()})
            log.info("step %d evaluation: %s", self.step, result)
        dist_utils.barrier(self.info)
        return result
