"""Darknet-19 (YOLO9000, Redmon & Farhadi, CVPR 2017), Darknet-53 (YOLOv3, Redmon & Farhadi 2018), CSPDarknet-53.

* ``darknet19``: Table 6 of YOLO9000 - 3x3 convs whose filters double after each of five 2x2/2
  max-pools, 1x1 convs between them compressing to half (as NiN), BN and leaky ReLU (0.1) after every
  conv, then a 1x1 conv to the classes and global average pooling (no FC). 20.8M parameters with 1,000
  classes (5.58 billion operations at 224).
* ``darknet53``: Table 1 of YOLOv3 - a 3x3 conv with 32 filters, then five stages of a 3x3/2 conv and
  1, 2, 8, 8, 4 residual units [1x1 c/2, 3x3 c]; global pooling and FC. 41.6M parameters.
* ``cspdarknet53``: CSPNet (Wang et al., CVPRW 2020) applied to Darknet-53 - each stage splits its
  maps in two parts and only one runs the residual units (:class:`CSPStage`). 27.6M parameters.

Small-input forms (28x28): Darknet-19 drops its first two max-pools, (CSP)Darknet-53 keeps the stride of
its first two downsampling convs at 1: 28 -> 28 -> 14 -> 7 -> 4 in both.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..backbone import Backbone, Stages
from ..layers.conv import ConvBNAct, global_pool_head
from ..registry import register_model
from ..specs.zoo import CSPDARKNET53, CSPDARKNET53_STEM, DARKNET19, DARKNET53, DARKNET53_STEM


class LeakyReLU(nn.LeakyReLU):
    """Darknet's "leaky" activation: slope 0.1 for negative inputs."""

    def __init__(self) -> None:
        super().__init__(0.1, inplace=True)


def conv_bn_leaky(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> ConvBNAct:
    return ConvBNAct(in_channels, out_channels, kernel, stride, act=LeakyReLU)


def init_darknet(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.device.type != "meta":
            nn.init.kaiming_normal_(m.weight, a=0.1, mode="fan_out", nonlinearity="leaky_relu")


class Darknet19(Backbone):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        stages = Stages()
        channels, pools = in_channels, 0
        for entry in DARKNET19:
            if entry == "M":
                pools += 1
                if small_input and pools <= 2:  # 28x28: keep the first two grids at full size
                    continue
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))  # as darknet pads odd grids: 7 -> 4
                stages.add(f"features.{len(layers) - 1}", channels, 2)
            else:
                filters, kernel = entry
                layers.append(conv_bn_leaky(channels, filters, kernel))
                stages.add(f"features.{len(layers) - 1}", filters)
                channels = filters
        self.features = nn.Sequential(*layers)  # N x 1024 x 7 x 7 at 224
        self.feature_info = stages.info()
        # Table 6's classifier: a 1x1 conv to the classes, then the average over the grid
        self.classifier = nn.Sequential(nn.Conv2d(channels, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        init_darknet(self)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:  # the pooled 1024 features the 1x1 classifier reads
            return x.mean((2, 3))
        return self.classifier(x)


class DarknetResidual(nn.Module):
    """YOLOv3 Table 1's residual unit: 1x1 to c/2, 3x3 back to c, added to the input."""

    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        hidden = channels // 2 if hidden is None else hidden
        self.conv1 = conv_bn_leaky(channels, hidden, 1)
        self.conv2 = conv_bn_leaky(hidden, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class Darknet53(Backbone):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False):
        super().__init__()
        layers: list[tuple[str, nn.Module]] = [("stem", conv_bn_leaky(in_channels, DARKNET53_STEM, 3))]
        stages = Stages()
        stages.add("features.stem", DARKNET53_STEM)
        channels = DARKNET53_STEM
        for i, (width, repeats) in enumerate(DARKNET53):
            stride = 1 if small_input and i < 2 else 2
            stage = [("down", conv_bn_leaky(channels, width, 3, stride))]
            stage += [(f"res{j}", DarknetResidual(width)) for j in range(repeats)]
            layers.append((f"stage{i + 1}", nn.Sequential(OrderedDict(stage))))
            stages.add(f"features.stage{i + 1}", width, stride)
            channels = width
        self.features = nn.Sequential(OrderedDict(layers))  # N x 1024 x 7 x 7 at 224
        self.feature_info = stages.info()
        self.classifier = global_pool_head(channels, num_classes)
        init_darknet(self)


@register_model("darknet19", family="Darknet", paper="Redmon & Farhadi, CVPR 2017", year=2017,
                input_size=(3, 224, 224), top1=72.9, top5=91.2)
def darknet19(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> Darknet19:
    """Darknet-19 of YOLO9000 Table 6: 19 convs, 5 max-pools, a 1x1 conv classifier and global pooling."""
    return Darknet19(num_classes=num_classes, in_channels=in_channels, small_input=small_input)


@register_model("darknet53", family="Darknet", paper="Redmon & Farhadi 2018", year=2018, input_size=(3, 256, 256),
                top1=77.2, top5=93.8)
def darknet53(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> Darknet53:
    """Darknet-53 of YOLOv3 Table 1: 52 convs in five residual stages and an FC (256x256 inputs, Table 2)."""
    return Darknet53(num_classes=num_classes, in_channels=in_channels, small_input=small_input)


class CSPStage(nn.Module):
    """CSPNet Fig. 2(b) on a Darknet-53 stage: N x in x H x W -> N x c x H/s x W/s.

    A 3x3/s conv to c filters, a 1x1 conv to ``2 * half`` maps split into two parts; one part runs
    the residual units and a 1x1 "transition", the other passes untouched (the cross-stage partial
    connection), then the two are concatenated and fused by a last 1x1 conv. Gradients of the
    untouched part never flow through the units, which is what cuts the duplicated gradient
    information (§3.1).
    """

    def __init__(self, in_channels: int, out_channels: int, repeats: int, stride: int, first: bool):
        super().__init__()
        # the first stage keeps the full width in each part (64 + 64); the others halve it
        half = out_channels if first else out_channels // 2
        unit_hidden = out_channels // 2 if first else half
        self.down = conv_bn_leaky(in_channels, out_channels, 3, stride)
        self.split = conv_bn_leaky(out_channels, 2 * half, 1)
        self.blocks = nn.Sequential(*[DarknetResidual(half, unit_hidden) for _ in range(repeats)])
        self.transition_b = conv_bn_leaky(half, half, 1)
        self.transition = conv_bn_leaky(2 * half, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.split(self.down(x))
        passed, processed = x.chunk(2, dim=1)
        processed = self.transition_b(self.blocks(processed))
        return self.transition(torch.cat([passed, processed], 1))


class CSPDarknet53(Backbone):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False):
        super().__init__()
        layers: list[tuple[str, nn.Module]] = [("stem", conv_bn_leaky(in_channels, CSPDARKNET53_STEM, 3))]
        stages = Stages()
        stages.add("features.stem", CSPDARKNET53_STEM)
        channels = CSPDARKNET53_STEM
        for i, (width, repeats) in enumerate(CSPDARKNET53):
            stride = 1 if small_input and i < 2 else 2
            layers.append((f"stage{i + 1}", CSPStage(channels, width, repeats, stride, first=i == 0)))
            stages.add(f"features.stage{i + 1}", width, stride)
            channels = width
        self.features = nn.Sequential(OrderedDict(layers))  # N x 1024 x 8 x 8 at 256
        self.feature_info = stages.info()
        self.classifier = global_pool_head(channels, num_classes)
        init_darknet(self)


@register_model("cspdarknet53", family="Darknet", paper="Wang et al., CVPRW 2020", year=2020,
                input_size=(3, 256, 256), top1=77.2, top5=93.6)
def cspdarknet53(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> CSPDarknet53:
    """CSPDarknet-53 (CSPNet Table 3 / YOLOv4's backbone): Darknet-53 with cross-stage partial stages."""
    return CSPDarknet53(num_classes=num_classes, in_channels=in_channels, small_input=small_input)
