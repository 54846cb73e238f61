"""Faster R-CNN (Ren, He, Girshick & Sun 2015, "Faster R-CNN: Towards Real-Time Object Detection with
Region Proposal Networks", NeurIPS) and Mask R-CNN (He, Gkioxari, Dollar & Girshick 2017, ICCV).

One network, trained end to end (the approximate joint training of section 3.2):

================  =================================================================================
backbone          any zoo classifier through ``features_only``: its stage of ``feature_stride``
                  pixels (the paper: VGG-16 conv5_3, stride 16 on ~600-pixel images)
RPN               3 x 3 conv + sibling 1 x 1 objectness / offsets over ``A = 3 scales x 3 ratios``
                  anchors (section 3.1.1; :mod:`cnnlab.detection.rpn`)
RoI head          7 x 7 RoIAlign (Mask R-CNN section 3; Fast R-CNN's RoI max pooling with
                  ``pool="max"``) -> two fc layers -> K + 1 scores and per-class boxes
mask head         Mask R-CNN only: 14 x 14 RoIAlign -> 4 convs -> deconv -> K masks of 28 x 28
================  =================================================================================

**Adapted to the scenes.** The paper's anchors are 128, 256 and 512 pixels on images whose shorter
side is 600 (objects of roughly 50-500 pixels); the bundled scenes are 128 pixels with objects of 4-84
(median 30). The anchors here are 16, 32 and 64 pixels at ratios 1:2, 1:1, 2:1 on the backbone's
stride-8 stage (8-pixel cells, as the paper's 16-pixel cells are to its objects); proposal counts are
cut to 300 in training and 150 at test time (2000 / 300 in the paper), RoIs to 128 per image
(Fast R-CNN's 64 per image with 2 images per batch), and the fc layers to 256 units (4096 in VGG-16).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..detection.heads import (BoxHead, HeadSettings, MaskHead, box_loss, mask_loss, mask_targets, paste_masks,
                               pool_regions, postprocess, sample_rois)
from ..detection.rpn import RegionProposalNetwork, RPNSettings
from ..errors import ConfigError
from ..ops import Anchors
from ..detection.trunk import detector_trunk
from ..registry import register_model

_PAPER = "Ren et al. 2015, Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks"
_MASK_PAPER = "He et al. 2017, Mask R-CNN"


def backbone_stage(backbone: str, stride: int, in_channels: int) -> nn.Module:
    """The zoo network ``backbone`` cut after its stage of ``stride`` pixels (a one-map feature extractor)."""
    return detector_trunk(backbone, (int(stride),), in_channels)


class FasterRCNN(nn.Module):
    """Backbone stage -> RPN -> RoI head (-> mask head): see the module docstring.

    ``forward(images, targets)`` in training returns the losses (``rpn_objectness``, ``rpn_box``,
    ``cls``, ``box``, and ``mask``); in evaluation, one dict per image with ``boxes`` (x1 y1 x2 y2),
    ``scores``, ``labels`` (0-based classes) and ``masks`` (D x H x W bool) for Mask R-CNN.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, anchor_sizes: Sequence[float] = (16, 32, 64),
                 anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0), pool: str = "align", hidden: int = 256,
                 masks: bool = False, rpn: RPNSettings = RPNSettings(), head: HeadSettings = HeadSettings()):
        super().__init__()
        if pool not in ("align", "max"):
            raise ConfigError(f"pool is 'align' (RoIAlign) or 'max' (RoI pooling), not '{pool}'")
        self.backbone = backbone
        info = backbone.feature_info[-1]
        self.stride, channels = int(info.reduction), int(info.channels)
        self.num_classes = int(num_classes)
        self.pool = pool
        self.rpn = RegionProposalNetwork(channels, self.stride, Anchors(tuple(map(float, anchor_sizes)),
                                                                         tuple(map(float, anchor_ratios))), rpn)
        self.head_settings = head
        self.box_head = BoxHead(channels, num_classes, pool=7, hidden=hidden)
        self.mask_head = MaskHead(channels, num_classes) if masks else None
        self.generator: torch.Generator | None = None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[-1]  # N x C x H/stride x W/stride

    def forward(self, images: torch.Tensor, targets=None):
        size = (int(images.shape[-2]), int(images.shape[-1]))
        feats = self.features(images)
        proposals, losses, _ = self.rpn(feats, size, targets if self.training else None, self.generator)
        return self._heads(feats, proposals, size, targets, losses)

    def _heads(self, feats, proposals, size, targets, losses):
        s, scale = self.head_settings, 1.0 / self.stride
        if self.training:
            rois, labels, matched = sample_rois(proposals, targets, s, self.generator)
            scores, deltas = self.box_head(pool_regions(feats, rois, 7, scale, self.pool))
            losses.update(box_loss(scores, deltas, rois, labels, matched, targets))
            if self.mask_head is not None:
                fg_rois, fg_labels, fg_masks, idx = [], [], [], []
                for i, (r, lab, m, t) in enumerate(zip(rois, labels, matched, targets)):
                    fg = lab > 0
                    if bool(fg.any()) and t.masks is not None:
                        fg_rois.append(r[fg])
                        fg_labels.append(lab[fg])
                        fg_masks.append(mask_targets(r[fg], t.masks[m[fg]], s.mask_size))
                    else:
                        fg_rois.append(r[:0])
                if fg_labels:
                    logits = self.mask_head(pool_regions(feats, fg_rois, s.mask_size // 2, scale, "align"))
                    losses["mask"] = mask_loss(logits, torch.cat(fg_labels), torch.cat(fg_masks))
                else:
                    losses["mask"] = feats.sum() * 0
            return losses
        scores, deltas = self.box_head(pool_regions(feats, proposals, 7, scale, self.pool))
        detections = postprocess(scores, deltas, proposals, size, s)
        for d, props in zip(detections, proposals):
            d["proposals"] = props
        if self.mask_head is not None:
            boxes = [d["boxes"] for d in detections]
            probs = self.mask_head(pool_regions(feats, boxes, s.mask_size // 2, scale, "align")).sigmoid()
            start = 0
            for d in detections:
                n = len(d["boxes"])
                chosen = probs[start:start + n][torch.arange(n, device=probs.device), d["labels"]]
                d["masks"] = paste_masks(chosen, d["boxes"], *size)
                start += n
        return detections


def _build(backbone: str, num_classes: int, in_channels: int, feature_stride: int, masks: bool, pool: str,
           anchor_sizes: Sequence[float]) -> FasterRCNN:
    trunk = backbone_stage(backbone, int(feature_stride), in_channels)
    return FasterRCNN(trunk, num_classes, anchor_sizes=tuple(anchor_sizes), masks=masks, pool=pool)


def _register(name: str, default_backbone: str, *, masks: bool, paper: str, year: int, doc: str) -> None:
    def build(*, num_classes: int = 10, in_channels: int = 3, backbone: str = default_backbone,
              feature_stride: int = 8, anchor_sizes: Sequence[float] = (16, 32, 64)) -> FasterRCNN:
        return _build(backbone, num_classes, in_channels, feature_stride, masks, "align", anchor_sizes)

    build.__doc__ = doc
    register_model(name, family="R-CNN", paper=paper, year=year, input_size=(3, 128, 128), num_classes=10,
                   task="detect", description=doc)(build)


_register("faster_rcnn", "resnet18", masks=False, paper=_PAPER, year=2015,
          doc="Faster R-CNN: RPN (3 scales x 3 ratios) + RoIAlign box head on a ResNet-18 stride-8 stage.")
_register("faster_rcnn_mobilenet_v2", "mobilenet_v2", masks=False, paper=_PAPER, year=2015,
          doc="Faster R-CNN on MobileNetV2's stride-8 stage.")
_register("mask_rcnn", "resnet18", masks=True, paper=_MASK_PAPER, year=2017,
          doc="Mask R-CNN: Faster R-CNN with RoIAlign and a 4-conv mask head (28 x 28 masks per class).")
