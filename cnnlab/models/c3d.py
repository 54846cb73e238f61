"""C3D: Tran, Bourdev, Fergus, Torresani & Paluri, "Learning Spatiotemporal Features with 3D
Convolutional Networks", ICCV 2015 (arXiv 1412.0767).

§3.3 and Figure 3 of the paper, for 3 x 16 x 112 x 112 clips (channels x frames x height x width):

===========  ===========================================  ==================
conv1a       64 filters, 3 x 3 x 3, stride 1, pad 1
pool1        1 x 2 x 2 (time kept: "not to merge the       64 x 16 x 56 x 56
             temporal signal too early")
conv2a       128, 3 x 3 x 3; pool2 2 x 2 x 2               128 x 8 x 28 x 28
conv3a/b     256, 256; pool3 2 x 2 x 2                     256 x 4 x 14 x 14
conv4a/b     512, 512; pool4 2 x 2 x 2                     512 x 2 x 7 x 7
conv5a/b     512, 512; pool5 2 x 2 x 2                     512 x 1 x 4 x 4
fc6, fc7     4096 each, ReLU and dropout
fc8          the classes (487 for Sports-1M)
===========  ===========================================  ==================

Every convolution is 3 x 3 x 3 (the depth the paper found best, §3.2). The pooling rounds up, as Caffe
does, so pool5 leaves 4 x 4 of the 7 x 7 map and fc6 reads 8192 values: 79,991,015 parameters with
Sports-1M's 487 classes, 78,409,573 with UCF101's 101 (the "78M" usually quoted). There is no batch
normalisation in the paper; ``c3d_small`` adds it (it lets a network trained from scratch on a few
hundred clips start learning within a few epochs) and keeps the layout with one convolution per stage,
an eighth of the widths (8-16-32-64-64) and FC 256, for 16 x 32 x 32 clips (about 30M multiply-adds).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo
from ..errors import DataError
from ..registry import register_model

PAPER = "Tran et al., ICCV 2015 (arXiv 1412.0767)"
# (convolutions, width) per stage of the paper's network
FULL = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
SMALL = ((1, 8), (1, 16), (1, 32), (1, 64), (1, 64))


class C3D(Backbone):
    """Five stages of 3 x 3 x 3 convolutions, each ending in a max pooling (1 x 2 x 2 after the first,
    2 x 2 x 2 after the others), then ``classifier``: fc6, fc7 (ReLU, dropout) and fc8.
    ``forward``: N x C x T x H x W -> N x classes."""

    def __init__(self, *, num_classes: int = 487, in_channels: int = 3, stages=FULL, fc: int = 4096,
                 frames: int = 16, image_size: int = 112, batch_norm: bool = False, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        cin, t, side = in_channels, frames, image_size
        self.feature_info = []
        for i, (convs, width) in enumerate(stages):
            for _ in range(convs):
                layers.append(nn.Conv3d(cin, width, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm3d(width))
                layers.append(nn.ReLU(inplace=True))
                cin = width
            window = (1, 2, 2) if i == 0 else (2, 2, 2)
            layers.append(nn.MaxPool3d(window, window, ceil_mode=True))  # Caffe rounds the output size up
            t, side = math.ceil(t / window[0]), math.ceil(side / 2)
            self.feature_info.append(FeatureInfo(f"features.{len(layers) - 1}", width, 2 ** (i + 1)))
        self.features = nn.Sequential(*layers)
        flat = cin * t * side * side  # 512 x 1 x 4 x 4 = 8192 for 16 x 112 x 112 clips
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, fc), nn.ReLU(inplace=True), nn.Dropout(dropout),   # fc6
            nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Dropout(dropout),                   # fc7
            nn.Linear(fc, num_classes))                                                      # fc8
        self.num_classes = num_classes
        self.clip_shape = (frames, image_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        t, side = self.clip_shape
        if x.dim() != 5 or tuple(x.shape[2:]) != (t, side, side):  # fc6 is sized for these clips
            raise DataError(f"this C3D takes clips N x C x {self.clip_shape[0]} x {self.clip_shape[1]} x "
                            f"{self.clip_shape[1]}, got {tuple(x.shape)}")
        return self.features(x)


@register_model("c3d", family="C3D", paper=PAPER, year=2015, input_size=(3, 16, 112, 112), num_classes=487,
                task="video", tags=("video", "3d"), description="8 convs 3x3x3, pool1 1x2x2, fc6/fc7 4096 (§3.3, Fig. 3)")
def c3d(*, num_classes: int = 487, in_channels: int = 3, frames: int = 16, image_size: int = 112) -> C3D:
    """The paper's network: conv1a 64, conv2a 128, conv3a/b 256, conv4a/b 512, conv5a/b 512, fc6/fc7 4096."""
    return C3D(num_classes=num_classes, in_channels=in_channels, frames=frames, image_size=image_size)


@register_model("c3d_small", family="C3D", paper=PAPER, year=2015, input_size=(1, 16, 32, 32), num_classes=9,
                task="video", tags=("video", "3d"),
                description="C3D's layout, one conv 3x3x3 per stage (8-16-32-64-64), BN, FC 256")
def c3d_small(*, num_classes: int = 9, in_channels: int = 1, frames: int = 16, image_size: int = 32) -> C3D:
    """Five stages of one 3 x 3 x 3 convolution (8-16-32-64-64) with batch normalisation, pool1 1 x 2 x 2
    and 2 x 2 x 2 after, fc6/fc7 256."""
    return C3D(num_classes=num_classes, in_channels=in_channels, stages=SMALL, fc=256, frames=frames,
               image_size=image_size, batch_norm=True, dropout=0.3)
