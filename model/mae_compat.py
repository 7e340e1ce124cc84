"""Weights in and out: official MAE checkpoints in, timm ViT weights out.

The encoder's parameter names are timm's, which are also the names in the official MAE
checkpoints (facebookresearch/mae builds its encoder from timm blocks), so both directions
are a matter of selecting keys. An official checkpoint is a dict {"model": state_dict};
pre-training checkpoints with the decoder ("visualize" files) also fill `decoder: mae` models.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from model.c2fmae import C2FMAE
from model.config import ModelConfig

log = logging.getLogger(__name__)

ENCODER_PREFIXES = ("patch_embed.", "blocks.", "norm.")
ENCODER_KEYS = ("cls_token", "pos_embed")
MAE_DECODER_PREFIXES = ("decoder_", "mask_token")


def _is_encoder_key(key: str) -> bool:
    return key in ENCODER_KEYS or key.startswith(ENCODER_PREFIXES)


def split_official_mae(state: dict[str, torch.Tensor]) -> tuple[dict, dict, list[str]]:
    """An official MAE state_dict -> (encoder state, MAE decoder state, ignored keys)."""
    encoder, decoder, ignored = {}, {}, []
    for key, value in state.items():
        if _is_encoder_key(key):
            encoder[key] = value
        elif key.startswith(MAE_DECODER_PREFIXES):
            decoder[key] = value
        else:
            ignored.append(key)
    return encoder, decoder, ignored


def load_official_mae(model: C2FMAE, source: str | Path | dict[str, Any]) -> list[str]:
    """Initialise `model` from an official MAE checkpoint (a path or a loaded dict).

    The encoder is loaded strictly; the decoder too when the model has `decoder: mae` and
    the checkpoint carries one. Returns the checkpoint keys that were not used.
    """
    if isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise FileNotFoundError(f"MAE checkpoint not found: {source}")
        source = torch.load(source, map_location="cpu", weights_only=True)
    state = source.get("model", source)
    encoder, decoder, ignored = split_official_mae(state)
    if not encoder:
        raise ValueError("not an MAE/ViT checkpoint: no encoder keys (patch_embed, blocks, ...)")
    model.encoder.load_state_dict(encoder, strict=True)
    if decoder and model.config.decoder == "mae":
        model.decoder.load_state_dict(decoder, strict=True)
    elif decoder:
        ignored += sorted(decoder)
    if ignored:
        log.info("MAE checkpoint: %d keys not used (%s ...)", len(ignored), ", ".join(ignored[:4]))
    return ignored


def timm_state_dict(model: C2FMAE) -> dict[str, torch.Tensor]:
    """The encoder's weights under timm VisionTransformer names (CPU, contiguous)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.encoder.state_dict().items()}


def timm_kwargs(config: ModelConfig) -> dict[str, Any]:
    """Arguments of `timm.models.vision_transformer.VisionTransformer` for this encoder."""
    return dict(img_size=config.img_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
                depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
                num_classes=0)
