"""AdamW parameter groups and the per-step learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from model.training.config import TrainConfig


def no_decay(name: str, param: torch.Tensor) -> bool:
    """Norm weights and biases (1-D) and bare parameters that are not a layer's weight
    (cls / mask / query tokens, learned position or type embeddings) are not decayed."""
    return param.ndim <= 1 or not name.endswith(".weight")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, plain = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (plain if no_decay(name, param) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": plain, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.AdamW:
    groups = param_groups(model, cfg.optim.weight_decay)
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=cfg.peak_lr(), betas=tuple(cfg.optim.betas), **kwargs)


def lr_at(step: int, total: int, warmup: int, peak: float, floor: float = 0.0) -> float:
    """Linear warmup over `warmup` steps, then a half cosine from `peak` to `floor` at `total`."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
