"""DenseNet's layers (Huang et al., CVPR 2017, §3): each layer sees the concatenation of all before it.

Names follow torchvision (``norm1``, ``relu1``, ``conv1``, ``denselayer1``, ``transition1``...) so
its weight files load.
"""

from __future__ import annotations

import torch
from torch import nn


class DenseLayer(nn.Sequential):
    """DenseNet-B layer: BN-ReLU-1x1 conv (bottleneck, 4k maps) -> BN-ReLU-3x3 conv (k new maps)."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck_factor: int = 4, dropout: float = 0.0):
        inner = bottleneck_factor * growth_rate
        super().__init__()
        self.add_module("norm1", nn.BatchNorm2d(in_channels))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("conv1", nn.Conv2d(in_channels, inner, 1, bias=False))
        self.add_module("norm2", nn.BatchNorm2d(inner))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module("conv2", nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False))
        if dropout:
            self.add_module("drop", nn.Dropout(dropout))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; layer l receives in_channels + l * k maps (§3, "dense connectivity")."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bottleneck_factor: int = 4):
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(in_channels + i * growth_rate, growth_rate, bottleneck_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for layer in self.values():
            maps.append(layer(torch.cat(maps, 1)))
        return torch.cat(maps, 1)  # N x (in_channels + num_layers * k) x H x W

    @staticmethod
    def out_channels(num_layers: int, in_channels: int, growth_rate: int) -> int:
        return in_channels + num_layers * growth_rate


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv (compression) -> 2x2 average pool: halves the grid between dense blocks."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, 2))


class PooledLinear(nn.Linear):
    """A fully connected layer that first global-average-pools a N x C x H x W map.

    Lets a family keep torchvision's ``classifier.weight`` name while ``classifier`` still does the
    pooling and flattening, as every cnnlab classifier does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return super().forward(x)
