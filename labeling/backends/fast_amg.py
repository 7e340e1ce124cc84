"""SAM automatic mask generation, batched for accelerators.

The algorithm is segment-anything's AMG: a grid of single-point prompts per image (and per
crop when crop layers are on), three masks per point, masks kept when the predicted IoU is
above `pred_iou_thresh` and the stability score reaches `stability_score_thresh`, masks
touching a crop edge (but not the image edge) dropped, box NMS within each crop, NMS across
crops preferring smaller crops, optional removal of small islands and holes. What changes
is where the work happens:

- the image encoder runs on several images (crops) per call, under bf16 autocast on CUDA,
  with its attention through torch's fused scaled_dot_product_attention (sam_sdpa.py),
  optionally through torch.compile;
- the decoder takes `points_per_batch` points per call (256 by default, stock uses 64);
- the predicted-IoU filter runs on the low-resolution logits, so only the surviving masks
  are upsampled to full resolution (stock upsamples all three masks of every point);
- thresholding, stability, boxes and NMS run on the device, and masks stay there until the
  end; run-length encoding happens once per image on the survivors of NMS, on the device,
  and only the run boundaries move to the host (stock encodes every mask that passes the
  filters, one device-to-host copy per mask, before NMS drops most of them).

With float32, plain attention and equal settings the masks equal stock AMG's
(tests/labeling/test_fast_amg.py checks this on a tiny random SAM); bf16 and fused attention
(both on by default on CUDA only) change the logits slightly, so masks near the thresholds
can flip (BENCHMARKS.md reports how many stock masks the fast path still finds).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from labeling.backends.base import Backend, InstancePrediction, Prediction, bf16_autocast
from labeling.backends.mask_ops import encode_rles_with_runs, mask_boxes_xyxy, stability_scores
from labeling.backends.sam import AMG_DEFAULTS, load_sam
from labeling.backends.sam_sdpa import FusedAttention

log = logging.getLogger(__name__)

FAST_DEFAULTS: dict[str, Any] = {**AMG_DEFAULTS, "points_per_batch": 256}


@dataclass
class _Crop:
    image: int  # index of the image in the batch
    box: list[int]  # x0, y0, x1, y1 in the image
    layer: int  # crop layer (0 = whole image)
    image_hw: tuple[int, int]


@dataclass
class _Masks:
    """Masks kept so far for one image, with their crops; tensors on the device."""

    masks: list[torch.Tensor] = field(default_factory=list)  # bool [K, h_crop, w_crop]
    crops: list[list[int]] = field(default_factory=list)  # the crop box of each tensor
    iou: list[torch.Tensor] = field(default_factory=list)
    stability: list[torch.Tensor] = field(default_factory=list)
    boxes: list[torch.Tensor] = field(default_factory=list)  # image frame, XYXY
    n_crops: int = 1  # crops of the image (with masks or not)


class FastAmgBackend(Backend):
    """Automatic masks for a batch of images; see the module docstring."""

    name = "sam-amg-fast"
    provides = frozenset({"instances"})

    def __init__(self, device: str = "cpu", model_type: str = "vit_h",
                 checkpoint: str | None = None, image_batch_size: int = 4, bf16: bool = True,
                 compile: bool = False, sdpa: bool | None = None, model: Any = None,
                 **amg: Any):
        unknown = set(amg) - set(FAST_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown sam-amg-fast settings {sorted(unknown)}; "
                             f"known: {', '.join(FAST_DEFAULTS)}")
        s = {**FAST_DEFAULTS, **amg}
        super().__init__(device=device, model_type=model_type, checkpoint=checkpoint,
                         image_batch_size=image_batch_size, bf16=bf16, compile=compile,
                         sdpa=sdpa, **s)
        from segment_anything.utils.amg import build_all_layer_point_grids
        from segment_anything.utils.transforms import ResizeLongestSide

        if s["point_grids"] is not None:
            self.grids = [np.asarray(g, dtype=np.float64) for g in s["point_grids"]]
        else:
            self.grids = build_all_layer_point_grids(
                s["points_per_side"], s["crop_n_layers"], s["crop_n_points_downscale_factor"])
        if len(self.grids) != s["crop_n_layers"] + 1:
            raise ValueError(f"need one point grid per crop layer ({s['crop_n_layers'] + 1}), "
                             f"got {len(self.grids)}")
        if s["min_mask_region_area"] > 0:
            import cv2  # noqa: F401  (fail now, not after the first batch)
        self.s = s
        # `model`: an already-built Sam (the benchmark shares one with stock AMG)
        self.model = load_sam(model_type, checkpoint, device) if model is None else model
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self.encoder = torch.compile(self.model.image_encoder) if compile else \
            self.model.image_encoder
        self.image_batch_size = max(1, int(image_batch_size))
        self._dense_pe = None  # the decoder's positional grid, computed once
        on_cuda = torch.device(device).type == "cuda"
        self.bf16 = bool(bf16) and on_cuda
        # fused attention changes float rounding, so by default only where it pays: CUDA
        self.attention = FusedAttention(self.model.image_encoder) if \
            (on_cuda if sdpa is None else sdpa) else contextlib.nullcontext()

    def _autocast(self):
        return bf16_autocast(self.bf16)

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray], class_names: list[str | None]) -> list[Prediction]:
        from segment_anything.utils.amg import generate_crop_boxes

        crops, kept = [], []
        for i, image in enumerate(images):
            hw = tuple(image.shape[:2])
            boxes, layers = generate_crop_boxes(hw, self.s["crop_n_layers"],
                                                self.s["crop_overlap_ratio"])
            crops += [_Crop(i, box, layer, hw) for box, layer in zip(boxes, layers)]
            kept.append(_Masks(n_crops=len(boxes)))
        for start in range(0, len(crops), self.image_batch_size):
            chunk = crops[start : start + self.image_batch_size]
            embeddings, input_sizes = self._embed([images[c.image] for c in chunk], chunk)
            for crop, emb, input_size in zip(chunk, embeddings, input_sizes):
                self._crop_masks(emb[None], crop, input_size, kept[crop.image])
        return [Prediction(instances=self._finish(k, image.shape[:2]))
                for k, image in zip(kept, images)]

    def _embed(self, images: list[np.ndarray], crops: list[_Crop]):
        """Resize each crop (longest side -> encoder size), pad, encode them in one call."""
        batch, sizes = [], []
        for image, crop in zip(images, crops):
            x0, y0, x1, y1 = crop.box
            resized = self.transform.apply_image(np.ascontiguousarray(image[y0:y1, x0:x1]))
            pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)
            batch.append(self.model.preprocess(pixels[None])[0])
            sizes.append(tuple(resized.shape[:2]))
        with self._autocast(), self.attention:
            return self.encoder(torch.stack(batch)), sizes

    def _decode(self, embedding: torch.Tensor, coords: np.ndarray):
        """Three masks per point: low-res logits [3P, h, w] and predicted IoU [3P], float32.

        The prompt encoder runs in float32 (its Fourier features of point coordinates lose
        too much in bf16); only the two-way transformer runs under autocast.
        """
        model = self.model
        points = torch.as_tensor(coords, device=self.device)[:, None, :]  # float64, as stock
        labels = torch.ones(points.shape[0], 1, dtype=torch.int, device=self.device)
        sparse, dense = model.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        if self._dense_pe is None:
            self._dense_pe = model.prompt_encoder.get_dense_pe()
        with self._autocast():
            low_res, iou = model.mask_decoder(
                image_embeddings=embedding, image_pe=self._dense_pe,
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=True)
        return low_res.flatten(0, 1).float(), iou.flatten().float()

    def _filter(self, logits, iou, crop: _Crop, input_size, crop_hw):
        """One point batch: IoU filter (low res), upsample, stability, threshold, edge filter."""
        from segment_anything.utils.amg import is_box_near_crop_edge

        s, model = self.s, self.model
        if s["pred_iou_thresh"] > 0.0:
            keep = iou > s["pred_iou_thresh"]
            logits, iou = logits[keep], iou[keep]
        if len(iou) == 0:
            return None
        logits = model.postprocess_masks(logits[:, None], input_size, crop_hw)[:, 0]
        stab = stability_scores(logits, model.mask_threshold, s["stability_score_offset"])
        if s["stability_score_thresh"] > 0.0:
            keep = stab >= s["stability_score_thresh"]
            logits, iou, stab = logits[keep], iou[keep], stab[keep]
        mask = logits > model.mask_threshold
        del logits
        box = mask_boxes_xyxy(mask)
        h, w = crop.image_hw
        keep = ~is_box_near_crop_edge(box, crop.box, [0, 0, w, h])
        return mask[keep], iou[keep], stab[keep], box[keep]

    def _crop_masks(self, embedding, crop: _Crop, input_size, out: _Masks) -> None:
        """All point batches of one crop -> masks kept after filters and in-crop NMS."""
        from torchvision.ops import batched_nms

        x0, y0, x1, y1 = crop.box
        crop_hw = (y1 - y0, x1 - x0)
        points = self.grids[crop.layer] * np.array(crop_hw[::-1])[None]
        coords = self.transform.apply_coords(points, crop_hw)
        step = self.s["points_per_batch"]
        parts = [self._filter(*self._decode(embedding, coords[b : b + step]), crop, input_size,
                              crop_hw) for b in range(0, len(coords), step)]
        parts = [p for p in parts if p is not None]
        if not parts:
            return
        mask, iou, stab, box = (torch.cat(t) for t in zip(*parts))
        keep = batched_nms(box.float(), iou, torch.zeros_like(iou), self.s["box_nms_thresh"])
        offset = torch.tensor([x0, y0, x0, y0], device=box.device)
        out.masks.append(mask[keep])
        out.iou.append(iou[keep])
        out.stability.append(stab[keep])
        out.boxes.append(box[keep] + offset)
        out.crops.append(crop.box)

    def _finish(self, kept: _Masks, image_hw) -> InstancePrediction:
        """Cross-crop NMS, optional small-region cleanup, then full-image masks -> RLE."""
        from torchvision.ops import batched_nms

        h, w = image_hw
        if not kept.iou:
            return InstancePrediction(scores=np.zeros(0, np.float32),
                                      stability=np.zeros(0, np.float32), rles=[],
                                      source=self.name)
        iou, stab, boxes = (torch.cat(t) for t in (kept.iou, kept.stability, kept.boxes))
        masks = torch.cat([self._uncrop(m, box, h, w) for m, box in zip(kept.masks, kept.crops)])
        if kept.n_crops > 1 and len(iou):  # as stock: whenever the image has crops
            crops = torch.tensor([box for m, box in zip(kept.masks, kept.crops)
                                  for _ in range(len(m))], dtype=torch.float32, device=iou.device)
            prefer_small = 1.0 / ((crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1]))
            keep = batched_nms(boxes.float(), prefer_small, torch.zeros_like(iou),
                               self.s["crop_nms_thresh"])
            masks, iou, stab, boxes = masks[keep], iou[keep], stab[keep], boxes[keep]
        if self.s["min_mask_region_area"] > 0 and len(iou):
            masks, keep = self._remove_small_regions(masks)
            iou, stab = iou[keep], stab[keep]
        rles, runs = encode_rles_with_runs(masks)  # runs: so fusion need not parse the RLEs
        return InstancePrediction(
            scores=iou.cpu().numpy().astype(np.float32),
            stability=stab.cpu().numpy().astype(np.float32),
            rles=rles, runs=runs, source=self.name,
        )

    @staticmethod
    def _uncrop(masks: torch.Tensor, box: list[int], h: int, w: int) -> torch.Tensor:
        if len(masks) == 0:
            return masks.new_zeros((0, h, w))
        x0, y0, x1, y1 = box
        if (x0, y0, x1, y1) == (0, 0, w, h):
            return masks
        return F.pad(masks, (x0, w - x1, y0, h - y1), value=False)

    def _remove_small_regions(self, masks: torch.Tensor):
        """Fill small holes, drop small islands (cv2, on the host); NMS prefers untouched."""
        from segment_anything.utils.amg import remove_small_regions
        from torchvision.ops import batched_nms

        area = self.s["min_mask_region_area"]
        cleaned, untouched = [], []
        for mask in masks.cpu().numpy():
            mask, holes = remove_small_regions(mask, area, mode="holes")
            mask, islands = remove_small_regions(mask, area, mode="islands")
            cleaned.append(mask)
            untouched.append(float(not (holes or islands)))
        new = torch.as_tensor(np.stack(cleaned), device=masks.device)
        scores = torch.tensor(untouched, device=masks.device)
        threshold = max(self.s["box_nms_thresh"], self.s["crop_nms_thresh"])
        keep = batched_nms(mask_boxes_xyxy(new).float(), scores, torch.zeros_like(scores),
                           threshold)
        return new[keep], keep
