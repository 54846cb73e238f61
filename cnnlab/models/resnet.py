"""ResNet (He, Zhang, Ren & Sun, CVPR 2016, "Deep residual learning for image recognition").

* ``resnet18/34/50/101/152``: the ImageNet networks of Table 1, with torchvision's parameter names
  (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``) so its weight files load; projection shortcuts
  (option B) where the shape changes.
* ``resnet20/32/44/56/110``: the CIFAR-10 networks of §4.2 (6n + 2 layers, 16/32/64 filters,
  zero-padding identity shortcuts, option A), 0.27M-1.7M parameters (Table 6).
* ``plain20/32/44/56/110``: the same stacks without shortcuts, to reproduce the degradation problem
  of Fig. 6 (deeper plain nets train worse; deeper ResNets train better).

Small-input form of the ImageNet nets (``small_input=True``, 28x28): a 3x3 stride-1 first convolution
followed by the usual 3x3/2 max-pool, so the four stages see 14 -> 7 -> 4 -> 2 grids. The CIFAR nets
need no special form: 28x28 gives 28 -> 14 -> 7 grids.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo
from ..layers.residual import BasicBlock, Bottleneck, ZeroPadShortcut, projection
from ..registry import register_model
from ..specs.resnet import (BOTTLENECK_EXPANSION, CIFAR_WIDTHS, IMAGENET_STAGES, STAGE_WIDTHS,
                            cifar_blocks_per_stage)

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class ResNet(Backbone):
    """ImageNet ResNet of Table 1. Modules sit at the top level under torchvision's names, so its weight
    files load; the trunk is conv1..layer4 (N x C x 7 x 7 at 224), the head avgpool and fc."""

    head_modules = ("avgpool", "fc")

    def __init__(self, *, block: str, layers: tuple[int, ...], num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False, se_reduction: int | None = None):
        super().__init__()
        block_cls = BLOCKS[block]
        if small_input:  # 28 -> 28 -> 14: a lighter stem instead of 7x7/2 + pool (which would leave 7x7 at layer1)
            self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        else:  # 224 -> 112 (conv1 of Table 1)
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)  # 112 -> 56
        channels = 64
        stem = 1 if small_input else 2
        self.feature_info = [FeatureInfo("relu", 64, stem)]
        for i, (width, count) in enumerate(zip(STAGE_WIDTHS, layers)):
            stride = 1 if i == 0 else 2  # conv3_x, conv4_x, conv5_x halve the grid: 56 -> 28 -> 14 -> 7
            stage = []
            for j in range(count):
                out = width * block_cls.expansion
                down = projection(channels, out, stride) if j == 0 and (stride != 1 or channels != out) else None
                stage.append(block_cls(channels, width, stride if j == 0 else 1, down, se_reduction=se_reduction))
                channels = out
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            self.feature_info.append(FeatureInfo(f"layer{i + 1}", channels, stem * 2 ** (i + 1)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.out_channels = channels
        _init_resnet(self)

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [(name, getattr(self, name)) for name in _TRUNK]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)


def _init_resnet(model: nn.Module) -> None:
    """He initialisation (He et al. 2015) for the convolutions, as the paper's §3.4 uses."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.device.type != "meta":
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class CifarResNet(Backbone):
    """§4.2: 3x3 conv 16 -> 3 stages of n basic blocks (16, 32, 64 filters) -> global pool -> FC.

    ``shortcut=False`` removes every shortcut (the "plain" nets of Fig. 6)."""

    def __init__(self, *, depth: int, num_classes: int = 10, in_channels: int = 3, shortcut: bool = True):
        super().__init__()
        n = cifar_blocks_per_stage(depth)
        layers: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(in_channels, CIFAR_WIDTHS[0], 3, 1, 1, bias=False)),  # N x 16 x 32 x 32
            ("bn1", nn.BatchNorm2d(CIFAR_WIDTHS[0])), ("relu", nn.ReLU(inplace=True))]
        channels = CIFAR_WIDTHS[0]
        self.feature_info = []
        for i, width in enumerate(CIFAR_WIDTHS):  # maps 32 -> 16 -> 8
            stage = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                down = ZeroPadShortcut(width, stride) if stride != 1 or channels != width else None
                stage.append(BasicBlock(channels, width, stride, down, shortcut=shortcut))
                channels = width
            layers.append((f"layer{i + 1}", nn.Sequential(*stage)))
            self.feature_info.append(FeatureInfo(f"features.layer{i + 1}", width, 2 ** i))
        self.features = nn.Sequential(OrderedDict(layers))  # N x 64 x 8 x 8 at 32x32
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        _init_resnet(self)


_PAPER = "He et al., CVPR 2016"
# Published single-crop ImageNet accuracy of the torchvision weights (top-1, top-5), which share this architecture.
_TOP = {"resnet18": (69.758, 89.078), "resnet34": (73.314, 91.42), "resnet50": (76.13, 92.862),
        "resnet101": (77.374, 93.546), "resnet152": (78.312, 94.046)}


def _imagenet_builder(name: str):
    block, layers = IMAGENET_STAGES[name]

    def build(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> ResNet:
        return ResNet(block=block, layers=layers, num_classes=num_classes, in_channels=in_channels,
                      small_input=small_input)

    depth = name.removeprefix("resnet")
    build.__name__ = name
    build.__doc__ = f"ResNet-{depth} of Table 1 ({block} blocks {layers}); torchvision's parameter names."
    top1, top5 = _TOP[name]
    register_model(name, family="ResNet", paper=_PAPER, year=2015, input_size=(3, 224, 224),
                   top1=top1, top5=top5)(build)
    return build


def _cifar_builder(depth: int, shortcut: bool):
    name = f"{'resnet' if shortcut else 'plain'}{depth}"

    def build(*, num_classes: int = 10, in_channels: int = 3, small_input: bool = False) -> CifarResNet:
        # small_input: the CIFAR stack already suits 28x28 (grids 28 -> 14 -> 7).
        return CifarResNet(depth=depth, num_classes=num_classes, in_channels=in_channels, shortcut=shortcut)

    build.__name__ = name
    build.__doc__ = (f"CIFAR ResNet-{depth} of §4.2 (zero-padding shortcuts)." if shortcut else
                     f"Plain-{depth} of §4.2: ResNet-{depth} without shortcuts, for the degradation experiment.")
    register_model(name, family="ResNet", paper=_PAPER + (" §4.2" if shortcut else " §4.2 (plain)"), year=2015,
                   input_size=(3, 32, 32), num_classes=10)(build)
    return build


resnet18, resnet34, resnet50, resnet101, resnet152 = (_imagenet_builder(n) for n in IMAGENET_STAGES)
resnet20, resnet32, resnet44, resnet56, resnet110 = (_cifar_builder(d, True) for d in (20, 32, 44, 56, 110))
plain20, plain32, plain44, plain56, plain110 = (_cifar_builder(d, False) for d in (20, 32, 44, 56, 110))
