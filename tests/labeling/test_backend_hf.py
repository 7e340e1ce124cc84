"""Semantic backends through transformers' own loading code, with tiny random models on disk."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from dataset import masks as mask_codec
from labeling.backends import build_backend
from labeling.backends.hf_semantic import HFSemanticBackend, _mask_class_scores
from labeling.backends.panoptic import thing_segments
from tests.labeling import conftest_backends as tiny

SAVERS = {
    "mask2former": tiny.save_mask2former,
    "oneformer": tiny.save_oneformer,
    "eomt": tiny.save_eomt,
    "segformer": tiny.save_segformer,
}


pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {arch: save(root / arch) for arch, save in SAVERS.items()}


@pytest.fixture(scope="module")
def images():
    return tiny.photos()  # three shapes: padding differs per image in a batch


@pytest.mark.parametrize("arch", list(SAVERS))
def test_semantic_backend_end_to_end(arch, checkpoints, images):
    backend = build_backend(arch, checkpoint=str(checkpoints[arch]))
    assert backend.vocabulary == dict(enumerate(tiny.CLASSES))  # from config.id2label
    preds = backend.predict(images, [None] * len(images))
    assert len(preds) == len(images)
    for pred, image in zip(preds, images):
        sem = pred.semantic
        assert pred.instances is None
        assert sem.label_map.shape == image.shape[:2] and sem.label_map.dtype == np.int32
        assert set(np.unique(sem.label_map)) <= set(backend.vocabulary)
        assert set(sem.scores) == set(np.unique(sem.label_map).tolist())
        assert all(0 < v <= 1.0 + 1e-6 for v in sem.scores.values())
        # found on the device: the mean confidence is the pixel-weighted mean of the class
        # scores, the segments those the host codec finds in the map
        ids, counts = np.unique(sem.label_map, return_counts=True)
        weighted = sum(sem.scores[int(c)] * n for c, n in zip(ids, counts)) / counts.sum()
        assert sem.mean_confidence == pytest.approx(weighted, rel=1e-9)
        start, label = mask_codec.label_segments(sem.label_map)
        assert np.array_equal(sem.segments[0], start) and np.array_equal(sem.segments[1], label)
    # one image at a time gives the same maps (padding is cut off before resizing)
    for pred, image in zip(preds, images):
        alone = backend.predict([image], [None])[0].semantic
        agree = (alone.label_map == pred.semantic.label_map).mean()
        assert agree >= (0.99 if arch in ("mask2former", "oneformer") else 1.0)
    described = backend.describe()
    assert described["backend"] == arch and described["vocabulary_size"] == len(tiny.CLASSES)
    assert described["params"]["checkpoint"] == str(checkpoints[arch])


@pytest.mark.parametrize("min_confidence", [0.0, 0.4])
def test_class_scores_and_confidence_on_the_device_match_numpy(min_confidence):
    scores = torch.rand(5, 13, 17, generator=torch.Generator().manual_seed(0)) ** 3
    backend = HFSemanticBackend.__new__(HFSemanticBackend)  # _semantic needs only this
    backend.min_confidence = min_confidence
    sem = backend._semantic(scores)
    s = scores.double().numpy()
    label, confidence = s.argmax(0), s.max(0) / s.sum(0)
    label[confidence < min_confidence] = -1
    assert np.array_equal(sem.label_map, label)
    labeled = label >= 0
    assert 0 < labeled.sum() < label.size or min_confidence == 0
    expected = {c: confidence[label == c].mean() for c in np.unique(label[labeled]).tolist()}
    assert sem.scores.keys() == expected.keys()
    assert all(sem.scores[c] == pytest.approx(v, rel=1e-5) for c, v in expected.items())
    assert sem.mean_confidence == pytest.approx(confidence[labeled].mean(), rel=1e-5)
    start, runs_label = mask_codec.label_segments(label)
    assert np.array_equal(sem.segments[0], start) and np.array_equal(sem.segments[1], runs_label)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_side_post_processing_on_cuda_equals_the_cpu():
    scores = torch.rand(7, 40, 50, generator=torch.Generator().manual_seed(1)) ** 3
    backend = HFSemanticBackend.__new__(HFSemanticBackend)
    backend.min_confidence = 0.3
    cpu, cuda = backend._semantic(scores), backend._semantic(scores.cuda())
    assert np.array_equal(cpu.label_map, cuda.label_map)
    assert cpu.scores.keys() == cuda.scores.keys()
    assert all(cpu.scores[c] == pytest.approx(cuda.scores[c], rel=1e-6) for c in cpu.scores)
    assert cpu.mean_confidence == pytest.approx(cuda.mean_confidence, rel=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(cpu.segments, cuda.segments))


def test_min_confidence_leaves_pixels_unlabeled(checkpoints, images):
    backend = build_backend("segformer", checkpoint=str(checkpoints["segformer"]),
                            min_confidence=0.99)
    sem = backend.predict(images[:1], [None])[0].semantic
    assert (sem.label_map == -1).all() and sem.scores == {} and sem.mean_confidence is None


def test_padding_is_cut_before_resizing():
    # A padded input of 8x8 whose image is the top-left 8x4; at the mask resolution (2x2),
    # query 0 covers the left column, query 1 the right column, which is all padding.
    class_logits = torch.tensor([[9.0, -9, -9], [-9, 9.0, -9]])  # query 0 -> 0, 1 -> 1
    mask_logits = torch.full((2, 2, 2), -9.0)
    mask_logits[0, :, 0] = 9.0
    mask_logits[1, :, 1] = 9.0
    scores = _mask_class_scores(class_logits, mask_logits, (8, 4), (8, 8), (30, 15))
    label = scores.argmax(0)
    assert label.shape == (30, 15)
    assert (label == 0).float().mean() > 0.9  # class 1 lives only in the padding


def test_thing_segments_keep_confident_visible_things():
    h, w = 6, 8
    class_logits = torch.full((4, 4), -9.0)  # 3 classes + no-object
    class_logits[0, 0] = 9  # thing class 0
    class_logits[1, 1] = 9  # thing class 1, hidden under query 0
    class_logits[2, 2] = 9  # stuff class 2
    class_logits[3, 3] = 9  # no object
    masks = torch.full((4, h, w), -9.0)
    masks[0, :, :4] = 9
    masks[1, :, :3] = 5  # weaker, inside query 0's mask
    masks[2, :, 4:] = 9
    masks[3] = 9
    out = thing_segments(class_logits, masks, thing_ids=[0, 1], threshold=0.8, source="t")
    assert out.category_ids.tolist() == [0]
    assert out.masks.shape == (1, h, w) and out.masks[0, :, :4].all()
    assert not out.masks[0, :, 4:].any()
    assert out.scores[0] > 0.99 and out.source == "t"


def test_mask2former_panoptic_instances(checkpoints, images):
    backend = build_backend("mask2former", checkpoint=str(checkpoints["mask2former"]),
                            instances=True, thing_ids=[2, 3], instance_threshold=0.0,
                            overlap_threshold=0.0)
    assert backend.provides == {"semantic", "instances"}
    for pred, image in zip(backend.predict(images, [None] * 3), images):
        inst = pred.instances
        assert inst.masks.shape[1:] == image.shape[:2] and inst.masks.dtype == bool
        assert set(inst.category_ids.tolist()) <= {2, 3}
        assert len(inst.scores) == len(inst.masks)
    with pytest.raises(ValueError, match="thing_ids"):
        build_backend("mask2former", checkpoint=str(checkpoints["mask2former"]), instances=True)


def test_oneformer_reads_its_class_info_from_the_checkpoint_folder(checkpoints, tmp_path,
                                                                   images):
    moved = tmp_path / "moved"  # the saved repo_path no longer exists
    shutil.copytree(checkpoints["oneformer"], moved)
    backend = build_backend("oneformer", checkpoint=str(moved))
    assert backend.predict(images[:1], [None])[0].semantic.label_map.shape == \
        images[0].shape[:2]


def test_hub_id_resolves_to_the_weights_dir(checkpoints, tmp_path):
    target = tmp_path / "weights" / "hf" / "nvidia--segformer-b5-finetuned-ade-640-640"
    shutil.copytree(checkpoints["segformer"], target)
    backend = build_backend("segformer")  # default checkpoint: a hub id
    assert backend.vocabulary == dict(enumerate(tiny.CLASSES))


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build_backend("mask2former")
    message = str(err.value)
    assert "facebook/mask2former-swin-large-ade-semantic" in message
    assert "python -m labeling.weights mask2former" in message
    assert str(tmp_path / "weights") in message
    with pytest.raises(FileNotFoundError, match="not found"):
        build_backend("segformer", checkpoint=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="unknown architecture"):
        build_backend("mask2former", architecture="maskformer3")
