"""The cheaper paths around the models give the same rows as the plain ones.

- run lengths handed over with a backend's RLEs (sam-amg-fast, mask_ops.mask_runs) equal
  those the codec finds, and fusion on them gives the rows of fusion on the RLE strings;
  likewise the label map's segments found on the device (mask_ops.label_segments, the
  transformers backends);
- the Ray stage transport (pipelines/labels.py: decoded images in a tensor column, the rest
  pickled) hands the next stage the same items, through Ray Data's own block conversion;
- the shard compression level changes bytes, not rows.
"""

from __future__ import annotations

import copy

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from dataset import masks as mask_codec
from dataset.schema import file_metadata
from dataset.shards import shard_path, write_shard
from labeling.backends.base import InstancePrediction, SemanticPrediction
from labeling.backends.fixed import FixedBackend
from labeling.backends.mask_ops import encode_rles_with_runs, label_segments, mask_runs, run_lengths
from labeling.config import ModelConfig, Thresholds, resolve
from labeling.fusion import instances_with_runs, semantic_with_runs
from labeling.stages import ModelStage, decode_items, fuse_items


def _mask_cases():
    rng = np.random.default_rng(0)
    yield rng.random((6, 9, 7)) < 0.5
    yield np.ones((2, 1, 1), bool)
    yield np.zeros((3, 4, 1), bool)
    stack = rng.random((5, 20, 30)) < 0.3
    stack[0], stack[1] = True, False  # all ones (empty first 0-run) / all zeros
    stack[2, 0, 0], stack[3, 0, 0] = True, False
    yield stack


@pytest.mark.parametrize("masks", list(_mask_cases()))
def test_device_runs_equal_the_codec_runs(masks):
    runs, offsets = mask_runs(torch.as_tensor(masks))
    want_runs, want_offsets = mask_codec.mask_runs(masks)
    np.testing.assert_array_equal(runs, want_runs)
    np.testing.assert_array_equal(offsets, want_offsets)
    assert [r.tolist() for r in run_lengths(torch.as_tensor(masks))] == \
        [r.tolist() for r in np.split(want_runs, want_offsets[1:-1])]
    rles, handed = encode_rles_with_runs(torch.as_tensor(masks))
    assert rles == mask_codec.encode_many(masks)
    np.testing.assert_array_equal(handed[0], runs)
    np.testing.assert_array_equal(handed[1], offsets)
    assert encode_rles_with_runs(torch.zeros(0, 3, 3, dtype=torch.bool)) == ([], None)


def _label_cases():
    rng = np.random.default_rng(2)
    yield rng.integers(-1, 4, (9, 7))
    yield np.full((1, 1), -1)
    yield np.arange(6).reshape(1, 6)
    yield np.arange(6).reshape(6, 1)
    smooth = np.repeat(np.repeat(rng.integers(0, 3, (4, 5)), 5, 0), 6, 1)
    smooth[0, 0] = 7
    yield smooth


@pytest.mark.parametrize("label_map", list(_label_cases()))
def test_device_segments_equal_the_codec_segments(label_map):
    start, label = label_segments(torch.as_tensor(label_map, dtype=torch.int32))
    want_start, want_label = mask_codec.label_segments(label_map)
    np.testing.assert_array_equal(start, want_start)
    np.testing.assert_array_equal(label, want_label)
    # and the entries made from them are those made from the map
    handed = SemanticPrediction(label_map.astype(np.int32), segments=(start, label))
    entries, _, segments = semantic_with_runs(handed, label_map.shape)
    plain, _, plain_segments = semantic_with_runs(SemanticPrediction(label_map.astype(np.int32)),
                                                  label_map.shape)
    assert entries == plain
    np.testing.assert_array_equal(segments.category, plain_segments.category)


def test_handed_segments_must_fit_the_map():
    label_map = np.array([[0, 1], [0, 1]], np.int32)
    start, label = mask_codec.label_segments(label_map)
    for bad in [(start[::-1], label), (start + 1, label), (start[:1], label),
                (np.array([0, 9]), label)]:
        with pytest.raises(ValueError, match="segments"):
            semantic_with_runs(SemanticPrediction(label_map, segments=bad), (2, 2))
    # a map that needs resizing to the original size is segmented again, there
    entries, _, _ = semantic_with_runs(SemanticPrediction(label_map, segments=(start, label)), (4, 4))
    assert [e["area"] for e in entries] == [8, 8]


def _items(tmp_path, count=3):
    from PIL import Image

    rng = np.random.default_rng(1)
    records = []
    for i in range(count):
        path = tmp_path / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 64, 3), np.uint8)).save(path)
        records.append({"idx": i, "image_id": path.name, "path": str(path), "class_index": i})
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    records.append({"idx": count, "image_id": bad.name, "path": str(bad), "class_index": 0})
    return decode_items(records)


def _rows(items, **params):
    backend = FixedBackend(num_instances=14, num_categories=4, **params)
    stage = ModelStage(ModelConfig(backend="fixed"), ("semantic", "instances"),
                       drop_images=True, backend=backend)
    rows = fuse_items(stage(copy.deepcopy(items)), Thresholds(min_instance_area=4))
    for row in rows:
        row["quality"]["seconds"] = None
    return rows


def test_fusion_on_handed_runs_gives_the_same_rows(tmp_path):
    items = _items(tmp_path)
    handed = _rows(items, as_rles=True, with_runs=True)
    assert handed == _rows(items, as_rles=True) == _rows(items)
    assert _rows(items, as_rles=True, with_runs=True, with_segments=True) == handed
    assert [r["status"] for r in handed] == ["ok", "ok", "ok", "error"]
    assert all(r["instances"] for r in handed[:3])


def test_handed_runs_must_match_the_rles():
    masks = np.zeros((2, 4, 5), bool)
    masks[0, 1:3, 1:4] = masks[1, 0, :] = True
    rles = mask_codec.encode_many(masks)
    runs, offsets = mask_codec.mask_runs(masks)
    pred = InstancePrediction(scores=np.ones(2), rles=rles, runs=(runs, offsets))
    entries, got = instances_with_runs(pred, (4, 5), (4, 5))
    assert got is not None and np.array_equal(got[0], runs)
    assert [e["counts"] for e in entries] == [r["counts"] for r in rles]
    with pytest.raises(ValueError, match="offsets"):
        instances_with_runs(InstancePrediction(scores=np.ones(2), rles=rles,
                                               runs=(runs, offsets[:2])), (4, 5), (4, 5))


@pytest.mark.parametrize("images", [True, False])
def test_stage_transport_through_ray_blocks(tmp_path, images):
    from ray.data.block import BlockAccessor

    from pipelines.labels import _pack, _unpack

    items = _items(tmp_path)
    batch = _pack(items, images=images)
    assert ("image" in batch) == images
    block = BlockAccessor.batch_to_block(batch)
    back = BlockAccessor.for_block(block).to_batch_format("numpy")
    if images:  # as read from the object store
        for image in back["image"]:
            image.flags.writeable = False
    out = _unpack(back)
    assert [it.keys() for it in out] == [it.keys() for it in items]
    for got, want in zip(out, items):
        assert {k: v for k, v in got.items() if k != "image"} == \
            {k: v for k, v in want.items() if k != "image"}
        if want["image"] is None:
            assert got["image"] is None
        else:
            np.testing.assert_array_equal(got["image"], want["image"])
    assert items[0]["image"] is not None  # packing leaves the items alone


def test_compression_level_changes_bytes_not_rows(tmp_path):
    rows = _rows(_items(tmp_path))
    meta = file_metadata(semantic_vocab={i: f"band {i}" for i in range(4)})
    infos = [write_shard(tmp_path / f"l{level}", 0, rows, meta, compression_level=level)
             for level in (3, 9)]
    tables = [pq.read_table(shard_path(tmp_path / f"l{level}", 0)) for level in (3, 9)]
    assert tables[0].equals(tables[1]) and infos[0].rows == 4
    assert resolve(overrides=["compression_level=5"]).compression_level == 5
    with pytest.raises(ValueError, match="compression_level"):
        resolve(overrides=["compression_level=30"])
