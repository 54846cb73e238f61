"""EfficientNet (Tan & Le, ICML 2019, "EfficientNet: rethinking model scaling for convolutional neural networks").

B0 is Table 1: a 3x3/2 conv with 32 filters, seven stages of MBConv blocks (expansion, kernel,
stride, output channels, layers), a 1x1 conv to 1280, global pooling, dropout and FC. Each MBConv is
MobileNet v2's inverted residual with squeeze-excite (a quarter of the block's *input* channels, SiLU
inside, sigmoid gate) and SiLU ("swish") activations; residual branches are dropped per sample in
training with a probability rising linearly to 0.2 (stochastic depth).

B1-B7 follow the compound scaling rule of §3.3: depth alpha^phi, width beta^phi, resolution
gamma^phi with alpha=1.2, beta=1.1, gamma=1.15 (:func:`compound_coefficients`); the released models
round these to the multipliers of :data:`EFFICIENTNET_SCALING`. Widths are rounded to multiples of 8,
layer counts up. Names follow torchvision (``features.2.0.block.1.0``, ``classifier.1``): 5,288,548
parameters for B0 ... 66,347,960 for B7.

Small-input form (28x28): the stem and the first stride-2 stage use stride 1: 28 -> 28 -> 14 -> 7 -> 4.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..backbone import Backbone, Stages
from ..layers.conv import ConvBNAct
from ..layers.mbconv import ChannelGate, StochasticDepth, init_mobile, make_divisible
from ..registry import register_model
from ..specs.zoo import (EFFICIENTNET_ALPHA, EFFICIENTNET_B0, EFFICIENTNET_BETA, EFFICIENTNET_GAMMA,
                         EFFICIENTNET_HEAD, EFFICIENTNET_SCALING, EFFICIENTNET_STEM, EFFICIENTNET_TABLE2)


def compound_coefficients(phi: float) -> tuple[float, float, float]:
    """§3.3, Eq. 3: (depth, width, resolution) multipliers for compound coefficient ``phi``."""
    return EFFICIENTNET_ALPHA ** phi, EFFICIENTNET_BETA ** phi, EFFICIENTNET_GAMMA ** phi


class MBConv(nn.Module):
    """N x in x H x W -> N x out x H/s x W/s: expand 1x1, depthwise kxk, SE, project 1x1 (linear)."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, kernel: int, stride: int,
                 drop: float, eps: float):
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, act=nn.SiLU, eps=eps, indexed=True))
        layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU, eps=eps, indexed=True))
        layers.append(ChannelGate(hidden, max(1, in_channels // 4), nn.SiLU, nn.Sigmoid))
        layers.append(ConvBNAct(hidden, out_channels, 1, act=None, eps=eps, indexed=True))
        self.block = nn.Sequential(*layers)
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.stochastic_depth = StochasticDepth(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.stochastic_depth(out) if self.use_shortcut else out


class EfficientNet(Backbone):
    def __init__(self, *, width: float, depth: float, dropout: float, num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False, eps: float = 1e-5, stochastic_depth: float = 0.2):
        super().__init__()
        stem = make_divisible(EFFICIENTNET_STEM * width)
        stride = 1 if small_input else 2
        layers: list[nn.Module] = [ConvBNAct(in_channels, stem, 3, stride, act=nn.SiLU, eps=eps, indexed=True)]
        stages = Stages()
        stages.add("features.0", stem, stride)
        rows = [(t, k, s, make_divisible(c * width), math.ceil(n * depth)) for t, k, s, c, n in EFFICIENTNET_B0]
        total, done = sum(r[-1] for r in rows), 0
        channels, first_downsample = stem, small_input
        for t, k, s, c, n in rows:
            if s == 2 and first_downsample:
                s, first_downsample = 1, False
            blocks = []
            for i in range(n):
                blocks.append(MBConv(channels, c, t, k, s if i == 0 else 1, stochastic_depth * done / total, eps))
                channels, done = c, done + 1
            layers.append(nn.Sequential(*blocks))
            stages.add(f"features.{len(layers) - 1}", c, s)
        head = 4 * channels  # 1280 for B0: four times the last stage's width
        layers.append(ConvBNAct(channels, head, 1, act=nn.SiLU, eps=eps, indexed=True))
        stages.add(f"features.{len(layers) - 1}", head)
        self.features = nn.Sequential(*layers)  # N x 1280 x 7 x 7 at 224 (B0)
        self.feature_info = stages.info()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(head, num_classes))
        init_mobile(self)

    head_modules = ("avgpool", "classifier")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return super().forward_head(torch.flatten(self.avgpool(x), 1), pre_logits)


# torchvision's weights (which share this architecture): ImageNet top-1, top-5
_TOP = {"b0": (77.692, 93.532), "b1": (78.642, 94.186), "b2": (80.608, 95.31), "b3": (82.008, 96.054),
        "b4": (83.384, 96.594), "b5": (83.444, 96.628), "b6": (84.008, 96.916), "b7": (84.122, 96.908)}


def _builder(variant: str):
    width, depth, resolution, dropout = EFFICIENTNET_SCALING[variant]
    eps = 1e-3 if variant in ("b5", "b6", "b7") else 1e-5  # the B5-B7 weights were trained with eps 1e-3

    def build(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> EfficientNet:
        return EfficientNet(width=width, depth=depth, dropout=dropout, num_classes=num_classes,
                            in_channels=in_channels, small_input=small_input, eps=eps)

    name = f"efficientnet_{variant}"
    build.__name__ = name
    params, top1 = EFFICIENTNET_TABLE2[variant]
    build.__doc__ = (f"EfficientNet-{variant.upper()}: width x{width}, depth x{depth}, {resolution}px "
                     f"(Table 2: {params}M parameters, {top1}% top-1).")
    register_model(name, family="EfficientNet", paper="Tan & Le, ICML 2019", year=2019,
                   input_size=(3, resolution, resolution), top1=_TOP[variant][0], top5=_TOP[variant][1],
                   tags=() if variant == "b0" else ("compound-scaled",))(build)
    return build


(efficientnet_b0, efficientnet_b1, efficientnet_b2, efficientnet_b3, efficientnet_b4, efficientnet_b5,
 efficientnet_b6, efficientnet_b7) = (_builder(v) for v in EFFICIENTNET_SCALING)
