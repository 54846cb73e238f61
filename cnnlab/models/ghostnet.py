"""GhostNet (Han et al., CVPR 2020, "GhostNet: more features from cheap operations").

A Ghost module (Fig. 2b, Eq. 4) makes ``m = ceil(n / s)`` "intrinsic" maps with an ordinary 1x1
conv, then ``(s - 1) m`` "ghost" maps from them with a cheap 3x3 depthwise conv, and concatenates
both (s = 2 here, so half the maps are ghosts). A Ghost bottleneck (Fig. 3) is two Ghost modules -
the first expands and has ReLU, the second projects linearly - with a 3x3 depthwise conv of stride 2
between them where the grid halves, optional squeeze-excite (a quarter of the channels, hard-sigmoid
gate), and a shortcut that is the identity or a depthwise-separable projection.

Table 1: a 3x3/2 conv with 16 filters, 16 G-bnecks (kernel, expansion, output, SE, stride), a 1x1
conv to 960, global pooling, a 1x1 conv to 1280 (with ReLU, no BN) and the FC. Width 1.0: 5,182,508
parameters (Table 7: 5.2M). Channel counts are rounded to multiples of 4.

Small-input form (28x28): the stem and the first stride-2 G-bneck use stride 1: 28 -> 28 -> 14 -> 7 -> 4.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..backbone import Backbone, Stages
from ..layers.conv import ConvBNAct
from ..layers.mbconv import ChannelGate, init_mobile, make_divisible
from ..registry import register_model
from ..specs.zoo import GHOSTNET, GHOSTNET_ENDS


class GhostModule(nn.Module):
    """Eq. 4: N x in x H x W -> N x out x H x W; a 1x1 conv makes ceil(out/2) maps, a depthwise 3x3 the rest."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True, ratio: int = 2, cheap_kernel: int = 3):
        super().__init__()
        self.out_channels = out_channels
        intrinsic = math.ceil(out_channels / ratio)
        act = nn.ReLU if relu else None
        self.primary_conv = ConvBNAct(in_channels, intrinsic, 1, act=act, indexed=True)
        # the cheap linear operation Phi: one (ratio - 1)-filter depthwise conv per intrinsic map
        self.cheap_operation = ConvBNAct(intrinsic, intrinsic * (ratio - 1), cheap_kernel, groups=intrinsic, act=act,
                                         indexed=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary_conv(x)
        return torch.cat([intrinsic, self.cheap_operation(intrinsic)], 1)[:, :self.out_channels]


class GhostBottleneck(nn.Module):
    """Fig. 3: Ghost module (expand) -> [depthwise kxk/2] -> [SE] -> Ghost module (linear), plus the shortcut."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, kernel: int, stride: int, se: bool):
        super().__init__()
        self.ghost1 = GhostModule(in_channels, hidden, relu=True)
        self.conv_dw = (ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=None, indexed=True)
                        if stride > 1 else None)  # N x hidden x H/2 x W/2
        self.se = ChannelGate(hidden, make_divisible(hidden * 0.25, 4), nn.ReLU, nn.Hardsigmoid) if se else None
        self.ghost2 = GhostModule(hidden, out_channels, relu=False)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:  # depthwise kxk (stride s) and pointwise 1x1, both with BN and no activation
            self.shortcut = nn.Sequential(
                ConvBNAct(in_channels, in_channels, kernel, stride, groups=in_channels, act=None, indexed=True),
                ConvBNAct(in_channels, out_channels, 1, act=None, indexed=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.conv_dw is not None:
            out = self.conv_dw(out)
        if self.se is not None:
            out = self.se(out)
        return self.ghost2(out) + self.shortcut(x)


class GhostNet(Backbone):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        stem_filters, last_conv, last_fc = GHOSTNET_ENDS
        stem = make_divisible(stem_filters * width, 4)
        stride = 1 if small_input else 2
        layers: list[nn.Module] = [ConvBNAct(in_channels, stem, 3, stride, indexed=True)]  # N x 16 x 112 x 112
        stages = Stages()
        stages.add("features.0", stem, stride)
        channels, first_downsample = stem, small_input
        for kernel, expansion, out, se, s in GHOSTNET:
            if s == 2 and first_downsample:
                s, first_downsample = 1, False
            out = make_divisible(out * width, 4)
            layers.append(GhostBottleneck(channels, make_divisible(expansion * width, 4), out, kernel, s, se))
            stages.add(f"features.{len(layers) - 1}", out, s)
            channels = out
        head = make_divisible(last_conv * width, 4)
        layers.append(ConvBNAct(channels, head, 1, indexed=True))
        stages.add(f"features.{len(layers) - 1}", head)
        self.features = nn.Sequential(*layers)  # N x 960 x 7 x 7 at 224
        self.feature_info = stages.info()
        # pooling, then Table 1's last 1x1 conv (1280, ReLU, no BN) is an FC on the pooled vector
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(head, last_fc),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(last_fc, num_classes))
        init_mobile(self)


@register_model("ghostnet", family="GhostNet", paper="Han et al., CVPR 2020", year=2020, input_size=(3, 224, 224),
                top1=73.9, top5=91.4)
def ghostnet(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
             width: float = 1.0) -> GhostNet:
    """GhostNet 1.0x of Table 1: MobileNet v3's layout with Ghost-module bottlenecks."""
    return GhostNet(num_classes=num_classes, in_channels=in_channels, small_input=small_input, width=width)
