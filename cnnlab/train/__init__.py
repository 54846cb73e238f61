"""Training: configuration, the loop, losses, metrics, schedules and checkpoints.

The names below load their module on first use, so that importing one submodule
(``cnnlab.train.losses`` from a task) does not import the trainer, which imports the tasks.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {"Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
         "RECIPES": "config", "TrainConfig": "config", "build_config": "config",
         "Trainer": "trainer", "TrainResult": "trainer", "evaluate": "trainer", "train": "trainer"}

__all__ = list(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
