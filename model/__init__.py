"""The C2FMAE model: ViT encoder, cascaded decoder, curriculum masking, losses.

    from model import build_model
    model = build_model("c2fmae_vit_b16", num_semantic_classes=150)
    out = model(batch, progress)          # out["loss"], out["mask"], out["pred_*"], ...
"""

from model.c2fmae import C2FMAE, build_model
from model.config import CurriculumConfig, LossConfig, ModelConfig, StageConfig
from model.masking import STRATEGIES
from model.presets import MODELS, get_config

__all__ = ["C2FMAE", "MODELS", "STRATEGIES", "CurriculumConfig", "LossConfig", "ModelConfig",
           "StageConfig", "build_model", "get_config"]
