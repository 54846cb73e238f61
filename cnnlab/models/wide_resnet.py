"""Wide residual networks (Zagoruyko & Komodakis, BMVC 2016, "Wide residual networks").

* ``wrn28_10``: WRN-d-k of Table 1 for CIFAR with d = 28, k = 10: a 3x3 conv with 16 filters, three
  groups of (d - 4) / 6 = 4 pre-activation basic blocks (BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3,
  §2) of 16k, 32k, 64k filters on 32, 16, 8 maps, a 1x1 projection where the width or grid changes,
  then BN-ReLU, global pooling and FC. 36.5M parameters (Table 4).
* ``wide_resnet50_2``: ResNet-50 with bottlenecks twice as wide inside (the 3x3 has 128..1024
  filters, the outputs stay 256..2048), the ImageNet network of §4 (WRN-50-2-bottleneck); torchvision's
  names, 68,883,240 parameters.

Small-input forms: WRN-28-10 suits 28x28 as it is (28 -> 14 -> 7); wide_resnet50_2 uses ResNet's
small stem (3x3 stride-1 first conv, then the max-pool).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo
from ..layers.residual import conv3x3, projection
from ..registry import register_model
from ..specs.resnet import BOTTLENECK_EXPANSION, IMAGENET_STAGES, STAGE_WIDTHS
from ..specs.zoo import WRN_CIFAR_STEM, WRN_CIFAR_WIDTHS
from .resnet import ResNet, _init_resnet


class PreActBlock(nn.Module):
    """§2, Fig. 1(d): BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, added to the (projected) input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
                         if stride != 1 or in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv2(self.dropout(torch.relu(self.bn2(self.conv1(pre)))))
        # the projection reads the pre-activated input, as the block's own first conv does
        return out + (x if self.shortcut is None else self.shortcut(pre))


class CifarWideResNet(Backbone):
    def __init__(self, *, depth: int, widen: int, num_classes: int = 10, in_channels: int = 3,
                 dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a WRN has 6n + 4 layers, not {depth}")
        n = (depth - 4) // 6
        layers: list[tuple[str, nn.Module]] = [("conv1", conv3x3(in_channels, WRN_CIFAR_STEM))]  # N x 16 x 32 x 32
        channels = WRN_CIFAR_STEM
        self.feature_info = []
        for i, base in enumerate(WRN_CIFAR_WIDTHS):  # conv2, conv3, conv4 of Table 1: 32 -> 16 -> 8
            width = base * widen
            blocks = [PreActBlock(channels if j == 0 else width, width, 2 if i > 0 and j == 0 else 1, dropout)
                      for j in range(n)]
            layers.append((f"group{i + 1}", nn.Sequential(*blocks)))
            channels = width
            if i < 2:
                self.feature_info.append(FeatureInfo(f"features.group{i + 1}", width, 2 ** i))
        layers += [("bn", nn.BatchNorm2d(channels)), ("relu", nn.ReLU(inplace=True))]  # the last pre-activation
        self.feature_info.append(FeatureInfo("features.relu", channels, 4))
        self.features = nn.Sequential(OrderedDict(layers))  # N x 640 x 8 x 8 at 32x32
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        _init_resnet(self)


class WideBottleneck(nn.Module):
    """Fig. 5 (right) of ResNet with the inner 1x1 and 3x3 ``widen`` times wider; output stays 4 x width."""

    expansion = BOTTLENECK_EXPANSION

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None,
                 widen: int = 2):
        super().__init__()
        inner, out_channels = width * widen, width * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(in_channels, inner, 1, bias=False), nn.BatchNorm2d(inner)
        self.conv2, self.bn2 = conv3x3(inner, inner, stride), nn.BatchNorm2d(inner)
        self.conv3, self.bn3 = nn.Conv2d(inner, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class WideResNet(ResNet):
    """ResNet-50's layout (torchvision names) with :class:`WideBottleneck` blocks."""

    def __init__(self, *, layers: tuple[int, ...], widen: int, num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False):
        super().__init__(block="bottleneck", layers=layers, num_classes=num_classes, in_channels=in_channels,
                         small_input=small_input)
        channels = 64
        for i, (width, count) in enumerate(zip(STAGE_WIDTHS, layers)):  # rebuild the stages with wide blocks
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(count):
                out = width * BOTTLENECK_EXPANSION
                down = projection(channels, out, stride) if j == 0 and (stride != 1 or channels != out) else None
                stage.append(WideBottleneck(channels, width, stride if j == 0 else 1, down, widen))
                channels = out
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        _init_resnet(self)


_PAPER = "Zagoruyko & Komodakis, BMVC 2016"


@register_model("wrn28_10", family="Wide ResNet", paper=_PAPER, year=2016, input_size=(3, 32, 32), num_classes=10)
def wrn28_10(*, num_classes: int = 10, in_channels: int = 3, small_input: bool = False,
             dropout: float = 0.0) -> CifarWideResNet:
    """WRN-28-10 of Table 1 for CIFAR: 4 pre-activation blocks per group, 160/320/640 filters."""
    # small_input: the CIFAR stack already suits 28x28 (grids 28 -> 14 -> 7).
    return CifarWideResNet(depth=28, widen=10, num_classes=num_classes, in_channels=in_channels, dropout=dropout)


@register_model("wide_resnet50_2", family="Wide ResNet", paper=_PAPER, year=2016, input_size=(3, 224, 224),
                top1=78.468, top5=94.086)
def wide_resnet50_2(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> WideResNet:
    """WRN-50-2-bottleneck: ResNet-50 with 2x wider 3x3 convolutions (torchvision's names)."""
    return WideResNet(layers=IMAGENET_STAGES["resnet50"][1], widen=2, num_classes=num_classes,
                      in_channels=in_channels, small_input=small_input)
