"""Config resolution: profiles, files, key=value overrides, errors that name the problem."""

from __future__ import annotations

import pytest

from labeling.config import LabelingConfig, apply_override, from_dict, profile_names, resolve


def test_profiles_resolve():
    assert {"demo", "imagenet", "imagenet-fast"} <= set(profile_names())
    demo = resolve("demo")
    assert demo.semantic.backend == "saliency" and demo.shared_model()
    big = resolve("imagenet")
    assert big.semantic.backend == "mask2former" and big.instances.backend == "sam-amg-fast"
    assert not big.shared_model() and big.instances.num_gpus > 0
    fast = resolve("imagenet-fast")
    assert fast.instances.params["points_per_side"] < big.instances.params["points_per_side"]
    with pytest.raises(ValueError, match="unknown profile 'nope'; known: demo"):
        resolve("nope")


def test_overrides_and_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("shard_size: 7\ninstances:\n  params: {points_per_side: 8}\n")
    cfg = resolve("imagenet", path, ["semantic.batch_size=3", "image_max_side=null",
                                     "thresholds.duplicate_iou=0.8", "semantic=null"])
    assert cfg.shard_size == 7 and cfg.semantic is None and cfg.image_max_side is None
    assert cfg.instances.params["points_per_side"] == 8
    assert cfg.instances.params["model_type"] == "vit_h"  # merged, not replaced
    assert cfg.thresholds.duplicate_iou == 0.8
    switched = resolve("imagenet", None, ["instances.backend=fixed"])
    assert switched.instances.params == {}  # another backend's params do not carry over
    assert LabelingConfig().to_dict() == from_dict(LabelingConfig().to_dict()).to_dict()


def test_output_affecting_ignores_scaling():
    a = resolve("demo")
    b = resolve("demo", None, ["semantic.concurrency=4", "decode_batch_size=64"])
    c = resolve("demo", None, ["thresholds.min_instance_area=1"])
    assert a.output_affecting() == b.output_affecting() != c.output_affecting()


@pytest.mark.parametrize("overrides, message", [
    (["shard_sise=3"], "unknown key.*shard_sise"),
    (["semantic.batchsize=3"], "semantic: unknown key"),
    (["shard_size"], "not of the form key=value"),
    (["shard_size=0"], "shard_size must be >= 1"),
    (["semantic=null", "instances=null"], "at least one"),
])
def test_bad_overrides(overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve("demo", None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        resolve(None, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        resolve(None, bad)
    assert apply_override({}, "a.b=1") == {"a": {"b": 1}}
