"""The pre-training loader: crop/flip alignment, sharding, resume, skipped rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataset import transforms
from dataset.loader import DataConfig, PretrainLoader, is_held_out, plan_units
from dataset.reader import LabelReader
from tests.pretrain.synthetic import (
    PALETTE,
    VOCAB,
    block_image,
    block_labels,
    block_maps,
    label_row,
)


def pil_nearest(label: np.ndarray, box: transforms.CropBox, out: int) -> np.ndarray:
    """Independent reference: PIL's nearest resize of the box (centre sampling), then mirror."""
    img = Image.fromarray(label.astype(np.int32), mode="I")
    region = (box.left, box.top, box.left + box.width, box.top + box.height)
    res = np.asarray(img.resize((out, out), Image.Resampling.NEAREST, box=region))
    return res[:, ::-1] if box.flip else res


def image_categories(image: np.ndarray) -> np.ndarray:
    """Category index (0..3) of each 4x4 block of a normalized image, by the block's centre colour."""
    rgb = image.transpose(1, 2, 0) * transforms.IMAGENET_STD + transforms.IMAGENET_MEAN
    rgb = rgb * 255.0
    centre = rgb[1::4, 1::4] / 4 + rgb[2::4, 2::4] / 4 + rgb[1::4, 2::4] / 4 + rgb[2::4, 1::4] / 4
    dist = ((centre[:, :, None, :] - PALETTE[None, None].astype(np.float32)) ** 2).sum(-1)
    return dist.argmin(-1)


@pytest.mark.parametrize("flip", [False, True])
def test_crop_and_flip_keep_image_and_masks_aligned(flip):
    rng = np.random.default_rng(1)
    lookup = transforms.vocabulary_lookup(VOCAB)
    for _ in range(6):
        semantic, instance = block_maps(90, 120, rng)
        row = label_row("x.png", semantic, instance, 0)
        box = transforms.sample_crop(rng, 90, 120, scale=(0.3, 1.0), flip_prob=float(flip))
        assert box.flip is flip
        sample = transforms.transform_row(row, Image.fromarray(block_image(semantic)), box, 64, lookup)
        assert sample.image.shape == (3, 64, 64) and sample.semantic.shape == (16, 16)
        # labels: exactly PIL's nearest sampling of the known maps over the same box
        want_sem = np.vectorize(lambda c: lookup[int(c)])(pil_nearest(semantic, box, 16))
        np.testing.assert_array_equal(sample.semantic, want_sem)
        np.testing.assert_array_equal(sample.instance, pil_nearest(instance, box, 16))
        # image: the colour under each label cell's centre is that cell's category,
        # everywhere except cells touching a region border (bilinear blends there)
        got = image_categories(sample.image)
        pad = np.pad(sample.semantic, 1, mode="edge")
        interior = np.ones_like(sample.semantic, bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                interior &= pad[1 + dy:17 + dy, 1 + dx:17 + dx] == sample.semantic
        assert interior.sum() > 100
        np.testing.assert_array_equal(got[interior], sample.semantic[interior])
        assert (got == sample.semantic).mean() > 0.9


def test_flip_mirrors_image_and_labels():
    rng = np.random.default_rng(2)
    semantic, instance = block_maps(64, 64, rng)
    row = label_row("x.png", semantic, instance, 0)
    image = Image.fromarray(block_image(semantic))
    plain = transforms.transform_row(row, image, transforms.CropBox(8, 4, 48, 56, False), 32)
    mirror = transforms.transform_row(row, image, transforms.CropBox(8, 4, 48, 56, True), 32)
    np.testing.assert_allclose(mirror.image, plain.image[:, :, ::-1], atol=1e-5)
    np.testing.assert_array_equal(mirror.semantic, plain.semantic[:, ::-1])
    np.testing.assert_array_equal(mirror.instance, plain.instance[:, ::-1])


def test_image_of_another_size_is_cropped_in_label_coordinates():
    rng = np.random.default_rng(3)
    semantic, instance = block_maps(60, 80, rng)
    row = label_row("x.png", semantic, instance, 0)
    box = transforms.CropBox(10, 20, 40, 40, False)
    small = transforms.transform_row(row, Image.fromarray(block_image(semantic)), box, 32)
    big_image = Image.fromarray(block_image(semantic)).resize((160, 120), Image.Resampling.NEAREST)
    big = transforms.transform_row(row, big_image, box, 32)
    assert (image_categories(small.image) == image_categories(big.image)).mean() > 0.95


def test_vocabulary_is_remapped_to_contiguous_ids(tmp_path):
    labels = block_labels(tmp_path, 6)
    batch = next(iter(PretrainLoader(DataConfig(labels=str(labels), img_size=32, num_workers=0), 6)))
    values = set(batch["semantic"].unique().tolist())
    assert values <= {-1, 0, 1, 2, 3} and len(values) > 1
    assert batch["semantic"].dtype == torch.int64 and batch["instance"].dtype == torch.int64


def epoch_ids(labels: Path, *, ranks: int, workers: int, seed: int = 0, epochs: int = 1):
    ids, counts = [], []
    for rank in range(ranks):
        cfg = DataConfig(labels=str(labels), img_size=32, num_workers=workers)
        loader = PretrainLoader(cfg, 3, rank=rank, world_size=ranks, seed=seed, epochs=epochs)
        for batch in loader:
            ids.extend(batch["image_id"])
        counts.append(loader.counts())
    return ids, counts


def test_no_row_served_twice_across_two_ranks_and_two_workers(tmp_path):
    labels = block_labels(tmp_path, 41, shards=3, row_group=4, errors=3, size=(32, 40))
    ok = {r["image_id"] for r, _ in LabelReader(labels).rows(only_ok=True)}
    ids, counts = epoch_ids(labels, ranks=2, workers=2)
    assert len(ids) == len(set(ids)) == 41
    assert set(ids) == ok
    assert sum(c["error_rows"] for c in counts) == 3
    assert all(c["served"] > 0 for c in counts)
    two, _ = epoch_ids(labels, ranks=2, workers=2, epochs=2)
    assert sorted(two) == sorted(ids * 2) and two[:41] != two[41:]  # new order next epoch


def test_units_are_split_until_every_reader_has_work():
    units = plan_units([[5], [2]], unit_rows=256, min_units=6)
    assert len(units) >= 6
    rows = sorted((u.shard, r) for u in units for r in range(u.first, u.first + u.stop - u.start))
    assert rows == [(0, i) for i in range(5)] + [(1, i) for i in range(2)]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_continues_the_same_batches(tmp_path, workers):
    labels = block_labels(tmp_path, 23, shards=2, row_group=4, size=(32, 40))
    cfg = DataConfig(labels=str(labels), img_size=32, num_workers=workers)
    loader = PretrainLoader(cfg, 3, seed=5)
    it = iter(loader)
    for _ in range(9):  # past the end of epoch 0 (23 rows = 7.7 batches)
        next(it)
    state = loader.state_dict()
    reference = [next(it) for _ in range(6)]
    resumed = PretrainLoader(cfg, 3, seed=5)
    resumed.load_state_dict(state)
    again = [b for _, b in zip(range(6), resumed)]
    for a, b in zip(reference, again):
        assert a["image_id"] == b["image_id"]
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        torch.testing.assert_close(a["semantic"], b["semantic"], rtol=0, atol=0)
        torch.testing.assert_close(a["instance"], b["instance"], rtol=0, atol=0)


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    labels = block_labels(tmp_path, 10, size=(32, 40))
    victims = sorted((tmp_path / "images").rglob("*.png"))[:2]
    victims[0].unlink()
    victims[1].write_bytes(b"not an image")
    ids, counts = epoch_ids(labels, ranks=1, workers=0)
    assert len(ids) == 8 and counts[0]["unreadable"] == 2


def test_image_bytes_in_the_shard_are_used(tmp_path):
    labels = block_labels(tmp_path, 7, as_bytes=True, size=(32, 40))
    for p in (tmp_path / "images").rglob("*.png"):
        p.unlink()
    ids, counts = epoch_ids(labels, ranks=1, workers=0)
    assert len(ids) == 7 and counts[0]["unreadable"] == 0


def test_holdout_rows_are_kept_out(tmp_path):
    labels = block_labels(tmp_path, 30, size=(32, 40))
    cfg = DataConfig(labels=str(labels), img_size=32, num_workers=0, holdout=0.3)
    loader = PretrainLoader(cfg, 4, epochs=1)
    ids = [i for b in loader for i in b["image_id"]]
    held = loader.counts()["held_out"]
    assert 0 < held < 30 and len(ids) + held == 30
    assert not any(is_held_out(i, 0.3) for i in ids)


def test_too_many_readers_for_the_rows_is_a_clear_error(tmp_path):
    labels = block_labels(tmp_path, 3, size=(32, 40))
    with pytest.raises(ValueError, match="3 rows cannot feed 4 readers"):
        PretrainLoader(DataConfig(labels=str(labels), num_workers=2), 2, world_size=2)


def test_rle_sampling_equals_pycocotools_decode():
    from dataset import masks

    rng = np.random.default_rng(7)
    h, w = 37, 53
    stack = [np.zeros((h, w), bool), np.ones((h, w), bool), rng.random((h, w)) < 0.5]
    for _ in range(20):
        m = np.zeros((h, w), bool)
        y, x = rng.integers(0, h), rng.integers(0, w)
        m[y:y + rng.integers(1, 30), x:x + rng.integers(1, 40)] = True
        stack.append(m)
    stack = np.stack(stack)
    counts = [e["counts"] for e in masks.encode_many(stack)]
    for _ in range(5):
        rows, cols = rng.integers(0, h, 20), rng.integers(0, w, 25)
        got = transforms.sample_masks(counts, h, w, rows, cols)
        decoded = masks.decode_many(counts, h, w).transpose(2, 0, 1).astype(bool)
        np.testing.assert_array_equal(got, decoded[:, rows][:, :, cols])
        np.testing.assert_array_equal(got, stack[:, rows][:, :, cols])
    assert transforms.sample_masks([], h, w, rows, cols).shape == (0, 20, 25)


def test_crop_labels_match_the_full_size_maps_with_overlaps():
    from dataset import masks

    rng = np.random.default_rng(11)
    h, w = 60, 80
    semantic = rng.choice([3, 7, 11, 20, 99], size=(6, 8)).repeat(10, 0).repeat(10, 1)  # 99: not in vocab
    boxes = [np.zeros((h, w), bool) for _ in range(6)]
    for m in boxes:  # overlapping rectangles of random sizes
        y, x = rng.integers(0, h - 5), rng.integers(0, w - 5)
        m[y:y + rng.integers(5, 50), x:x + rng.integers(5, 70)] = True
    inst = [{"counts": e["counts"], "area": e["area"], "bbox": e["bbox"]} for e in masks.encode_many(np.stack(boxes))]
    row = {"height": h, "width": w, "semantic": masks.semantic_entries(semantic), "instances": inst}
    lookup = transforms.vocabulary_lookup(VOCAB)
    full_sem = masks.semantic_map(row["semantic"], h, w)
    full_inst = masks.instance_map(inst, h, w)
    for _ in range(10):
        box = transforms.sample_crop(rng, h, w, scale=(0.1, 1.0))
        sem, ids = transforms.crop_labels(row, box, 16, lookup)
        r, c = transforms.label_grid(box, 16)
        want = np.vectorize(lambda v: lookup.get(int(v), -1))(full_sem[r][:, c])
        np.testing.assert_array_equal(sem, want)
        np.testing.assert_array_equal(ids, full_inst[r][:, c])


@pytest.mark.parametrize("seed", [0, 1])
def test_crop_labels_of_large_masks_match_the_decoded_maps(seed):
    """Realistic sizes (runs of 3+ RLE groups, negative differences), overlapping
    ellipses, crops from a few pixels (repeated grid rows/columns) to the whole image,
    both flips: equal to decoding the full maps with pycocotools and sampling them."""
    from dataset import masks
    from tests.dataset.synth import random_instances, random_label_map

    rng = np.random.default_rng(seed)
    h, w = 150, 190
    inst = [{"counts": e["counts"], "area": e["area"], "bbox": e["bbox"]}
            for e in masks.encode_many(random_instances(rng, h, w, 12))]
    row = {"height": h, "width": w, "instances": inst,
           "semantic": masks.semantic_entries(random_label_map(rng, h, w, 6))}
    lookup = {c: i for i, c in enumerate(range(0, 10, 2))}  # odd ids are not in the vocabulary
    full_sem = masks.semantic_map(row["semantic"], h, w)
    full_inst = masks.instance_map(inst, h, w)
    boxes = [transforms.sample_crop(rng, h, w, scale=(0.0005, 1.0)) for _ in range(30)]
    boxes += [transforms.CropBox(0, 0, h, w, flip) for flip in (False, True)]
    boxes += [transforms.CropBox(h - 3, w - 2, 3, 2, flip) for flip in (False, True)]
    assert any(b.height < 16 or b.width < 16 for b in boxes)
    for box in boxes:
        sem, ids = transforms.crop_labels(row, box, 16, lookup)
        r, c = transforms.label_grid(box, 16)
        want = np.vectorize(lambda v: lookup.get(int(v), -1))(full_sem[r][:, c])
        np.testing.assert_array_equal(sem, want)
        np.testing.assert_array_equal(ids, full_inst[r][:, c])
        assert sem.dtype == ids.dtype == np.int64 and sem.flags.c_contiguous


def test_crop_labels_without_masks_or_instances_in_the_crop():
    from dataset import masks

    h, w = 40, 50
    blob = np.zeros((1, h, w), bool)
    blob[0, :10, :10] = True
    inst = [{"counts": e["counts"], "area": e["area"], "bbox": e["bbox"]} for e in masks.encode_many(blob)]
    box = transforms.CropBox(20, 20, 20, 30, True)
    sem, ids = transforms.crop_labels({"height": h, "width": w, "instances": inst}, box, 8)
    assert (sem == -1).all() and (ids == 0).all() and sem.shape == ids.shape == (8, 8)
    sem, ids = transforms.crop_labels({"height": h, "width": w, "instances": inst},
                                      transforms.CropBox(0, 0, 20, 20), 8)
    assert (sem == -1).all() and (ids[:4, :4] == 1).all() and ids.sum() == 16
