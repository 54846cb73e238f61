"""Convolution building blocks shared by several families."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv -> BatchNorm -> activation, the unit of most networks after 2015.

    ``norm=False`` gives conv (with bias) -> activation, the unit of the networks before batch norm;
    ``act=None`` leaves the activation out. Children are named ``conv``, ``bn``, ``act`` (torchvision's
    Inception / GoogLeNet naming), or ``0``, ``1``, ``2`` with ``indexed=True`` (torchvision's
    ``Conv2dNormActivation``, as MobileNet and ShuffleNet use), so weight files in either layout load.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] | None = None, groups: int = 1, act: type[nn.Module] | None = nn.ReLU,
                 eps: float = 1e-5, norm: bool = True, indexed: bool = False):
        if padding is None:  # "same" padding for odd kernels
            padding = (kernel_size // 2 if isinstance(kernel_size, int) else tuple(k // 2 for k in kernel_size))
        layers = [("conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                                     bias=not norm))]
        if norm:
            layers.append(("bn", nn.BatchNorm2d(out_channels, eps=eps)))
        if act is not None:
            layers.append(("act", act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU) else act()))
        super().__init__(*[m for _, m in layers]) if indexed else super().__init__(OrderedDict(layers))


def global_pool_head(in_features: int, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Global average pooling -> (dropout) -> fully connected: the head of NiN's successors."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)
