"""Pre-training: run config, optimizer and schedule, the loop, checkpoints, logs, grids.

    from model.training import Trainer, load_config
    Trainer(load_config("demo", ["data.labels=out/labels"])).fit()
"""

from model.training.config import DataConfig, EvalConfig, OptimConfig, TrainConfig, load_config
from model.training.trainer import NonFiniteLossError, Trainer

__all__ = ["DataConfig", "EvalConfig", "NonFiniteLossError", "OptimConfig", "TrainConfig",
           "Trainer", "load_config"]
