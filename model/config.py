"""Dataclass configuration of a C2FMAE / MAE model.

The config is the whole description of a model: `build_model` needs nothing else, and
checkpoints store `config.to_dict()` so the model can be rebuilt from JSON. Every choice
that the paper leaves open is a field here (see docs/METHOD.md for the defaults and why).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DECODERS = ("cascaded", "parallel", "mae")
MASKINGS = ("curriculum", "random", "semantic", "instance")
SCHEDULE_SHAPES = ("cosine", "linear", "step")


@dataclass
class StageConfig:
    """One decoder stage: a cross-attention block, then `depth` self-attention blocks."""

    dim: int = 256
    depth: int = 2
    num_heads: int = 8


@dataclass
class CurriculumConfig:
    """Share of samples masked semantic-guided -> instance-guided -> random over training.

    `boundaries` are the centres (in progress units, 0..1) of the two transitions
    semantic->instance and instance->random; each transition spans `transition` progress.
    """

    shape: str = "cosine"
    boundaries: tuple[float, float] = (0.3, 0.6)
    transition: float = 0.2


@dataclass
class LossConfig:
    semantic_weight: float = 1.0
    instance_weight: float = 1.0
    pixel_weight: float = 1.0
    norm_pix_loss: bool = True
    masked_only: bool = True  # losses on removed patches only (as MAE)
    boundary_weight: float = 1.0  # inside the instance loss
    boundary_pos_weight: float = 1.0
    embedding_weight: float = 0.1  # the push term starts near (2 * push_margin)^2 = 9
    pull_margin: float = 0.5  # discriminative loss delta_v
    push_margin: float = 1.5  # discriminative loss delta_d
    max_instances: int = 32  # per image in the embedding loss; more are ignored


@dataclass
class ModelConfig:
    name: str = "c2fmae_vit_b16"
    # encoder (a timm-compatible ViT)
    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    # label maps
    num_semantic_classes: int = 150
    label_inputs: bool = False  # semantic + instance tokens into the encoder (MultiMAE)
    semantic_embed_dim: int = 64
    instance_embed_dim: int = 8  # per-cell embedding of the instance stage
    # decoder
    decoder: str = "cascaded"
    semantic_decoder: StageConfig = field(default_factory=lambda: StageConfig(256, 2, 8))
    instance_decoder: StageConfig = field(default_factory=lambda: StageConfig(256, 2, 8))
    pixel_decoder: StageConfig = field(default_factory=lambda: StageConfig(512, 6, 16))
    # masking
    masking: str = "curriculum"
    mask_ratio: float = 0.75
    region_min_share: float = 0.5  # a patch belongs to a region when >= this share of it
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # nested sections may be given as dicts
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(hints[f.name]) and isinstance(value, dict):
                setattr(self, f.name, _from_dict(hints[f.name], value, f"model.{f.name}"))
        if isinstance(self.curriculum.boundaries, list):
            self.curriculum.boundaries = tuple(self.curriculum.boundaries)
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"model config {self.name!r}: {what}")

        need(self.decoder in DECODERS, f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        need(self.masking in MASKINGS, f"masking must be one of {MASKINGS}, got {self.masking!r}")
        need(self.curriculum.shape in SCHEDULE_SHAPES,
             f"curriculum.shape must be one of {SCHEDULE_SHAPES}, got {self.curriculum.shape!r}")
        b1, b2 = self.curriculum.boundaries
        need(0.0 <= b1 <= b2 <= 1.0, f"curriculum.boundaries must satisfy 0 <= b1 <= b2 <= 1, got {(b1, b2)}")
        need(self.curriculum.transition >= 0, "curriculum.transition must be >= 0")
        need(0.0 < self.mask_ratio < 1.0, f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        need(self.patch_size > 0 and self.img_size % self.patch_size == 0,
             f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        need(self.img_size % 4 == 0, f"img_size {self.img_size} must be a multiple of 4 (label maps are at stride 4)")
        need(self.embed_dim % self.num_heads == 0, "embed_dim must be divisible by num_heads")
        need(self.embed_dim % 4 == 0, "embed_dim must be divisible by 4 (2-D sin-cos embedding)")
        for stage in ("semantic_decoder", "instance_decoder", "pixel_decoder"):
            s = getattr(self, stage)
            need(s.dim % s.num_heads == 0 and s.dim % 4 == 0,
                 f"{stage}.dim {s.dim} must be divisible by num_heads {s.num_heads} and by 4")
            need(s.depth >= 0, f"{stage}.depth must be >= 0")
        need(self.num_semantic_classes >= 1, "num_semantic_classes must be >= 1")
        need(0.0 < self.region_min_share <= 1.0, "region_min_share must be in (0, 1]")
        if self.decoder == "mae":
            need(self.masking == "random", "decoder 'mae' reconstructs pixels only: use masking 'random'")
            need(not self.label_inputs, "decoder 'mae' has no label inputs: set label_inputs false")

    @property
    def uses_labels(self) -> bool:
        return self.decoder != "mae"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["curriculum"]["boundaries"] = list(self.curriculum.boundaries)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data, "model")

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if "preset" in data:  # a preset name plus overrides
            from model.presets import get_config

            base = get_config(data.pop("preset"))
            return apply_overrides(base, data)
        return cls.from_dict(data)


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return copy.deepcopy(value)
        return _from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple(value)
    if hint is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{where}: expected a boolean, got {value!r}")
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    if hint in (int, float, str):
        try:
            out = hint(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != out:
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return out
    if origin in (typing.Union, types.UnionType):
        return value
    return value


def apply_overrides(config: ModelConfig, overrides: dict[str, Any]) -> ModelConfig:
    """A new config with `overrides` applied.

    Keys are field names; nested fields are reached with dots ("pixel_decoder.depth") or
    double underscores ("pixel_decoder__depth", for keyword arguments); a nested dataclass
    may also be given a dict of its fields, which is merged.
    """
    data = config.to_dict()
    for raw_key, value in overrides.items():
        path = raw_key.replace("__", ".").split(".")
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"model config: unknown field {raw_key!r}")
            node = node[part]
        leaf = path[-1]
        if leaf not in node:
            raise ValueError(f"model config: unknown field {raw_key!r}")
        if isinstance(node[leaf], dict) and isinstance(value, dict):
            node[leaf] = {**node[leaf], **value}
        elif dataclasses.is_dataclass(value):
            node[leaf] = dataclasses.asdict(value)
        else:
            node[leaf] = value
    return ModelConfig.from_dict(data)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ["key=value", ...] from a command line; values are read as YAML scalars/lists."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override must look like key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out
