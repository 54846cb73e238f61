"""SENet (Hu, Shen & Sun, CVPR 2018, "Squeeze-and-excitation networks").

``se_resnet50``: ResNet-50 whose every bottleneck rescales its output channels by a
squeeze-and-excitation gate (global average pool -> FC C/16 -> ReLU -> FC C -> sigmoid, Fig. 3)
before the shortcut addition. Table 2 lists 3.87 GFLOPs and ~2.5M more parameters than ResNet-50's
25.6M (28.1M). Small-input form as ResNet's: 3x3 stride-1 stem, then the 3x3/2 max-pool.
"""

from __future__ import annotations

from ..registry import register_model
from ..specs.light import SE_REDUCTION
from ..specs.resnet import IMAGENET_STAGES
from .resnet import ResNet


@register_model("se_resnet50", family="SENet", paper="Hu et al., CVPR 2018", year=2017, input_size=(3, 224, 224),
                top1=76.71, top5=93.38)
def se_resnet50(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                reduction: int = SE_REDUCTION) -> ResNet:
    """SE-ResNet-50: ResNet-50 with a squeeze-and-excitation gate in every bottleneck (r = 16)."""
    block, layers = IMAGENET_STAGES["resnet50"]
    return ResNet(block=block, layers=layers, num_classes=num_classes, in_channels=in_channels,
                  small_input=small_input, se_reduction=reduction)
