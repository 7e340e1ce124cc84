"""Label maps at stride 4: resampling to patches, instance encodings, label input tokens.

Label maps arrive at stride 4 ([B, H/4, W/4]). A patch of p pixels covers p/4 cells when
p is a multiple of 4; otherwise (ViT-H/14) the maps are first repeated to the largest
stride `cell` in {4, 2, 1} that divides p, and predictions made at that stride are
average-pooled back to stride 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LABEL_STRIDE = 4
# neighbour offsets (dy, dx) of the instance affinity encoding: 4 directions x 2 distances
AFFINITY_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (2, 2), (2, -2))


def cell_size(patch: int) -> int:
    """The stride (pixels) at which per-patch label cells are handled for this patch size."""
    for cell in (4, 2, 1):
        if patch % cell == 0:
            return cell
    raise AssertionError("unreachable")


def repeat_cells(x: Tensor, factor: int) -> Tensor:
    """Nearest upsampling of the last two dims by an integer factor (views + one copy)."""
    if factor == 1:
        return x
    *lead, h, w = x.shape
    x = x.reshape(*lead, h, 1, w, 1).expand(*lead, h, factor, w, factor)
    return x.reshape(*lead, h * factor, w * factor)


def to_cell_stride(labels: Tensor, cell: int) -> Tensor:
    """[B, H/4, W/4] -> [B, H/cell, W/cell] by repetition (nearest)."""
    return repeat_cells(labels, LABEL_STRIDE // cell)


def to_label_stride(maps: Tensor, cell: int) -> Tensor:
    """Predictions [B, K, H/cell, W/cell] -> [B, K, H/4, W/4] by average pooling."""
    factor = LABEL_STRIDE // cell
    return maps if factor == 1 else F.avg_pool2d(maps, factor)


def patch_cells(labels: Tensor, g: int) -> Tensor:
    """[B, gh*g, gw*g] -> [B, gh*gw, g*g]: the cells of each patch, patches in row-major order."""
    b, h, w = labels.shape
    x = labels.reshape(b, h // g, g, w // g, g).permute(0, 1, 3, 2, 4)
    return x.reshape(b, (h // g) * (w // g), g * g)


def cells_to_map(x: Tensor, grid: int, g: int) -> Tensor:
    """Per-patch cell values [B, L, g*g*K] -> maps [B, K, grid*g, grid*g] (cells row-major, then K)."""
    b, _, n = x.shape
    k = n // (g * g)
    x = x.reshape(b, grid, grid, g, g, k).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, k, grid * g, grid * g)


def mask_to_label_stride(mask: Tensor, grid: int, patch: int) -> Tensor:
    """Patch mask [B, L] -> [B, H/4, W/4]; a cell counts as removed if any part of it is."""
    cell = cell_size(patch)
    g = patch // cell
    m = repeat_cells(mask.reshape(-1, grid, grid), g)
    factor = LABEL_STRIDE // cell
    return m if factor == 1 else F.max_pool2d(m.unsqueeze(1), factor).squeeze(1)


def _shifted_equal(ids: Tensor, dy: int, dx: int) -> Tensor:
    """same[b, y, x] = ids[y, x] == ids[y+dy, x+dx] (False where the neighbour is outside)."""
    h, w = ids.shape[-2:]
    same = torch.zeros_like(ids, dtype=torch.bool)
    ys, yd = slice(0, h - dy), slice(dy, h)
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    same[..., ys, xs] = ids[..., ys, xs] == ids[..., yd, xd]
    return same


def instance_boundaries(instance: Tensor) -> Tensor:
    """Cells whose instance id differs from a 4-neighbour's: [B, h, w] long -> float {0, 1}."""
    h, w = instance.shape[-2:]
    edge = torch.zeros_like(instance, dtype=torch.bool)
    right = instance[..., :, 1:] != instance[..., :, :-1]
    down = instance[..., 1:, :] != instance[..., :-1, :]
    edge[..., :, 1:] |= right
    edge[..., :, :-1] |= right
    edge[..., 1:, :] |= down
    edge[..., :-1, :] |= down
    return edge.float()


def instance_encoding(instance: Tensor, g: int) -> Tensor:
    """A permutation-invariant encoding of an instance map: [B, h, w] -> [B, 1+8, h, w].

    Channel 0: the cell is inside an instance. Then, for each neighbour offset, whether the
    neighbour belongs to the same instance (both inside one). Neighbours in another patch
    (patches of g x g cells) count as different, so a visible patch's token says nothing about
    the removed patches around it. Relabelling the ids leaves the encoding unchanged.
    """
    h, w = instance.shape[-2:]
    patch_y = torch.arange(h, device=instance.device) // g
    patch_x = torch.arange(w, device=instance.device) // g
    inside = instance > 0
    chans = [inside]
    for dy, dx in AFFINITY_OFFSETS:
        same_patch = _shifted_equal(patch_y.view(h, 1).expand(h, w), dy, dx) & \
            _shifted_equal(patch_x.view(1, w).expand(h, w), dy, dx)
        chans.append(_shifted_equal(instance, dy, dx) & inside & same_patch)
    return torch.stack(chans, dim=1).float()


class LabelInputs(nn.Module):
    """Semantic and instance maps -> one token per patch each (MultiMAE-style input adapters).

    Semantic: a class embedding per cell (unlabeled gets its own entry), then a linear map
    of the patch's cells to the encoder width. Instance: the affinity encoding per cell, then
    the same. Each modality has a learned embedding added, plus the encoder's position embedding.
    """

    def __init__(self, num_classes: int, class_dim: int, dim: int, patch: int):
        super().__init__()
        self.cell = cell_size(patch)
        self.g = g = patch // self.cell
        self.num_classes = num_classes
        self.class_embed = nn.Embedding(num_classes + 1, class_dim)
        self.semantic_proj = nn.Conv2d(class_dim, dim, kernel_size=g, stride=g)
        self.instance_proj = nn.Conv2d(1 + len(AFFINITY_OFFSETS), dim, kernel_size=g, stride=g)
        self.semantic_type = nn.Parameter(torch.zeros(1, 1, dim))
        self.instance_type = nn.Parameter(torch.zeros(1, 1, dim))
        for conv in (self.semantic_proj, self.instance_proj):
            nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.class_embed.weight, std=0.02)
        nn.init.normal_(self.semantic_type, std=0.02)
        nn.init.normal_(self.instance_type, std=0.02)

    def forward(self, semantic: Tensor, instance: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """semantic, instance: [B, H/4, W/4]; pos: [1, L, D] -> two [B, L, D] token sets."""
        sem = to_cell_stride(semantic, self.cell)
        sem = torch.where(sem < 0, self.num_classes, sem.clamp(max=self.num_classes - 1))
        sem = self.class_embed(sem).permute(0, 3, 1, 2)
        sem_tokens = self.semantic_proj(sem).flatten(2).transpose(1, 2)
        inst = instance_encoding(to_cell_stride(instance, self.cell), self.g)
        inst_tokens = self.instance_proj(inst).flatten(2).transpose(1, 2)
        return sem_tokens + pos + self.semantic_type, inst_tokens + pos + self.instance_type
