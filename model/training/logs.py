"""Metrics: one JSON line per logged step (metrics.jsonl), and TensorBoard when installed."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from dataset.shards import atomic_write_bytes

log = logging.getLogger(__name__)


class MetricsLog:
    """Appends {"step": s, ...} lines; on resume, lines past the resumed step are dropped."""

    def __init__(self, directory: str | Path, enabled: bool = True, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.path = Path(directory) / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self._truncate(resume_step)
        elif self.path.exists():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed: metrics go to %s only", self.path)
            else:
                self.writer = SummaryWriter(str(Path(directory) / "tb"), purge_step=resume_step)

    def _truncate(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_bytes(self.path, ("\n".join(kept) + "\n" if kept else "").encode())

    def write(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(directory: str | Path) -> list[dict[str, Any]]:
    path = Path(directory) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value
