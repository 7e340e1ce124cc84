"""The pre-training run configuration: dataclasses, YAML presets, key=value overrides.

A run is described by one :class:`TrainConfig`. ``load_config("demo", ["data.labels=x"])``
reads ``configs/pretrain/demo.yaml`` (or any YAML path), applies the overrides (dotted
keys, values parsed as YAML scalars) and checks every key, so a typo is an error that
names the key. The resolved config is saved beside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset.loader import DataConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "pretrain"
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class OptimConfig:
    """AdamW with linear warmup and a cosine decay, set every step (as MAE)."""

    base_lr: float = 1.5e-4  # lr = base_lr * batch_size / 256
    lr: float | None = None  # absolute peak lr; overrides the scaling rule when set
    min_lr: float = 0.0
    weight_decay: float = 0.05  # not applied to norms, biases, tokens, position embeddings
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 40.0
    clip_grad: float = 3.0  # max global grad norm; 0 disables


@dataclass
class EvalConfig:
    """Periodic k-NN / linear-probe evaluation of the encoder (pipelines/evaluate.py)."""

    every: int = 0  # steps between evaluations; 0 = only at the end when `at_end`
    at_end: bool = False
    labels: str | None = None  # label dir with class_index; default: data.labels
    holdout: float = 0.2  # share of rows (hash of image_id) used as queries / test set
    max_rows: int = 20000  # rows read for the feature bank (0 = all)
    k: int = 20
    temperature: float = 0.07
    batch_size: int = 64


@dataclass
class TrainConfig:
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "c2fmae_vit_tiny16"})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: str = "out/pretrain"
    batch_size: int = 256  # global: all ranks and accumulation steps together
    accum_steps: int = 1
    epochs: float = 100.0
    steps: int = 0  # > 0: train this many optimizer steps instead of `epochs`
    precision: str = "auto"  # auto = bf16 on a GPU that has it, else fp32
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads for torch; 0 = the cores left after the loader workers
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 1000  # steps; a checkpoint is also written at the end
    keep_checkpoints: int = 3  # newest checkpoints kept (0 = all)
    vis_every: int = 1000  # steps between reconstruction grids (0 = only at the end)
    vis_images: int = 8
    compile: bool = False  # torch.compile the model (GPU runs)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        cfg = _build(cls, data, "config")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"pretrain config: {what}")

        need("preset" in self.model, "model.preset (a model preset name or YAML file) is required")
        need(self.batch_size >= 1 and self.accum_steps >= 1, "batch_size and accum_steps must be >= 1")
        need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        need(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"device must be auto, cpu or cuda, got {self.device!r}")
        need(self.epochs > 0 or self.steps > 0, "set epochs > 0 or steps > 0")
        need(0.0 <= self.data.holdout < 1.0, "data.holdout must be in [0, 1)")
        need(0.0 < self.eval.holdout < 1.0, "eval.holdout must be in (0, 1)")

    def micro_batch(self, world_size: int) -> int:
        """Rows per rank per forward pass."""
        per = self.batch_size / (world_size * self.accum_steps)
        if per != int(per) or per < 1:
            raise ValueError(f"pretrain config: batch_size {self.batch_size} is not divisible by "
                             f"world_size {world_size} x accum_steps {self.accum_steps}")
        return int(per)

    def peak_lr(self) -> float:
        return self.optim.lr if self.optim.lr is not None else self.optim.base_lr * self.batch_size / 256

    def total_steps(self, rows: int) -> int:
        """Optimizer steps of the run, for `rows` usable training rows."""
        if self.steps > 0:
            return self.steps
        return max(1, math.ceil(self.epochs * self.steps_per_epoch(rows)))

    def steps_per_epoch(self, rows: int) -> int:
        return max(1, rows // self.batch_size)


def find_config(name_or_file: str) -> Path:
    """A YAML path as given, or configs/pretrain/NAME.yaml."""
    path = Path(name_or_file)
    if path.is_file():
        return path
    named = CONFIG_DIR / f"{name_or_file}.yaml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) if CONFIG_DIR.is_dir() else []
    raise FileNotFoundError(f"no pretrain config {name_or_file!r} (not a file; known names: {', '.join(known) or 'none'})")


def load_config(name_or_file: str | None, overrides: list[str] | dict[str, Any] | None = None,
                base: dict[str, Any] | None = None) -> TrainConfig:
    """A YAML preset (or `base`, e.g. a checkpoint's saved config) plus overrides."""
    import yaml

    data = dict(base or {})
    if name_or_file is not None:
        path = find_config(name_or_file)
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        data = loaded
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return TrainConfig.from_dict(data)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["a.b=1", "c=[1, 2]"] -> {"a.b": 1, "c": [1, 2]} (values read as YAML)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override must look like key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data["a"]["b"] = value for key "a.b" (checked against the dataclasses on build)."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {', '.join(names)}")
    return cls(**{k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()})


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else _build(hint, value, where)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise ValueError(f"{where}: must not be empty")
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _coerce(args[0], value, where) if len(args) == 1 else value
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(a, v, where) for a, v in zip(typing.get_args(hint), value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint in (int, float, str):
        if hint is not str and isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        try:
            out = hint(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and out != value:
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return out
    return value


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
