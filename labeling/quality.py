"""Per-image quality metrics: the `quality` struct of a label row (dataset/schema.py).

A metric is None when the model it describes did not run (e.g. no semantic model) or when
it has nothing to average (e.g. mean score of zero instances).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataset.schema import QUALITY_FIELDS
from labeling.fusion import Fused


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None  # a few dozen values: no numpy call


def area_entropy(areas: list[int]) -> float | None:
    """Entropy (nats) of the distribution of labeled pixels over categories."""
    total = float(sum(areas))
    if total <= 0:
        return None
    p = np.asarray(areas, dtype=np.float64) / total
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def image_quality(
    height: int, width: int, semantic: list[dict] | None, fused: Fused | None,
    semantic_confidence: float | None = None, seconds: float | None = None,
) -> dict[str, Any]:
    """The quality dict of one image. `semantic` None = no semantic model; same for `fused`."""
    pixels = float(height * width)
    q: dict[str, Any] = dict.fromkeys(QUALITY_FIELDS)
    if semantic is not None:
        areas = [e["area"] for e in semantic]
        q["num_semantic"] = len(semantic)
        q["unlabeled_fraction"] = 1.0 - sum(areas) / pixels
        q["semantic_entropy"] = area_entropy(areas)
        if semantic_confidence is None and sum(areas) > 0:  # fall back to area-weighted scores
            scored = [(e["score"], e["area"]) for e in semantic if e["score"] is not None]
            if scored:
                weight = sum(a for _, a in scored)
                semantic_confidence = sum(s * a for s, a in scored) / weight if weight else None
        q["semantic_confidence"] = semantic_confidence
    if fused is not None:
        kept = fused.instances
        q["num_instances"] = len(kept)
        q["num_instances_dropped"] = fused.dropped_tiny + fused.dropped_duplicate
        q["instance_coverage"] = fused.covered / pixels
        q["mean_instance_score"] = _mean(e["score"] for e in kept)
        q["mean_instance_stability"] = _mean(e["stability"] for e in kept)
        q["semantic_purity"] = _mean(fused.purity)
    q["seconds"] = None if seconds is None else float(seconds)
    return q
