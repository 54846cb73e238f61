"""GoogLeNet / Inception v1 (Szegedy et al., CVPR 2015, "Going deeper with convolutions").

Built from Table 1 (see :mod:`cnnlab.specs.googlenet`), with the table's true 5x5 branches (some
popular implementations use 3x3 there), ReLU after every convolution, local response normalisation
in the stem, 40% dropout before the classifier, and the two auxiliary classifiers of §5 after 4a and
4d: average pool 5x5/3, 1x1 conv with 128 filters, FC 1024, 70% dropout, FC classes. In training mode
``forward`` returns :class:`~cnnlab.backbone.AuxiliaryOutputs` ``(logits, (aux1, aux2), (0.3, 0.3))``
and :func:`cnnlab.train.losses.auxiliary_loss` combines them as main + 0.3 * aux1 + 0.3 * aux2; in
evaluation mode the auxiliary heads are skipped.

``batch_norm=True`` adds batch normalisation after each convolution (as in Inception v2), and
``small_input=True`` gives the 28x28 form: a 3x3 stride-1 stem without its first two poolings and,
unless ``width`` says otherwise, a quarter of Table 1's widths, with batch norm so it trains quickly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..backbone import AuxiliaryOutputs, Backbone, Stages
from ..layers.conv import ConvBNAct
from ..layers.lrn import PaperLRN
from ..registry import register_model
from ..specs.googlenet import INCEPTION_ROWS, inception_out_channels

AUX_WEIGHT = 0.3  # §5: "their loss is added to the total loss of the network with a discount weight"


def conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, batch_norm: bool = False) -> ConvBNAct:
    """conv -> [BN] -> ReLU, padded to keep the size."""
    return ConvBNAct(in_channels, out_channels, kernel, stride, norm=batch_norm)


class Inception(nn.Module):
    """One inception module: four parallel branches concatenated along the channels (Fig. 2b)."""

    def __init__(self, in_channels: int, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, pool_proj: int,
                 batch_norm: bool = False):
        super().__init__()
        self.branch1 = conv(in_channels, c1, 1, batch_norm=batch_norm)
        self.branch2 = nn.Sequential(conv(in_channels, c3_reduce, 1, batch_norm=batch_norm),
                                     conv(c3_reduce, c3, 3, batch_norm=batch_norm))
        self.branch3 = nn.Sequential(conv(in_channels, c5_reduce, 1, batch_norm=batch_norm),
                                     conv(c5_reduce, c5, 5, batch_norm=batch_norm))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), conv(in_channels, pool_proj, 1, batch_norm=batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x (c1 + c3 + c5 + pool_proj) x H x W
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class AuxiliaryClassifier(nn.Module):
    """§5: avg-pool 5x5/3 -> 1x1 conv 128 -> FC 1024 -> dropout 70% -> FC classes."""

    def __init__(self, in_channels: int, num_classes: int, small_input: bool, batch_norm: bool):
        super().__init__()
        # 14x14 -> 4x4 as in the paper; the 7x7 maps of the small form are pooled to 1x1.
        self.pool = nn.AvgPool2d(5, 3) if not small_input else nn.AdaptiveAvgPool2d(1)
        side = 4 if not small_input else 1
        self.conv = conv(in_channels, 128, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(128 * side * side, 1024)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(torch.relu(self.fc1(x))))


class GoogLeNet(Backbone):
    """GoogLeNet; in training mode ``forward`` returns ``AuxiliaryOutputs(logits, (aux1, aux2), (0.3, 0.3))``,
    in evaluation mode the logits only.
    """

    head_modules = ("classifier", "aux1", "aux2")

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 batch_norm: bool | None = None, width: float | None = None, aux_logits: bool = True,
                 dropout: float = 0.4):
        super().__init__()
        batch_norm = small_input if batch_norm is None else batch_norm
        width = (0.25 if small_input else 1.0) if width is None else width

        def w(c: int) -> int:
            return max(8, int(round(c * width)))

        rows = {name: (0,) + tuple(w(c) for c in row[1:]) for name, row in INCEPTION_ROWS.items()}
        # (name, module, output channels, stride)
        if small_input:  # 28x28 -> 28 (stem) -> 14 (pool) -> 7 -> 3
            stem = [("conv1", conv(in_channels, w(64), 3, batch_norm=batch_norm), w(64), 1),
                    ("conv2", conv(w(64), w(64), 1, batch_norm=batch_norm), w(64), 1),
                    ("conv3", conv(w(64), w(192), 3, batch_norm=batch_norm), w(192), 1),
                    ("pool2", nn.MaxPool2d(3, 2, padding=1), w(192), 2)]
        else:  # 224 -> 112 -> 56 -> 28 (Table 1's first rows)
            stem = [("conv1", conv(in_channels, w(64), 7, 2, batch_norm=batch_norm), w(64), 2),
                    ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True), w(64), 2), ("norm1", PaperLRN(), w(64), 1),
                    ("conv2", conv(w(64), w(64), 1, batch_norm=batch_norm), w(64), 1),
                    ("conv3", conv(w(64), w(192), 3, batch_norm=batch_norm), w(192), 1),
                    ("norm2", PaperLRN(), w(192), 1),
                    ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True), w(192), 2)]
        layers = OrderedDict((name, module) for name, module, _, _ in stem)
        stages = Stages()
        for name, _, out, stride in stem:
            stages.add(f"features.{name}", out, stride)
        channels = w(192)
        for name in INCEPTION_ROWS:
            if name in ("4a", "5a"):
                layers[f"pool{name[0]}"] = nn.MaxPool2d(3, 2, ceil_mode=True)
                stages.add(f"features.pool{name[0]}", channels, 2)
            row = rows[name]
            layers[f"inception{name}"] = Inception(channels, *row[1:], batch_norm=batch_norm)
            channels = inception_out_channels(row)
            stages.add(f"features.inception{name}", channels)
        self.features = nn.Sequential(layers)  # N x 1024 x 7 x 7 at 224x224
        self.feature_info = stages.info()
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                        nn.Linear(channels, num_classes))
        self.aux1 = AuxiliaryClassifier(inception_out_channels(rows["4a"]), num_classes, small_input, batch_norm) if aux_logits else None
        self.aux2 = AuxiliaryClassifier(inception_out_channels(rows["4d"]), num_classes, small_input, batch_norm) if aux_logits else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | AuxiliaryOutputs:
        use_aux = self.training and self.aux1 is not None
        aux = []
        for name, layer in self.features.named_children():
            x = layer(x)
            if use_aux and name == "inception4a":
                aux.append(self.aux1(x))
            elif use_aux and name == "inception4d":
                aux.append(self.aux2(x))
        logits = self.forward_head(x)
        return AuxiliaryOutputs(logits, tuple(aux), (AUX_WEIGHT, AUX_WEIGHT)) if use_aux else logits


@register_model("googlenet", family="GoogLeNet", paper="Szegedy et al., CVPR 2015", year=2014,
                input_size=(3, 224, 224), top1=None, top5=89.93)
def googlenet(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
              batch_norm: bool | None = None, width: float | None = None, aux_logits: bool = True) -> GoogLeNet:
    """GoogLeNet from Table 1, with auxiliary classifiers used in training."""
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, small_input=small_input,
                     batch_norm=batch_norm, width=width, aux_logits=aux_logits)
