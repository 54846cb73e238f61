"""SSD: Single Shot MultiBox Detector (Liu, Anguelov, Erhan, Szegedy, Reed, Fu & Berg 2016, ECCV; Fig. 2).

No proposals and no second stage: a 3 x 3 convolution on each of several feature maps of decreasing
size predicts, for every default box of every cell, K + 1 class scores and 4 offsets
(:mod:`cnnlab.detection.default_boxes`: boxes, matching, MultiBox loss with 3:1 hard negatives).

================  =================================================================================
paper (SSD300)    VGG-16 conv4_3 (38 x 38) and fc7 (19 x 19, as convolutions) + extra layers conv8_2
                  .. conv11_2 (10, 5, 3, 1): six maps, 4 or 6 default boxes per cell, 8732 boxes;
                  scales 0.2 .. 0.9; NMS 0.45 per class, 200 detections per image
here (128 px)     a zoo backbone's stages of stride 8, 16, 32 (ResNet-18: 16, 8, 4) + two extra layers
                  (1 x 1 conv halving the channels, 3 x 3 stride-2 conv: 2, 1): five maps, 4 or 6
                  boxes per cell, 1,524 boxes; scales 0.1 .. 0.7, since the scenes' objects are 4-84
                  pixels (3-66 % of the side, median 23 %); NMS 0.45 per class, 100 detections
================  =================================================================================
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..detection.default_boxes import VARIANCE_WEIGHTS, DefaultBoxSettings, default_boxes, multibox_loss
from ..errors import ConfigError
from ..ops import batched_nms
from ..ops.boxes import clip_boxes, decode_boxes
from ..detection.trunk import detector_trunk
from ..registry import register_model

_PAPER = "Liu et al. 2016, SSD: Single Shot MultiBox Detector"
SCORE_THRESHOLD = 0.01  # the paper keeps boxes scoring above 0.01 before NMS
NMS_IOU = 0.45
CANDIDATES = 400  # per class, before NMS
DETECTIONS = 100


def extra_layer(cin: int, cout: int) -> nn.Sequential:
    """SSD's extra feature layer (conv8 .. conv11): 1 x 1 to half the channels, then 3 x 3 stride 2."""
    return nn.Sequential(nn.Conv2d(cin, cout // 2, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout // 2, cout, 3, stride=2, padding=1), nn.ReLU(inplace=True))


class SSD(nn.Module):
    """Backbone stages + extra layers -> per-map 3 x 3 class and offset predictors (see the module docstring).

    ``forward(images, targets)`` in training returns the losses ``cls`` and ``box``; in evaluation one dict
    per image with ``boxes`` (x1 y1 x2 y2), ``scores`` and 0-based ``labels``, as the R-CNN family does.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, extra_channels: Sequence[int] = (256, 256),
                 settings: DefaultBoxSettings = DefaultBoxSettings()):
        super().__init__()
        self.backbone = backbone
        channels = [int(f.channels) for f in backbone.feature_info]
        self.extras = nn.ModuleList()
        for c in extra_channels:
            self.extras.append(extra_layer(channels[-1], c))
            channels.append(c)
        if len(settings.ratios) != len(channels):
            raise ConfigError(f"SSD has {len(channels)} feature maps but aspect ratios for {len(settings.ratios)}")
        self.settings, self.num_classes = settings, int(num_classes)
        per_cell = [settings.boxes_per_cell(k) for k in range(len(channels))]
        self.classifiers = nn.ModuleList(nn.Conv2d(c, a * (num_classes + 1), 3, padding=1)
                                         for c, a in zip(channels, per_cell))
        self.regressors = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(channels, per_cell))
        for m in [*self.extras.modules(), *self.classifiers, *self.regressors]:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps = list(self.backbone(images))  # N x 128 x 16 x 16, N x 256 x 8 x 8, N x 512 x 4 x 4 (ResNet-18)
        for layer in self.extras:
            maps.append(layer(maps[-1]))  # N x 256 x 2 x 2, N x 256 x 1 x 1
        return maps

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """N x P x (K + 1) scores, N x P x 4 offsets and the P x 4 default boxes of ``images``."""
        maps = self.feature_maps(images)
        n, k1 = len(images), self.num_classes + 1
        # N x (A (K + 1)) x H x W -> N x (H W A) x (K + 1): cell-major, as default_boxes lists them
        scores = torch.cat([c(m).permute(0, 2, 3, 1).reshape(n, -1, k1) for c, m in zip(self.classifiers, maps)], 1)
        offsets = torch.cat([r(m).permute(0, 2, 3, 1).reshape(n, -1, 4) for r, m in zip(self.regressors, maps)], 1)
        priors = default_boxes([tuple(m.shape[-2:]) for m in maps], tuple(images.shape[-2:]), self.settings,
                               device=images.device)
        return scores, offsets, priors

    def forward(self, images: torch.Tensor, targets=None):
        scores, offsets, priors = self.predict(images)
        if self.training:
            if targets is None:
                raise ConfigError("SSD in training mode needs the targets")
            return multibox_loss(scores, offsets, priors, targets, self.settings)
        return self.detect(scores, offsets, priors, tuple(images.shape[-2:]))

    def detect(self, scores: torch.Tensor, offsets: torch.Tensor, priors: torch.Tensor,
               size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        """Per image: decoded boxes, the 400 best per class scoring above 0.01, NMS 0.45 per class, the best 100."""
        probs = scores.softmax(-1)[..., 1:]  # N x P x K, background dropped
        out = []
        for p, o in zip(probs, offsets):
            boxes = clip_boxes(decode_boxes(o, priors, VARIANCE_WEIGHTS), *size)  # P x 4
            # the reference implementation's top 400 per class before NMS: an untrained network scores
            # every box near 1 / (K + 1), above the threshold, and NMS over all P x K would be quadratic
            top, prior_index = p.topk(min(CANDIDATES, len(p)), dim=0)  # C x K
            labels = torch.arange(p.shape[1], device=p.device).expand_as(prior_index)
            keep = top > SCORE_THRESHOLD
            prior_index, labels, s = prior_index[keep], labels[keep], top[keep]
            b = boxes[prior_index]
            ok = ((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)
            b, s, labels = b[ok], s[ok], labels[ok]
            keep = batched_nms(b, s, labels, NMS_IOU)[:DETECTIONS]
            out.append({"boxes": b[keep], "scores": s[keep], "labels": labels[keep]})
        return out


@register_model("ssd", family="SSD", paper=_PAPER, year=2016, input_size=(3, 128, 128), num_classes=10,
                task="detect", description="SSD: default boxes on 5 maps (backbone strides 8/16/32 + 2 extra "
                                           "layers), MultiBox loss with 3:1 hard negative mining")
def ssd(*, num_classes: int = 10, in_channels: int = 3, backbone: str = "resnet18") -> SSD:
    return SSD(detector_trunk(backbone, (8, 16, 32), in_channels), num_classes)
