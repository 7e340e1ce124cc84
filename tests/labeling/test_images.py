"""Listing and decoding inputs: order, class indices, odd formats, broken files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from labeling.images import (
    ImageDecodeError,
    class_name,
    decode_image,
    imagenet_classes,
    list_images,
    load_image,
    read_bytes,
)


def _photo(h=48, w=64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1).astype(np.uint8)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_imagenet_classes_standard_order_and_unique_names():
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert classes[0].wnid == "n01440764" and classes[0].name == "tench"
    assert classes[281].wnid == "n02123045" and classes[281].name == "tabby"
    assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)
    assert len({c.name for c in classes}) == 1000  # duplicate lemmas disambiguated
    assert class_name(-1) is None and class_name(999) == classes[999].name


def test_list_images_sorted_relative_ids_and_classes(tmp_path):
    files = ["train/n02123045/b.JPEG", "train/n01440764/z.jpeg", "train/n01440764/a.JPEG",
             "other/cats/c.png", "top.JPG"]
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "train/n01440764/notes.txt").write_text("not an image")
    (tmp_path / "train/n01440764/.hidden.JPEG").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache/x.JPEG").write_bytes(b"x")

    records = list_images(tmp_path)
    assert [r.image_id for r in records] == sorted(files)
    by_id = {r.image_id: r for r in records}
    assert by_id["train/n01440764/a.JPEG"].class_index == 0
    assert by_id["train/n02123045/b.JPEG"].class_index == 281
    assert by_id["other/cats/c.png"].class_index == -1
    assert by_id["top.JPG"].class_index == -1
    assert by_id["top.JPG"].path == str((tmp_path / "top.JPG").resolve())
    assert [r.image_id for r in list_images(tmp_path, limit=2)] == sorted(files)[:2]


def test_list_images_bad_roots(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="no image files"):
        list_images(tmp_path)


def test_decode_rgb_jpeg_keeps_size_and_content():
    src = _photo()
    out, size = decode_image(_save(Image.fromarray(src), "JPEG", quality=95))
    assert size == (48, 64) and out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - src).mean() < 6


def test_decode_cmyk_grayscale_palette_alpha_and_png_named_jpeg():
    src = _photo()
    cmyk, _ = decode_image(_save(Image.fromarray(src).convert("CMYK"), "JPEG", quality=95))
    assert cmyk.shape == (48, 64, 3)
    assert np.abs(cmyk.astype(int) - src).mean() < 8  # colours survive the CMYK round trip

    gray, _ = decode_image(_save(Image.fromarray(src).convert("L"), "JPEG"))
    assert gray.shape == (48, 64, 3)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()

    palette = Image.fromarray(src).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    out, _ = decode_image(_save(palette, "PNG", transparency=0))
    assert out.shape == (48, 64, 3)

    rgba = Image.fromarray(np.dstack([src, np.full((48, 64), 128, np.uint8)]), "RGBA")
    out, _ = decode_image(_save(rgba, "PNG"))
    assert np.array_equal(out, src)  # alpha dropped, colour kept (as convert("RGB") does)

    png_named_jpeg, _ = decode_image(_save(Image.fromarray(src), "PNG"))
    assert np.array_equal(png_named_jpeg, src)  # read by content, lossless


def test_decode_16bit_grayscale_is_scaled_not_clipped():
    ramp = (np.arange(64, dtype=np.uint16)[None, :].repeat(8, 0) * 1000)
    out, _ = decode_image(_save(Image.fromarray(ramp), "PNG"))
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    assert np.all(np.diff(out[0, :, 0].astype(int)) >= 0)


def test_exif_orientation_is_not_applied():
    """ImageNet loaders (PIL .convert("RGB")) ignore EXIF rotation: so do the labels."""
    img = Image.fromarray(_photo(20, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out, size = decode_image(_save(img, "JPEG", exif=exif.tobytes()))
    assert size == (20, 40) and out.shape == (20, 40, 3)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"hello, I am a text file\n" * 10, "not an image"),
])
def test_decode_errors_are_one_line(data, reason):
    with pytest.raises(ImageDecodeError, match=reason) as info:
        decode_image(data)
    assert "\n" not in str(info.value)


def test_truncated_jpeg_is_an_error():
    data = _save(Image.fromarray(_photo(200, 300)), "JPEG", quality=95)
    with pytest.raises(ImageDecodeError, match="truncated") as info:
        decode_image(data[: len(data) // 2])
    assert "\n" not in str(info.value)


def test_unreadable_path(tmp_path):
    with pytest.raises(ImageDecodeError, match="unreadable file"):
        read_bytes(tmp_path / "missing.JPEG")


def test_max_side_shrinks_keeps_aspect_and_reports_original_size(tmp_path):
    src = np.asarray(Image.fromarray(_photo()).resize((1000, 600)))
    path = tmp_path / "big.JPEG"
    path.write_bytes(_save(Image.fromarray(src), "JPEG", quality=95))
    out, size = load_image(path, max_side=256)
    assert size == (600, 1000)
    assert out.shape == (154, 256, 3)  # 600 * 256 / 1000 = 153.6
    full, _ = load_image(path)
    ref = np.asarray(Image.fromarray(full).resize((256, 154), Image.Resampling.BILINEAR))
    assert np.abs(out.astype(int) - ref).mean() < 4  # the DCT-scaled decode looks the same
    small, size = decode_image(_save(Image.fromarray(_photo()), "PNG"), max_side=256)
    assert small.shape == (48, 64, 3) and size == (48, 64)  # never enlarged


def _pil_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize("settings", [
    {"quality": 90}, {"quality": 75, "progressive": True}, {"quality": 95, "subsampling": 0},
    {"quality": 85, "subsampling": 1}, {"quality": 50, "optimize": True},
])
def test_plain_jpegs_decode_through_opencv_to_the_same_pixels_as_pil(settings, monkeypatch):
    from skimage import data as photos

    import labeling.images as images

    calls = []
    real = images._opencv_decode
    monkeypatch.setattr(images, "_opencv_decode", lambda *a: calls.append(1) or real(*a))
    for photo in (photos.astronaut(), photos.chelsea(), photos.rocket()):
        data = _save(Image.fromarray(photo), "JPEG", **settings)
        out, size = decode_image(data)
        assert size == photo.shape[:2] and np.array_equal(out, _pil_pixels(data))
    assert len(calls) == 3  # the fast path was taken, and agreed with PIL


def test_exif_orientation_is_not_applied_on_the_fast_path_either():
    img = Image.fromarray(_photo(20, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _save(img, "JPEG", exif=exif.tobytes())
    assert np.array_equal(decode_image(data)[0], _pil_pixels(data))


def test_jpegs_off_the_fast_path_still_decode_as_pil_does(monkeypatch):
    import labeling.images as images

    data = _save(Image.fromarray(_photo()), "JPEG", quality=90)
    padded = data + b"\0" * 16  # bytes after the end-of-image marker: PIL decodes it
    assert not images._plain_jpeg(Image.open(io.BytesIO(padded)), padded)
    assert np.array_equal(decode_image(padded)[0], _pil_pixels(data))
    monkeypatch.setattr(images, "_opencv_flags", lambda: None)  # no OpenCV installed
    assert np.array_equal(decode_image(data)[0], _pil_pixels(data))
