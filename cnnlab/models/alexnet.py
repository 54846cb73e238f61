"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) and ZFNet (Zeiler & Fergus, ECCV 2014).

Three forms of AlexNet:

* ``alexnet_original`` — the paper as the decks dissect it: 227x227 input, conv1 11x11/4 x96, ReLU,
  local response normalisation (k=2, n=5, alpha=1e-4, beta=0.75) after conv1 and conv2, overlapping
  3x3/2 max-pooling, the two GPU towers as grouped convolutions where the paper splits them (conv2,
  conv4, conv5 use ``groups=2``), dropout 0.5 and FC 4096 -> 4096 -> classes. 60,965,224 parameters.
* ``alexnet`` — the single-tower variant of torchvision (64/192/384/256/256 filters, no LRN), with its
  parameter names, so its weight files load: 61,100,840 parameters.
* ``small_input=True`` — for 28x28 greyscale: 3x3 stride-1 first layer, half the widths, 2x2 pools
  before the paper's overlapping 3x3/2 one; the same 5 conv + 3 FC design with dropout.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo, Stages
from ..layers.lrn import PaperLRN
from ..registry import register_model
from ..specs.alexnet import ALEXNET_CONVS, ALEXNET_FC, ZFNET_CONVS


class PaperAlexNet(Backbone):
    """AlexNet / ZFNet built from a conv table: conv -> ReLU [-> LRN -> pool] ... -> FC head."""

    def __init__(self, convs: list[tuple], *, num_classes: int, in_channels: int, fc: list[int],
                 pool_after: tuple[str, ...] = ("conv1", "conv2", "conv5"), lrn_after: tuple[str, ...] = ("conv1", "conv2"),
                 ceil_pools: bool = False, dropout: float = 0.5, image_size: int = 227):
        super().__init__()
        layers: dict[str, nn.Module] = {}
        stages = Stages()
        channels, side = in_channels, image_size
        for name, filters, kernel, stride, padding, groups in convs:
            layers[name] = nn.Conv2d(channels, filters, kernel, stride, padding, groups=groups)
            layers[f"relu{name[-1]}"] = nn.ReLU(inplace=True)
            stages.add(f"features.{name}", filters, stride)
            stages.add(f"features.relu{name[-1]}", filters)
            side = (side + 2 * padding - kernel) // stride + 1
            if name in lrn_after:
                layers[f"norm{name[-1]}"] = PaperLRN()
                stages.add(f"features.norm{name[-1]}", filters)
            if name in pool_after:
                # Overlapping pooling (§3.4): 3x3 windows with stride 2.
                layers[f"pool{name[-1]}"] = nn.MaxPool2d(3, 2, ceil_mode=ceil_pools)
                stages.add(f"features.pool{name[-1]}", filters, 2)
                side = -(-(side - 3) // 2) + 1 if ceil_pools else (side - 3) // 2 + 1
            channels = filters
        self.features = nn.Sequential(OrderedDict(layers))  # N x 256 x 6 x 6 at 227x227
        self.feature_info = stages.info()
        head: list[nn.Module] = [nn.Flatten()]
        width = channels * side * side
        for units in fc:
            head += [nn.Dropout(dropout), nn.Linear(width, units), nn.ReLU(inplace=True)]
            width = units
        head.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*head)


class AlexNet(Backbone):
    """Single-tower AlexNet with torchvision's layout and parameter names (``features.0`` ...)."""

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 dropout: float = 0.5):
        super().__init__()
        if small_input:
            # 28x28: 3x3 stride 1 instead of 11x11 stride 4; widths halved; 2x2 pools then one overlapping.
            w = (32, 96, 192, 128, 128)
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, w[0], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 14x14
                nn.Conv2d(w[0], w[1], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 7x7
                nn.Conv2d(w[1], w[2], 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(w[2], w[3], 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(w[3], w[4], 3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2),  # N x 128 x 3 x 3
            )
            pooled, hidden = 3, 512
        else:
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True),  # 55x55
                nn.MaxPool2d(3, 2),  # 27x27
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),  # 13x13
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2),  # N x 256 x 6 x 6
            )
            pooled, hidden = 6, 4096
        # conv1..conv5 activations and the last pool; the small form starts at stride 1, the paper's at 4.
        first = 1 if small_input else 4
        self.feature_info = [FeatureInfo(f"features.{i}", self.features[i - 1].out_channels, first * r)
                             for i, r in ((1, 1), (4, 2), (11, 4))] + [
                             FeatureInfo("features.12", self.features[10].out_channels, first * 8)]
        channels = self.features[-3].out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(channels * pooled * pooled, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    head_modules = ("avgpool", "classifier")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return super().forward_head(torch.flatten(self.avgpool(x), 1), pre_logits)


@register_model("alexnet_original", family="AlexNet", paper="Krizhevsky et al., NIPS 2012", year=2012,
                input_size=(3, 227, 227), top1=59.3, top5=81.8)
def alexnet_original(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    """AlexNet as in the paper: two towers as grouped convolutions, LRN, overlapping pooling."""
    if small_input:
        return AlexNet(num_classes=num_classes, in_channels=in_channels, small_input=True)
    return PaperAlexNet(ALEXNET_CONVS, num_classes=num_classes, in_channels=in_channels, fc=ALEXNET_FC)


@register_model("alexnet", family="AlexNet", paper="Krizhevsky 2014 (one weird trick), torchvision layout",
                year=2012, input_size=(3, 224, 224), top1=56.522, top5=79.066)
def alexnet(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> AlexNet:
    """Single-tower AlexNet with torchvision's parameter names."""
    return AlexNet(num_classes=num_classes, in_channels=in_channels, small_input=small_input)


@register_model("zfnet", family="ZFNet", paper="Zeiler & Fergus, ECCV 2014", year=2013, input_size=(3, 224, 224),
                top1=None, top5=83.5)
def zfnet(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    """ZFNet: AlexNet with a 7x7/2 first layer and conv3/4/5 widened to 512/1024/512."""
    if small_input:
        return AlexNet(num_classes=num_classes, in_channels=in_channels, small_input=True)
    # LRN-style contrast normalisation after conv1/conv2 as in AlexNet; pools rounded up (55 -> 26 -> 13 -> 6).
    return PaperAlexNet(ZFNET_CONVS, num_classes=num_classes, in_channels=in_channels, fc=ALEXNET_FC,
                        ceil_pools=True, image_size=224)
