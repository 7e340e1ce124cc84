"""Segment-anything: loading a checkpoint safely, and the stock automatic mask generator.

`load_sam` builds the architecture from segment-anything's own registry with
``checkpoint=None`` and loads the state dict itself with
``torch.load(path, map_location="cpu", weights_only=True)``: the library's builder calls
``torch.load`` without ``map_location``, which fails on CPU-only machines for checkpoints
saved from a GPU, and unpickles arbitrary objects.

Model types: segment-anything's ``vit_h`` / ``vit_l`` / ``vit_b`` (``default`` = ``vit_h``),
plus ``tiny`` (a 0.4 M-parameter SAM assembled from ``segment_anything.modeling``, for tests
and CPU smoke runs). ``checkpoint`` is a path to a ``.pth`` (absolute, or relative to the
weights directory), None for the published checkpoint of the model type in the weights
directory, or ``"random"`` for random weights (speed measurements only).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from dataset.masks import rle_areas
from labeling.backends.base import Backend, InstancePrediction, Prediction
from labeling.weights import CHECKPOINTS, SAM_DEFAULTS, download_hint, weights_dir

log = logging.getLogger(__name__)

# SamAutomaticMaskGenerator's own defaults (tuned by its authors for ViT-H).
AMG_DEFAULTS: dict[str, Any] = {
    "points_per_side": 32,
    "points_per_batch": 64,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95,
    "stability_score_offset": 1.0,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 0,
    "crop_nms_thresh": 0.7,
    "crop_overlap_ratio": 512 / 1500,
    "crop_n_points_downscale_factor": 1,
    "point_grids": None,
    "min_mask_region_area": 0,
}


def build_tiny_sam(image_size: int = 256, width: int = 64):
    """A SAM small enough for CPU tests: 2-block ViT encoder, 2-layer two-way decoder."""
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    grid = image_size // 16
    encoder = ImageEncoderViT(
        img_size=image_size, patch_size=16, embed_dim=64, depth=2, num_heads=2,
        window_size=4, global_attn_indexes=(1,), use_rel_pos=True, out_chans=width,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    )
    prompts = PromptEncoder(embed_dim=width, image_embedding_size=(grid, grid),
                            input_image_size=(image_size, image_size), mask_in_chans=8)
    decoder = MaskDecoder(
        transformer_dim=width, num_multimask_outputs=3, iou_head_depth=3,
        iou_head_hidden_dim=width,
        transformer=TwoWayTransformer(depth=2, embedding_dim=width, mlp_dim=2 * width,
                                      num_heads=2),
    )
    return Sam(image_encoder=encoder, prompt_encoder=prompts, mask_decoder=decoder).eval()


def build_sam_architecture(model_type: str):
    """The untrained model of a type (no weights are read)."""
    from segment_anything import sam_model_registry

    if model_type == "tiny":
        return build_tiny_sam()
    if model_type not in sam_model_registry:
        known = ", ".join(sorted([*sam_model_registry, "tiny"]))
        raise ValueError(f"unknown SAM model_type {model_type!r}; known: {known}")
    return sam_model_registry[model_type](checkpoint=None)


def resolve_sam_checkpoint(model_type: str, checkpoint: str | Path | None) -> Path:
    """The .pth file to load, or a FileNotFoundError that says what to download where."""
    entry = SAM_DEFAULTS.get(model_type)
    if checkpoint is None:
        if entry is None:
            raise ValueError(f"SAM model_type {model_type!r} has no published checkpoint: "
                             "pass checkpoint=PATH")
        path = weights_dir() / CHECKPOINTS[entry].filename
    else:
        path = Path(checkpoint).expanduser()
        if not path.is_absolute() and not path.exists():
            path = weights_dir() / path
    if not path.is_file():
        raise FileNotFoundError(
            f"SAM {model_type} checkpoint not found: {path}; " + download_hint(entry))
    return path


def load_sam(model_type: str = "vit_h", checkpoint: str | Path | None = None,
             device: str = "cpu"):
    """Build a SAM of `model_type` and load its weights on the CPU, then move it to `device`."""
    import torch

    path = None if checkpoint == "random" else resolve_sam_checkpoint(model_type, checkpoint)
    sam = build_sam_architecture(model_type)
    if path is None:
        log.warning("SAM %s with RANDOM weights (speed measurements only)", model_type)
    else:
        log.info("loading SAM %s from %s", model_type, path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            sam.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise ValueError(f"{path} is not a SAM {model_type} checkpoint: {first}") from None
    return sam.to(device).eval()


def coco_records(rles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pycocotools RLE dicts ({"size", "counts"}) -> dataset.masks.encode_many's records."""
    if not rles:
        return []
    for r in rles:
        if isinstance(r["counts"], str):
            r["counts"] = r["counts"].encode("ascii")
    areas = rle_areas(rles)
    boxes = mask_utils.toBbox(rles)
    return [{"counts": r["counts"], "area": int(a), "bbox": [float(v) for v in b]}
            for r, a, b in zip(rles, areas, boxes)]


class SamAmgBackend(Backend):
    """segment-anything's SamAutomaticMaskGenerator, one image at a time, COCO RLE output."""

    name = "sam-amg"
    provides = frozenset({"instances"})

    def __init__(self, device: str = "cpu", model_type: str = "vit_h",
                 checkpoint: str | None = None, **amg: Any):
        unknown = set(amg) - set(AMG_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown sam-amg settings {sorted(unknown)}; "
                             f"known: {', '.join(AMG_DEFAULTS)}")
        settings = {**AMG_DEFAULTS, **amg}
        if settings["point_grids"] is not None:
            settings["points_per_side"] = None
            settings["point_grids"] = [np.asarray(g, dtype=np.float64)
                                       for g in settings["point_grids"]]
        super().__init__(device=device, model_type=model_type, checkpoint=checkpoint, **settings)
        from segment_anything import SamAutomaticMaskGenerator

        self.model = load_sam(model_type, checkpoint, device)
        self.generator = SamAutomaticMaskGenerator(self.model, output_mode="coco_rle",
                                                   **settings)

    def predict(self, images: list[np.ndarray], class_names: list[str | None]) -> list[Prediction]:
        return [Prediction(instances=self._one(image)) for image in images]

    def _one(self, image: np.ndarray) -> InstancePrediction:
        anns = self.generator.generate(np.ascontiguousarray(image))
        return InstancePrediction(
            scores=np.array([a["predicted_iou"] for a in anns], dtype=np.float32),
            stability=np.array([a["stability_score"] for a in anns], dtype=np.float32),
            rles=coco_records([dict(a["segmentation"]) for a in anns]),
            source=self.name,
        )

    def describe(self) -> dict[str, Any]:
        params = {k: v for k, v in self.params.items() if k != "point_grids"}
        params["point_grids"] = None if self.params["point_grids"] is None else "custom"
        return {"backend": self.name, "provides": sorted(self.provides), "params": params}
