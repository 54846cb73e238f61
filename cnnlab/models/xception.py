"""Xception (Chollet, CVPR 2017, "Xception: deep learning with depthwise separable convolutions").

Fig. 5: the entry flow (two 3x3 convs, then three residual blocks of two separable convolutions and a
3x3/2 max-pool, with 1x1/2 convolution shortcuts: 128, 256, 728 channels), the middle flow (eight
residual blocks of three ReLU-separable-conv-BN at 728) and the exit flow (728 -> 1024 residual
block, separable 1536 and 2048, global pooling, FC). Every convolution is followed by batch norm
(§4.3). 22,855,952 parameters at 1000 classes, the figure of the reference (Keras) release.

Small-input form (28x28): the two stem convolutions are padded and unstrided, so the entry flow's
blocks give 14 -> 7 -> 4 grids, the middle flow runs at 4x4 and the exit flow ends at 2x2.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..backbone import Backbone, Stages
from ..registry import register_model
from ..specs.light import XCEPTION_ENTRY, XCEPTION_EXIT, XCEPTION_MIDDLE_REPEATS, XCEPTION_MIDDLE_WIDTH


class SeparableConv2d(nn.Sequential):
    """3x3 depthwise (one filter per channel) -> 1x1 pointwise: the "extreme Inception" module of §3."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(OrderedDict([
            ("depthwise", nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)),
            ("pointwise", nn.Conv2d(in_channels, out_channels, 1, bias=False))]))


def _sep_bn(in_channels: int, out_channels: int, relu_first: bool) -> list[nn.Module]:
    head: list[nn.Module] = [nn.ReLU()] if relu_first else []
    return head + [SeparableConv2d(in_channels, out_channels), nn.BatchNorm2d(out_channels)]


class XceptionBlock(nn.Module):
    """Separable convolutions (each preceded by ReLU, bar the very first block's first) plus a shortcut."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], pool: bool, relu_first: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            layers += _sep_bn(channels, width, relu_first or i > 0)
            channels = width
        if pool:
            layers.append(nn.MaxPool2d(3, 2, 1))
        self.residual = nn.Sequential(*layers)
        self.shortcut = (nn.Sequential(nn.Conv2d(in_channels, channels, 1, 2 if pool else 1, bias=False),
                                       nn.BatchNorm2d(channels))
                         if pool or channels != in_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class Xception(Backbone):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False):
        super().__init__()
        stride, pad = (1, 1) if small_input else (2, 0)
        layers: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(in_channels, 32, 3, stride, pad, bias=False)), ("bn1", nn.BatchNorm2d(32)),
            ("relu1", nn.ReLU(inplace=True)),  # 299 -> 149
            ("conv2", nn.Conv2d(32, 64, 3, 1, pad, bias=False)), ("bn2", nn.BatchNorm2d(64)),
            ("relu2", nn.ReLU(inplace=True))]  # -> 147
        channels = 64
        for i, width in enumerate(XCEPTION_ENTRY):  # 147 -> 74 -> 37 -> 19
            layers.append((f"entry{i + 1}", XceptionBlock(channels, (width, width), pool=True, relu_first=i > 0)))
            channels = width
        for i in range(XCEPTION_MIDDLE_REPEATS):  # 19 x 19 x 728, eight times
            layers.append((f"middle{i + 1}", XceptionBlock(channels, (XCEPTION_MIDDLE_WIDTH,) * 3, pool=False)))
        (a, b), (c, d) = XCEPTION_EXIT
        layers.append(("exit1", XceptionBlock(channels, (a, b), pool=True)))  # -> 10 x 10 x 1024
        layers += [("exit2", nn.Sequential(*_sep_bn(b, c, False), nn.ReLU(inplace=True),
                                           *_sep_bn(c, d, False), nn.ReLU(inplace=True)))]  # 10 x 10 x 2048
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(d, num_classes))
        stages, width = Stages(), in_channels  # the stem halves the grid once (unless small), pooled blocks too
        for name, module in layers:
            pooled = isinstance(module, XceptionBlock) and isinstance(module.residual[-1], nn.MaxPool2d)
            norms = [m.num_features for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
            width = norms[-1] if norms else width
            stages.add(f"features.{name}", width, 2 if pooled or (name == "conv1" and not small_input) else 1)
        self.feature_info = stages.info()


@register_model("xception", family="Xception", paper="Chollet, CVPR 2017", year=2016, input_size=(3, 299, 299),
                top1=79.0, top5=94.5)
def xception(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> Xception:
    """Xception from Fig. 5: depthwise separable convolutions with residual connections."""
    return Xception(num_classes=num_classes, in_channels=in_channels, small_input=small_input)
