"""MobileNet v3 (Howard et al., ICCV 2019, "Searching for MobileNetV3").

Table 1 (large) and Table 2 (small): a 3x3/2 conv with 16 filters (h-swish), bneck rows
(kernel, expansion, output, SE, nonlinearity, stride), a 1x1 conv, global pooling, then a 1x1 "FC"
without BN (h-swish) and the classifier. Each bneck is MobileNet v2's inverted residual: 1x1 expand
(skipped when the expansion equals the input), kxk depthwise, squeeze-excite (§5.3: a quarter of the
expansion channels, hard sigmoid gate), 1x1 linear projection, shortcut when stride 1 and widths agree.
BN eps 1e-3. Names follow torchvision (``features.4.block.2.fc1``, ``classifier.3``): 5,483,032 (large)
and 2,542,856 (small) parameters for 1,000 classes.

Small-input form (28x28): the stem and the first stride-2 bneck use stride 1, so the grids go
28 -> 28 -> 14 -> 7 -> 4 (large) instead of 224 -> 112 -> 56 -> 28 -> 14 -> 7.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone, Stages
from ..layers.conv import ConvBNAct
from ..layers.mbconv import ChannelGate, init_mobile, make_divisible
from ..registry import register_model
from ..specs.zoo import MOBILENET_V3_ENDS, MOBILENET_V3_LARGE, MOBILENET_V3_SMALL

ACTIVATIONS = {"RE": nn.ReLU, "HS": nn.Hardswish}
EPS = 1e-3


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
            act: type[nn.Module] | None = None) -> ConvBNAct:
    return ConvBNAct(in_channels, out_channels, kernel, stride, groups=groups, act=act, eps=EPS, indexed=True)


class Bneck(nn.Module):
    """One row of Table 1: N x in x H x W -> N x out x H/s x W/s."""

    def __init__(self, in_channels: int, kernel: int, expansion: int, out_channels: int, se: bool, act: str,
                 stride: int):
        super().__init__()
        nonlinearity = ACTIVATIONS[act]
        layers: list[nn.Module] = []
        if expansion != in_channels:  # 1x1 expand
            layers.append(conv_bn(in_channels, expansion, 1, act=nonlinearity))
        layers.append(conv_bn(expansion, expansion, kernel, stride, groups=expansion, act=nonlinearity))  # depthwise
        if se:  # §5.3: squeeze to a quarter of the expansion, hard-sigmoid gate
            layers.append(ChannelGate(expansion, make_divisible(expansion // 4), nn.ReLU, nn.Hardsigmoid))
        layers.append(conv_bn(expansion, out_channels, 1))  # linear projection
        self.block = nn.Sequential(*layers)
        self.use_shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_shortcut else self.block(x)


class MobileNetV3(Backbone):
    def __init__(self, *, size: str, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 dropout: float = 0.2):
        super().__init__()
        rows = MOBILENET_V3_LARGE if size == "large" else MOBILENET_V3_SMALL
        stem, last_conv, last_fc = MOBILENET_V3_ENDS[size]
        stages = Stages()
        stride = 1 if small_input else 2
        layers: list[nn.Module] = [conv_bn(in_channels, stem, 3, stride, act=nn.Hardswish)]
        stages.add("features.0", stem, stride)
        channels, first_downsample = stem, small_input
        for kernel, expansion, out, se, act, s in rows:
            if s == 2 and first_downsample:  # small form: keep the first stride-2 row at full resolution
                s, first_downsample = 1, False
            layers.append(Bneck(channels, kernel, expansion, out, se, act, s))
            stages.add(f"features.{len(layers) - 1}", out, s)
            channels = out
        layers.append(conv_bn(channels, last_conv, 1, act=nn.Hardswish))
        stages.add(f"features.{len(layers) - 1}", last_conv)
        self.features = nn.Sequential(*layers)  # N x 960 x 7 x 7 at 224 (large)
        self.feature_info = stages.info()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # the paper's last two 1x1 convs on a 1x1 map are fully connected layers
        self.classifier = nn.Sequential(nn.Linear(last_conv, last_fc), nn.Hardswish(inplace=True),
                                        nn.Dropout(dropout), nn.Linear(last_fc, num_classes))
        init_mobile(self)

    head_modules = ("avgpool", "classifier")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return super().forward_head(torch.flatten(self.avgpool(x), 1), pre_logits)


_PAPER = "Howard et al., ICCV 2019"


@register_model("mobilenet_v3_large", family="MobileNet", paper=_PAPER, year=2019, input_size=(3, 224, 224),
                top1=74.042, top5=91.34)
def mobilenet_v3_large(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> MobileNetV3:
    """MobileNet v3-Large of Table 1: NAS-found bnecks with squeeze-excite and h-swish."""
    return MobileNetV3(size="large", num_classes=num_classes, in_channels=in_channels, small_input=small_input)


@register_model("mobilenet_v3_small", family="MobileNet", paper=_PAPER, year=2019, input_size=(3, 224, 224),
                top1=67.668, top5=87.402)
def mobilenet_v3_small(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> MobileNetV3:
    """MobileNet v3-Small of Table 2, for low-resource use."""
    return MobileNetV3(size="small", num_classes=num_classes, in_channels=in_channels, small_input=small_input)
