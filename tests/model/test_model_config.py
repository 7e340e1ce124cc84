"""Configs: presets, dict/JSON/YAML round trips, overrides, validation."""

from __future__ import annotations

import json

import pytest

from model import MODELS, ModelConfig, build_model, get_config
from model.config import apply_overrides, parse_overrides


@pytest.mark.parametrize("name", sorted(MODELS))
def test_presets_round_trip_through_json(name):
    config = get_config(name)
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.curriculum.boundaries == config.curriculum.boundaries


def test_contract_fields_exist():
    d = get_config("c2fmae_vit_b16").to_dict()
    for key in ("img_size", "num_semantic_classes", "masking", "decoder", "mask_ratio", "loss", "curriculum"):
        assert key in d
    assert d["decoder"] == "cascaded" and d["masking"] == "curriculum"
    mae = get_config("mae_vit_b16")
    assert (mae.decoder, mae.masking, mae.pixel_decoder.dim, mae.pixel_decoder.depth) == ("mae", "random", 512, 8)


def test_overrides_nested_and_flat():
    base = get_config("c2fmae_micro")
    cfg = apply_overrides(base, {"pixel_decoder.depth": 3, "loss__semantic_weight": 0.5,
                                 "curriculum": {"shape": "linear"}, "decoder": "parallel"})
    assert (cfg.pixel_decoder.depth, cfg.loss.semantic_weight, cfg.curriculum.shape, cfg.decoder) == \
        (3, 0.5, "linear", "parallel")
    assert base.decoder == "cascaded"  # the preset is not changed
    model = build_model("c2fmae_micro", masking="random", pixel_decoder__num_heads=4)
    assert model.config.masking == "random" and model.config.pixel_decoder.num_heads == 4
    assert MODELS["c2fmae_micro"].masking == "curriculum"


def test_parse_overrides_reads_yaml_values():
    assert parse_overrides(["mask_ratio=0.6", "label_inputs=true", "curriculum.boundaries=[0.2, 0.5]"]) == \
        {"mask_ratio": 0.6, "label_inputs": True, "curriculum.boundaries": [0.2, 0.5]}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["mask_ratio"])


def test_yaml_preset_with_overrides(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("preset: c2fmae_micro\ndecoder: parallel\nloss:\n  norm_pix_loss: false\n")
    model = build_model(path)
    assert model.config.decoder == "parallel" and model.config.loss.norm_pix_loss is False
    with pytest.raises(FileNotFoundError, match="model config file not found"):
        build_model(tmp_path / "none.yaml")


@pytest.mark.parametrize("overrides,message", [
    ({"decoder": "fancy"}, "decoder must be one of"),
    ({"masking": "blocks"}, "masking must be one of"),
    ({"mask_ratio": 1.0}, "mask_ratio must be in"),
    ({"img_size": 70}, "multiple of patch_size"),
    ({"curriculum.boundaries": [0.7, 0.2]}, "boundaries"),
    ({"decoder": "mae"}, "use masking 'random'"),
    ({"nope": 1}, "unknown field 'nope'"),
    ({"pixel_decoder.width": 1}, "unknown field"),
    ({"depth": "two"}, "expected int"),
])
def test_invalid_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(get_config("c2fmae_micro"), overrides)
