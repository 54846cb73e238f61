"""Inception v3 (Szegedy et al., CVPR 2016, "Rethinking the Inception Architecture"), Table 1.

Factorised convolutions: a 5x5 becomes two 3x3s (Fig. 5, ``InceptionA``, which also keeps a real
1x1 -> 5x5 branch beside the two 3x3s, as the network of Google's released weights and torchvision's
port of them do: matching that network is what lets those weight files load), an nxn becomes 1xn then
nx1 (Fig. 6, ``InceptionC`` with n = 7), and the coarsest grid uses expanded 1x3 / 3x1 filter banks
(Fig. 7, ``InceptionE``); grid size shrinks by parallel stride-2 convolution and pooling (Fig. 10,
``InceptionB``/``InceptionD``). Batch-normalised convolutions throughout, one auxiliary classifier on
the 17x17 grid (in training ``forward`` returns :class:`~cnnlab.backbone.AuxiliaryOutputs` with weight
0.3, as is customary; the paper uses it as a regulariser). Module and parameter names follow torchvision (``Conv2d_1a_3x3``, ``Mixed_5b``...).

``small_input=True`` removes the stem's strides and its first pooling, so a 28x28 image reaches
Mixed_5 at 13x13 and the two reductions give 6x6 and 2x2; the widths stay the paper's, so it is
still the heaviest small form of the zoo on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import AuxiliaryOutputs, Backbone, Stages
from ..layers.conv import ConvBNAct
from ..registry import register_model


def bc(in_channels: int, out_channels: int, kernel, stride: int = 1, padding=0) -> ConvBNAct:
    """torchvision's BasicConv2d: conv (no bias) -> BN (eps 0.001) -> ReLU."""
    return ConvBNAct(in_channels, out_channels, kernel, stride, padding, eps=0.001)


class InceptionA(nn.Module):  # 35x35 grid, Fig. 5 plus the released model's 5x5 branch
    def __init__(self, c: int, pool_features: int):
        super().__init__()
        self.branch1x1 = bc(c, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = bc(c, 48, 1), bc(48, 64, 5, padding=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3 = bc(c, 64, 1), bc(64, 96, 3, padding=1), bc(96, 96, 3, padding=1)
        self.branch_pool = bc(c, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionB(nn.Module):  # 35 -> 17 grid reduction, Fig. 10
    def __init__(self, c: int):
        super().__init__()
        self.branch3x3 = bc(c, 384, 3, stride=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3 = bc(c, 64, 1), bc(64, 96, 3, padding=1), bc(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):  # 17x17 grid, Fig. 6 with n = 7
    def __init__(self, c: int, c7: int):
        super().__init__()
        self.branch1x1 = bc(c, 192, 1)
        self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = bc(c, c7, 1), bc(c7, c7, (1, 7), padding=(0, 3)), bc(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = bc(c, c7, 1)
        self.branch7x7dbl_2 = bc(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = bc(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = bc(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = bc(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = bc(c, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionD(nn.Module):  # 17 -> 8 grid reduction
    def __init__(self, c: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = bc(c, 192, 1), bc(192, 320, 3, stride=2)
        self.branch7x7x3_1 = bc(c, 192, 1)
        self.branch7x7x3_2 = bc(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = bc(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = bc(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):  # 8x8 grid, Fig. 7: expanded filter banks
    def __init__(self, c: int):
        super().__init__()
        self.branch1x1 = bc(c, 320, 1)
        self.branch3x3_1 = bc(c, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = bc(384, 384, (1, 3), padding=(0, 1)), bc(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = bc(c, 448, 1), bc(448, 384, 3, padding=1)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = bc(384, 384, (1, 3), padding=(0, 1)), bc(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = bc(c, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionAux(nn.Module):
    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.conv0, self.conv1 = bc(c, 128, 1), bc(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x):
        x = F.avg_pool2d(x, 5, 3) if x.shape[-1] >= 17 else x  # 17x17 -> 5x5
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.conv1(self.conv0(x)), 1), 1))


AUX_WEIGHT = 0.3

TRUNK = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
          "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
          "Mixed_7a", "Mixed_7b", "Mixed_7c"]


class InceptionV3(Backbone):
    """Modules sit at the top level under torchvision's names, so its weight files load."""

    head_modules = ("AuxLogits", "avgpool", "dropout", "fc")

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 aux_logits: bool = True, dropout: float = 0.5):
        super().__init__()
        s, pad = (1, 1) if small_input else (2, 0)
        self.Conv2d_1a_3x3 = bc(in_channels, 32, 3, stride=s, padding=pad)  # 299 -> 149
        self.Conv2d_2a_3x3 = bc(32, 32, 3, padding=pad)  # 147
        self.Conv2d_2b_3x3 = bc(32, 64, 3, padding=1)  # 147
        self.maxpool1 = nn.Identity() if small_input else nn.MaxPool2d(3, 2)  # 73
        self.Conv2d_3b_1x1 = bc(64, 80, 1)
        self.Conv2d_4a_3x3 = bc(80, 192, 3, padding=pad)  # 71
        self.maxpool2 = nn.MaxPool2d(3, 2)  # N x 192 x 35 x 35 (small form: 28 -> 13, so Mixed_5 is affordable)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)  # 35 -> 17: N x 768 x 17 x 17
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = InceptionD(768), InceptionE(1280), InceptionE(2048)  # 8x8x2048
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2048, num_classes)
        stages = Stages()  # (module, output channels, stride) down Table 1
        for name, out, stride in [("Conv2d_1a_3x3", 32, s), ("Conv2d_2a_3x3", 32, 1), ("Conv2d_2b_3x3", 64, 1),
                                  ("maxpool1", 64, 1 if small_input else 2), ("Conv2d_3b_1x1", 80, 1),
                                  ("Conv2d_4a_3x3", 192, 1), ("maxpool2", 192, 2), ("Mixed_5b", 256, 1),
                                  ("Mixed_5c", 288, 1), ("Mixed_5d", 288, 1), ("Mixed_6a", 768, 2),
                                  ("Mixed_6b", 768, 1), ("Mixed_6c", 768, 1), ("Mixed_6d", 768, 1),
                                  ("Mixed_6e", 768, 1), ("Mixed_7a", 1280, 2), ("Mixed_7b", 2048, 1),
                                  ("Mixed_7c", 2048, 1)]:
            stages.add(name, out, stride)
        self.feature_info = stages.info()

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [(name, getattr(self, name)) for name in TRUNK]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | AuxiliaryOutputs:
        aux = None
        for name, layer in self.trunk():
            x = layer(x)
            if name == "Mixed_6e" and self.training and self.AuxLogits is not None:
                aux = self.AuxLogits(x)
        logits = self.forward_head(x)
        return AuxiliaryOutputs(logits, (aux,), (AUX_WEIGHT,)) if aux is not None else logits


@register_model("inception_v3", family="GoogLeNet", paper="Szegedy et al., CVPR 2016", year=2015,
                input_size=(3, 299, 299), top1=77.294, top5=93.450)
def inception_v3(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 aux_logits: bool = True) -> InceptionV3:
    """Inception v3 with factorised convolutions and an auxiliary classifier."""
    return InceptionV3(num_classes=num_classes, in_channels=in_channels, small_input=small_input, aux_logits=aux_logits)
