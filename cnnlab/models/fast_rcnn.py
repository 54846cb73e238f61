"""Fast R-CNN (Girshick 2015, "Fast R-CNN", ICCV): one shared feature map for the whole image, RoI max
pooling of each selective-search proposal to 7 x 7 (section 2.1), fc layers and the two sibling outputs
trained with the multi-task loss (softmax + smooth L1, eq. 1-3). It differs from
:class:`~cnnlab.models.faster_rcnn.FasterRCNN` only where the paper does: proposals come from outside
the network (selective search, :mod:`cnnlab.detection.selective_search`, "fast mode" on the
over-segmentation) and RoIs are max-pooled on the rounded grid instead of RoIAlign.

Adapted to the scenes like Faster R-CNN here (docs/detection.md): the backbone's stride-8 stage, 64
RoIs per image, 256-unit fc layers; selective search at Felzenszwalb scale 50, minimum region 10 pixels
(~130 proposals per 128-pixel scene, 91 % of objects covered at IoU 0.5; the paper's ~2000 per image).
"""

from __future__ import annotations

import torch

from ..detection.selective_search import ProposalSource
from ..registry import register_model
from .faster_rcnn import FasterRCNN, backbone_stage

_PAPER = "Girshick 2015, Fast R-CNN"


class FastRCNN(FasterRCNN):
    """Selective-search proposals -> shared conv map -> RoI max pooling -> fc -> softmax and boxes."""

    def __init__(self, backbone, num_classes: int, *, scale: float = 50.0, min_size: int = 10, **kwargs):
        super().__init__(backbone, num_classes, pool="max", **kwargs)
        self.rpn = None  # proposals come from selective search
        self.proposals = ProposalSource(scale=scale, min_size=min_size)

    def region_proposals(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Selective search on each image (remembered in training, computed afresh in evaluation)."""
        return self.proposals(images, remember=self.training)

    def forward(self, images: torch.Tensor, targets=None):
        size = (int(images.shape[-2]), int(images.shape[-1]))
        proposals = self.region_proposals(images)
        feats = self.features(images)
        return self._heads(feats, proposals, size, targets, {})


def _build(*, num_classes: int = 10, in_channels: int = 3, backbone: str = "resnet18",
           feature_stride: int = 8) -> FastRCNN:
    return FastRCNN(backbone_stage(backbone, int(feature_stride), in_channels), num_classes)


_build.__doc__ = "Fast R-CNN: selective-search proposals, RoI max pooling (7 x 7) on a ResNet-18 stride-8 stage."
register_model("fast_rcnn", family="R-CNN", paper=_PAPER, year=2015, input_size=(3, 128, 128), num_classes=10,
               task="detect", description=_build.__doc__)(_build)
