"""SimpleBaseline for human pose estimation (Xiao, Wu & Wei 2018, "Simple Baselines for Human Pose
Estimation and Tracking", ECCV; Figure 1 (c) and Section 2).

The network is a classification backbone with its head removed, followed by three deconvolution layers
(each 4 x 4, stride 2, 256 channels, batch norm and ReLU) and a 1 x 1 convolution giving one heatmap
per keypoint. From a stride-32 backbone the heatmaps come out at a quarter of the input (64 x 48 for the
paper's 256 x 192 crops). Any zoo backbone serves through ``features_only`` (its deepest stage).
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import create_model, model_info, register_model

_PAPER = "Xiao et al. 2018, Simple Baselines for Human Pose Estimation and Tracking"


class SimpleBaseline(nn.Module):
    """Backbone (deepest stage) -> 3 x [deconv 4x4/2, 256, BN, ReLU] -> 1x1 conv to K heatmaps (Section 2)."""

    def __init__(self, backbone: nn.Module, in_features: int, num_keypoints: int, *, deconv_layers: int = 3,
                 deconv_channels: int = 256):
        super().__init__()
        self.backbone = backbone
        layers: list[nn.Module] = []
        channels = in_features
        for _ in range(deconv_layers):
            # 4x4 kernel, stride 2, padding 1: exactly doubles each side (H -> 2H)
            layers += [nn.ConvTranspose2d(channels, deconv_channels, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(deconv_channels), nn.ReLU(inplace=True)]
            channels = deconv_channels
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(channels, num_keypoints, 1)
        for m in self.deconv.modules():  # the paper's initialisation of the new layers: N(0, 0.001)
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)
        self.heatmap_stride = backbone.feature_info[-1].reduction // 2 ** deconv_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)[-1]  # N x 512 x H/32 x W/32 for a ResNet-18
        return self.final(self.deconv(features))  # N x K x H/4 x W/4


def simple_baseline_on(backbone: str, *, num_keypoints: int = 17, in_channels: int = 3,
                       small_input: bool = False) -> SimpleBaseline:
    """SimpleBaseline on the zoo network ``backbone`` (any classifier with ``feature_info``)."""
    args = {"in_channels": in_channels} if "in_channels" in model_info(backbone).arguments else {}
    if "small_input" in model_info(backbone).arguments:
        args["small_input"] = small_input
    trunk = create_model(backbone, features_only=True, out_indices=(-1,), **args)
    return SimpleBaseline(trunk, trunk.feature_info[-1].channels, num_keypoints)


def _register(name: str, backbone: str) -> None:
    def build(*, num_classes: int = 17, in_channels: int = 3, backbone: str = backbone) -> SimpleBaseline:
        # num_classes: the number of keypoints (one heatmap each), as the task's class names are its keypoints
        return simple_baseline_on(backbone, num_keypoints=num_classes, in_channels=in_channels)

    build.__doc__ = f"SimpleBaseline (Figure 1c) on {backbone}: three 256-channel 4x4 deconvolutions -> heatmaps."
    register_model(name, family="SimpleBaseline", paper=_PAPER, year=2018, input_size=(3, 64, 64), num_classes=17,
                   task="keypoints", description=build.__doc__)(build)


_register("simple_baseline", "resnet18")
_register("simple_baseline_resnet50", "resnet50")
_register("simple_baseline_mobilenet_v2", "mobilenet_v2")
