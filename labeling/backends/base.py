"""The one interface every segmenter backend implements, and the registry of backends.

A backend turns a batch of RGB images into predictions at each image's own resolution:
a semantic label map, instance masks, or both. It knows nothing of shards, Ray or files;
the job (pipelines/labels.py) feeds it decoded images and fuses what it returns.
Heavy libraries (transformers, segment_anything, onnxruntime) are imported inside the
backend module, which is itself imported only when its name is asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SemanticPrediction:
    """A disjoint label map at the image's resolution."""

    label_map: np.ndarray  # int32 [H, W], category id, -1 = unlabeled
    scores: dict[int, float] = field(default_factory=dict)  # category -> mean confidence
    confidence: np.ndarray | None = None  # float32 [H, W] per-pixel max probability, optional
    # Where a backend computed them on its device (saving the host a pass over the map):
    mean_confidence: float | None = None  # mean confidence over the labeled pixels
    # the map's column-major runs of one label, (start, label) int64, as
    # dataset.masks.label_segments returns them
    segments: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class InstancePrediction:
    """N instance masks at the image's resolution, either as arrays or already encoded.

    Exactly one of `masks` (bool [N, H, W]) and `rles` (list of {"counts", "area", "bbox"}
    as dataset.masks.encode_many returns) is set; encoding on the accelerator lets a fast
    backend hand over RLEs and skip moving full masks to the host. A backend that holds the
    uncompressed run lengths of its RLEs may hand them over too (`runs`, as dataset.masks
    Runs: int64 run lengths of all masks, int64 offsets [N + 1]), so fusion need not read
    the compressed strings back.
    """

    scores: np.ndarray  # float32 [N]: predicted IoU or detector score
    stability: np.ndarray | None = None  # float32 [N], None where the backend has none
    masks: np.ndarray | None = None
    rles: list[dict[str, Any]] | None = None
    runs: tuple[np.ndarray, np.ndarray] | None = None  # run lengths of `rles`, optional
    category_ids: np.ndarray | None = None  # int32 [N] where the backend knows the class
    source: str = ""

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class Prediction:
    semantic: SemanticPrediction | None = None
    instances: InstancePrediction | None = None


class Backend:
    """Base class. Subclasses set `name` and `provides` and implement `predict`."""

    name: str = "base"
    provides: frozenset[str] = frozenset()  # subset of {"semantic", "instances"}

    def __init__(self, device: str = "cpu", **params: Any):
        self.device = device
        self.params = params

    @property
    def vocabulary(self) -> dict[int, str]:
        """Semantic category id -> name ({} for instance-only backends)."""
        return {}

    def predict(self, images: list[np.ndarray], class_names: list[str | None]) -> list[Prediction]:
        """RGB uint8 [H, W, 3] images (sizes may differ) + each image's class name, if known.
        The images may be read-only (the job hands over Ray's object-store buffers)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What goes into the shard metadata's `producers`: backend, checkpoint, parameters."""
        return {"backend": self.name, "provides": sorted(self.provides), "params": self.params}


def bf16_autocast(enabled: bool):
    """bf16 autocast on CUDA when `enabled`, else a context that does nothing."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16)


# name -> ("module:Class", default parameters); modules are imported on first use only.
BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "saliency": ("labeling.backends.saliency:SaliencyBackend", {}),
    "fixed": ("labeling.backends.fixed:FixedBackend", {}),
    "mask2former": ("labeling.backends.hf_semantic:HFSemanticBackend", {"architecture": "mask2former"}),
    "oneformer": ("labeling.backends.hf_semantic:HFSemanticBackend", {"architecture": "oneformer"}),
    "eomt": ("labeling.backends.hf_semantic:HFSemanticBackend", {"architecture": "eomt"}),
    "segformer": ("labeling.backends.hf_semantic:HFSemanticBackend", {"architecture": "segformer"}),
    "sam-amg": ("labeling.backends.sam:SamAmgBackend", {}),
    "sam-amg-fast": ("labeling.backends.fast_amg:FastAmgBackend", {}),
    "grounded-sam": ("labeling.backends.grounded_sam:GroundedSamBackend", {}),
}


def build_backend(name: str, device: str = "cpu", **params: Any) -> Backend:
    """Instantiate a backend by registry name; unknown names list the known ones."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    target, defaults = BACKENDS[name]
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(device=device, **{**defaults, **params})
