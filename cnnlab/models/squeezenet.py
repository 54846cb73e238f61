"""SqueezeNet v1.0 (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters").

Table 1: conv1 7x7/2 x96, eight fire modules with max-pools after conv1, fire4 and fire8, then a 1x1
convolution with one map per class and global average pooling (no fully connected layer, as in NiN).
A fire module squeezes with 1x1 convolutions and expands with parallel 1x1 and 3x3 convolutions
(Fig. 1). Names follow torchvision (``features.3.squeeze``, ``classifier.1``); 1,248,424 parameters.

Small-input form (28x28): a 3x3 stride-1 conv1 and the three max-pools (28 -> 14 -> 7 -> 3, ceil mode).
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone, Stages
from ..registry import register_model
from ..specs.light import SQUEEZENET_1_0


class Fire(nn.Module):
    """squeeze 1x1 (s maps) -> [expand 1x1 (e1 maps) | expand 3x3 (e3 maps)], ReLU after each."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze, self.squeeze_activation = nn.Conv2d(in_channels, squeeze, 1), nn.ReLU(inplace=True)
        self.expand1x1, self.expand1x1_activation = nn.Conv2d(squeeze, expand1x1, 1), nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(s)),
                          self.expand3x3_activation(self.expand3x3(s))], 1)  # N x (e1 + e3) x H x W


class SqueezeNet(Backbone):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False):
        super().__init__()
        first = nn.Conv2d(in_channels, 96, 3, 1, 1) if small_input else nn.Conv2d(in_channels, 96, 7, 2)  # 224 -> 109
        layers: list[nn.Module] = [first, nn.ReLU(inplace=True)]
        stages = Stages()
        stages.add("features.1", 96, 1 if small_input else 2)
        channels = 96
        for item in SQUEEZENET_1_0:
            if item == "M":
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))  # 109 -> 54 -> 27 -> 13
                stages.add(f"features.{len(layers) - 1}", channels, 2)
            else:
                layers.append(Fire(channels, *item))
                channels = item[1] + item[2]
                stages.add(f"features.{len(layers) - 1}", channels)
        self.features = nn.Sequential(*layers)  # N x 512 x 13 x 13 at 224
        self.feature_info = stages.info()
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(channels, num_classes, 1), nn.ReLU(inplace=True),  # conv10: one map per class
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.weight.device.type != "meta":
                nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if self.classifier[1].weight.device.type != "meta":  # the class maps start small (Caffe release: std 0.01)
            nn.init.normal_(self.classifier[1].weight, std=0.01)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # conv10 makes one map per class: the pre-logits are the last stage's channels, globally pooled.
        return torch.flatten(x.mean((2, 3), keepdim=True), 1) if pre_logits else self.classifier(x)


@register_model("squeezenet1_0", family="SqueezeNet", paper="Iandola et al., arXiv 2016", year=2016,
                input_size=(3, 224, 224), top1=58.092, top5=80.42)
def squeezenet1_0(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> SqueezeNet:
    """SqueezeNet v1.0: fire modules and a 1x1 class convolution with global pooling."""
    return SqueezeNet(num_classes=num_classes, in_channels=in_channels, small_input=small_input)
