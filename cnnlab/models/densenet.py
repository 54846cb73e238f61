"""DenseNet (Huang, Liu, van der Maaten & Weinberger, CVPR 2017), Table 1, and a small DenseNet-BC.

``densenet121/169/201/264`` are DenseNet-BC with growth rate k = 32 (bottleneck 1x1 convs of 4k maps,
compression 0.5), with torchvision's parameter names: ``features.conv0``, ``features.denseblock1.
denselayer1.conv1``, ``features.transition1``, ``features.norm5``, ``classifier``. ``classifier`` is a
:class:`~cnnlab.layers.dense.PooledLinear` (global pooling + FC) so the names stay torchvision's.

Small-input form (28x28): a 3x3 stride-1 stem, then the 3x3/2 max-pool, and half the growth rate
(k = 16), so the blocks see 14 -> 7 -> 3 -> 1 grids and an epoch costs minutes, not hours, on a CPU.
``densenet_bc_small`` is the three-block DenseNet-BC of §4 (k = 12) with 6/12/8 layers per block for
28x28 greyscale images (blocks at 28, 14, 7), about 0.3M parameters.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..backbone import Backbone, Stages
from ..layers.dense import DenseBlock, PooledLinear, Transition
from ..registry import register_model
from ..specs.densenet import (BOTTLENECK_FACTOR, COMPRESSION, DENSENET_BLOCKS, GROWTH_RATE, SMALL_BC_BLOCKS,
                              SMALL_BC_GROWTH, STEM_CHANNELS)


class DenseNet(Backbone):
    """Stem -> dense blocks separated by transitions -> BN -> ReLU (``features``) -> pool + FC (``classifier``)."""

    def __init__(self, *, blocks: tuple[int, ...], growth_rate: int = GROWTH_RATE, stem_channels: int = STEM_CHANNELS,
                 num_classes: int = 1000, in_channels: int = 3, small_input: bool = False, compact: bool = False):
        super().__init__()
        if small_input and not compact:
            # 28 -> 28 -> 14: a 3x3 stride-1 conv and the max-pool, at half the growth rate, so an epoch of
            # 28x28 images costs minutes rather than hours on a CPU (blocks at 14, 7, 3, 1).
            growth_rate, stem_channels = growth_rate // 2, stem_channels // 2
            stem = [("conv0", nn.Conv2d(in_channels, stem_channels, 3, 1, 1, bias=False)),
                    ("norm0", nn.BatchNorm2d(stem_channels)), ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(3, 2, 1))]
        elif small_input:  # the compact three-block net: 28 -> 28, no pooling (blocks at 28, 14, 7)
            stem = [("conv0", nn.Conv2d(in_channels, stem_channels, 3, 1, 1, bias=False)),
                    ("norm0", nn.BatchNorm2d(stem_channels)), ("relu0", nn.ReLU(inplace=True))]
        else:  # Table 1: 7x7/2 conv (224 -> 112), 3x3/2 max-pool (-> 56)
            stem = [("conv0", nn.Conv2d(in_channels, stem_channels, 7, 2, 3, bias=False)),
                    ("norm0", nn.BatchNorm2d(stem_channels)), ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(3, 2, 1))]
        layers = OrderedDict(stem)
        stages = Stages()
        for name, module in stem:
            stride = module.stride if isinstance(module, (nn.Conv2d, nn.MaxPool2d)) else 1
            stages.add(f"features.{name}", stem_channels, stride[0] if isinstance(stride, tuple) else stride)
        channels = stem_channels
        for i, count in enumerate(blocks):
            layers[f"denseblock{i + 1}"] = DenseBlock(count, channels, growth_rate, BOTTLENECK_FACTOR)
            channels = DenseBlock.out_channels(count, channels, growth_rate)
            stages.add(f"features.denseblock{i + 1}", channels)
            if i < len(blocks) - 1:  # transition: 56 -> 28 -> 14 -> 7
                out = int(channels * COMPRESSION)
                layers[f"transition{i + 1}"] = Transition(channels, out)
                channels = out
                stages.add(f"features.transition{i + 1}", channels, 2)
        layers["norm5"] = nn.BatchNorm2d(channels)
        layers["relu5"] = nn.ReLU(inplace=True)
        stages.add("features.relu5", channels)
        self.features = nn.Sequential(layers)  # N x 1024 x 7 x 7 for densenet121 at 224
        self.feature_info = stages.info()
        self.classifier = PooledLinear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.weight.device.type != "meta":
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # classifier is a PooledLinear (torchvision's name for the FC): pool here for the pre-logits.
        return torch.flatten(x.mean((2, 3), keepdim=True), 1) if pre_logits else self.classifier(x)


_TOP = {"densenet121": (74.434, 91.972), "densenet169": (75.6, 92.806), "densenet201": (76.896, 93.37),
        "densenet264": (None, None)}


def _builder(name: str):
    blocks = DENSENET_BLOCKS[name]

    def build(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> DenseNet:
        return DenseNet(blocks=blocks, num_classes=num_classes, in_channels=in_channels, small_input=small_input)

    build.__name__ = name
    build.__doc__ = f"DenseNet-BC-{name.removeprefix('densenet')} of Table 1 (k = 32, blocks {blocks})."
    top1, top5 = _TOP[name]
    register_model(name, family="DenseNet", paper="Huang et al., CVPR 2017", year=2016, input_size=(3, 224, 224),
                   top1=top1, top5=top5)(build)
    return build


densenet121, densenet169, densenet201, densenet264 = (_builder(n) for n in DENSENET_BLOCKS)


@register_model("densenet_bc_small", family="DenseNet", paper="Huang et al., CVPR 2017 §4 (DenseNet-BC, k=12)",
                year=2016, input_size=(1, 28, 28), num_classes=10)
def densenet_bc_small(*, num_classes: int = 10, in_channels: int = 1, small_input: bool = True) -> DenseNet:
    """A three-block DenseNet-BC (k = 12, 6/12/8 layers) for 28x28 images (``small_input`` is its only form)."""
    return DenseNet(blocks=SMALL_BC_BLOCKS, growth_rate=SMALL_BC_GROWTH, stem_channels=2 * SMALL_BC_GROWTH,
                    num_classes=num_classes, in_channels=in_channels, small_input=True, compact=True)
