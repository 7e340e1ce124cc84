"""Masking: random (MAE), semantic-guided, instance-guided, and the curriculum over them.

One convention throughout, MAE's: every strategy produces a score per patch; patches are
sorted by score, the `len_keep` lowest are kept and the rest removed (mask 0 = keep,
1 = remove; `ids_keep`, `ids_restore`). Random masking scores with uniform noise. Guided
masking scores a patch of region r with 1 + rank(r) + noise, where rank is a random order
of the regions, and a patch of no region with noise alone: whole regions are removed in
random order until the budget, the last one partly (its patches picked at random), and
patches of no region only when the regions do not fill the budget. Every sample keeps
exactly the same number of tokens; all work is batched tensor code on the data's device
with no host synchronisation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from model.config import CurriculumConfig, ModelConfig
from model.labels import cell_size, patch_cells, to_cell_stride

STRATEGIES = ("random", "semantic", "instance")  # codes 0, 1, 2 in the returned `strategy`


class Masking(NamedTuple):
    ids_keep: Tensor  # [B, len_keep] long, patch indices kept (encoder input order)
    ids_restore: Tensor  # [B, L] long, unshuffles [kept, removed] back to patch order
    mask: Tensor  # [B, L] float, 1 = removed
    strategy: Tensor  # [B] long, index into STRATEGIES


def random_masking(noise: Tensor, len_keep: int) -> tuple[Tensor, Tensor, Tensor]:
    """MAE's masking from scores: noise [B, L] -> ids_keep, ids_restore, mask (1 = removed)."""
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small is keep, large is remove
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones_like(noise, dtype=torch.float32)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    return ids_keep, ids_restore, mask


def patch_regions(labels: Tensor, patch: int, min_share: float) -> Tensor:
    """The region of each patch: [B, H/4, W/4] label map (< 0 = none) -> [B, L] (-1 = none).

    A patch belongs to its most frequent label (the smallest one among ties) if that label
    covers at least `min_share` of the patch; otherwise, or if that label is negative, it
    belongs to no region. Counted by pairwise comparison of the patch's cells (n x n per
    patch, n = 16 for 16-pixel patches), which is plain elementwise work on any device.
    """
    cell = cell_size(patch)
    cells = patch_cells(to_cell_stride(labels, cell), patch // cell).sort(dim=-1).values  # [B, L, n]
    counts = (cells.unsqueeze(-1) == cells.unsqueeze(-2)).sum(dim=-1)  # occurrences of each cell's label
    best = counts.argmax(dim=-1, keepdim=True)  # first maximum: the smallest label among ties
    mode = torch.gather(cells, -1, best).squeeze(-1)
    share = torch.gather(counts, -1, best).squeeze(-1).float() / cells.shape[-1]
    return torch.where((share >= min_share) & (mode >= 0), mode, torch.full_like(mode, -1))


def guided_scores(regions: Tensor, noise: Tensor, order_noise: Tensor) -> Tensor:
    """Scores that remove whole regions in random order: regions [B, L] (-1 = none) -> [B, L].

    noise and order_noise: [B, L] uniform in [0, 1). Region values are arbitrary integers;
    they are numbered 0..R-1 per sample by sorting, so no lookup table or host sync is needed.
    """
    sorted_vals, order = regions.sort(dim=1)
    starts = torch.ones_like(regions, dtype=torch.bool)
    starts[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    group_sorted = starts.long().cumsum(dim=1) - 1
    group = torch.empty_like(group_sorted).scatter_(1, order, group_sorted)  # [B, L] in [0, R)
    region_order = torch.argsort(order_noise, dim=1)  # a random permutation of 0..L-1
    rank = torch.gather(region_order, 1, group).to(noise.dtype)  # distinct per region
    return torch.where(regions >= 0, 1.0 + rank + noise, noise)


def _ramp(t: float, centre: float, width: float, shape: str) -> float:
    """0 before the transition, 1 after it, a smooth step of `width` around `centre`."""
    if shape == "step" or width <= 0:
        return 1.0 if t >= centre else 0.0
    x = min(max((t - (centre - width / 2)) / width, 0.0), 1.0)
    return x if shape == "linear" else 0.5 - 0.5 * math.cos(math.pi * x)


def curriculum_probabilities(progress: float, cfg: CurriculumConfig) -> tuple[float, float, float]:
    """(p_random, p_semantic, p_instance) at `progress` in [0, 1]; they sum to 1."""
    b1, b2 = cfg.boundaries
    s1 = _ramp(progress, b1, cfg.transition, cfg.shape)  # semantic -> instance
    s2 = _ramp(progress, b2, cfg.transition, cfg.shape)  # instance -> random
    s2 = min(s2, s1)
    return s2, 1.0 - s1, s1 - s2


def strategy_probabilities(config: ModelConfig, progress: float) -> tuple[float, float, float]:
    """(p_random, p_semantic, p_instance) for the config's masking mode."""
    fixed = {"random": (1.0, 0.0, 0.0), "semantic": (0.0, 1.0, 0.0), "instance": (0.0, 0.0, 1.0)}
    if config.masking in fixed:
        return fixed[config.masking]
    return curriculum_probabilities(progress, config.curriculum)


def draw_strategy(probs: tuple[float, float, float], batch: int, device: torch.device,
                  generator: torch.Generator | None = None) -> Tensor:
    """Per-sample strategy codes [B] drawn with probabilities (random, semantic, instance)."""
    p_random, p_semantic, _ = probs
    u = torch.rand(batch, device=device, generator=generator)
    semantic = torch.full_like(u, 1, dtype=torch.long)
    instance = torch.full_like(u, 2, dtype=torch.long)
    random = torch.zeros_like(u, dtype=torch.long)
    if p_random >= 1.0:
        return random
    return torch.where(u < p_semantic, semantic, torch.where(u < 1.0 - p_random, instance, random))


def make_masking(config: ModelConfig, num_patches: int, progress: float, batch: int,
                 device: torch.device, semantic: Tensor | None = None,
                 instance: Tensor | None = None, noise: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Masking:
    """Draw each sample's strategy for `progress` and mask `mask_ratio` of its patches.

    semantic / instance: [B, H/4, W/4] label maps, needed when a guided strategy can be drawn.
    noise: optional [B, L] uniform scores (MAE's noise) to make the draw reproducible.
    """
    len_keep = int(num_patches * (1 - config.mask_ratio))
    if noise is None:
        noise = torch.rand(batch, num_patches, device=device, generator=generator)
    probs = strategy_probabilities(config, progress)
    strategy = draw_strategy(probs, batch, device, generator)
    scores = noise
    for code, labels in ((1, semantic), (2, instance)):
        if probs[code] <= 0.0:
            continue
        if labels is None:
            raise ValueError(f"masking {config.masking!r} needs the {STRATEGIES[code]} label map")
        regions = labels if code == 1 else torch.where(labels > 0, labels, torch.full_like(labels, -1))
        regions = patch_regions(regions, config.patch_size, config.region_min_share)
        order_noise = torch.rand(batch, num_patches, device=device, generator=generator)
        guided = guided_scores(regions, noise, order_noise)
        scores = torch.where((strategy == code).unsqueeze(1), guided, scores)
    ids_keep, ids_restore, mask = random_masking(scores, len_keep)
    return Masking(ids_keep, ids_restore, mask, strategy)
