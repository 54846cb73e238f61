"""The model contract: what every cnnlab classifier offers besides ``forward``.

Every classifier is also a backbone, with the interface timm's users know:

* ``trunk()``: the feature extractor as an ordered list of ``(module path, module)``; applying them in
  turn is ``forward_features``. Each entry is a real, registered module, so a hook on it fires.
* ``forward_features(x)``: N x C x H x W -> the last stage's map, N x C' x h x w.
* ``forward_head(x, pre_logits=False)``: that map -> N x classes, or the N x D features the last
  layer reads (``pre_logits=True``: what embeddings, CAM and transfer learning consume).
* ``feature_info``: one :class:`FeatureInfo` per stage (module path, channels, reduction = input side
  / map side), a stage being the last module at each resolution of the trunk, as in timm.
* ``create_model(name, features_only=True, out_indices=...)`` wraps a classifier in a
  :class:`FeatureExtractor` that returns the chosen stages' maps: what FCN skip layers, U-Net
  encoders, Faster R-CNN / FPN and SSD heads read.

Networks with auxiliary classifiers (GoogLeNet, Inception v3) return :class:`AuxiliaryOutputs` in
training mode; :func:`cnnlab.train.losses.auxiliary_loss` is the one place that weighs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import nn

from .errors import ConfigError


@dataclass(frozen=True)
class FeatureInfo:
    """One stage of a backbone: where its map comes from and how big it is."""

    module: str  # path of the trunk module whose output is the map ("layer2", "features.22")
    channels: int
    reduction: int  # nominal stride: input side / map side (exact for sides that are multiples of it)


class AuxiliaryOutputs(NamedTuple):
    """Training-mode output of a network with auxiliary classifiers (GoogLeNet §5, Inception v3 §8)."""

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]
    weights: tuple[float, ...]  # each auxiliary loss's weight in the total loss


def main_logits(outputs: torch.Tensor | AuxiliaryOutputs) -> torch.Tensor:
    """The main classifier's scores, whether or not auxiliary outputs came with them."""
    return outputs.logits if isinstance(outputs, AuxiliaryOutputs) else outputs


class Stages:
    """Collects ``feature_info`` while a network is built: record every trunk module with its output
    channels and stride; each resolution's last module becomes a stage."""

    def __init__(self) -> None:
        self._entries: list[tuple[str, int, int]] = []
        self.reduction = 1

    def add(self, path: str, channels: int, stride: int = 1) -> None:
        self.reduction *= stride
        self._entries.append((path, channels, self.reduction))

    def info(self) -> list[FeatureInfo]:
        last: dict[int, tuple[str, int]] = {}
        for path, channels, reduction in self._entries:
            last[reduction] = (path, channels)
        return [FeatureInfo(path, channels, reduction) for reduction, (path, channels) in sorted(last.items())]


class Backbone(nn.Module):
    """Base class of every cnnlab classifier.

    Subclasses build a ``features`` trunk (or override :meth:`trunk`), set ``feature_info`` and name
    their head modules in ``head_modules``; the default :meth:`forward_head` splits ``classifier``
    before its last layer.
    """

    feature_info: list[FeatureInfo] = []
    head_modules: tuple[str, ...] = ("classifier",)  # attributes that only the head uses

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [(f"features.{name}", module) for name, module in self.features.named_children()]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for _, layer in self.trunk():
            x = layer(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        *body, last = self.classifier
        for layer in body:
            x = layer(x)
        return x if pre_logits else last(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


class FeatureExtractor(nn.Module):
    """A backbone's trunk, returning the maps of the stages in ``out_indices`` (a list, shallow first).

    The head and every trunk module after the deepest chosen stage are removed, so only the weights
    that are used remain; the others keep their names (``model.<path>``), so a classifier's state
    dict loads with :func:`load_backbone_state`.
    """

    def __init__(self, model: Backbone, out_indices: Sequence[int] | None = None):
        super().__init__()
        info = list(model.feature_info)
        if not info:
            raise ConfigError(f"{type(model).__name__} has no convolutional stages to extract features from")
        indices = list(range(len(info))) if out_indices is None else [int(i) for i in out_indices]
        for i in indices:
            if not -len(info) <= i < len(info):
                raise ConfigError(f"out_indices: stage {i} does not exist; {type(model).__name__} has "
                                  f"{len(info)} stages (0-{len(info) - 1})")
        indices = sorted({i % len(info) for i in indices})
        self.feature_info = [info[i] for i in indices]
        wanted = {f.module for f in self.feature_info}
        trunk = model.trunk()
        paths = [path for path, _ in trunk]
        missing = wanted - set(paths)
        if missing:
            raise ConfigError(f"feature_info names {sorted(missing)}, which are not trunk modules")
        last = max(paths.index(p) for p in wanted)
        for path, _ in trunk[last + 1:]:
            _set_submodule(model, path, nn.Identity())
        for name in model.head_modules:
            if getattr(model, name, None) is not None:
                setattr(model, name, None)
        self.model = model
        self._paths = paths[:last + 1]
        self._wanted = wanted

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for path, layer in self.model.trunk()[:len(self._paths)]:
            x = layer(x)
            if path in self._wanted:
                maps.append(x)
        return maps

    @property
    def channels(self) -> list[int]:
        return [f.channels for f in self.feature_info]

    @property
    def reductions(self) -> list[int]:
        return [f.reduction for f in self.feature_info]


def load_backbone_state(extractor: FeatureExtractor, state: dict[str, torch.Tensor]) -> list[str]:
    """Load a classifier's state dict into a feature extractor's trunk; returns the keys it used.

    The classifier's head and the trunk modules the extractor dropped are ignored; every trunk weight
    the extractor keeps must be present with the same shape.
    """
    own = extractor.model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ConfigError(f"the weights lack {len(missing)} tensors of the backbone (e.g. {missing[0]})")
    wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise ConfigError(f"the weights do not fit the backbone: {k} is {tuple(state[k].shape)}, "
                          f"the backbone wants {tuple(own[k].shape)}")
    extractor.model.load_state_dict({k: state[k] for k in own}, strict=True)
    return list(own)
