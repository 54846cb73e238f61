"""R(2+1)D: Tran, Wang, Torresani, Ray, LeCun & Paluri, "A Closer Look at Spatiotemporal Convolutions
for Action Recognition", CVPR 2018 (arXiv 1711.11248).

A t x d x d 3D convolution from N_{i-1} to N_i channels is factorised into a 1 x d x d spatial
convolution to M_i channels, batch normalisation and ReLU, then a t x 1 x 1 temporal convolution to
N_i channels, with (§3.5, Figure 2)

    M_i = floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i))

so that the (2+1)D block has (up to the rounding) the parameters of the 3D one: d^2 N_{i-1} M_i +
t M_i N_i ~ t d^2 N_{i-1} N_i. :func:`mid_channels` is that formula; every factorised convolution here
uses it, the first (3 x 7 x 7) one included.

Table 1 of the paper, R(2+1)D-18, for 3 x L x 112 x 112 clips:

=========  =====================================================  ====================
conv1      3 x 7 x 7, 64, stride 1 x 2 x 2 (factorised)            64 x L x 56 x 56
conv2_x    2 residual blocks of two 3 x 3 x 3 (2+1)D convs, 64     64 x L x 56 x 56
conv3_x    2 blocks, 128, the first strided 2 x 2 x 2              128 x L/2 x 28 x 28
conv4_x    2 blocks, 256, strided                                  256 x L/4 x 14 x 14
conv5_x    2 blocks, 512, strided                                  512 x L/8 x 7 x 7
           spatiotemporal average pooling, fc                      classes
=========  =====================================================  ====================

A strided block subsamples space in its spatial convolution and time in its temporal one; its
shortcut is a 1 x 1 x 1 convolution of the same stride with batch normalisation (ResNet's option B).
``r2plus1d_small`` keeps the layout with one block per stage of widths 16-32-64-128 and a 3 x 3 x 3
first convolution, for 16 x 32 x 32 clips.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo
from ..errors import DataError
from ..registry import register_model

PAPER = "Tran et al., CVPR 2018 (arXiv 1711.11248)"


def mid_channels(n_in: int, n_out: int, t: int = 3, d: int = 3) -> int:
    """M_i of §3.5: the width between the spatial and the temporal convolution that gives the (2+1)D
    block the parameters of a t x d x d 3D convolution from ``n_in`` to ``n_out`` channels."""
    return (t * d * d * n_in * n_out) // (d * d * n_in + t * n_out)


class Conv2Plus1d(nn.Sequential):
    """A t x d x d convolution, factorised: 1 x d x d spatial (stride 1 x s x s) -> BN -> ReLU -> t x 1 x 1
    temporal (stride s x 1 x 1). No bias: a batch normalisation follows each."""

    def __init__(self, n_in: int, n_out: int, *, t: int = 3, d: int = 3, stride: int = 1, time_stride: int | None = None):
        mid = mid_channels(n_in, n_out, t, d)
        ts = stride if time_stride is None else time_stride
        super().__init__(
            nn.Conv3d(n_in, mid, (1, d, d), (1, stride, stride), (0, d // 2, d // 2), bias=False),  # N x M x T x H/s x W/s
            nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
            nn.Conv3d(mid, n_out, (t, 1, 1), (ts, 1, 1), (t // 2, 0, 0), bias=False))  # N x n_out x T/s x H/s x W/s
        self.mid = mid


class Block(nn.Module):
    """A basic residual block of two (2+1)D convolutions (each followed by BN; ReLU after the first and
    after the sum)."""

    def __init__(self, n_in: int, n_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = Conv2Plus1d(n_in, n_out, stride=stride)
        self.bn1 = nn.BatchNorm3d(n_out)
        self.conv2 = Conv2Plus1d(n_out, n_out)
        self.bn2 = nn.BatchNorm3d(n_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity() if stride == 1 and n_in == n_out else nn.Sequential(
            nn.Conv3d(n_in, n_out, 1, stride, bias=False), nn.BatchNorm3d(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class R2Plus1D(Backbone):
    """``stem`` (a factorised t x d x d convolution, spatial stride 2) -> four stages of residual blocks
    (the last three strided 2 in time and space) -> global average pooling -> ``fc``."""

    def __init__(self, *, num_classes: int = 400, in_channels: int = 3, widths=(64, 128, 256, 512),
                 blocks=(2, 2, 2, 2), stem_kernel: tuple[int, int] = (3, 7), frames: int = 16):
        super().__init__()
        t, d = stem_kernel
        self.stem = nn.Sequential(Conv2Plus1d(in_channels, widths[0], t=t, d=d, stride=2, time_stride=1),
                                  nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True))  # N x 64 x T x H/2 x W/2
        stages, cin = [], widths[0]
        self.feature_info = [FeatureInfo("stem", widths[0], 2)]
        for i, (width, count) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            stage = [Block(cin, width, stride)] + [Block(width, width) for _ in range(count - 1)]
            stages.append(nn.Sequential(*stage))
            cin = width
            self.feature_info.append(FeatureInfo(f"layer{i + 1}", width, 2 ** (i + 1) if i else 2))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(cin, num_classes)
        self.num_classes = num_classes
        self.frames = frames

    head_modules = ("pool", "fc")

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [("stem", self.stem), ("layer1", self.layer1), ("layer2", self.layer2), ("layer3", self.layer3),
                ("layer4", self.layer4)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise DataError(f"a video model takes clips N x C x T x H x W, got {tuple(x.shape)}")
        return super().forward_features(x)  # N x 512 x T/8 x H/16 x W/16

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.fc(x)


@register_model("r2plus1d_18", family="R(2+1)D", paper=PAPER, year=2018, input_size=(3, 16, 112, 112),
                num_classes=400, task="video", tags=("video", "(2+1)d", "residual"),
                description="R(2+1)D-18: 8 residual blocks of factorised 3x3x3 convs (Table 1)")
def r2plus1d_18(*, num_classes: int = 400, in_channels: int = 3, frames: int = 16) -> R2Plus1D:
    """Table 1's 18-layer network: conv1 3 x 7 x 7 and blocks 64-128-256-512 (two per stage), all factorised."""
    return R2Plus1D(num_classes=num_classes, in_channels=in_channels, frames=frames)


@register_model("r2plus1d_small", family="R(2+1)D", paper=PAPER, year=2018, input_size=(1, 16, 32, 32),
                num_classes=9, task="video", tags=("video", "(2+1)d", "residual"),
                description="R(2+1)D, one block per stage (16-32-64-128), 3x3x3 first conv")
def r2plus1d_small(*, num_classes: int = 9, in_channels: int = 1, frames: int = 16) -> R2Plus1D:
    """One residual block per stage, widths 16-32-64-128, a factorised 3 x 3 x 3 first convolution."""
    return R2Plus1D(num_classes=num_classes, in_channels=in_channels, widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1),
                    stem_kernel=(3, 3), frames=frames)
