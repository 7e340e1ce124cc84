"""Semantic segmenters from transformers: Mask2Former, OneFormer, EoMT, SegFormer.

The model and its image processor load from one checkpoint (a folder or a hub id already
on this machine, see labeling/backends/hub.py) through transformers' Auto classes. The
vocabulary is the model config's ``id2label``. A batch of images goes through the processor
and the model in one call; the per-class score map of each image is brought back to the
image's own size, and gives the label map (argmax) and a per-pixel confidence:

- mask-classification models (Mask2Former, OneFormer, EoMT): score_c = sum over queries of
  P(class c | query) * sigmoid(mask logit). Confidence = the winning class's share of the
  summed scores. Mask2Former and OneFormer pad a batch to its largest image, so the padded
  border is cut off (from the processor's ``pixel_mask``) before resizing to the image;
  transformers' own post-processing resizes the padded map and shifts predictions when
  images in a batch differ in shape. EoMT uses its processor's sliding-window merge.
- SegFormer: softmax over the upsampled logits; confidence = max probability.

The per-pixel confidence stays on the device: each class's mean confidence, the mean over
labeled pixels and the label map's column-major runs (for the RLE) are computed there, so
the host gets the label map and a few small arrays.

With ``instances=True`` a Mask2Former COCO-panoptic checkpoint also returns its thing
segments as instances (panoptic inference: queries with a confident thing class claim the
pixels where their score-weighted mask is highest).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from labeling.backends.base import (
    Backend,
    InstancePrediction,
    Prediction,
    SemanticPrediction,
    bf16_autocast,
)
from labeling.backends.hub import load_pretrained, resolve_source
from labeling.backends.mask_ops import label_segments

log = logging.getLogger(__name__)

# architecture -> (model family, default checkpoint)
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "mask2former": ("universal", "facebook/mask2former-swin-large-ade-semantic"),
    "oneformer": ("universal", "shi-labs/oneformer_ade20k_swin_large"),
    "eomt": ("universal", "tue-mps/ade20k_semantic_eomt_large_512"),
    "segformer": ("semantic", "nvidia/segformer-b5-finetuned-ade-640-640"),
}


class HFSemanticBackend(Backend):
    """See the module docstring. `batch_size` caps the images per forward pass."""

    provides = frozenset({"semantic"})

    def __init__(self, device: str = "cpu", architecture: str = "mask2former",
                 checkpoint: str | None = None, batch_size: int = 8, bf16: bool = True,
                 min_confidence: float = 0.0, instances: bool = False,
                 thing_ids: list[int] | None = None, instance_threshold: float = 0.8,
                 overlap_threshold: float = 0.8):
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; known: "
                             f"{', '.join(ARCHITECTURES)}")
        family, default = ARCHITECTURES[architecture]
        checkpoint = checkpoint or default
        super().__init__(device=device, architecture=architecture, checkpoint=checkpoint,
                         batch_size=batch_size, bf16=bf16, min_confidence=min_confidence,
                         instances=instances, thing_ids=thing_ids,
                         instance_threshold=instance_threshold,
                         overlap_threshold=overlap_threshold)
        self.name = architecture
        self.architecture = architecture
        self.model, self.processor = _load(architecture, family, checkpoint)
        self.model.to(device).eval()
        self.batch_size = max(1, int(batch_size))
        self.bf16 = bool(bf16) and torch.device(device).type == "cuda"
        self.min_confidence = float(min_confidence)
        self._vocabulary = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        self.thing_ids = self._thing_ids(instances, thing_ids)
        self.instance_threshold = float(instance_threshold)
        self.overlap_threshold = float(overlap_threshold)
        if self.thing_ids is not None:
            self.provides = frozenset({"semantic", "instances"})

    def _thing_ids(self, instances: bool, thing_ids: list[int] | None) -> list[int] | None:
        if not instances:
            return None
        if self.architecture != "mask2former":
            raise ValueError(f"instances=True needs a Mask2Former panoptic checkpoint, "
                             f"not {self.architecture}")
        if thing_ids is None:
            if len(self._vocabulary) != 133:
                raise ValueError("instances=True: pass thing_ids (only COCO panoptic's 133 "
                                 "classes, of which ids 0-79 are things, are known)")
            thing_ids = list(range(80))
        return [int(t) for t in thing_ids]

    @property
    def vocabulary(self) -> dict[int, str]:
        return self._vocabulary

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["backend"] = self.name
        out["model"] = type(self.model).__name__
        out["vocabulary_size"] = len(self._vocabulary)
        return out

    def _autocast(self):
        return bf16_autocast(self.bf16)

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray], class_names: list[str | None]) -> list[Prediction]:
        out: list[Prediction] = []
        for start in range(0, len(images), self.batch_size):
            out += self._predict_batch(images[start : start + self.batch_size])
        return out

    def _predict_batch(self, images: list[np.ndarray]) -> list[Prediction]:
        sizes = [tuple(im.shape[:2]) for im in images]
        kwargs: dict[str, Any] = {"return_tensors": "pt"}
        if self.architecture == "oneformer":
            kwargs["task_inputs"] = ["semantic"] * len(images)
        inputs = self.processor(images=list(images), **kwargs)
        offsets = inputs.pop("patch_offsets", None)
        tensors = {k: v.to(self.device) for k, v in inputs.items() if torch.is_tensor(v)}
        if offsets is not None:
            tensors["patch_offsets"] = offsets
        with self._autocast():
            outputs = self.model(**tensors)
        if self.architecture in ("mask2former", "oneformer"):
            pixel_mask = tensors.get("pixel_mask")
            scores = [_mask_class_scores(outputs.class_queries_logits[i].float(),
                                         outputs.masks_queries_logits[i].float(),
                                         _valid_hw(pixel_mask, i, tensors["pixel_values"]),
                                         tuple(tensors["pixel_values"].shape[-2:]), size)
                      for i, size in enumerate(sizes)]
        else:
            post = self._image_processor().post_process_semantic_segmentation(
                _float_outputs(outputs), target_sizes=sizes, return_segmentation_scores=True)
            scores = [p.segmentation_scores for p in post]
            if self.architecture == "segformer":
                scores = [s.softmax(dim=0) for s in scores]
        preds = [Prediction(semantic=self._semantic(s)) for s in scores]
        if self.thing_ids is not None:
            for i, pred in enumerate(preds):
                pred.instances = self._things(outputs, i, tensors, sizes[i])
        return preds

    def _image_processor(self):
        return getattr(self.processor, "image_processor", self.processor)

    def _semantic(self, scores: torch.Tensor) -> SemanticPrediction:
        """Per-class scores [C, H, W] (non-negative) -> label map, class scores (mean
        confidence of each class's pixels), mean confidence and the map's segments, all
        computed on the device: the host gets the map and a few small arrays."""
        best, label = scores.max(dim=0)
        confidence = best / scores.sum(dim=0).clamp_min(1e-12)
        label = label.to(torch.int32)
        if self.min_confidence > 0:
            label[confidence < self.min_confidence] = -1
        shifted = label.reshape(-1).to(torch.int64) + 1  # 0: unlabeled
        bins = scores.shape[0] + 1
        counts = torch.bincount(shifted, minlength=bins).to(torch.float64)
        sums = torch.bincount(shifted, weights=confidence.reshape(-1).to(torch.float64),
                              minlength=bins)
        counts, sums = torch.stack([counts, sums]).cpu().numpy()
        present = np.flatnonzero(counts[1:])
        class_scores = {int(c): float(sums[c + 1] / counts[c + 1]) for c in present}
        labeled = counts[1:].sum()
        mean = float(sums[1:].sum() / labeled) if labeled else None
        return SemanticPrediction(label_map=label.cpu().numpy(), scores=class_scores,
                                  mean_confidence=mean, segments=label_segments(label))

    def _things(self, outputs, i: int, tensors: dict, size) -> InstancePrediction:
        from labeling.backends.panoptic import thing_segments

        mask_logits = _crop_resize(outputs.masks_queries_logits[i].float(),
                                   _valid_hw(tensors.get("pixel_mask"), i,
                                             tensors["pixel_values"]),
                                   tuple(tensors["pixel_values"].shape[-2:]), size)
        return thing_segments(outputs.class_queries_logits[i].float(), mask_logits,
                              self.thing_ids, self.instance_threshold, self.overlap_threshold,
                              source=self.name)


def _load(architecture: str, family: str, checkpoint: str):
    from transformers import (
        AutoImageProcessor,
        AutoModelForSemanticSegmentation,
        AutoModelForUniversalSegmentation,
        AutoProcessor,
    )

    model_cls = AutoModelForUniversalSegmentation if family == "universal" else \
        AutoModelForSemanticSegmentation
    what = f"{architecture} ({model_cls.__name__})"
    model = load_pretrained(model_cls, checkpoint, what)
    if architecture == "oneformer":
        extra = _oneformer_class_info(resolve_source(checkpoint))
        processor = load_pretrained(AutoProcessor, checkpoint, what + " processor", **extra)
    else:
        processor = load_pretrained(AutoImageProcessor, checkpoint, what + " image processor")
    log.info("loaded %s %s from %s", architecture, type(model).__name__, checkpoint)
    return model, processor


def _oneformer_class_info(source: str) -> dict[str, Any]:
    """OneFormer's processor reads a class-info JSON from `repo_path`; use the local copy."""
    folder = Path(source)
    if not folder.is_dir():
        return {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            config = json.loads((folder / name).read_text())
            config = config.get("image_processor", config)
            info = config.get("class_info_file")
            if info and (folder / info).is_file():
                return {"repo_path": str(folder)}
    return {}


def _float_outputs(outputs):
    for key, value in outputs.items():
        if torch.is_tensor(value) and value.is_floating_point():
            outputs[key] = value.float()
    return outputs


def _valid_hw(pixel_mask: torch.Tensor | None, i: int, pixel_values: torch.Tensor):
    """(height, width) of image i inside its padded input."""
    if pixel_mask is None:
        return tuple(pixel_values.shape[-2:])
    m = pixel_mask[i].bool()
    return int(m.any(dim=1).sum()), int(m.any(dim=0).sum())


def _crop_resize(maps: torch.Tensor, valid_hw, padded_hw, out_hw) -> torch.Tensor:
    """Maps [K, h, w] over the padded input -> [K, H, W] over the image alone."""
    maps = F.interpolate(maps[None], size=padded_hw, mode="bilinear", align_corners=False)[0]
    maps = maps[:, : valid_hw[0], : valid_hw[1]]
    return F.interpolate(maps[None], size=tuple(out_hw), mode="bilinear", align_corners=False)[0]


def _mask_class_scores(class_logits, mask_logits, valid_hw, padded_hw, out_hw) -> torch.Tensor:
    """Query class logits [Q, C+1] and mask logits [Q, h, w] -> class scores [C, H, W]."""
    probs = class_logits.softmax(dim=-1)[:, :-1]  # drop the no-object class
    scores = torch.einsum("qc,qhw->chw", probs, mask_logits.sigmoid())
    return _crop_resize(scores, valid_hw, padded_hw, out_hw).clamp_min(0)
