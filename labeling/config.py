"""Configuration of the labeling job: dataclasses, YAML profiles, key=value overrides.

Resolution order: the dataclass defaults, then a profile (``labeling/profiles/NAME.yaml``),
then a config file, then ``key=value`` overrides with dotted keys, e.g.
``shard_size=500 semantic.batch_size=8 instances.params.points_per_side=16 instances=null``.
Values are parsed as YAML (``8`` is an int, ``null`` is None, ``[a, b]`` a list). The fully
resolved config (``to_dict``) is stored in every shard's metadata.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROFILE_DIR = Path(__file__).with_name("profiles")


@dataclass
class ModelConfig:
    """One segmenter backend and how Ray runs it."""

    backend: str = "saliency"  # name in labeling.backends.base.BACKENDS
    params: dict[str, Any] = field(default_factory=dict)  # passed to the backend
    batch_size: int = 4  # images per predict() call
    concurrency: int = 1  # actors running this model (e.g. one per GPU)
    num_gpus: float = 0.0  # GPUs per actor (fractions share a GPU); >0 puts it on CUDA
    num_cpus: float = 1.0  # CPUs reserved per actor


@dataclass
class Thresholds:
    """What fusion keeps. Areas in pixels of the original image."""

    min_instance_area: int = 64  # drop instance masks smaller than this
    min_instance_fraction: float = 0.0005  # ... or smaller than this share of the image
    duplicate_iou: float = 0.9  # drop a mask whose IoU with a better-scored one exceeds this
    min_category_share: float = 0.0  # majority class must cover more than this share, else -1


@dataclass
class LabelingConfig:
    semantic: ModelConfig | None = field(default_factory=ModelConfig)
    instances: ModelConfig | None = field(default_factory=ModelConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    image_max_side: int | None = None  # shrink inputs so the longer side <= this for the models
    shard_size: int = 1000  # images per output shard
    decode_batch_size: int = 16  # images per decode task
    decode_num_cpus: float = 1.0  # CPUs per decode task
    # an image on which a model's process dies (crash, out of memory) this many times when
    # run on its own becomes an error row instead of being retried forever
    max_model_deaths: int = 2
    store_images: bool = False  # keep a copy of each encoded image file in `image_bytes`
    row_group_size: int = 256
    # zstd level of the shard files (1-22): level 3 writes ~2.5x faster than 9 for 4-18%
    # more bytes (BENCHMARKS.md, "Labeling overhead" and "Label storage")
    compression_level: int = 3

    def validate(self) -> LabelingConfig:
        if self.semantic is None and self.instances is None:
            raise ValueError("config needs at least one of `semantic` and `instances`")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if not 1 <= self.compression_level <= 22:
            raise ValueError(f"compression_level must be a zstd level 1..22, got {self.compression_level}")
        if self.max_model_deaths < 1:
            raise ValueError(f"max_model_deaths must be >= 1, got {self.max_model_deaths}")
        if self.image_max_side is not None and self.image_max_side < 16:
            raise ValueError(f"image_max_side must be >= 16 or null, got {self.image_max_side}")
        for name in ("semantic", "instances"):
            model = getattr(self, name)
            if model is not None and (model.batch_size < 1 or model.concurrency < 1):
                raise ValueError(f"{name}.batch_size and {name}.concurrency must be >= 1")
        return self

    def shared_model(self) -> bool:
        """True when one backend (same name and params) serves both granularities."""
        s, i = self.semantic, self.instances
        return s is not None and i is not None and (s.backend, s.params) == (i.backend, i.params)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def output_affecting(self) -> dict[str, Any]:
        """The parts of the config that change the labels (not batch sizes or scaling)."""
        d = self.to_dict()
        keep = {"thresholds": d["thresholds"], "image_max_side": d["image_max_side"],
                "shard_size": d["shard_size"], "store_images": d["store_images"]}
        for name in ("semantic", "instances"):
            keep[name] = None if d[name] is None else {"backend": d[name]["backend"],
                                                       "params": d[name]["params"]}
        return keep


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return cls(**data)


def from_dict(data: dict[str, Any]) -> LabelingConfig:
    """A nested dict (as in YAML) -> LabelingConfig; unknown keys are an error."""
    data = copy.deepcopy(data)
    for name in ("semantic", "instances"):
        if data.get(name) is not None:
            data[name] = _build(ModelConfig, data[name], name)
    if "thresholds" in data:
        data["thresholds"] = _build(Thresholds, data["thresholds"] or {}, "thresholds")
    return _build(LabelingConfig, data, "config").validate()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise FileNotFoundError(f"config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping at the top level")
    return data


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_path(name: str) -> Path:
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(profile_names())}")
    return path


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; a non-dict value (including None) replaces."""
    out = dict(base)
    if "backend" in update and update["backend"] != out.get("backend"):
        out["params"] = {}  # another backend's parameters do not carry over
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(data: dict[str, Any], item: str) -> dict[str, Any]:
    """Apply one `dotted.key=value` override to a config dict (value parsed as YAML)."""
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    data = copy.deepcopy(data)
    node = data
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], dict):
            raise ValueError(f"override {item!r}: {part!r} is not a section")
        node = node[part]
    if parts[-1] == "backend" and value != node.get("backend"):
        node["params"] = {}  # another backend's parameters do not carry over
    node[parts[-1]] = value
    return data


def resolve(
    profile: str | None = None, config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> LabelingConfig:
    """Defaults <- profile <- config file <- overrides, validated."""
    data = LabelingConfig().to_dict()
    if profile:
        data = _merge(data, _read_yaml(profile_path(profile)))
    if config_file:
        data = _merge(data, _read_yaml(Path(config_file)))
    for item in overrides:
        data = apply_override(data, item)
    return from_dict(data)
