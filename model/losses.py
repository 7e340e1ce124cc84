"""Losses of the three stages. All are means over the counted elements, with a count of
at least 1, so empty selections give 0 rather than NaN and nothing syncs with the host.

- pixels: MSE against (optionally per-patch normalised) pixels, as MAE;
- semantic: cross-entropy per stride-4 cell, unlabeled cells (-1) ignored;
- instance: BCE on the instance boundary map plus a discriminative (pull/push) loss on a
  per-cell embedding (De Brabandere et al. 2017), which does not depend on instance ids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from model.config import LossConfig


def _safe_mean(total: Tensor, count: Tensor) -> Tensor:
    return total / count.clamp(min=1)


def pixel_target(patches: Tensor, norm_pix: bool) -> Tensor:
    """[B, L, p*p*3] pixels -> target, normalised per patch when `norm_pix` (as MAE)."""
    if not norm_pix:
        return patches
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + 1e-6) ** 0.5


def pixel_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """pred, target: [B, L, P]; weight: [B, L] (the mask, or ones) -> scalar."""
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    return _safe_mean((per_patch * weight).sum(), weight.sum())


def semantic_loss(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """logits [B, C, h, w]; target [B, h, w] long (-1 ignored); weight [B, h, w] -> scalar."""
    ce = F.cross_entropy(logits.float(), target, ignore_index=-1, reduction="none")
    counted = weight * (target >= 0)
    return _safe_mean((ce * counted).sum(), counted.sum())


def boundary_loss(logits: Tensor, target: Tensor, weight: Tensor, pos_weight: float) -> Tensor:
    """logits, target, weight: [B, h, w] -> scalar BCE, positives weighted by `pos_weight`."""
    x = logits.float()
    bce = -(pos_weight * target * F.logsigmoid(x) + (1 - target) * F.logsigmoid(-x))
    return _safe_mean((bce * weight).sum(), weight.sum())


def _instance_slots(instance: Tensor, counted: Tensor, max_instances: int) -> Tensor:
    """Number each image's instances 0..K-1 (in id order); K marks 'not counted'. [B, N] -> [B, N]."""
    sentinel = torch.iinfo(torch.long).max
    ids = torch.where(counted & (instance > 0), instance, torch.full_like(instance, sentinel))
    sorted_ids, order = ids.sort(dim=1)
    starts = torch.ones_like(ids, dtype=torch.bool)
    starts[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    rank = starts.long().cumsum(dim=1) - 1
    keep = (sorted_ids != sentinel) & (rank < max_instances)
    slot_sorted = torch.where(keep, rank, torch.full_like(rank, max_instances))
    return torch.empty_like(slot_sorted).scatter_(1, order, slot_sorted)


def discriminative_loss(embedding: Tensor, instance: Tensor, weight: Tensor,
                        cfg: LossConfig) -> Tensor:
    """embedding [B, E, h, w]; instance [B, h, w] (0 = none); weight [B, h, w] -> scalar.

    pull: each cell towards its instance's mean embedding (hinge at pull_margin);
    push: instance means of one image apart (hinge at 2 * push_margin);
    plus 0.001 x the norm of the means. Up to `max_instances` instances per image count.
    """
    b, e = embedding.shape[:2]
    k = cfg.max_instances
    emb = embedding.float().flatten(2).transpose(1, 2)  # [B, N, E]
    slots = _instance_slots(instance.flatten(1), weight.flatten(1) > 0, k)  # [B, N]
    sums = emb.new_zeros(b, k + 1, e).scatter_add_(1, slots.unsqueeze(-1).expand(-1, -1, e), emb)
    counts = emb.new_zeros(b, k + 1).scatter_add_(1, slots, torch.ones_like(slots, dtype=emb.dtype))
    means = sums / counts.clamp(min=1).unsqueeze(-1)  # [B, K+1, E]
    present = (counts[:, :k] > 0).to(emb.dtype)  # [B, K]

    dist = ((emb - torch.gather(means, 1, slots.unsqueeze(-1).expand(-1, -1, e))).pow(2).sum(-1) + 1e-8).sqrt()
    hinge = F.relu(dist - cfg.pull_margin).pow(2)
    per_slot = emb.new_zeros(b, k + 1).scatter_add_(1, slots, hinge)[:, :k]
    pull = _safe_mean((_safe_mean(per_slot, counts[:, :k]) * present).sum(), present.sum())

    mu = means[:, :k]
    pair_dist = ((mu.unsqueeze(2) - mu.unsqueeze(1)).pow(2).sum(-1) + 1e-8).sqrt()  # [B, K, K]
    pairs = present.unsqueeze(2) * present.unsqueeze(1) * (1 - torch.eye(k, device=emb.device))
    push_hinge = F.relu(2 * cfg.push_margin - pair_dist).pow(2)
    push = _safe_mean((push_hinge * pairs).sum(), pairs.sum())

    reg = _safe_mean((mu.pow(2).sum(-1) + 1e-8).sqrt().mul(present).sum(), present.sum())
    return pull + push + 0.001 * reg
