"""Listing and decoding the input images.

Listing is deterministic: every image file under the input root, sorted by its path
relative to the root (POSIX separators), which is also its ``image_id``. A file whose
parent folder is an ImageNet wnid (``train/n01440764/x.JPEG``) gets that class's index
in the standard 1000-class order; any other file gets ``class_index = -1``.

Decoding follows what ImageNet training code does (``PIL.Image.open(f).convert("RGB")``
in torchvision's ImageFolder and timm): CMYK, grayscale, palette and alpha images are
converted to RGB, a PNG or other format hiding behind a ``.JPEG`` name is read by its
content, and the EXIF orientation tag is *not* applied, so the stored pixel grid (and thus
every mask) lines up with the image a trainer will load. A file that cannot be decoded
raises :class:`ImageDecodeError` whose message is one line saying why.

PIL reads every header. The pixels of a plain colour JPEG that needs no shrinking (most
of ImageNet) are decoded by OpenCV instead: the same libjpeg-turbo settings give the same
pixels (tests/labeling/test_images.py) for ~25% less CPU than PIL's decoder (BENCHMARKS.md,
"Labeling overhead"). Anything else, or anything OpenCV refuses, goes through PIL.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset(
    {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
)
CLASSES_FILE = Path(__file__).with_name("imagenet_classes.tsv")
# The first WordNet lemma names an ImageNet class, except where two classes share it.
_NAME_OVERRIDES = {
    "n02012849": "crane (bird)",
    "n03126707": "crane (machine)",
    "n02113186": "Cardigan Welsh corgi",
    "n02963159": "cardigan (sweater)",
    "n03710721": "tank suit",
}


class ImageDecodeError(ValueError):
    """An input file that is not a decodable image; str(exc) is a one-line reason."""


@dataclass(frozen=True)
class ImageRecord:
    image_id: str  # path relative to the input root, POSIX separators
    path: str  # absolute path
    class_index: int  # ImageNet class index, -1 if unknown


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    wnid: str
    name: str  # short unique name, e.g. "tabby" (used as prompt / vocabulary entry)
    lemmas: str  # all WordNet lemmas, e.g. "tabby, tabby cat"


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1000 ImageNet-1K classes in the standard (sorted wnid) order."""
    classes = []
    for line in CLASSES_FILE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        wnid, lemmas = line.split("\t", 1)
        name = _NAME_OVERRIDES.get(wnid, lemmas.split(",")[0].strip())
        classes.append(ImageNetClass(len(classes), wnid, name, lemmas))
    return tuple(classes)


@functools.lru_cache(maxsize=1)
def wnid_to_index() -> dict[str, int]:
    return {c.wnid: c.index for c in imagenet_classes()}


def class_name(class_index: int) -> str | None:
    """Short name of an ImageNet class index; None for -1 (unknown)."""
    return imagenet_classes()[class_index].name if class_index >= 0 else None


def list_images(root: str | Path, limit: int | None = None) -> list[ImageRecord]:
    """All image files under `root`, sorted by relative path; the first `limit` if given."""
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist or is not a folder")
    wnids = wnid_to_index()
    records = []
    for dirpath, dirnames, filenames in os.walk(root_path, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            image_id = path.relative_to(root_path).as_posix()
            records.append(ImageRecord(image_id, str(path), wnids.get(path.parent.name, -1)))
    if not records:
        raise ValueError(f"no image files under {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    records.sort(key=lambda r: r.image_id)
    return records[:limit] if limit is not None else records


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes; an unreadable file raises ImageDecodeError with the OS reason."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"unreadable file ({exc.strerror or exc})") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # high bit depth: scale, not clip
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    with warnings.catch_warnings():  # palette + transparency warns; convert handles it
        warnings.simplefilter("ignore")
        return img.convert("RGB")


def decode_image(data: bytes, max_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded image bytes -> (RGB uint8 [h, w, 3], (H, W) of the original image).

    With `max_side`, the returned image is shrunk (aspect kept) so its longer side is at
    most `max_side`; JPEGs are then decoded at a reduced DCT scale, which is much cheaper
    than decoding at full size. Without it the image is returned at full size.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        shrink = bool(max_side) and max(width, height) > max_side
        if not shrink and _plain_jpeg(img, data):
            pixels = _opencv_decode(data, (height, width))
            if pixels is not None:
                return pixels, (height, width)
        if shrink and img.format == "JPEG":
            scale = max_side / max(width, height)
            img.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
        img.load()
        img = _to_rgb(img)
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (format not recognised)") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageDecodeError(f"corrupt or truncated image ({reason})") from None
    if max_side:
        img = _shrink(img, max_side)
    return np.asarray(img), (height, width)


def _plain_jpeg(img: Image.Image, data: bytes) -> bool:
    """A baseline or progressive YCbCr JPEG that ends with its end-of-image marker (a
    truncated file goes to PIL, which names the problem)."""
    return img.format == "JPEG" and img.mode == "RGB" and data.endswith(b"\xff\xd9")


@functools.lru_cache(maxsize=1)
def _opencv_flags() -> int | None:
    try:
        import cv2
    except ImportError:  # the labeling extra brings OpenCV; without it PIL decodes
        return None
    return cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION  # as PIL: EXIF not applied


def _opencv_decode(data: bytes, size: tuple[int, int]) -> np.ndarray | None:
    """RGB uint8 [H, W, 3] by OpenCV, or None if it declines or disagrees on the size."""
    flags = _opencv_flags()
    if flags is None:
        return None
    import cv2

    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if pixels is None or pixels.shape != (*size, 3):
        return None
    return pixels


def _shrink(img: Image.Image, max_side: int) -> Image.Image:
    w, h = img.size
    if max(w, h) <= max_side:
        return img
    scale = max_side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def load_image(path: str | Path, max_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """decode_image(read_bytes(path)); convenience for tools and tests."""
    return decode_image(read_bytes(path), max_side)
