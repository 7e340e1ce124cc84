"""The reconstruction grid: one row per image, one column per view.

Columns: input | masked input | semantic target | semantic prediction | instance target |
instance prediction | pixels (visible patches from the input, removed ones predicted).
Label maps are at 1/4 resolution and are shown enlarged without interpolation.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from dataset.transforms import IMAGENET_MEAN, IMAGENET_STD

COLUMNS = ("input", "masked", "sem gt", "sem pred", "inst gt", "inst pred", "pixels")


def palette(n: int = 256) -> np.ndarray:
    """Distinct colours for ids 0..n-1 (golden-ratio hues), uint8 [n, 3]."""
    hue = (np.arange(n) * 0.618033988749895) % 1.0
    sat = 0.55 + 0.45 * ((np.arange(n) * 7) % 3) / 2
    k = (np.array([5, 3, 1])[None] + hue[:, None] * 6) % 6
    rgb = 1 - sat[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)
    return (rgb * 255).astype(np.uint8)


PALETTE = palette()


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """Normalized [3, H, W] -> uint8 [H, W, 3]."""
    x = image.detach().float().cpu().numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def colour_ids(ids: np.ndarray, size: int, first: int = 0) -> np.ndarray:
    """Integer map -> uint8 [size, size, 3]; ids below `first` (none) in black."""
    rgb = np.where((ids >= first)[..., None], PALETTE[np.abs(ids) % len(PALETTE)], 0)
    return enlarge(rgb.astype(np.uint8), size)


def enlarge(rgb: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.NEAREST))


def instance_view(boundary: torch.Tensor | None, embedding: torch.Tensor | None, size: int) -> np.ndarray:
    """Predicted instances: the first 3 embedding channels as colour, dark on boundaries."""
    if boundary is None:
        return np.full((size, size, 3), 64, np.uint8)
    edge = torch.sigmoid(boundary.float()).cpu().numpy()
    if embedding is not None and embedding.shape[0] > 0:
        emb = embedding.float().cpu().numpy()[:3]
        emb = np.concatenate([emb, np.repeat(emb[-1:], 3 - len(emb), 0)]) if len(emb) < 3 else emb
        lo, hi = emb.min(axis=(1, 2), keepdims=True), emb.max(axis=(1, 2), keepdims=True)
        colour = ((emb - lo) / np.maximum(hi - lo, 1e-6)).transpose(1, 2, 0)
    else:
        colour = np.ones((*edge.shape, 3))
    return enlarge((colour * (1 - edge)[..., None] * 255).astype(np.uint8), size)


def grid_rows(batch: dict[str, torch.Tensor], out: dict[str, Any], recon: torch.Tensor,
              patch: int, n: int) -> list[list[np.ndarray]]:
    image = batch["image"]
    size = image.shape[-1]
    grid = size // patch
    rows = []
    for i in range(min(n, image.shape[0])):
        rgb = to_rgb(image[i])
        removed = out["mask"][i].detach().float().cpu().numpy().reshape(grid, grid)
        keep = np.kron(1 - removed, np.ones((patch, patch)))[..., None]
        masked = (rgb * keep + 96 * (1 - keep)).astype(np.uint8)
        sem_pred = out.get("pred_semantic")
        sem_target = batch.get("semantic")
        inst_target = batch.get("instance")
        rows.append([
            rgb, masked,
            colour_ids(sem_target[i].cpu().numpy(), size) if sem_target is not None else masked * 0,
            colour_ids(sem_pred[i].argmax(0).cpu().numpy(), size) if sem_pred is not None else masked * 0,
            colour_ids(inst_target[i].cpu().numpy(), size, first=1) if inst_target is not None else masked * 0,
            instance_view(out["pred_instance"][i] if out.get("pred_instance") is not None else None,
                          out["pred_embedding"][i] if out.get("pred_embedding") is not None else None, size),
            to_rgb(recon[i]),
        ])
    return rows


def save_grid(path: str | Path, rows: list[list[np.ndarray]], title: str = "") -> Path:
    """Tile the rows under a header of column names; written atomically as PNG."""
    path = Path(path)
    size, pad, header = rows[0][0].shape[0], 2, 14
    width = len(COLUMNS) * (size + pad) + pad
    height = header + len(rows) * (size + pad) + pad
    canvas = Image.new("RGB", (max(width, 8 * len(title) + 4), height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(COLUMNS):
        draw.text((pad + c * (size + pad), 1), name[: max(1, size // 6)], fill=(0, 0, 0))
    for r, cells in enumerate(rows):
        for c, cell in enumerate(cells):
            canvas.paste(Image.fromarray(cell), (pad + c * (size + pad), header + pad + r * (size + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        canvas.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@torch.no_grad()
def reconstruction_grid(model: torch.nn.Module, batch: dict[str, torch.Tensor], out: dict[str, Any],
                        path: str | Path, n: int = 8) -> Path:
    """Write the grid of a forward pass `out` of `model` on `batch`."""
    recon = model.reconstruction(out, batch["image"])
    rows = grid_rows(batch, out, recon, model.config.patch_size, n)
    return save_grid(path, rows)
