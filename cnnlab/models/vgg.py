"""VGG (Simonyan & Zisserman, ICLR 2015): the six columns of Table 1, each also with batch norm.

The network is read off a column list (see :mod:`cnnlab.specs.vgg`): 3x3 convolutions with stride 1
and padding 1 keep the size, 2x2 max-pools halve it, and three FC layers (4096, 4096, classes) with
dropout 0.5 finish it. Parameter names follow torchvision (``features.N``, ``classifier.N``) so its
weight files load into ``vgg11``/``vgg13``/``vgg16``/``vgg19`` and their ``_bn`` forms.

``small_input=True`` (28x28 greyscale) keeps the column's depth but divides every width by 4 and
keeps only the first three max-pools (28 -> 14 -> 7 -> 3), with a 512-unit head.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo, Stages
from ..layers.lrn import PaperLRN
from ..registry import register_model
from ..specs.vgg import VGG_COLUMNS


def make_features(column: list, in_channels: int, batch_norm: bool, width_divisor: int = 1,
                  max_pools: int | None = None) -> tuple[nn.Sequential, int, list[FeatureInfo]]:
    """Layers of one Table 1 column; returns them, the final number of channels and the stages."""
    layers: list[nn.Module] = []
    stages = Stages()
    channels, pools = in_channels, 0

    def add(layer: nn.Module, stride: int = 1) -> None:
        stages.add(f"features.{len(layers)}", channels, stride)
        layers.append(layer)

    for item in column:
        if item == "M":
            pools += 1
            if max_pools is None or pools <= max_pools:
                add(nn.MaxPool2d(2, 2), 2)
            continue
        if item == "LRN":
            add(PaperLRN())
            continue
        kernel, filters = (1, int(item.split("-")[1])) if isinstance(item, str) else (3, item)
        filters = max(16, filters // width_divisor)
        layers.append(nn.Conv2d(channels, filters, kernel, padding=kernel // 2))
        channels = filters
        if batch_norm:
            layers.append(nn.BatchNorm2d(filters))
        add(nn.ReLU(inplace=True))
    return nn.Sequential(*layers), channels, stages.info()


class VGG(Backbone):
    def __init__(self, column: str, *, num_classes: int = 1000, in_channels: int = 3, batch_norm: bool = False,
                 small_input: bool = False, dropout: float = 0.5):
        super().__init__()
        spec = VGG_COLUMNS[column]
        if small_input:
            self.features, channels, self.feature_info = make_features(spec, in_channels, batch_norm,
                                                                       width_divisor=4, max_pools=3)
            pooled, hidden = 3, 512  # N x C x 3 x 3 after three pools of 28x28
        else:
            self.features, channels, self.feature_info = make_features(spec, in_channels, batch_norm)
            pooled, hidden = 7, 4096  # N x 512 x 7 x 7 at 224x224
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Linear(channels * pooled * pooled, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():  # §3.1: weights from N(0, 0.01) would need staged training; use He init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    head_modules = ("avgpool", "classifier")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return super().forward_head(torch.flatten(self.avgpool(x), 1), pre_logits)


# name -> (Table 1 column, published top-1/top-5 of the plain and the _bn form (torchvision), depth)
_VARIANTS = {
    "vgg11": ("A", (69.020, 88.628), (70.370, 89.810)),
    "vgg11_lrn": ("A-LRN", (None, None), (None, None)),
    "vgg13": ("B", (69.928, 89.246), (71.586, 90.374)),
    "vgg16_c": ("C", (None, None), (None, None)),
    "vgg16": ("D", (71.592, 90.382), (73.360, 91.516)),
    "vgg19": ("E", (72.376, 90.876), (74.218, 91.842)),
}


def _register(name: str, column: str, plain_acc, bn_acc) -> None:
    for suffix, batch_norm, acc in (("", False, plain_acc), ("_bn", True, bn_acc)):
        def build(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                  _column=column, _bn=batch_norm) -> VGG:
            return VGG(_column, num_classes=num_classes, in_channels=in_channels, batch_norm=_bn,
                       small_input=small_input)

        build.__doc__ = f"VGG column {column} of Table 1{' with batch norm' if batch_norm else ''}."
        register_model(name + suffix, family="VGG", paper="Simonyan & Zisserman, ICLR 2015", year=2014,
                       input_size=(3, 224, 224), top1=acc[0], top5=acc[1])(build)


for _name, (_column, _plain, _bn_acc) in _VARIANTS.items():
    _register(_name, _column, _plain, _bn_acc)
