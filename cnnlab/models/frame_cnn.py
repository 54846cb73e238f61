"""The single-frame baseline of video classification: Karpathy, Toderici, Shetty, Leung, Sukthankar &
Fei-Fei, "Large-scale Video Classification with Convolutional Neural Networks", CVPR 2014 (§3.1, the
"Single-frame" model of Table 1).

A 2D CNN sees one frame of the clip, the middle one (index ``T // 2``), and nothing of the others. On
a task whose class is the motion (:mod:`cnnlab.data.moving_items`) it cannot beat chance: that is its
purpose, the proof that the clip models' accuracy comes from time (docs/video.md). The network is a
small VGG-style stack (3 x 3 convolutions, batch normalisation, 2 x 2 max pooling) whose last map is
flattened, so that where the item is stays visible to the classifier, as it is to the clip models.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo
from ..errors import DataError
from ..registry import register_model


class FrameCNN(Backbone):
    """N x C x T x H x W -> frame ``T // 2`` -> ``features`` (2D convs) -> flattened -> ``classifier``."""

    def __init__(self, *, num_classes: int = 9, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128),
                 hidden: int = 128, image_size: int = 32, frames: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for width in widths:  # each stage halves the side: N x w x S/2^i x S/2^i
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = width
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(widths)
        if side < 1:
            raise DataError(f"frames of {image_size} pixels are too small for {len(widths)} poolings")
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(cin * side * side, hidden),
                                        nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
        self.num_classes = num_classes
        self.frames = frames
        self.image_size = image_size  # the flattened map's size depends on it
        self.feature_info = [FeatureInfo(f"features.{4 * i + 3}", w, 2 ** (i + 1)) for i, w in enumerate(widths)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or tuple(x.shape[3:]) != (self.image_size, self.image_size):
            raise DataError(f"this model takes clips N x C x T x {self.image_size} x {self.image_size}, got {tuple(x.shape)}")
        return self.features(x[:, :, x.shape[2] // 2])  # the middle frame only: N x C x H x W -> N x 128 x S/8 x S/8


@register_model("frame_cnn", family="Single frame", paper="Karpathy et al., CVPR 2014 (single-frame model)",
                year=2014, input_size=(1, 16, 32, 32), num_classes=9, task="video", tags=("video", "baseline"),
                description="baseline: a 2D CNN on the middle frame only (no time)")
def frame_cnn(*, num_classes: int = 9, in_channels: int = 1, image_size: int = 32, frames: int = 16) -> FrameCNN:
    """Three 3 x 3 conv stages (32-64-128, BN, max pool) on frame T // 2, then FC 128 and the classes."""
    return FrameCNN(num_classes=num_classes, in_channels=in_channels, image_size=image_size, frames=frames)
