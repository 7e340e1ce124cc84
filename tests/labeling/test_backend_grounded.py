"""Grounded-SAM: a tiny Grounding DINO (transformers, BertTokenizer from a vocab file written
here) prompted with the class name, its boxes prompting a tiny SAM loaded from a .pth."""

from __future__ import annotations

import numpy as np
import pytest

from dataset import masks as mask_codec
from labeling.backends import build_backend
from labeling.backends.grounded_sam import prompt_for
from labeling.images import imagenet_classes
from tests.labeling import conftest_backends as tiny

pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("grounded")
    return tiny.save_grounding_dino(root / "gdino"), tiny.save_tiny_sam(root / "sam.pth")


@pytest.fixture(scope="module")
def backend(paths):
    detector, sam = paths
    # a random detector's scores are arbitrary: thresholds 0 keep every box for the test
    return build_backend("grounded-sam", detector=str(detector), sam_model_type="tiny",
                         sam_checkpoint=str(sam), box_threshold=0.0, text_threshold=0.0,
                         max_boxes=3, box_nms_thresh=0.9)


def test_prompt_is_the_class_name_as_a_phrase():
    assert prompt_for("golden_retriever") == "golden retriever."
    assert prompt_for("Tabby.") == "tabby."


def test_class_prompted_instances(backend):
    images = tiny.photos()
    names = ["tabby", None, "golden retriever"]
    index = {c.name: c.index for c in imagenet_classes()}
    preds = backend.predict(images, names)
    assert len(preds) == 3
    for pred, image, name in zip(preds, images, names):
        inst = pred.instances
        assert pred.semantic is None and inst.source == "grounded-sam"
        # encoded on the device, with their run lengths
        assert inst.masks is None and len(inst.scores) == len(inst.rles) == len(inst.category_ids)
        if len(inst):
            masks = mask_codec.decode_many([r["counts"] for r in inst.rles], *image.shape[:2])
            runs, offsets = mask_codec.mask_runs(masks.transpose(2, 0, 1).astype(bool))
            assert np.array_equal(inst.runs[0], runs) and np.array_equal(inst.runs[1], offsets)
            assert [r["area"] for r in inst.rles] == masks.sum((0, 1)).tolist()
        if name is None:
            assert len(inst) == 0  # no class, no prompt, no instances
            continue
        assert 1 <= len(inst) <= 3
        assert (inst.category_ids == index.get(name, -1)).all()
        assert np.all(np.diff(inst.scores) <= 0)  # best box first
        assert ((0 <= inst.scores) & (inst.scores <= 1)).all()
    assert preds[0].instances.category_ids[0] == index["tabby"]


def test_default_prompt_and_thresholds(paths):
    detector, sam = paths
    common = dict(detector=str(detector), sam_model_type="tiny", sam_checkpoint=str(sam),
                  text_threshold=0.0)
    image = tiny.photos()[:1]
    fallback = build_backend("grounded-sam", box_threshold=0.0, default_prompt="cat", **common)
    inst = fallback.predict(image, [None])[0].instances
    assert len(inst) >= 1 and (inst.category_ids == -1).all()
    strict = build_backend("grounded-sam", box_threshold=1.01, **common)
    assert len(strict.predict(image, ["tabby"])[0].instances) == 0
    with pytest.raises(ValueError, match="class names"):
        strict.predict(image, [])


def test_missing_detector_is_one_clear_error(paths):
    _, sam = paths
    with pytest.raises(FileNotFoundError, match="python -m labeling.weights grounding-dino"):
        build_backend("grounded-sam", sam_model_type="tiny", sam_checkpoint=str(sam))
