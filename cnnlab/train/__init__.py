"""Training: configuration, the loop, losses, metrics, schedules and checkpoints."""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import RECIPES, TrainConfig, build_config
from .trainer import Trainer, TrainResult, evaluate, train

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint", "RECIPES", "TrainConfig", "build_config",
           "Trainer", "TrainResult", "evaluate", "train"]
