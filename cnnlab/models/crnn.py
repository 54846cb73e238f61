"""CRNN: Shi, Bai & Yao, "An End-to-End Trainable Neural Network for Image-based Sequence Recognition and
Its Application to Scene Text Recognition", TPAMI 2017 (arXiv 1507.05717, 2015).

Table 1 of the paper, bottom to top, for a 1 x 32 x W grey line:

=============  ======================================  ==================
Convolution    64 maps, 3 x 3, stride 1, pad 1
MaxPooling     2 x 2, stride 2                          16 x W/2
Convolution    128 maps, 3 x 3
MaxPooling     2 x 2, stride 2                          8 x W/4
Convolution    256 maps, 3 x 3
Convolution    256 maps, 3 x 3
MaxPooling     window 1 x 2 (height only), stride 2 x 1 4 x W/4
Convolution    512 maps, 3 x 3, then batch normalisation
Convolution    512 maps, 3 x 3, then batch normalisation
MaxPooling     window 1 x 2 (height only), stride 2 x 1 2 x W/4
Convolution    512 maps, 2 x 2, stride 1, pad 0         1 x (W/4 - 1)
Map-to-Seq     one feature vector per column
Bi-LSTM        256 hidden units each way
Bi-LSTM        256 hidden units each way
Transcription  per-column scores of the alphabet + the CTC blank
=============  ======================================  ==================

The paper's rectangular pooling windows are written "1 x 2" (width x height); they halve the height
only, so the feature sequence keeps a quarter of the image's columns (63 steps for a 256-wide line),
each column's receptive field a narrow vertical strip. ``crnn_small`` keeps the table with a quarter
of the maps and 64 LSTM units each way, a size that trains in minutes on a CPU. :class:`BackboneCRNN` puts any zoo
classifier's trunk (``features_only``) in place of the conv stack (``crnn_resnet18``), and
:class:`ColumnLSTM` (``lstm_ctc``) is the baseline without convolutions. The output is
N x T x (num_classes + 1) log-probabilities, class 0 the blank (see :mod:`cnnlab.ocr.ctc`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone
from ..errors import DataError
from ..registry import register_model


def _conv(cin: int, cout: int, *, kernel: int = 3, pad: int = 1, bn: bool = False) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, 1, pad, bias=not bn)] + ([nn.BatchNorm2d(cout)] if bn else []) + [nn.ReLU(True)]


class BidirectionalLSTM(nn.Module):
    """N x T x D -> N x T x 2H: one LSTM layer read both ways, their states side by side (Shi et al. §2.2)."""

    def __init__(self, in_size: int, hidden: int):
        super().__init__()
        self.rnn = nn.LSTM(in_size, hidden, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return out


class CRNN(Backbone):
    """``features`` (the conv stack of Table 1) -> map-to-sequence -> ``sequence`` (2 BiLSTMs) -> ``classifier``
    (a linear layer per column). ``forward`` gives N x T x (num_classes + 1) log-probabilities."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, maps: tuple[int, ...] = (64, 128, 256, 256, 512, 512, 512),
                 hidden_size: int = 256, image_height: int = 32):
        super().__init__()
        if image_height != 32:
            raise DataError(f"CRNN's conv stack turns lines 32 pixels high into one row of features; got height {image_height}")
        m = maps
        self.features = nn.Sequential(
            *_conv(in_channels, m[0]), nn.MaxPool2d(2, 2),             # N x m0 x 16 x W/2
            *_conv(m[0], m[1]), nn.MaxPool2d(2, 2),                     # N x m1 x 8 x W/4
            *_conv(m[1], m[2]), *_conv(m[2], m[3]),
            nn.MaxPool2d((2, 1), (2, 1)),                               # N x m3 x 4 x W/4: height halved only
            *_conv(m[3], m[4], bn=True), *_conv(m[4], m[5], bn=True),
            nn.MaxPool2d((2, 1), (2, 1)),                               # N x m5 x 2 x W/4
            *_conv(m[5], m[6], kernel=2, pad=0),                         # N x m6 x 1 x (W/4 - 1)
        )
        self.sequence = nn.Sequential(BidirectionalLSTM(m[6], hidden_size), BidirectionalLSTM(2 * hidden_size, hidden_size))
        self.classifier = nn.Linear(2 * hidden_size, num_classes + 1)  # + 1: the CTC blank, class 0
        self.num_classes = num_classes
        self.feature_info = []  # one feature row, not a pyramid of maps: features_only does not apply

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [("features", self.features), ("sequence", self.sequence)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # N x D x 1 x T
        if f.shape[2] != 1:
            raise DataError(f"CRNN needs lines 32 pixels high, got {x.shape[-2]}")
        return self.sequence(f.squeeze(2).transpose(1, 2))  # map-to-sequence: N x T x D -> N x T x 2H

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x)).log_softmax(-1)  # N x T x (K + 1)


_TAGS = ("ocr", "sequence")


@register_model("crnn", family="CRNN", paper="Shi et al., TPAMI 2017 (arXiv 1507.05717)", year=2015,
                input_size=(1, 32, 256), num_classes=10, task="ocr", tags=_TAGS,
                description="conv stack -> 2 BiLSTM -> CTC (Table 1)")
def crnn(*, num_classes: int = 10, in_channels: int = 1) -> CRNN:
    """Table 1 as published: maps 64-128-256-256-512-512-512, 256 LSTM units each way."""
    return CRNN(num_classes=num_classes, in_channels=in_channels)


@register_model("crnn_small", family="CRNN", paper="Shi et al., TPAMI 2017 (arXiv 1507.05717)", year=2015,
                input_size=(1, 32, 256), num_classes=10, task="ocr", tags=_TAGS,
                description="Table 1 with a quarter of the maps, 64 LSTM units each way")
def crnn_small(*, num_classes: int = 10, in_channels: int = 1) -> CRNN:
    """Table 1 with a quarter of the maps (16-32-64-64-128-128-128) and 64 LSTM units each way."""
    return CRNN(num_classes=num_classes, in_channels=in_channels, maps=(16, 32, 64, 64, 128, 128, 128), hidden_size=64)


class ColumnLSTM(Backbone):
    """The baseline without convolutions: each pixel column of the line (C * H values) is one step of
    the two BiLSTMs, and each step scores the alphabet + blank, as CRNN's columns do (the row-by-row
    readers of :mod:`cnnlab.models.recurrent`, turned to read a line left to right)."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, hidden_size: int = 64, image_height: int = 32):
        super().__init__()
        self.image_height = image_height
        self.sequence = nn.Sequential(BidirectionalLSTM(in_channels * image_height, hidden_size),
                                      BidirectionalLSTM(2 * hidden_size, hidden_size))
        self.classifier = nn.Linear(2 * hidden_size, num_classes + 1)
        self.num_classes = num_classes
        self.feature_info = []

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [("sequence", self.sequence)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if h != self.image_height:
            raise DataError(f"this column reader takes lines {self.image_height} pixels high, got {h}")
        return self.sequence(x.permute(0, 3, 1, 2).reshape(n, w, c * h))  # N x W x (C*H): step t = column t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x)).log_softmax(-1)  # N x W x (K + 1)


@register_model("lstm_ctc", family="RNN", paper="Graves et al., ICML 2006 (CTC); Hochreiter & Schmidhuber 1997",
                year=2006, input_size=(1, 32, 256), num_classes=10, task="ocr", tags=_TAGS,
                description="baseline: 2 BiLSTM 64 over raw pixel columns -> CTC (no convolutions)")
def lstm_ctc(*, num_classes: int = 10, in_channels: int = 1) -> ColumnLSTM:
    """CRNN's recurrent layers alone, reading the line's pixel columns (256 steps for a 256-wide line)."""
    return ColumnLSTM(num_classes=num_classes, in_channels=in_channels)


class BackboneCRNN(Backbone):
    """CRNN over any zoo classifier's trunk (``features_only``): its deepest stage whose width reduction is
    at most ``max_reduction`` (8: 32 columns for a 256-wide line, room for 15 characters), averaged over
    the height (the column of features the paper's conv stack leaves), then the two BiLSTMs and the
    per-column classifier of Table 1. The backbone is built in its small-input form, for 32-pixel lines."""

    def __init__(self, backbone: str, *, num_classes: int = 10, in_channels: int = 1, hidden_size: int = 64,
                 max_reduction: int = 8):
        super().__init__()
        from ..backbone import FeatureExtractor
        from ..errors import ConfigError
        from ..registry import create_model

        trunk = create_model(backbone, input_size=(in_channels, 32, 32), num_classes=10)
        stages = [i for i, f in enumerate(trunk.feature_info) if f.reduction <= max_reduction]
        if not stages:
            raise ConfigError(f"{backbone} has no stage with a reduction of at most {max_reduction}")
        self.backbone_name = backbone
        self.features = FeatureExtractor(trunk, [stages[-1]])
        channels = self.features.channels[0]
        self.sequence = nn.Sequential(BidirectionalLSTM(channels, hidden_size), BidirectionalLSTM(2 * hidden_size, hidden_size))
        self.classifier = nn.Linear(2 * hidden_size, num_classes + 1)
        self.num_classes = num_classes
        self.feature_info = []

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [("features", self.features), ("sequence", self.sequence)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        (f,) = self.features(x)  # N x C x h x W/r
        return self.sequence(f.mean(2).transpose(1, 2))  # height averaged: N x W/r x C -> N x W/r x 2H

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x)).log_softmax(-1)  # N x W/r x (K + 1)


@register_model("crnn_resnet18", family="CRNN", paper="Shi et al., TPAMI 2017; He et al., CVPR 2016", year=2016,
                input_size=(1, 32, 256), num_classes=10, task="ocr", tags=_TAGS,
                description="ResNet-18's trunk to layer3 (stride 8) -> 2 BiLSTM 64 -> CTC")
def crnn_resnet18(*, num_classes: int = 10, in_channels: int = 1) -> BackboneCRNN:
    """CRNN with the zoo's ResNet-18 (small-input form) as its convolutional stack, through ``features_only``."""
    return BackboneCRNN("resnet18", num_classes=num_classes, in_channels=in_channels)
