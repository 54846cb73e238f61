"""The region proposal network of Faster R-CNN (Ren et al. 2015, section 3.1).

A 3 x 3 convolution slides over the shared feature map; at each position two sibling 1 x 1
convolutions score ``A`` anchors as object / not object and regress 4 offsets for each (Figure 3).
Training labels an anchor positive at IoU >= 0.7 with some object or as an object's best anchor,
negative below 0.3, and samples 256 anchors per image at up to 1:1 (section 3.1.2); anchors crossing
the image border are left out of training (section 3.3). Proposals are the decoded anchors, clipped,
the top-N by objectness before and after NMS at IoU 0.7 (2000 / 300 at test time in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import Anchors, batched_nms, decode_boxes, encode_boxes, make_anchors
from ..ops.boxes import box_area, clip_boxes
from .sampling import match, sample


@dataclass(frozen=True)
class RPNSettings:
    """The proposal stage's numbers (the paper's, with counts scaled to small images)."""

    positive_iou: float = 0.7
    negative_iou: float = 0.3
    batch_per_image: int = 256
    positive_fraction: float = 0.5
    pre_nms_train: int = 300
    post_nms_train: int = 150
    pre_nms_test: int = 300
    post_nms_test: int = 100
    nms_iou: float = 0.7
    min_size: float = 1.0
    allowed_border: float = 0.0  # negative: keep every anchor in training


class RPNHead(nn.Module):
    """3 x 3 conv (ReLU) -> 1 x 1 objectness (A) and 1 x 1 box offsets (4A), Figure 3."""

    def __init__(self, in_channels: int, anchors_per_cell: int, mid_channels: int | None = None):
        super().__init__()
        mid = mid_channels or in_channels
        self.conv = nn.Conv2d(in_channels, mid, 3, padding=1)
        self.objectness = nn.Conv2d(mid, anchors_per_cell, 1)
        self.deltas = nn.Conv2d(mid, 4 * anchors_per_cell, 1)
        for layer in (self.conv, self.objectness, self.deltas):  # the paper: N(0, 0.01), zero bias
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.conv(x))  # N x mid x H x W
        return self.objectness(h), self.deltas(h)  # N x A x H x W, N x 4A x H x W


class RegionProposalNetwork(nn.Module):
    """Anchors, the head, the training loss and proposals for one feature map of ``stride`` pixels."""

    def __init__(self, in_channels: int, stride: int, anchors: Anchors, settings: RPNSettings = RPNSettings(),
                 mid_channels: int | None = None):
        super().__init__()
        self.stride = int(stride)
        self.anchors = anchors
        self.settings = settings
        self.head = RPNHead(in_channels, anchors.per_cell, mid_channels)

    def anchor_boxes(self, height: int, width: int, device) -> torch.Tensor:
        """(H * W * A) x 4 anchors at the cells' centres (cell-major, the head's output order)."""
        half = self.stride / 2.0
        return make_anchors(height, width, self.stride, self.anchors.sizes, self.anchors.ratios, device=device) + half

    def forward(self, features: torch.Tensor, image_size: tuple[int, int], targets=None,
                generator: torch.Generator | None = None):
        """Proposals (a list of K_i x 4 per image), the losses (training) and the raw outputs for pictures."""
        n, _, fh, fw = features.shape
        logits, deltas = self.head(features)
        a = self.anchors.per_cell
        # N x A x H x W -> N x (H * W * A): cell-major like the anchors
        logits = logits.permute(0, 2, 3, 1).reshape(n, -1)
        deltas = deltas.reshape(n, a, 4, fh, fw).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
        anchors = self.anchor_boxes(fh, fw, features.device)
        proposals = self.propose(logits.detach(), deltas.detach(), anchors, image_size)
        losses = {}
        if targets is not None:
            losses = self.loss(logits, deltas, anchors, image_size, targets, generator)
        return proposals, losses, {"objectness": logits.detach().reshape(n, fh, fw, a), "anchors": anchors}

    @torch.no_grad()
    def propose(self, logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
                image_size: tuple[int, int]) -> list[torch.Tensor]:
        s = self.settings
        pre, post = (s.pre_nms_train, s.post_nms_train) if self.training else (s.pre_nms_test, s.post_nms_test)
        out = []
        for i in range(len(logits)):
            top = logits[i].topk(min(pre, logits.shape[1])).indices
            boxes = clip_boxes(decode_boxes(deltas[i, top], anchors[top]), *image_size)
            scores = logits[i, top]
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            ok = (w >= s.min_size) & (h >= s.min_size)
            boxes, scores = boxes[ok], scores[ok]
            keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), s.nms_iou)[:post]
            out.append(boxes[keep])
        return out

    def loss(self, logits, deltas, anchors, image_size, targets, generator=None) -> dict[str, torch.Tensor]:
        """Eq. 1: log loss over the sampled anchors + smooth L1 over the positives, both divided by the
        number sampled (the paper's lambda = 10 with N_reg ~ 2400 locations weighs them alike)."""
        s = self.settings
        height, width = image_size
        inside = torch.ones(len(anchors), dtype=torch.bool, device=anchors.device)
        if s.allowed_border >= 0:
            b = s.allowed_border
            inside = ((anchors[:, 0] >= -b) & (anchors[:, 1] >= -b) & (anchors[:, 2] <= width + b)
                      & (anchors[:, 3] <= height + b))
        cls_terms, box_terms, count = [], [], 0
        for i, t in enumerate(targets):
            gt = t.boxes
            m = match(anchors[inside], gt, high=s.positive_iou, low=s.negative_iou, best_for_each=True,
                      gt_ignore=t.iscrowd)
            matches = torch.full((len(anchors),), -2, dtype=torch.long, device=anchors.device)
            matches[inside] = m
            pos, neg = sample(matches, s.batch_per_image, s.positive_fraction, generator)
            chosen = torch.cat([pos, neg])
            labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).to(logits)
            cls_terms.append(F.binary_cross_entropy_with_logits(logits[i, chosen], labels, reduction="sum"))
            if len(pos):
                target = encode_boxes(gt[matches[pos]], anchors[pos])
                box_terms.append(F.smooth_l1_loss(deltas[i, pos], target, beta=1 / 9, reduction="sum"))
            count += len(chosen)
        count = max(count, 1)
        box = torch.stack(box_terms).sum() if box_terms else deltas.sum() * 0
        return {"rpn_objectness": torch.stack(cls_terms).sum() / count, "rpn_box": box / count}


def keep_valid(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Boxes at least ``min_size`` on each side and of positive area."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return (w >= min_size) & (h >= min_size) & (box_area(boxes) > 0)
