"""Stacked hourglass networks (Newell, Yang & Deng 2016, "Stacked Hourglass Networks for Human Pose
Estimation", ECCV; Figures 3 and 4, Section 3).

An hourglass pools down to 4 x 4 and back up, adding at each resolution a skip branch of residual
modules, so that the output combines local and global evidence. Stacks run one after another; each
predicts heatmaps (intermediate supervision: the loss is applied to every stack's output) and feeds
them back, mapped by 1 x 1 convolutions, into the next stack's input (Figure 4).

The paper's network: a 7 x 7 stride-2 convolution, a residual module and a max pool bring 256 x 256
inputs to 64 x 64, then 8 stacks of depth-4 hourglasses with 256 features. ``hourglass_small`` keeps
that design at 2 stacks of depth 3 with 128 features, for the 64 x 64 crops here (16 x 16 heatmaps).
In training the model returns the list of every stack's heatmaps; in evaluation only the last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model

_PAPER = "Newell et al. 2016, Stacked Hourglass Networks for Human Pose Estimation"


class Residual(nn.Module):
    """The residual module of Figure 4 (left): BN-ReLU-conv 1x1 (C/2), 3x3 (C/2), 1x1 (C), plus the input
    (through a 1x1 convolution where the channels change)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), nn.Conv2d(in_channels, mid, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, out_channels, 1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels (Figure 3): at each level a skip branch at this resolution and a
    branch that max-pools, recurses, and is upsampled (nearest) back to be added to the skip."""

    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.skip = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))  # C x H/2 x W/2
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")  # C x H x W


class StackedHourglass(nn.Module):
    """Stem (7x7/2 conv, residual, 2x2 max pool, two residuals: a quarter of the input) then ``stacks`` hourglasses, each
    followed by its heatmap prediction and the 1x1 re-mapping into the next stack (Figure 4, right)."""

    def __init__(self, num_keypoints: int, *, in_channels: int = 3, stacks: int = 2, depth: int = 3,
                 channels: int = 128):
        super().__init__()
        # the paper's stem for 256 features: conv 7x7/2 to 64, residual to 128, pool, residual, residual to 256
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels // 4, 7, stride=2, padding=3), nn.BatchNorm2d(channels // 4),
            nn.ReLU(inplace=True),  # C/4 x H/2 x W/2
            Residual(channels // 4, channels // 2), nn.MaxPool2d(2),  # C/2 x H/4 x W/4
            Residual(channels // 2, channels // 2), Residual(channels // 2, channels))  # C x H/4 x W/4
        self.hourglasses = nn.ModuleList(Hourglass(depth, channels) for _ in range(stacks))
        self.features = nn.ModuleList(nn.Sequential(Residual(channels, channels), nn.Conv2d(channels, channels, 1),
                                                    nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
                                      for _ in range(stacks))
        self.heads = nn.ModuleList(nn.Conv2d(channels, num_keypoints, 1) for _ in range(stacks))
        self.remap_features = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(stacks - 1))
        self.remap_heatmaps = nn.ModuleList(nn.Conv2d(num_keypoints, channels, 1) for _ in range(stacks - 1))
        self.heatmap_stride = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x = self.stem(x)  # N x C x H/4 x W/4
        outputs = []
        for i, (hourglass, features, head) in enumerate(zip(self.hourglasses, self.features, self.heads)):
            y = features(hourglass(x))
            heatmaps = head(y)  # N x K x H/4 x W/4
            outputs.append(heatmaps)
            if i < len(self.heads) - 1:  # the next stack sees this one's input, features and predictions
                x = x + self.remap_features[i](y) + self.remap_heatmaps[i](heatmaps)
        return outputs if self.training else outputs[-1]


@register_model("hourglass_small", family="Hourglass", paper=_PAPER, year=2016, input_size=(3, 64, 64),
                num_classes=17, task="keypoints")
def hourglass_small(*, num_classes: int = 17, in_channels: int = 3, stacks: int = 2, depth: int = 3,
                    channels: int = 128) -> StackedHourglass:
    """A 2-stack, depth-3, 128-feature stacked hourglass (Figure 4's design, scaled down) with intermediate supervision."""
    return StackedHourglass(num_classes, in_channels=in_channels, stacks=stacks, depth=depth, channels=channels)


@register_model("hourglass8", family="Hourglass", paper=_PAPER, year=2016, input_size=(3, 256, 256),
                num_classes=16, task="keypoints")
def hourglass8(*, num_classes: int = 16, in_channels: int = 3) -> StackedHourglass:
    """The paper's network: 8 stacks of depth-4 hourglasses with 256 features (Section 3.4)."""
    return StackedHourglass(num_classes, in_channels=in_channels, stacks=8, depth=4, channels=256)
