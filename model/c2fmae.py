"""C2FMAE: a ViT encoder on visible tokens, a semantic -> instance -> pixel decoder, and
curriculum masking. With `decoder: mae` it is exactly MAE (the baseline presets).

    out = model(batch, progress)   # batch: image [B,3,H,W], semantic / instance [B,H/4,W/4]
    out["loss"].backward()
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from model import losses
from model.config import ModelConfig, apply_overrides
from model.decoders import MAEDecoder, StagedDecoder
from model.labels import (
    LabelInputs,
    cell_size,
    cells_to_map,
    instance_boundaries,
    mask_to_label_stride,
    to_label_stride,
)
from model.layers import patchify, unpatchify
from model.masking import Masking, make_masking
from model.vit import VisionTransformer


class C2FMAE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config
        self.encoder = VisionTransformer(c.img_size, c.patch_size, c.embed_dim, c.depth,
                                         c.num_heads, c.mlp_ratio)
        self.grid = self.encoder.grid
        self.cell = cell_size(c.patch_size)
        self.cells_per_patch = c.patch_size // self.cell  # g: cells per patch side
        pixel_dim = c.patch_size**2 * 3
        self.label_inputs = (LabelInputs(c.num_semantic_classes, c.semantic_embed_dim, c.embed_dim,
                                         c.patch_size) if c.label_inputs else None)
        if c.decoder == "mae":
            self.decoder = MAEDecoder(c.embed_dim, c.pixel_decoder, self.grid, pixel_dim, c.mlp_ratio)
        else:
            g2 = self.cells_per_patch**2
            out_dims = (g2 * c.num_semantic_classes, g2 * (1 + c.instance_embed_dim), pixel_dim)
            self.decoder = StagedDecoder(c, self.grid, out_dims)

    # ----------------------------------------------------------------- encoder
    def forward_features(self, image: Tensor) -> Tensor:
        """Full image, no masking: mean of the patch tokens after the final norm, [B, D]."""
        return self.encoder(image)[:, 1:].mean(dim=1)

    def forward_encoder(self, image: Tensor, masking: Masking, semantic: Tensor | None,
                        instance: Tensor | None) -> tuple[Tensor, Tensor]:
        """Visible tokens through the encoder -> (cls [B,1,D], per-position tokens [B,n_keep,D])."""
        x = self.encoder.embed_patches(image)  # [B, L, D]
        index = masking.ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        tokens = [torch.gather(x, 1, index)]
        if self.label_inputs is not None:
            sem, inst = self.label_inputs(semantic, instance, self.encoder.pos_embed[:, 1:])
            tokens += [torch.gather(sem, 1, index), torch.gather(inst, 1, index)]
        out = self.encoder.forward_tokens(torch.cat(tokens, dim=1))
        n_keep = index.shape[1]
        visible = out[:, 1:1 + n_keep]
        for m in range(1, len(tokens)):  # label tokens of the same position are summed in
            visible = visible + out[:, 1 + m * n_keep:1 + (m + 1) * n_keep]
        return out[:, :1], visible

    # ----------------------------------------------------------------- forward
    def forward(self, batch: dict[str, Tensor], progress: float = 0.0, *,
                noise: Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, Any]:
        """One masked-autoencoding pass; returns losses, predictions and the mask.

        progress: share of training done, in [0, 1] (drives the masking curriculum).
        noise: optional [B, L] uniform scores for the masking draw (MAE's `noise`).
        """
        image, semantic, instance = self._check_batch(batch, progress)
        c = self.config
        masking = make_masking(c, self.grid**2, progress, image.shape[0], image.device,
                               semantic if c.uses_labels else None,
                               instance if c.uses_labels else None, noise, generator)
        cls, visible = self.forward_encoder(image, masking, semantic, instance)
        if c.decoder == "mae":
            pred_pixel = self.decoder(torch.cat([cls, visible], dim=1), masking.ids_restore)
            out = {"pred_semantic": None, "pred_instance": None, "pred_embedding": None}
        else:
            sem, inst, pred_pixel = self.decoder(cls, visible, masking.ids_restore)
            inst_maps = self._to_maps(inst)
            out = {"pred_semantic": self._to_maps(sem), "pred_instance": inst_maps[:, 0],
                   "pred_embedding": inst_maps[:, 1:]}
        out.update(pred_pixel=pred_pixel, mask=masking.mask, strategy=masking.strategy,
                   ids_restore=masking.ids_restore)
        out.update(self.forward_loss(image, semantic, instance, out))
        return out

    def _to_maps(self, per_patch: Tensor) -> Tensor:
        """[B, L, g*g*K] per-patch cells -> [B, K, H/4, W/4]."""
        return to_label_stride(cells_to_map(per_patch, self.grid, self.cells_per_patch), self.cell)

    def forward_loss(self, image: Tensor, semantic: Tensor | None, instance: Tensor | None,
                     out: dict[str, Any]) -> dict[str, Tensor]:
        c, lc = self.config, self.config.loss
        mask = out["mask"]
        weight = mask if lc.masked_only else torch.ones_like(mask)
        target = losses.pixel_target(patchify(image, c.patch_size), lc.norm_pix_loss)
        loss_pixel = losses.pixel_loss(out["pred_pixel"], target, weight)
        zero = loss_pixel.new_zeros(())
        loss_semantic = loss_instance = loss_boundary = loss_embedding = zero
        if c.uses_labels:
            cells = mask_to_label_stride(weight, self.grid, c.patch_size)
            loss_semantic = losses.semantic_loss(out["pred_semantic"], semantic, cells)
            loss_boundary = losses.boundary_loss(out["pred_instance"], instance_boundaries(instance),
                                                 cells, lc.boundary_pos_weight)
            loss_embedding = losses.discriminative_loss(out["pred_embedding"], instance, cells, lc)
            loss_instance = lc.boundary_weight * loss_boundary + lc.embedding_weight * loss_embedding
        total = (lc.pixel_weight * loss_pixel + lc.semantic_weight * loss_semantic
                 + lc.instance_weight * loss_instance)
        return {"loss": total, "loss_pixel": loss_pixel.detach(),
                "loss_semantic": loss_semantic.detach(), "loss_instance": loss_instance.detach(),
                "loss_boundary": loss_boundary.detach(), "loss_embedding": loss_embedding.detach()}

    def _check_batch(self, batch: dict[str, Tensor], progress: float):
        c = self.config
        if "image" not in batch:
            raise ValueError("batch has no 'image'")
        image = batch["image"]
        if image.ndim != 4 or image.shape[1] != 3 or tuple(image.shape[2:]) != (c.img_size, c.img_size):
            raise ValueError(f"batch['image'] must be [B, 3, {c.img_size}, {c.img_size}], got {list(image.shape)}")
        if not 0.0 <= float(progress) <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        semantic, instance = batch.get("semantic"), batch.get("instance")
        if c.uses_labels:
            want = [image.shape[0], c.img_size // 4, c.img_size // 4]
            for key, value in (("semantic", semantic), ("instance", instance)):
                if value is None:
                    raise ValueError(f"model {c.name!r} needs batch[{key!r}] ([B, H/4, W/4] long)")
                if list(value.shape) != want or value.dtype != torch.long:
                    raise ValueError(f"batch[{key!r}] must be a long tensor {want}, "
                                     f"got {value.dtype} {list(value.shape)}")
        return image, semantic, instance

    # ----------------------------------------------------------------- helpers
    def reconstruction(self, out: dict[str, Any], image: Tensor) -> Tensor:
        """An image [B, 3, H, W] (input space): visible patches from `image`, removed patches
        from the prediction (de-normalised with the true patch statistics under norm_pix_loss)."""
        p = self.config.patch_size
        patches = patchify(image, p)
        pred = out["pred_pixel"].detach().to(patches.dtype)
        if self.config.loss.norm_pix_loss:
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
            pred = pred * std + mean
        m = out["mask"].unsqueeze(-1).to(patches.dtype)
        return unpatchify(patches * (1 - m) + pred * m, p, self.grid, self.grid)


def build_model(name_or_config: str | Path | ModelConfig | dict, **overrides: Any) -> C2FMAE:
    """Build a model from a preset name, a ModelConfig, a config dict or a YAML file.

    overrides: field=value; nested fields as `pixel_decoder__depth=8` or `pixel_decoder={...}`.
    """
    from model.presets import MODELS, get_config

    if isinstance(name_or_config, ModelConfig):
        config = copy.deepcopy(name_or_config)
    elif isinstance(name_or_config, dict):
        config = ModelConfig.from_dict(name_or_config)
    elif isinstance(name_or_config, str) and name_or_config in MODELS:
        config = get_config(name_or_config)
    elif isinstance(name_or_config, (str, Path)) and str(name_or_config).endswith((".yaml", ".yml")):
        config = ModelConfig.from_yaml(name_or_config)
    else:
        get_config(str(name_or_config))  # raises with the list of known presets
        raise AssertionError("unreachable")
    if overrides:
        config = apply_overrides(config, overrides)
    return C2FMAE(config)
