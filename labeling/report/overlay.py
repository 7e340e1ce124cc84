"""Overlay pictures for the galleries: semantic colours, instance outlines, and a legend.

The photo comes from the input root (or --images), else from the row's optional
`image_bytes`; when neither has it, the labels are drawn on grey and the item says so.
Masks are decoded straight at the thumbnail size (nearest-neighbour), not at full size.
"""

from __future__ import annotations

import base64
import colorsys
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from dataset.reader import instance_map, semantic_map

# 20 well-separated colours for the first category ids; later ids walk the hue circle.
_BASE_COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79",
]
OUTLINE = (255, 255, 255)
MISSING_GREY = 110
ALPHA = 0.5
# Categories that mean "nothing in particular" get a light grey tint, so objects stand out.
BACKGROUND_NAMES = {"background", "unlabeled", "unlabelled", "void", "other", "none"}
BACKGROUND_GREY = (128, 128, 128)
BACKGROUND_ALPHA = 0.25


def is_background(name: str | None) -> bool:
    return (name or "").strip().lower() in BACKGROUND_NAMES


def category_colour(category_id: int, name: str | None = None) -> tuple[int, int, int]:
    """A fixed RGB colour per category id (the same in every report); grey for background."""
    if is_background(name):
        return BACKGROUND_GREY
    if 0 <= category_id < len(_BASE_COLOURS):
        h = _BASE_COLOURS[category_id].lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    hue = (abs(category_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def hex_colour(category_id: int, name: str | None = None) -> str:
    r, g, b = category_colour(category_id, name)
    return f"#{r:02x}{g:02x}{b:02x}"


@dataclass
class Overlay:
    image_id: str
    data_uri: str
    width: int
    height: int
    legend: list[dict[str, Any]] = field(default_factory=list)  # name, colour, share
    instances: int = 0
    note: str | None = None  # e.g. "image file not found"
    missing: bool = False  # the photo could not be loaded (labels drawn on grey)


def load_image(root: Path | None, row: dict[str, Any]) -> tuple[Image.Image | None, str | None]:
    """The row's photo as RGB, and a note when it could not be had (never raises)."""
    data = row.get("image_bytes")
    path = root / row["image_id"] if root is not None else None
    try:
        if path is not None and path.is_file():
            with Image.open(path) as im:
                return im.convert("RGB"), None
        if data:
            with Image.open(io.BytesIO(data)) as im:
                return im.convert("RGB"), None
    except (OSError, UnidentifiedImageError) as exc:
        return None, f"image unreadable ({type(exc).__name__})"
    if root is None:
        return None, "no image root (pass --images)"
    return None, "image file not found"


def thumbnail_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = max_side / max(height, width, 1)  # small images are enlarged too
    return max(1, round(height * scale)), max(1, round(width * scale))


def outlines(ids: np.ndarray) -> np.ndarray:
    """Bool [H, W]: pixels where the instance id changes to the right or below (id > 0)."""
    edge = np.zeros(ids.shape, dtype=bool)
    dx = ids[:, 1:] != ids[:, :-1]
    dy = ids[1:, :] != ids[:-1, :]
    edge[:, 1:] |= dx & (ids[:, 1:] > 0)
    edge[:, :-1] |= dx & (ids[:, :-1] > 0)
    edge[1:, :] |= dy & (ids[1:, :] > 0)
    edge[:-1, :] |= dy & (ids[:-1, :] > 0)
    return edge


def draw_labels(photo: np.ndarray, sem: np.ndarray, inst: np.ndarray,
                vocab: dict[int, str] | None = None) -> np.ndarray:
    """Blend semantic colours into an RGB uint8 picture and draw instance outlines."""
    out = photo.astype(np.float32)
    vocab = vocab or {}
    for cat in np.unique(sem).tolist():
        if cat < 0:
            continue
        where = sem == cat
        name = vocab.get(cat)
        alpha = BACKGROUND_ALPHA if is_background(name) else ALPHA
        colour = np.array(category_colour(cat, name), np.float32)
        out[where] = (1 - alpha) * out[where] + alpha * colour
    out[outlines(inst)] = OUTLINE
    return out.clip(0, 255).astype(np.uint8)


def render(row: dict[str, Any], root: Path | None, vocab: dict[int, str],
           max_side: int = 320, quality: int = 85) -> Overlay:
    """The overlay of one label row as an embedded JPEG, with its legend."""
    h, w = int(row["height"]), int(row["width"])
    size = thumbnail_size(h, w, max_side)
    image, note = load_image(root, row)
    if image is None:
        photo = np.full((*size, 3), MISSING_GREY, np.uint8)
    else:
        if image.size != (w, h):
            note = f"image is {image.size[0]}x{image.size[1]}, labels are {w}x{h}"
        photo = np.asarray(image.resize((size[1], size[0]), Image.BILINEAR))[..., :3]
    sem = semantic_map(row, size)
    inst = instance_map(row, size)
    picture = draw_labels(photo, sem, inst, vocab)
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="JPEG", quality=quality)
    uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    total = float(h * w) or 1.0
    legend = [
        {"category_id": e["category_id"], "name": vocab.get(e["category_id"], f"#{e['category_id']}"),
         "colour": hex_colour(e["category_id"], vocab.get(e["category_id"])),
         "share": e["area"] / total}
        for e in sorted(row["semantic"] or [], key=lambda e: -e["area"])
    ]
    return Overlay(row["image_id"], uri, size[1], size[0], legend,
                   len(row["instances"] or []), note, image is None)
