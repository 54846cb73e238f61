"""MobileNet v1 (Howard et al. 2017, "MobileNets: efficient convolutional neural networks for mobile vision").

Table 1: a full 3x3/2 conv with 32 filters, then 13 depthwise-separable layers - a 3x3 depthwise
conv (one filter per channel, Fig. 2b) and a 1x1 pointwise conv (Fig. 2c), each followed by BN and
ReLU (Fig. 3) - global average pooling and FC. Factorising a DxD conv this way costs
1/N + 1/D^2 of the multiply-adds (Eq. 5). 4.2M parameters (Table 8): 4,231,976 with BN for 1,000
classes. ``width`` is the width multiplier alpha of §3.3 (channels x alpha).

Small-input form (28x28): the stem and the first stride-2 layer use stride 1: 28 -> 28 -> 14 -> 7 -> 4.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..backbone import Backbone, Stages
from ..layers.conv import ConvBNAct, global_pool_head
from ..layers.mbconv import init_mobile
from ..registry import register_model
from ..specs.zoo import MOBILENET_V1, MOBILENET_V1_STEM


class DepthwiseSeparable(nn.Sequential):
    """Fig. 3 (right): 3x3 depthwise - BN - ReLU - 1x1 pointwise - BN - ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__(OrderedDict([
            ("dw", ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels)),  # N x in x H/s x W/s
            ("pw", ConvBNAct(in_channels, out_channels, 1))]))  # N x out x H/s x W/s


class MobileNetV1(Backbone):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 width: float = 1.0, dropout: float = 0.0):
        super().__init__()
        stages = Stages()
        stride = 1 if small_input else 2
        stem = int(MOBILENET_V1_STEM * width)
        layers: list[nn.Module] = [ConvBNAct(in_channels, stem, 3, stride)]  # N x 32 x 112 x 112 at 224
        stages.add("features.0", stem, stride)
        channels, first_downsample = stem, small_input
        for out, s in MOBILENET_V1:
            if s == 2 and first_downsample:
                s, first_downsample = 1, False
            out = int(out * width)
            layers.append(DepthwiseSeparable(channels, out, s))
            stages.add(f"features.{len(layers) - 1}", out, s)
            channels = out
        self.features = nn.Sequential(*layers)  # N x 1024 x 7 x 7 at 224
        self.feature_info = stages.info()
        self.classifier = global_pool_head(channels, num_classes, dropout)
        init_mobile(self)


@register_model("mobilenet_v1", family="MobileNet", paper="Howard et al. 2017", year=2017, input_size=(3, 224, 224),
                top1=70.6)
def mobilenet_v1(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 width: float = 1.0) -> MobileNetV1:
    """MobileNet v1 of Table 1: a 3x3 conv and 13 depthwise-separable layers (width multiplier alpha)."""
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, small_input=small_input, width=width)
