"""ShuffleNet V2 (Ma, Zhang, Zheng & Sun, ECCV 2018, "Practical guidelines for efficient CNN architecture design").

Table 5 (1x): conv1 3x3/2 x24, max-pool 3x3/2, stages 2-4 of 4/8/4 units (116/232/464 channels),
conv5 1x1 x1024, global pooling, FC. A unit (Fig. 3c) splits the channels in two, runs one half
through 1x1 -> 3x3 depthwise -> 1x1, concatenates and shuffles the channels; the downsampling unit
(Fig. 3d) runs both halves (the other through 3x3/2 depthwise -> 1x1) to double the width.
Names follow torchvision (``conv1``, ``stage2.0.branch1``, ``conv5``, ``fc``); 2,278,604 parameters.

Small-input form (28x28): conv1 with stride 1 and no max-pool, so the stages see 14 -> 7 -> 4 grids.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone, Stages
from ..layers.conv import ConvBNAct
from ..registry import register_model
from ..specs.light import SHUFFLENET_V2_CHANNELS, SHUFFLENET_V2_REPEATS


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """N x (g*c) x H x W -> view N x g x c x H x W -> transpose -> flatten: mixes the two branches' channels."""
    n, channels, h, w = x.shape
    return x.view(n, groups, channels // groups, h, w).transpose(1, 2).reshape(n, channels, h, w)


def _pointwise(in_channels: int, out_channels: int) -> list[nn.Module]:
    """1x1 conv -> BN -> ReLU, spelled out as three children (torchvision's indices within a branch)."""
    return list(ConvBNAct(in_channels, out_channels, 1, indexed=True))


def _depthwise(channels: int, stride: int) -> list[nn.Module]:
    """3x3 depthwise conv -> BN, no activation (Fig. 3c)."""
    return list(ConvBNAct(channels, channels, 3, stride, groups=channels, act=None, indexed=True))


class ShuffleUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        half = out_channels // 2
        self.stride = stride
        # Fig. 3d's left branch; the basic unit (Fig. 3c) passes its left half through untouched.
        self.branch1 = nn.Sequential(*_depthwise(in_channels, stride), *_pointwise(in_channels, half)) \
            if stride > 1 else nn.Sequential()
        self.branch2 = nn.Sequential(*_pointwise(in_channels if stride > 1 else half, half),
                                     *_depthwise(half, stride), *_pointwise(half, half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            left, right = x.chunk(2, dim=1)  # channel split
            out = torch.cat([left, self.branch2(right)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out, 2)


_TRUNK = ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")


class ShuffleNetV2(Backbone):
    """Modules at the top level under torchvision's names, so its weight files load."""

    head_modules = ("fc",)

    def __init__(self, *, width: str = "1x", num_classes: int = 1000, in_channels: int = 3, small_input: bool = False):
        super().__init__()
        c1, *stage_channels, c5 = SHUFFLENET_V2_CHANNELS[width]
        self.conv1 = ConvBNAct(in_channels, c1, 3, 1 if small_input else 2, indexed=True)  # 224 -> 112
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1)  # -> 56
        stages = Stages()
        stages.add("conv1", c1, 1 if small_input else 2)
        stages.add("maxpool", c1, 1 if small_input else 2)
        channels = c1
        for i, (repeats, out) in enumerate(zip(SHUFFLENET_V2_REPEATS, stage_channels)):  # 28 -> 14 -> 7
            units = [ShuffleUnit(channels, out, 2)] + [ShuffleUnit(out, out, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i + 2}", nn.Sequential(*units))
            stages.add(f"stage{i + 2}", out, 2)
            channels = out
        self.conv5 = ConvBNAct(channels, c5, 1, indexed=True)
        stages.add("conv5", c5)
        self.fc = nn.Linear(c5, num_classes)
        self.feature_info = stages.info()

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [(name, getattr(self, name)) for name in _TRUNK]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))  # global average pooling: N x 1024
        return x if pre_logits else self.fc(x)


@register_model("shufflenet_v2_x1_0", family="ShuffleNet", paper="Ma et al., ECCV 2018", year=2018,
                input_size=(3, 224, 224), top1=69.362, top5=88.316)
def shufflenet_v2_x1_0(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> ShuffleNetV2:
    """ShuffleNet V2 1x from Table 5: channel split, depthwise convolutions and channel shuffle."""
    return ShuffleNetV2(width="1x", num_classes=num_classes, in_channels=in_channels, small_input=small_input)
