"""Named model presets (a registry of configs, as segment-anything's `sam_model_registry`).

`c2fmae_*`: cascaded decoder, curriculum masking. `mae_*`: the same encoder with MAE's
decoder and random masking (the baseline). Encoder sizes follow timm's ViT-Ti/S/B/L/H.
"""

from __future__ import annotations

import copy

from model.config import ModelConfig, StageConfig

# name -> (embed_dim, depth, num_heads, patch_size, timm model name)
ENCODERS: dict[str, tuple[int, int, int, int, str]] = {
    "vit_tiny16": (192, 12, 3, 16, "vit_tiny_patch16_224"),
    "vit_s16": (384, 12, 6, 16, "vit_small_patch16_224"),
    "vit_b16": (768, 12, 12, 16, "vit_base_patch16_224"),
    "vit_l16": (1024, 24, 16, 16, "vit_large_patch16_224"),
    "vit_h14": (1280, 32, 16, 14, "vit_huge_patch14_224"),
}

# Decoder sizes. MAE uses 8 x 512 for every encoder size; Ti/S get a half-width decoder
# so that the decoder does not dwarf the encoder.
_LARGE = dict(semantic=StageConfig(256, 2, 8), instance=StageConfig(256, 2, 8),
              pixel=StageConfig(512, 6, 16), mae=StageConfig(512, 8, 16))
_SMALL = dict(semantic=StageConfig(128, 1, 4), instance=StageConfig(128, 1, 4),
              pixel=StageConfig(256, 3, 8), mae=StageConfig(256, 4, 8))


def _encoder_fields(key: str) -> dict:
    dim, depth, heads, patch, _ = ENCODERS[key]
    return dict(embed_dim=dim, depth=depth, num_heads=heads, patch_size=patch)


def _c2fmae(key: str) -> ModelConfig:
    dec = _SMALL if key in ("vit_tiny16", "vit_s16") else _LARGE
    return ModelConfig(name=f"c2fmae_{key}", **_encoder_fields(key), decoder="cascaded",
                       masking="curriculum", semantic_decoder=copy.deepcopy(dec["semantic"]),
                       instance_decoder=copy.deepcopy(dec["instance"]),
                       pixel_decoder=copy.deepcopy(dec["pixel"]))


def _mae(key: str) -> ModelConfig:
    dec = _SMALL if key in ("vit_tiny16", "vit_s16") else _LARGE
    return ModelConfig(name=f"mae_{key}", **_encoder_fields(key), decoder="mae",
                       masking="random", pixel_decoder=copy.deepcopy(dec["mae"]))


MODELS: dict[str, ModelConfig] = {}
for _key in ENCODERS:
    MODELS[f"c2fmae_{_key}"] = _c2fmae(_key)
    MODELS[f"mae_{_key}"] = _mae(_key)

# A model small enough for CPU tests and the demo: 64x64 images, 4x4 patches of 16 pixels.
MODELS["c2fmae_micro"] = ModelConfig(
    name="c2fmae_micro", img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=2,
    num_semantic_classes=8, semantic_embed_dim=16, instance_embed_dim=4,
    semantic_decoder=StageConfig(32, 1, 2), instance_decoder=StageConfig(32, 1, 2),
    pixel_decoder=StageConfig(64, 1, 2))
MODELS["mae_micro"] = ModelConfig(
    name="mae_micro", img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=2,
    num_semantic_classes=8, decoder="mae", masking="random", pixel_decoder=StageConfig(64, 2, 2))


def get_config(name: str) -> ModelConfig:
    """A fresh copy of the preset `name`."""
    if name not in MODELS:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(sorted(MODELS))}")
    return copy.deepcopy(MODELS[name])


def timm_name(config: ModelConfig) -> str | None:
    """The timm model name whose architecture equals this encoder, if there is one."""
    for dim, depth, heads, patch, name in ENCODERS.values():
        if (config.embed_dim, config.depth, config.num_heads, config.patch_size) == (dim, depth, heads, patch) \
                and config.img_size == 224 and config.mlp_ratio == 4.0:
            return name
    return None
