"""Class-prompted instances: Grounding DINO boxes for the image's class name, SAM masks in them.

Each image's class name (known for ImageNet) becomes the text prompt ("tabby." for class
"tabby"); Grounding DINO, loaded through transformers' AutoModelForZeroShotObjectDetection
and its processor, returns boxes above `box_threshold` (and tokens above `text_threshold`);
overlapping boxes are reduced by NMS and capped at `max_boxes`; each box then prompts SAM
(segment-anything's SamPredictor, one image embedding per image, all boxes in one decoder
call) for one mask. Instances carry the detector's score and the image's class index.
Images without a class name get no instances unless `default_prompt` is set.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from labeling.backends.base import Backend, InstancePrediction, Prediction, bf16_autocast
from labeling.backends.hub import load_pretrained
from labeling.backends.mask_ops import encode_rles_with_runs
from labeling.backends.sam import load_sam

log = logging.getLogger(__name__)


def prompt_for(name: str) -> str:
    """Grounding DINO wants lower-case phrases ending with a period."""
    return name.replace("_", " ").strip().lower().rstrip(".") + "."


def _class_indices() -> dict[str, int]:
    from labeling.images import imagenet_classes

    return {c.name: c.index for c in imagenet_classes()}


class GroundedSamBackend(Backend):
    name = "grounded-sam"
    provides = frozenset({"instances"})

    def __init__(self, device: str = "cpu",
                 detector: str = "IDEA-Research/grounding-dino-tiny",
                 sam_model_type: str = "vit_h", sam_checkpoint: str | None = None,
                 box_threshold: float = 0.35, text_threshold: float = 0.25,
                 box_nms_thresh: float = 0.7, max_boxes: int = 20, batch_size: int = 8,
                 bf16: bool = True, default_prompt: str | None = None):
        super().__init__(device=device, detector=detector, sam_model_type=sam_model_type,
                         sam_checkpoint=sam_checkpoint, box_threshold=box_threshold,
                         text_threshold=text_threshold, box_nms_thresh=box_nms_thresh,
                         max_boxes=max_boxes, batch_size=batch_size, bf16=bf16,
                         default_prompt=default_prompt)
        from segment_anything import SamPredictor
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.detector = load_pretrained(AutoModelForZeroShotObjectDetection, detector,
                                        "grounding-dino").to(device).eval()
        self.processor = load_pretrained(AutoProcessor, detector, "grounding-dino processor")
        self.predictor = SamPredictor(load_sam(sam_model_type, sam_checkpoint, device))
        self.bf16 = bool(bf16) and torch.device(device).type == "cuda"
        self.class_index = _class_indices()

    def _autocast(self):
        return bf16_autocast(self.bf16)

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray], class_names: list[str | None]) -> list[Prediction]:
        if len(class_names) != len(images):
            raise ValueError(f"got {len(images)} images but {len(class_names)} class names")
        prompts = [prompt_for(n) if n else (self.params["default_prompt"] and
                                             prompt_for(self.params["default_prompt"]))
                   for n in class_names]
        todo = [i for i, p in enumerate(prompts) if p]
        boxes: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        step = max(1, int(self.params["batch_size"]))
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            found = self._detect([images[i] for i in chunk], [prompts[i] for i in chunk])
            boxes.update(zip(chunk, found))
        preds = []
        for i, (image, name) in enumerate(zip(images, class_names)):
            box, score = boxes.get(i, (torch.zeros(0, 4), torch.zeros(0)))
            category = self.class_index.get(name, -1) if name else -1
            preds.append(Prediction(instances=self._segment(image, box, score, category)))
        return preds

    def _detect(self, images: list[np.ndarray], prompts: list[str]):
        """Boxes (XYXY, image pixels) and scores per image, after NMS and the cap."""
        from torchvision.ops import batched_nms

        inputs = self.processor(images=list(images), text=prompts, padding=True,
                                return_tensors="pt").to(self.device)
        with self._autocast():
            outputs = self.detector(**inputs)
        outputs.logits, outputs.pred_boxes = outputs.logits.float(), outputs.pred_boxes.float()
        results = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.params["box_threshold"],
            text_threshold=self.params["text_threshold"],
            target_sizes=[im.shape[:2] for im in images])
        found = []
        for r in results:
            box, score = r["boxes"].float(), r["scores"].float()
            keep = batched_nms(box, score, torch.zeros_like(score),
                               self.params["box_nms_thresh"])[: self.params["max_boxes"]]
            found.append((box[keep], score[keep]))
        return found

    def _segment(self, image: np.ndarray, boxes: torch.Tensor, scores: torch.Tensor,
                 category: int) -> InstancePrediction:
        h, w = image.shape[:2]
        n = len(scores)
        if n == 0:
            return InstancePrediction(scores=np.zeros(0, np.float32), rles=[],
                                      category_ids=np.zeros(0, np.int32), source=self.name)
        transformed = self.predictor.transform.apply_boxes_torch(boxes.to(self.device), (h, w))
        with self._autocast():  # the image encoder in bf16 on CUDA ...
            self.predictor.set_image(np.ascontiguousarray(image))
        # ... the prompt encoder and decoder (cheap for a few boxes) in float32
        self.predictor.features = self.predictor.features.float()
        masks, _, _ = self.predictor.predict_torch(None, None, boxes=transformed,
                                                   multimask_output=False)
        self.predictor.reset_image()
        # RLE on the device (mask_ops): the host gets run starts, not N full masks
        rles, runs = encode_rles_with_runs(masks[:, 0])
        return InstancePrediction(
            scores=scores.cpu().numpy().astype(np.float32), rles=rles, runs=runs,
            category_ids=np.full(n, category, dtype=np.int32),
            source=self.name,
        )

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "provides": sorted(self.provides), "params": self.params}
