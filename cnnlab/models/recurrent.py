"""Recurrent classifiers: an image read row by row by an LSTM or a GRU.

LSTM: Hochreiter & Schmidhuber, Neural Computation 1997 (with the forget gate of Gers et al. 2000,
as ``nn.LSTM`` implements it); GRU: Cho et al., EMNLP 2014. A C x H x W image becomes a sequence of
H steps, each the C * W pixels of one row; the last hidden state of the top layer feeds a linear
classifier. ``features`` maps N x C x H x W to the N x H x hidden sequence of hidden states, and
``classifier`` takes its last step to class scores, so the two-part interface of the zoo holds.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone
from ..errors import DataError
from ..registry import register_model


class RowEncoder(nn.Module):
    """N x C x H x W -> N x H x (C*W) sequence -> recurrent layers -> N x H x hidden."""

    def __init__(self, cell: str, in_channels: int, image_width: int, hidden_size: int, num_layers: int):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.image_width = image_width
        self.rnn = rnn(in_channels * image_width, hidden_size, num_layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if w != self.image_width:
            raise DataError(f"this recurrent classifier reads rows of {self.image_width} pixels, got images {w} wide")
        rows = x.permute(0, 2, 1, 3).reshape(n, h, c * w)  # step t = row t, all channels side by side
        out, _ = self.rnn(rows)
        return out


class LastStep(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1]  # N x hidden: the state after reading the whole image


class RecurrentClassifier(Backbone):
    """``forward_features`` gives the N x H x hidden sequence of states; there are no feature maps, so
    ``feature_info`` is empty and ``features_only`` is refused."""

    def __init__(self, *, cell: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 hidden_size: int = 128, num_layers: int = 2):
        super().__init__()
        self.features = RowEncoder(cell, in_channels, image_size, hidden_size, num_layers)
        self.classifier = nn.Sequential(LastStep(), nn.Linear(hidden_size, num_classes))
        self.feature_info = []

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [("features", self.features)]


@register_model("lstm_classifier", family="RNN", paper="Hochreiter & Schmidhuber, Neural Computation 1997",
                year=1997, input_size=(1, 28, 28), num_classes=10)
def lstm_classifier(*, num_classes: int = 10, in_channels: int = 1, small_input: bool = True, image_size: int = 28,
                    hidden_size: int = 128, num_layers: int = 2) -> RecurrentClassifier:
    """Two-layer LSTM reading the image row by row (``small_input`` is its only form)."""
    return RecurrentClassifier(cell="lstm", num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                               hidden_size=hidden_size, num_layers=num_layers)


@register_model("gru_classifier", family="RNN", paper="Cho et al., EMNLP 2014", year=2014, input_size=(1, 28, 28),
                num_classes=10)
def gru_classifier(*, num_classes: int = 10, in_channels: int = 1, small_input: bool = True, image_size: int = 28,
                   hidden_size: int = 128, num_layers: int = 2) -> RecurrentClassifier:
    """Two-layer GRU reading the image row by row (``small_input`` is its only form)."""
    return RecurrentClassifier(cell="gru", num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                               hidden_size=hidden_size, num_layers=num_layers)
