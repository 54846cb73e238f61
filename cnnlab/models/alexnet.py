"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) and ZFNet (Zeiler & Fergus, ECCV 2014).

Three forms of AlexNet:

* ``alexnet_original`` — the paper as the decks dissect it: 227x227 input, conv1 11x11/4 x96, ReLU,
  local response normalisation (k=2, n=5, alpha=1e-4, beta=0.75) after conv1 and conv2, then overlapping
  3x3/2 max-pooling (§3.5: the pools follow the normalisation layers), the two GPU towers as grouped
  convolutions where the paper splits them (conv2, conv4, conv5 use ``groups=2``), and FC 4096 -> 4096 ->
  classes with dropout 0.5 on the outputs of FC6 and FC7 (§4.2, "dropout in the first two fully-connected
  layers"; the decks' FC -> ReLU -> Dropout). 60,965,224 parameters.
* ``alexnet`` — the single-tower variant of torchvision (64/192/384/256/256 filters, no LRN), with its
  parameter names and its module order (dropout *before* FC6 and FC7), so its weight files load and it
  computes what torchvision's computes, in training too: 61,100,840 parameters.
* ``small_input=True`` — for 28x28 greyscale: 3x3 stride-1 first layer, half the widths, 2x2 pools
  before the paper's overlapping 3x3/2 one; the same 5 conv + 3 FC design. ``alexnet_original``,
  ``zfnet`` and ``zfnet_wide`` drop FC6's and FC7's outputs there too, ``alexnet`` keeps torchvision's order.

ZFNet (Fig. 3 of the paper): conv1 7x7/2, conv2 5x5/2, conv3/4/5 with 384/384/256 maps, each of the first
two layers ReLU -> 3x3/2 max-pool -> contrast normalisation across maps, in that order (the caption of
Fig. 3), on one GPU: 62,357,608 parameters for 1000 classes at 224x224. ``zfnet_wide`` is the paper's
Table 2 variant (b), conv3/4/5 with 512/1024/512 maps: 107,627,624 parameters.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo, Stages
from ..layers.lrn import PaperLRN
from ..output_size import conv_output_size
from ..registry import register_model
from ..specs.alexnet import ALEXNET_CONVS, ALEXNET_FC, ZFNET_CONVS, ZFNET_WIDE_CONVS


def paper_head(in_features: int, hidden: list[int], num_classes: int, dropout: float) -> OrderedDict:
    """fc6 -> relu6 -> drop6 -> fc7 -> relu7 -> drop7 -> fc8: dropout on the *outputs* of the hidden FC layers.

    Krizhevsky et al. 2012, §4.2 ("we use dropout in the first two fully-connected layers"), and Caffe's
    reference model, where drop6 and drop7 follow relu6 and relu7. Returned as named layers to put in a
    ``nn.Sequential``.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width, number = in_features, 6
    for units in hidden:
        layers[f"fc{number}"] = nn.Linear(width, units)
        layers[f"relu{number}"] = nn.ReLU(inplace=True)
        layers[f"drop{number}"] = nn.Dropout(dropout)
        width, number = units, number + 1
    layers[f"fc{number}"] = nn.Linear(width, num_classes)
    return layers


class PaperAlexNet(Backbone):
    """AlexNet / ZFNet built from a conv table: conv -> ReLU [-> LRN] [-> pool] ... -> FC head.

    ``norm_after_pool`` puts the normalisation after the pooling (ZFNet's Fig. 3) instead of before it
    (AlexNet §3.5).
    """

    def __init__(self, convs: list[tuple], *, num_classes: int, in_channels: int, fc: list[int],
                 pool_after: tuple[str, ...] = ("conv1", "conv2", "conv5"), lrn_after: tuple[str, ...] = ("conv1", "conv2"),
                 ceil_pools: bool = False, norm_after_pool: bool = False, dropout: float = 0.5,
                 image_size: int = 227):
        super().__init__()
        layers: dict[str, nn.Module] = {}
        stages = Stages()
        channels, side = in_channels, image_size
        for name, filters, kernel, stride, padding, groups in convs:
            number = name[-1]
            layers[name] = nn.Conv2d(channels, filters, kernel, stride, padding, groups=groups)
            layers[f"relu{number}"] = nn.ReLU(inplace=True)
            stages.add(f"features.{name}", filters, stride)
            stages.add(f"features.relu{number}", filters)
            side = conv_output_size(side, kernel, stride, padding).size
            norm = {f"norm{number}": PaperLRN()} if name in lrn_after else {}
            pool = {}
            if name in pool_after:
                # Overlapping pooling (§3.4): 3x3 windows with stride 2.
                pool[f"pool{number}"] = nn.MaxPool2d(3, 2, ceil_mode=ceil_pools)
                side = conv_output_size(side, 3, 2, ceil_mode=ceil_pools).size
            for part in ((pool, norm) if norm_after_pool else (norm, pool)):
                layers.update(part)
                for key in part:
                    stages.add(f"features.{key}", filters, 2 if key.startswith("pool") else 1)
            channels = filters
        self.features = nn.Sequential(OrderedDict(layers))  # N x 256 x 6 x 6 at 227x227
        self.feature_info = stages.info()
        head: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        head.update(paper_head(channels * side * side, fc, num_classes, dropout))
        self.classifier = nn.Sequential(head)


class AlexNet(Backbone):
    """Single-tower AlexNet with torchvision's layout and parameter names (``features.0`` ...).

    ``paper_dropout=True`` swaps torchvision's head (dropout before FC6 and FC7) for the paper's
    (:func:`paper_head`: dropout after FC6 and FC7); its parameter names are then ``classifier.fc6`` ...
    """

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 dropout: float = 0.5, paper_dropout: bool = False):
        super().__init__()
        if small_input:
            # 28x28: 3x3 stride 1 instead of 11x11 stride 4; widths halved; 2x2 pools then one overlapping.
            w = (32, 96, 192, 128, 128)
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, w[0], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 14x14
                nn.Conv2d(w[0], w[1], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 7x7
                nn.Conv2d(w[1], w[2], 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(w[2], w[3], 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(w[3], w[4], 3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2),  # N x 128 x 3 x 3
            )
            pooled, hidden = 3, 512
        else:
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True),  # 55x55
                nn.MaxPool2d(3, 2),  # 27x27
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),  # 13x13
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2),  # N x 256 x 6 x 6
            )
            pooled, hidden = 6, 4096
        # conv1..conv5 activations and the last pool; the small form starts at stride 1, the paper's at 4.
        first = 1 if small_input else 4
        self.feature_info = [FeatureInfo(f"features.{i}", self.features[i - 1].out_channels, first * r)
                             for i, r in ((1, 1), (4, 2), (11, 4))] + [
                             FeatureInfo("features.12", self.features[10].out_channels, first * 8)]
        channels = self.features[-3].out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        if paper_dropout:
            self.classifier = nn.Sequential(paper_head(channels * pooled * pooled, [hidden, hidden], num_classes,
                                                       dropout))
        else:  # torchvision's order, which its weight files and its training-mode outputs depend on
            self.classifier = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(channels * pooled * pooled, hidden), nn.ReLU(inplace=True),
                nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                nn.Linear(hidden, num_classes),
            )

    head_modules = ("avgpool", "classifier")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return super().forward_head(torch.flatten(self.avgpool(x), 1), pre_logits)


@register_model("alexnet_original", family="AlexNet", paper="Krizhevsky et al., NIPS 2012", year=2012,
                input_size=(3, 227, 227), top1=59.3, top5=81.8)
def alexnet_original(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    """AlexNet as in the paper: two towers as grouped convolutions, LRN, overlapping pooling, dropout after FC6/FC7."""
    if small_input:
        return AlexNet(num_classes=num_classes, in_channels=in_channels, small_input=True, paper_dropout=True)
    return PaperAlexNet(ALEXNET_CONVS, num_classes=num_classes, in_channels=in_channels, fc=ALEXNET_FC)


@register_model("alexnet", family="AlexNet", paper="Krizhevsky 2014 (one weird trick), torchvision layout",
                year=2012, input_size=(3, 224, 224), top1=56.522, top5=79.066)
def alexnet(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> AlexNet:
    """Single-tower AlexNet with torchvision's parameter names and module order."""
    return AlexNet(num_classes=num_classes, in_channels=in_channels, small_input=small_input)


def _zfnet(convs: list[tuple], num_classes: int, in_channels: int, small_input: bool) -> nn.Module:
    if small_input:
        return AlexNet(num_classes=num_classes, in_channels=in_channels, small_input=True, paper_dropout=True)
    # Fig. 3: pools round up (110 -> 55, 26 -> 13, 13 -> 6) and each pool is followed by contrast normalisation
    # across feature maps (AlexNet's LRN here; the paper gives no constants).
    return PaperAlexNet(convs, num_classes=num_classes, in_channels=in_channels, fc=ALEXNET_FC,
                        ceil_pools=True, norm_after_pool=True, image_size=224)


@register_model("zfnet", family="ZFNet", paper="Zeiler & Fergus, ECCV 2014 (Fig. 3)", year=2013,
                input_size=(3, 224, 224), top1=None, top5=83.5)
def zfnet(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    """ZFNet, Fig. 3: AlexNet with a 7x7/2 conv1 and a stride-2 conv2, conv3/4/5 of 384/384/256 maps.

    62,357,608 parameters for 1000 classes at 224x224: conv1 (7·7·3 + 1)·96 = 14,208, conv2 (5·5·96 + 1)·256
    = 614,656, conv3 (3·3·256 + 1)·384 = 885,120, conv4 (3·3·384 + 1)·384 = 1,327,488, conv5 (3·3·384 + 1)·256
    = 884,992, fc6 (6·6·256 + 1)·4096 = 37,752,832, fc7 (4096 + 1)·4096 = 16,781,312, fc8 (4096 + 1)·1000
    = 4,097,000. The same count as pytorchcv's ``zfnet`` (osmr/imgclsmob).
    """
    return _zfnet(ZFNET_CONVS, num_classes, in_channels, small_input)


@register_model("zfnet_wide", family="ZFNet", paper="Zeiler & Fergus, ECCV 2014 (Table 2, model (b))", year=2013,
                input_size=(3, 224, 224), top1=None, top5=None)
def zfnet_wide(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    """ZFNet with conv3/4/5 widened to 512/1024/512 maps: 107,627,624 parameters (1000 classes, 224x224).

    Source: Zeiler & Fergus 2014 (arXiv:1311.2901v3), Table 2, the row "1 convnet as per Fig. 3 but with
    layers 3,4,5: 512,1024,512 maps - (b)", one member of the six-network ensemble the paper ends with;
    pytorchcv's ``zfnetb`` (osmr/imgclsmob) builds the same widths and counts the same parameters. cs231n's
    ZFNet slide quotes these widths as if they were ZFNet's; Fig. 3, the paper's model, keeps 384/384/256.
    """
    return _zfnet(ZFNET_WIDE_CONVS, num_classes, in_channels, small_input)
