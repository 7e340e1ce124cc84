"""Tiny configs and batches for the model tests (32x32 images, 8x8 patches, 16 tokens)."""

from __future__ import annotations

import torch

from model import ModelConfig, StageConfig

NUM_CLASSES = 5


def tiny_config(**overrides) -> ModelConfig:
    fields = dict(name="tiny", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                  num_semantic_classes=NUM_CLASSES, semantic_embed_dim=8, instance_embed_dim=4,
                  semantic_decoder=StageConfig(32, 1, 2), instance_decoder=StageConfig(32, 1, 2),
                  pixel_decoder=StageConfig(32, 1, 2))
    fields.update(overrides)
    return ModelConfig(**fields)


def tiny_batch(batch: int = 2, img: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Images with every class, unlabeled cells, and a few instances with large arbitrary ids."""
    g = torch.Generator().manual_seed(seed)
    h = img // 4
    semantic = torch.randint(-1, NUM_CLASSES, (batch, h, h), generator=g)
    semantic[:, 0, : NUM_CLASSES + 1] = torch.arange(-1, NUM_CLASSES)
    instance = torch.zeros(batch, h, h, dtype=torch.long)
    instance[:, : h // 2, : h // 2] = 1_000_003
    instance[:, h // 2 :, 1 : h - 1] = 7
    instance[:, 1:3, h - 3 :] = 42
    coarse = torch.randn(batch, 3, img // 8, img // 8, generator=g)  # smooth, image-like
    image = torch.nn.functional.interpolate(coarse, size=(img, img), mode="bilinear")
    return {"image": image, "semantic": semantic,
            "instance": instance}
