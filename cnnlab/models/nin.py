"""Network in Network (Lin, Chen & Yan, ICLR 2014).

Each "mlpconv" block is a convolution followed by two 1x1 convolutions (a small multilayer
perceptron slid over the image, §2), each with ReLU. The last block outputs one map per class and
global average pooling (§3.2) turns the maps into scores, so there is no fully connected layer.
Widths and kernels follow the ImageNet model of the paper's Caffe release (96/256/384 filters with
11x11/4, 5x5 and 3x3 kernels, 3x3/2 max-pooling, dropout 0.5 before the last block).
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import register_model


def mlpconv(in_channels: int, out_channels: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    """conv kxk -> ReLU -> 1x1 conv -> ReLU -> 1x1 conv -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1), nn.ReLU(inplace=True),
    )


class NiN(nn.Module):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False, dropout: float = 0.5):
        super().__init__()
        if small_input:
            # 28x28: a 5x5 stride-1 first block and half the widths; pools 28 -> 13 -> 6 -> 2.
            widths, first = (48, 128, 192), (5, 1, 2)
        else:
            widths, first = (96, 256, 384), (11, 4, 0)  # 224 -> 54 -> 26 -> 12 -> 5
        self.features = nn.Sequential(
            mlpconv(in_channels, widths[0], *first), nn.MaxPool2d(3, 2),
            mlpconv(widths[0], widths[1], 5, 1, 2), nn.MaxPool2d(3, 2),
            mlpconv(widths[1], widths[2], 3, 1, 1), nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            mlpconv(widths[2], num_classes, 3, 1, 1),  # N x classes x h x w: one confidence map per class
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # global average pooling instead of FC layers
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("nin", family="NiN", paper="Lin, Chen & Yan, ICLR 2014", year=2013, input_size=(3, 224, 224),
                top1=59.36, top5=None)
def nin(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> NiN:
    """Network in Network: mlpconv blocks and global average pooling."""
    return NiN(num_classes=num_classes, in_channels=in_channels, small_input=small_input)
