"""Tasks: classification, and every other vision problem, behind one interface (:class:`Task`).

>>> from cnnlab.tasks import get_task, task_for_model
>>> task_for_model("resnet18")
'classify'
>>> get_task("classify").name
'classify'
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import unknown_name
from .base import Batch, DeployForm, StepOutput, Task

_TASKS: dict[str, type[Task]] = {}
_LOADED = False


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` the task called ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    if _TASKS.get(cls.name, cls) is not cls:
        raise ValueError(f"task '{cls.name}' is registered twice")
    _TASKS[cls.name] = cls
    return cls


def _load_tasks() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in pkgutil.iter_modules(__path__):
            if module.name != "base":
                importlib.import_module(f"{__name__}.{module.name}")


def task_class(name: str) -> type[Task]:
    _load_tasks()
    if name not in _TASKS:
        raise unknown_name("task", name, list(_TASKS))
    return _TASKS[name]


def get_task(name: str, config=None) -> Task:
    """An instance of the task ``name`` (for a training run: with its :class:`TrainConfig`)."""
    return task_class(name)(config)


def list_tasks() -> list[str]:
    _load_tasks()
    return sorted(_TASKS)


def task_for_model(model: str, override: str = "auto") -> str:
    """The task ``model`` is trained for (its registration says), unless ``override`` names one."""
    from ..registry import model_info

    if override and override != "auto":
        return task_class(override).name
    return task_class(model_info(model).task).name


__all__ = ["Batch", "DeployForm", "StepOutput", "Task", "get_task", "list_tasks", "register_task", "task_class", "task_for_model"]
