"""The model registry: every network in cnnlab is built by name.

>>> import cnnlab
>>> model = cnnlab.create_model("lenet5", num_classes=10)
>>> cnnlab.list_models("vgg*")        # doctest: +SKIP

Families register keyword-only builders with :func:`register_model`. What a builder accepts is read
once, when it registers, and :func:`model_arguments` is the one place that turns (name, input size,
classes, options) into its arguments: training, summaries, benchmarks, serving and export all use
it. Classifiers keep the backbone contract of :mod:`cnnlab.backbone`.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .errors import ConfigError, unknown_name

# Arguments every builder may take; the resolver fills them from the data.
STANDARD_ARGUMENTS = ("num_classes", "in_channels", "small_input", "image_size", "frames")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of one model, for ``cnnlab list``, ``cnnlab compare`` and the resolver."""

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
    task: str = "classify"  # the task a model of this kind is trained for (``cnnlab train`` infers it)
    arguments: tuple[str, ...] = ()  # the keyword arguments the builder accepts

    @property
    def options(self) -> tuple[str, ...]:
        """Family-specific builder arguments (beyond :data:`STANDARD_ARGUMENTS`)."""
        return tuple(a for a in self.arguments if a not in STANDARD_ARGUMENTS)

    @property
    def has_small_form(self) -> bool:
        return "small_input" in self.arguments


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
    task: str = "classify",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers a model builder under ``name``."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _MODELS:
            raise ValueError(f"model '{name}' is registered twice")
        parameters = inspect.signature(builder).parameters.values()
        positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if positional:
            raise TypeError(f"builder of '{name}' must take keyword-only arguments, not {positional}")
        arguments = tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and not p.name.startswith("_"))
        doc = description or (builder.__doc__ or "").strip().split("\n")[0]
        _MODELS[name] = ModelInfo(name, builder, family, paper, year, tuple(input_size), num_classes, top1, top5,
                                  doc, tuple(tags), task, arguments)
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
        if not module.name.startswith("_"):
            importlib.import_module(f"{models.__name__}.{module.name}")


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model; unknown names suggest close matches."""
    _load_families()
    if name not in _MODELS:
        raise unknown_name("model", name, list(_MODELS))
    return _MODELS[name]


def list_models(pattern: str = "*", *, task: str | None = None) -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (or containing it), sorted."""
    _load_families()
    wildcard = any(c in pattern for c in "*?[")
    names = [n for n in _MODELS if (fnmatch.fnmatch(n, pattern) if wildcard else pattern in n)]
    return sorted(n for n in names if task is None or _MODELS[n].task == task)


def model_arguments(name: str, *, input_size: Sequence[int] | None = None, num_classes: int | None = None,
                    small_input: str | bool = "auto", options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The builder arguments of ``name`` for inputs of ``input_size`` (C, H, W; clips C, T, H, W) and ``num_classes``.

    ``small_input="auto"`` picks a network's small-input form for images at most half its default
    side (28x28 for a 224x224 network); ``True``/``"yes"`` and ``False``/``"no"`` force it.
    ``options`` are the family's own arguments (``batch_norm``, ``width``, ...); an argument the
    builder does not take is refused with the list of those it does.
    """
    info = model_info(name)
    accepted = set(info.arguments)
    args: dict[str, Any] = {}
    if num_classes is not None and "num_classes" in accepted:
        args["num_classes"] = int(num_classes)
    if input_size is not None:
        size = tuple(int(v) for v in input_size)
        if len(size) not in (3, 4) or any(v < 1 for v in size):
            raise ConfigError(f"input size must be C x H x W (clips: C x T x H x W) with positive sides, got {size}")
        if len(size) != len(info.input_size):
            what = "clips, C x T x H x W" if len(info.input_size) == 4 else "images, C x H x W"
            raise ConfigError(f"{name} takes {what}; got an input size of {'x'.join(map(str, size))}")
        channels, height, width = size[0], size[-2], size[-1]
        if "frames" in accepted and len(size) == 4:
            args["frames"] = size[1]
        if "in_channels" in accepted:
            args["in_channels"] = channels
        elif channels != info.input_size[0]:
            raise ConfigError(f"{name} takes {info.input_size[0]}-channel images, not {channels}")
        if "image_size" in accepted:
            if height != width:
                raise ConfigError(f"{name} sizes its layers from a square image; got {height}x{width}")
            args["image_size"] = height
        if "small_input" in accepted:
            choice = {"yes": True, "no": False, "auto": None}.get(small_input, small_input) \
                if isinstance(small_input, str) else small_input
            if choice not in (True, False, None):
                raise ConfigError(f"small_input must be auto, yes or no, not {small_input!r}")
            args["small_input"] = height * 2 <= info.input_size[-2] if choice is None else choice
    for key, value in (options or {}).items():
        if key not in accepted:
            known = ", ".join(info.options) or "none"
            raise ConfigError(f"{name} has no option '{key}' (its options: {known})")
        args[key] = value
    return args


def create_model(name: str, *, pretrained: bool | str = False, features_only: bool = False,
                 out_indices: Sequence[int] | None = None, input_size: Sequence[int] | None = None, **kwargs: Any):
    """Build the model ``name``.

    Keyword arguments (``num_classes``, ``in_channels``, ``small_input``, family options) go to its
    builder; ``input_size=(C, H, W)`` lets :func:`model_arguments` choose the channels and the
    small-input form. ``features_only=True`` returns a :class:`~cnnlab.backbone.FeatureExtractor`
    yielding the maps of the stages in ``out_indices`` (all by default).
    """
    info = model_info(name)
    if pretrained:
        from .weights import load_pretrained

        return load_pretrained(name, pretrained, features_only=features_only, out_indices=out_indices,
                               input_size=input_size, **kwargs)
    if input_size is not None:
        standard = {k: kwargs.pop(k) for k in ("num_classes", "small_input") if k in kwargs}
        kwargs = {**model_arguments(name, input_size=input_size, num_classes=standard.get("num_classes"),
                                    small_input=standard.get("small_input", "auto")), **kwargs}
    unknown = [k for k in kwargs if k not in info.arguments]
    if unknown:
        raise ConfigError(f"{name} takes no argument '{unknown[0]}' (it takes: {', '.join(info.arguments)})")
    model = info.builder(**kwargs)
    if features_only:
        from .backbone import FeatureExtractor

        return FeatureExtractor(model, out_indices)
    if out_indices is not None:
        raise ConfigError("out_indices goes with features_only=True")
    return model
