"""MobileNetV2 (Sandler et al., CVPR 2018, "Inverted residuals and linear bottlenecks").

Table 2: a 3x3/2 conv with 32 filters, then bottleneck rows (t, c, n, s) - expansion t, output
channels c, n repeats, stride s of the first - then a 1x1 conv to 1280, global pooling and FC.
Each inverted residual (Fig. 3b, Table 1) is 1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1
linear projection (no activation: the "linear bottleneck"), with a shortcut when stride is 1 and the
widths agree. Names follow torchvision (``features.1.conv.0.0``, ``classifier.1``); 3,504,872 parameters.

Small-input form (28x28): the first conv and the first stride-2 row (c = 24) use stride 1, so the
grids go 28 -> 28 -> 14 -> 7 -> 4 instead of 224 -> 112 -> ... -> 7.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone, Stages
from ..layers.conv import ConvBNAct
from ..registry import register_model
from ..specs.light import MOBILENET_V2, MOBILENET_V2_LAST, MOBILENET_V2_STEM


def conv_bn_relu6(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                  groups: int = 1) -> ConvBNAct:
    """conv -> BN -> ReLU6, children indexed 0/1/2 as torchvision's ``Conv2dNormActivation``."""
    return ConvBNAct(in_channels, out_channels, kernel, stride, groups=groups, act=nn.ReLU6, indexed=True)


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, hidden, 1)] if expansion != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),  # depthwise: one filter per channel
                   nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]  # linear bottleneck
        self.conv = nn.Sequential(*layers)
        self.use_shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_shortcut else self.conv(x)


class PoolDropout(nn.Dropout):
    """Global average pooling + flatten, then dropout: keeps torchvision's ``classifier.1`` index for the FC."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1) if x.ndim == 4 else x)


class MobileNetV2(Backbone):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, MOBILENET_V2_STEM, 3, 1 if small_input else 2)]
        stages = Stages()
        stages.add("features.0", MOBILENET_V2_STEM, 1 if small_input else 2)
        channels = MOBILENET_V2_STEM
        for t, c, n, s in MOBILENET_V2:
            if small_input and c == 24:
                s = 1
            for i in range(n):
                layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                stages.add(f"features.{len(layers) - 1}", c, s if i == 0 else 1)
                channels = c
        layers.append(conv_bn_relu6(channels, MOBILENET_V2_LAST, 1))
        stages.add(f"features.{len(layers) - 1}", MOBILENET_V2_LAST)
        self.features = nn.Sequential(*layers)  # N x 1280 x 7 x 7 at 224
        self.feature_info = stages.info()
        self.classifier = nn.Sequential(PoolDropout(dropout), nn.Linear(MOBILENET_V2_LAST, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.weight.device.type != "meta":
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear) and m.weight.device.type != "meta":
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)


@register_model("mobilenet_v2", family="MobileNet", paper="Sandler et al., CVPR 2018", year=2018,
                input_size=(3, 224, 224), top1=71.878, top5=90.286)
def mobilenet_v2(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> MobileNetV2:
    """MobileNetV2 (width 1.0) from Table 2: inverted residuals with linear bottlenecks."""
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, small_input=small_input)
