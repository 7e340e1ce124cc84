"""Segmenter backends, chosen by name. See labeling/backends/base.py for the interface."""

from labeling.backends.base import (
    BACKENDS,
    Backend,
    InstancePrediction,
    Prediction,
    SemanticPrediction,
    build_backend,
)

__all__ = [
    "BACKENDS", "Backend", "InstancePrediction", "Prediction", "SemanticPrediction",
    "build_backend",
]
