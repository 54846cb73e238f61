"""Residual blocks (He et al., CVPR 2016, Fig. 2 and Fig. 5), with optional squeeze-and-excitation.

Attribute names follow torchvision (``conv1``, ``bn1``, ..., ``downsample``) so its weight files
load. The stride of a bottleneck sits on its 3x3 convolution, as in torchvision ("ResNet v1.5"); the
paper puts it on the first 1x1 - same parameter count, slightly better accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .squeeze_excite import SqueezeExcitation


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, groups=groups, bias=False)


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Shortcut option B of §3.3: a 1x1 convolution (and BN) where the shape changes."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


class ZeroPadShortcut(nn.Module):
    """Shortcut option A of §3.3 (used for CIFAR, §4.2): subsample by striding, zero-pad the new channels."""

    def __init__(self, out_channels: int, stride: int):
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_channels - x.shape[1]
        return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra > 0 else x


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (Fig. 2); ``shortcut=False`` gives the "plain" block of §4.1."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None,
                 shortcut: bool = True, se_reduction: int | None = None):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(in_channels, width, stride), nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv3x3(width, width), nn.BatchNorm2d(width)
        self.se = SqueezeExcitation(width, se_reduction) if se_reduction else None
        self.downsample = downsample
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        if self.shortcut:  # F(x) + x: the block only has to learn the residual
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (expand x4) and a shortcut (Fig. 5 right)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None,
                 shortcut: bool = True, se_reduction: int | None = None):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.se = SqueezeExcitation(out_channels, se_reduction) if se_reduction else None
        self.downsample = downsample
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:  # SE-ResNet (SENet Fig. 3): recalibrate before the addition
            out = self.se(out)
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)
