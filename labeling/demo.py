"""The demo input: scikit-image's bundled photos laid out as a small ImageNet-style folder.

No download is needed: the photos ship inside the scikit-image wheel. The folder mimics the
ImageNet train layout, including the odd files real ImageNet holds, so a demo run exercises
every path of the job::

    train/n02123045/chelsea.JPEG         tabby cat (RGB)
    train/n02123045/chelsea_cmyk.JPEG    the same cat, mirrored, stored as a CMYK JPEG
    train/n03785016/motorcycle.JPEG      moped (closest ImageNet class)
    train/n04008634/rocket.JPEG          projectile, missile -- actually a PNG named .JPEG
    train/n04485082/camera.JPEG          tripod (grayscale JPEG)
    train/n07920052/coffee.JPEG          espresso
    train/n01440764/empty.JPEG           zero bytes            -> error row
    train/n01440764/truncated.JPEG       cut in half           -> error row
    extra/astronaut.JPEG                 not in a wnid folder  -> class_index -1
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

# (relative path, scikit-image loader name, how to store it)
DEMO_FILES = (
    ("train/n02123045/chelsea.JPEG", "chelsea", "jpeg"),
    ("train/n02123045/chelsea_cmyk.JPEG", "chelsea", "cmyk"),
    ("train/n03785016/motorcycle.JPEG", "stereo_motorcycle", "jpeg"),
    ("train/n04008634/rocket.JPEG", "rocket", "png"),
    ("train/n04485082/camera.JPEG", "camera", "gray"),
    ("train/n07920052/coffee.JPEG", "coffee", "jpeg"),
    ("train/n01440764/empty.JPEG", None, "empty"),
    ("train/n01440764/truncated.JPEG", "astronaut", "truncated"),
    ("extra/astronaut.JPEG", "astronaut", "jpeg"),
)


def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disp)


def _encode(image: np.ndarray, how: str) -> bytes:
    buf = io.BytesIO()
    if how == "empty":
        return b""
    if how == "gray":
        Image.fromarray(image).convert("L").save(buf, "JPEG", quality=90)
    elif how == "cmyk":
        Image.fromarray(image[:, ::-1]).convert("CMYK").save(buf, "JPEG", quality=90)
    elif how == "png":
        Image.fromarray(image).save(buf, "PNG")
    else:
        Image.fromarray(image).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2] if how == "truncated" else data


def build_demo_folder(root: str | Path, overwrite: bool = False) -> Path:
    """Write the demo folder under `root` (skipped if complete unless `overwrite`); returns root."""
    root = Path(root)
    marker = root / ".complete"
    if marker.exists() and not overwrite:
        log.info("demo images already in %s", root)
        return root
    for rel, photo, how in DEMO_FILES:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _encode(_photo(photo) if photo else np.zeros((1, 1, 3), np.uint8), how)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    marker.touch()
    log.info("wrote %d demo images (scikit-image photos) to %s", len(DEMO_FILES), root)
    return root


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    print(build_demo_folder(sys.argv[1] if len(sys.argv) > 1 else "out/demo_images"))
