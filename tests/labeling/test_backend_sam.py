"""segment-anything loading and the stock AMG backend, end to end with a tiny SAM on disk."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from dataset.masks import decode
from labeling.backends import build_backend
from labeling.backends.sam import build_tiny_sam, load_sam
from tests.labeling.conftest_backends import photos, save_tiny_sam

SETTINGS = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.7,
                box_nms_thresh=1.0)


@pytest.fixture(scope="module")
def sam_path(tmp_path_factory):
    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pth")


def test_load_sam_restores_the_saved_weights(sam_path):
    saved = torch.load(sam_path, map_location="cpu", weights_only=True)
    model = load_sam("tiny", sam_path)
    assert not model.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name


def test_missing_checkpoint_names_the_download(tmp_path, monkeypatch):
    monkeypatch.setenv("C2FMAE_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        load_sam("vit_b", None)
    message = str(err.value)
    assert "sam_vit_b_01ec64.pth" in message and str(tmp_path) in message
    assert "python -m labeling.weights sam_vit_b" in message
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_sam("vit_h", tmp_path / "nope.pth")


def test_relative_checkpoint_resolves_in_the_weights_dir(sam_path, monkeypatch):
    monkeypatch.setenv("C2FMAE_WEIGHTS", str(sam_path.parent))
    assert load_sam("tiny", sam_path.name).image_encoder.img_size == 256


def test_wrong_architecture_and_unsafe_pickles_are_refused(sam_path, tmp_path):
    other = tmp_path / "other.pth"
    torch.save(build_tiny_sam(image_size=128).state_dict(), other)  # other position grids
    with pytest.raises(ValueError, match="not a SAM tiny checkpoint"):
        load_sam("tiny", other)
    unsafe = tmp_path / "unsafe.pth"
    unsafe.write_bytes(pickle.dumps({"weights": np.ones(3)}, protocol=2))  # not plain tensors
    with pytest.raises(pickle.UnpicklingError):
        load_sam("tiny", unsafe)
    with pytest.raises(ValueError, match="unknown SAM model_type 'vit_x'"):
        load_sam("vit_x", sam_path)


def test_sam_amg_backend_end_to_end(sam_path):
    from segment_anything import SamAutomaticMaskGenerator

    images = photos()
    backend = build_backend("sam-amg", model_type="tiny", checkpoint=str(sam_path), **SETTINGS)
    preds = backend.predict(images, [None] * len(images))
    assert len(preds) == len(images)
    direct = SamAutomaticMaskGenerator(load_sam("tiny", sam_path), output_mode="binary_mask",
                                       **SETTINGS)
    for pred, image in zip(preds, images):
        inst = pred.instances
        assert pred.semantic is None and inst.masks is None and inst.source == "sam-amg"
        assert len(inst) == len(inst.rles) == len(inst.stability) > 0
        assert inst.scores.dtype == np.float32
        reference = direct.generate(image)
        assert len(reference) == len(inst)
        h, w = image.shape[:2]
        for rle, ann in zip(inst.rles, reference):
            mask = decode(rle["counts"], h, w)
            np.testing.assert_array_equal(mask, ann["segmentation"])
            assert rle["area"] == mask.sum()
            bbox = mask_utils.toBbox({"size": [h, w], "counts": rle["counts"]})
            assert rle["bbox"] == [float(v) for v in bbox]
    described = backend.describe()
    assert described["backend"] == "sam-amg"
    assert described["params"]["points_per_side"] == 4


def test_sam_amg_takes_explicit_point_grids_and_rejects_unknown_settings(sam_path):
    grid = [[[0.25, 0.25], [0.75, 0.75]]]
    backend = build_backend("sam-amg", model_type="tiny", checkpoint=str(sam_path),
                            point_grids=grid, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    pred = backend.predict([photos()[0]], [None])[0].instances
    assert 1 <= len(pred) <= 6  # 2 points x 3 masks, before NMS
    assert backend.describe()["params"]["point_grids"] == "custom"
    with pytest.raises(ValueError, match="unknown sam-amg settings"):
        build_backend("sam-amg", model_type="tiny", checkpoint=str(sam_path), points=4)
