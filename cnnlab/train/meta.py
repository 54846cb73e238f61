"""Typed checkpoint metadata: everything needed to rebuild a model and use it, checked once on load.

``meta.json`` in a run folder is a flat JSON object (the layout every cnnlab version has written)::

    format, version, stamp          what the file is
    task                            classify | segment | detect | ... (absent in old files: classify)
    arch, arch_kwargs               the registered model name and its builder's arguments
    class_names, num_classes        the classes, in output order
    input_size, mean, std           C x H x W the model takes (C x T x H x W for clips), per-channel normalisation
    invert_photos                   flip grey levels of photographs (dark-on-light) before predicting
    dataset, config, epoch, metrics where the model comes from and how well it did
    anything else                   kept in ``extra`` (class_roots, taxonomy, a task's own fields)

:meth:`CheckpointMeta.from_dict` refuses a file whose fields are missing, of the wrong type or out of
range with one line naming the field, before anything is allocated; :class:`Preprocessing` is the
one place that turns an image into the model's input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..errors import CheckpointError

FORMAT = "cnnlab-checkpoint"
VERSION = 1
MAX_SIDE = 16384  # larger inputs are refused as implausible, before any allocation
KNOWN_KEYS = ("format", "version", "stamp", "task", "arch", "arch_kwargs", "class_names", "num_classes",
              "input_size", "mean", "std", "invert_photos", "input_stats", "dataset", "config", "epoch", "metrics",
              "torch")
DARK, LIGHT = 80.0, 170.0  # border grey levels (0-255) below which a background is dark, above which light
FAR = 4.0  # an image whose mean brightness is this many training standard deviations away is unusual


@dataclass(frozen=True)
class InputStats:
    """What the training images look like, to notice an input that does not: the mean grey level of
    their one-pixel border (the background), and the mean and spread of their per-image brightness."""

    border: float  # 0-255
    brightness_mean: float  # 0-255, the mean over images of each image's mean
    brightness_std: float

    @classmethod
    def of(cls, images: torch.Tensor) -> "InputStats":
        """Of uint8 N x C x H x W images (at most 10,000, spread evenly over them, are read)."""
        from ..data.lazy import sample_positions

        x = images[sample_positions(len(images), 10_000)].float()
        border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], -1).mean()
        per_image = x.mean((1, 2, 3))
        return cls(round(float(border), 3), round(float(per_image.mean()), 3),
                   round(max(float(per_image.std()) if len(per_image) > 1 else 0.0, 1.0), 3))

    def to_dict(self) -> dict[str, float]:
        return {"border": self.border, "brightness_mean": self.brightness_mean, "brightness_std": self.brightness_std}


@dataclass
class InputView:
    """An image as the model will see it, with what was done to it and what looks unusual about it."""

    tensor: torch.Tensor  # C x H x W uint8
    inverted: bool
    notes: list[str]


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: resized and cropped to ``input_size`` (C x H x W),
    grey or colour, optionally inverted, scaled to [0, 1] and normalised by ``mean`` / ``std``."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    invert: bool = False
    stats: InputStats | None = None  # of the training images, where the checkpoint recorded them

    def view(self, img, *, invert: bool | None = None) -> InputView:
        """A Pillow image as the model will see it. With ``invert`` left to the checkpoint and training
        images of light items on a dark background (MNIST, Fashion-MNIST), a photograph on a light
        background is inverted, and said so; an image unlike the training images gets a note."""
        from ..data.images import image_to_uint8

        fitted = image_to_uint8(img, self.input_size, invert=False)
        notes: list[str] = []
        chosen = invert if invert is not None else self.invert
        if invert is None and not self.invert and self.stats is not None:
            border = _border(fitted)
            if self.stats.border < DARK and border > LIGHT:
                chosen = True
                notes.append(f"inverted the grey levels: the image has a light background ({border:.0f}/255) and "
                             f"the model was trained on light items on a dark one ({self.stats.border:.0f}/255); "
                             "pass invert=false to keep it as it is")
        tensor = 255 - fitted if chosen else fitted
        if self.stats is not None:
            border = _border(tensor)
            if (self.stats.border < DARK) != (border < DARK) and not notes:
                notes.append(f"the image's background ({border:.0f}/255) is unlike the training images' "
                             f"({self.stats.border:.0f}/255): the prediction may be meaningless")
            z = (float(tensor.float().mean()) - self.stats.brightness_mean) / self.stats.brightness_std
            if abs(z) > FAR:
                notes.append(f"the image is far from the training images: its brightness is {abs(z):.1f} standard "
                             f"deviations {'above' if z > 0 else 'below'} theirs, so the prediction may be meaningless")
        return InputView(tensor, bool(chosen), notes)

    def image(self, img, *, invert: bool | None = None) -> torch.Tensor:
        """A Pillow image -> C x H x W uint8 tensor: what the model sees, before normalisation."""
        return self.view(img, invert=invert).tensor

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 N x C x H x W -> float32 ``(x / 255 - mean) / std`` on the batch's device."""
        from ..data.transforms import normalize

        return normalize(batch, self.mean, self.std)

    def __call__(self, img, *, invert: bool | None = None) -> torch.Tensor:
        """A Pillow image -> the 1 x C x H x W float tensor the model takes."""
        return self.normalize(self.image(img, invert=invert)[None])


@dataclass
class CheckpointMeta:
    """The typed contents of ``meta.json``."""

    arch: str
    arch_kwargs: dict[str, Any]
    class_names: list[str]
    preprocessing: Preprocessing
    task: str = "classify"
    dataset: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    torch_version: str = ""
    stamp: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.preprocessing.input_size

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        p = self.preprocessing
        return {"format": FORMAT, "version": VERSION, "stamp": self.stamp, **self.extra, "task": self.task,
                "arch": self.arch, "arch_kwargs": dict(self.arch_kwargs), "class_names": list(self.class_names),
                "num_classes": self.num_classes, "input_size": list(p.input_size), "mean": list(p.mean),
                "std": list(p.std), "invert_photos": p.invert,
                **({"input_stats": p.stats.to_dict()} if p.stats is not None else {}),
                "dataset": self.dataset, "epoch": self.epoch,
                "metrics": self.metrics, "config": self.config, "torch": self.torch_version or torch.__version__}

    @classmethod
    def from_dict(cls, data: Any, source: str = "meta.json") -> "CheckpointMeta":
        """Check every field of a parsed ``meta.json``; a problem raises one :class:`CheckpointError` line."""
        def bad(what: str) -> CheckpointError:
            return CheckpointError(f"{source}: {what}")

        if not isinstance(data, dict):
            raise bad("is not a JSON object")
        if data.get("format") != FORMAT:
            raise bad(f"is not cnnlab checkpoint metadata (format {data.get('format')!r})")
        arch = _field(data, "arch", str, bad)
        arch_kwargs = _field(data, "arch_kwargs", dict, bad, default={})
        for key, value in arch_kwargs.items():
            if not isinstance(value, (bool, int, float, str)) and value is not None:
                raise bad(f"arch_kwargs.{key} must be a number, a string or a boolean, not {type(value).__name__}")
        size = _field(data, "input_size", list, bad)
        if len(size) not in (3, 4) or not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
            raise bad(f"input_size must be three integers C, H, W (four, C, T, H, W, for clips), not {size!r}")
        if not (1 <= size[0] <= 64 and all(1 <= v <= MAX_SIDE for v in size[1:])):
            raise bad(f"input_size {size} is out of range (1-64 channels, sides 1-{MAX_SIDE})")
        channels = size[0]
        mean = _floats(data, "mean", channels, bad, default=[0.0] * channels)
        std = _floats(data, "std", channels, bad, default=[1.0] * channels)
        if any(s <= 0 for s in std):
            raise bad(f"std must be positive, got {std}")
        names = data.get("class_names")
        if names is None:
            count = _field(data, "num_classes", int, bad)
            names = [str(i) for i in range(count)]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise bad("class_names must be a list of strings")
        if "num_classes" in data and data["num_classes"] != len(names):
            raise bad(f"num_classes is {data['num_classes']} but class_names has {len(names)} names")
        epoch = _field(data, "epoch", int, bad, default=0)
        if epoch < 0:
            raise bad(f"epoch must not be negative, got {epoch}")
        invert = _field(data, "invert_photos", bool, bad, default=False)
        return cls(
            arch=arch, arch_kwargs=arch_kwargs, class_names=names,
            preprocessing=Preprocessing(tuple(size), tuple(mean), tuple(std), invert, _stats(data, bad)),
            task=_field(data, "task", str, bad, default="classify"),
            dataset=_field(data, "dataset", str, bad, default="") or "",
            config=_field(data, "config", dict, bad, default={}),
            epoch=epoch, metrics=_field(data, "metrics", dict, bad, default={}),
            torch_version=str(data.get("torch", "")), stamp=str(data.get("stamp", "")),
            extra={k: v for k, v in data.items() if k not in KNOWN_KEYS},
        )


def _border(image: torch.Tensor) -> float:
    """Mean grey level of the one-pixel border of a C x H x W image."""
    x = image.float()
    return float(torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], -1).mean())


def _stats(data: dict, bad) -> InputStats | None:
    value = data.get("input_stats")
    if value is None:
        return None
    keys = ("border", "brightness_mean", "brightness_std")
    if not isinstance(value, dict) or not all(isinstance(value.get(k), (int, float)) and not isinstance(value.get(k), bool)
                                              and math.isfinite(value[k]) for k in keys):
        raise bad(f"input_stats must hold the numbers {', '.join(keys)}, not {value!r}")
    if value["brightness_std"] <= 0:
        raise bad("input_stats.brightness_std must be positive")
    return InputStats(*(float(value[k]) for k in keys))


def _field(data: dict, key: str, kind: type, bad, *, default: Any = ...) -> Any:
    if key not in data or data[key] is None:
        if default is ...:
            raise bad(f"lacks '{key}'")
        return default
    value = data[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise bad(f"'{key}' must be {'an' if kind is int else 'a'} {kind.__name__}, not {type(value).__name__}")
    return value


def _floats(data: dict, key: str, count: int, bad, *, default: Sequence[float]) -> list[float]:
    value = _field(data, key, list, bad, default=list(default))
    if len(value) != count or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and math.isfinite(v) for v in value):
        raise bad(f"'{key}' must be {count} finite numbers (one per input channel), not {value!r}")
    return [float(v) for v in value]
