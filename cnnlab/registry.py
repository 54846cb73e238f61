"""The model registry: every network in cnnlab is built by name.

>>> import cnnlab
>>> model = cnnlab.create_model("lenet5", num_classes=10)
>>> cnnlab.list_models("vgg*")        # doctest: +SKIP

Families register their builders with :func:`register_model`. A builder is a keyword-only function
returning an ``nn.Module`` that has ``features`` and ``classifier`` attributes (or
``forward_features`` / ``forward_head``) so analysis, CAM and transfer learning treat every family
alike.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import unknown_name


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of one model, for ``cnnlab list`` and ``cnnlab compare``."""

    name: str
    builder: Callable[..., Any]
    family: str
    paper: str
    year: int
    input_size: tuple[int, int, int]  # default (C, H, W)
    num_classes: int = 1000
    top1: float | None = None  # published ImageNet top-1 accuracy (%), where there is one
    top5: float | None = None
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


_MODELS: dict[str, ModelInfo] = {}
_LOADED = False


def register_model(
    name: str,
    *,
    family: str,
    paper: str,
    year: int,
    input_size: tuple[int, int, int] = (3, 224, 224),
    num_classes: int = 1000,
    top1: float | None = None,
    top5: float | None = None,
    description: str = "",
    tags: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers a model builder under ``name``."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _MODELS:
            raise ValueError(f"model '{name}' is registered twice")
        doc = description or (builder.__doc__ or "").strip().split("\n")[0]
        _MODELS[name] = ModelInfo(
            name, builder, family, paper, year, tuple(input_size), num_classes, top1, top5, doc, tuple(tags)
        )
        return builder

    return decorate


def _load_families() -> None:
    """Import every module of :mod:`cnnlab.models` once, so each family registers itself."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import models

    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"{models.__name__}.{module.name}")


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model; unknown names suggest close matches."""
    _load_families()
    if name not in _MODELS:
        raise unknown_name("model", name, list(_MODELS))
    return _MODELS[name]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    _load_families()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **kwargs: Any):
    """Build the model ``name``; keyword arguments (``num_classes``, ``in_channels``, ...) go to its builder."""
    info = model_info(name)
    return info.builder(**kwargs)
