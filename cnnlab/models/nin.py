"""Network in Network (Lin, Chen & Yan, ICLR 2014).

Each "mlpconv" block is a convolution followed by two 1x1 convolutions (a small multilayer
perceptron slid over the image, §2), each with ReLU. The last block outputs one map per class and
global average pooling (§3.2) turns the maps into scores, so there is no fully connected layer.

The paper's experiments are on CIFAR, SVHN and MNIST; the ImageNet form is the model the authors
released for Caffe (layers ``conv4-1024``, ``cccp7-1024``, ``cccp8-1024`` at the end): mlpconv 96-96-96
(11x11/4), 256-256-256 (5x5, pad 2), 384-384-384 (3x3, pad 1), each followed by 3x3/2 max-pooling,
dropout 0.5, then mlpconv 1024-1024-classes (3x3, pad 1) and a 6x6 average pool. Caffe rounds pooled sizes up, so a 224x224 image gives 54 -> 27 ->
27 -> 13 -> 13 -> 6 -> 6 (PyTorch's ``ceil_mode=True``). 7,595,176 parameters for 1000 classes.

The small-input form (28x28) keeps the older, lighter head: its last block is classes -> classes ->
classes, its pools round down (28 -> 13 -> 6 -> 2), its first block is 5x5 stride 1 and its widths are
48/128/192. It adds batch normalisation after every convolution (``batch_norm``, default on for that
form only): without it the twelve ReLU layers ending in ReLU'd class maps stayed at chance level for
ten epochs of Fashion-MNIST in a short SGD schedule (measured; NiN predates batch norm and was trained
for days). Weights are initialised for ReLU (He et al. 2015, fan-out), biases at zero.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo
from ..registry import register_model


def mlpconv(in_channels: int, out_channels: int, kernel: int, stride: int, padding: int,
            batch_norm: bool = False, hidden: int | None = None) -> nn.Sequential:
    """conv kxk -> ReLU -> 1x1 conv -> ReLU -> 1x1 conv -> ReLU (a batch norm before each ReLU if asked).

    The first two convolutions have ``hidden`` maps (default ``out_channels``), the last ``out_channels``.
    """
    hidden = out_channels if hidden is None else hidden
    widths = [in_channels, hidden, hidden, out_channels]
    layers: list[nn.Module] = []
    for i, (k, s, p) in enumerate([(kernel, stride, padding), (1, 1, 0), (1, 1, 0)]):
        layers.append(nn.Conv2d(widths[i], widths[i + 1], k, s, p, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(widths[i + 1]))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class NiN(Backbone):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False, dropout: float = 0.5,
                 batch_norm: bool | None = None):
        super().__init__()
        bn = small_input if batch_norm is None else batch_norm
        if small_input:
            # 28x28: a 5x5 stride-1 first block and half the widths; pools round down, 28 -> 13 -> 6 -> 2.
            widths, first, last_hidden, ceil = (48, 128, 192), (5, 1, 2), None, False
        else:
            # The released ImageNet model: 224 -> 54, pools rounded up as in Caffe, 54 -> 27 -> 13 -> 6.
            widths, first, last_hidden, ceil = (96, 256, 384), (11, 4, 0), 1024, True
        self.features = nn.Sequential(
            mlpconv(in_channels, widths[0], *first, bn), nn.MaxPool2d(3, 2, ceil_mode=ceil),  # N x 96 x 27 x 27
            mlpconv(widths[0], widths[1], 5, 1, 2, bn), nn.MaxPool2d(3, 2, ceil_mode=ceil),  # N x 256 x 13 x 13
            mlpconv(widths[1], widths[2], 3, 1, 1, bn), nn.MaxPool2d(3, 2, ceil_mode=ceil),  # N x 384 x 6 x 6
        )
        first_stride = first[1]
        # Each mlpconv block's output, then the last pool (strides 4, 8, 16, 32; small form 1 ... 8).
        self.feature_info = [FeatureInfo("features.0", widths[0], first_stride),
                             FeatureInfo("features.2", widths[1], 2 * first_stride),
                             FeatureInfo("features.4", widths[2], 4 * first_stride),
                             FeatureInfo("features.5", widths[2], 8 * first_stride)]
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            # N x classes x 6 x 6: one confidence map per class (1024 -> 1024 -> classes in the ImageNet form)
            mlpconv(widths[2], num_classes, 3, 1, 1, bn, hidden=last_hidden),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # global average pooling instead of FC layers
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # No fully connected layer: the pre-logits are the last stage's channels, globally pooled.
        return torch.flatten(x.mean((2, 3), keepdim=True), 1) if pre_logits else self.classifier(x)


@register_model("nin", family="NiN", paper="Lin, Chen & Yan, ICLR 2014", year=2013, input_size=(3, 224, 224),
                top1=59.36, top5=None)
def nin(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
        batch_norm: bool | None = None) -> NiN:
    """Network in Network: mlpconv blocks and global average pooling (batch norm: default in the small form).

    The ImageNet form follows the authors' released model: last block 1024 -> 1024 -> classes, pools
    rounded up; 7,595,176 parameters for 1000 classes.
    """
    return NiN(num_classes=num_classes, in_channels=in_channels, small_input=small_input, batch_norm=batch_norm)
