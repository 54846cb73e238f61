"""Squeeze-and-excitation (Hu, Shen & Sun, CVPR 2018, "Squeeze-and-excitation networks", Fig. 1 and Fig. 3).

The gate learns one weight per channel from the whole map: squeeze (global average pooling, §3.1),
excite (FC C -> C/r, ReLU, FC C/r -> C, sigmoid, §3.2), then rescale the channels. The two fully
connected layers are 1x1 convolutions on the N x C x 1 x 1 descriptor, which is the same arithmetic.
"""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """Channel gate of SENet; ``reduction`` is the ratio r of §6.1 (16 in the paper's networks)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)  # N x C/r x 1 x 1
        self.fc2 = nn.Conv2d(hidden, channels, 1)  # N x C x 1 x 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean((2, 3), keepdim=True)  # N x C x 1 x 1: one statistic per channel
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(squeezed))))  # N x C x 1 x 1, each in (0, 1)
        return x * scale
