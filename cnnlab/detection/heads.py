"""Region heads: Fast R-CNN's two sibling outputs after RoI pooling (Girshick 2015, section 2 and
Figure 1) and Mask R-CNN's mask branch (He et al. 2017, section 3 and Figure 4, right).

Training samples RoIs per image from the proposals plus the ground-truth boxes: 25 % foreground
(IoU >= 0.5), the rest background (IoU < 0.5; the end-to-end Faster R-CNN setting of a 0 floor, where
Fast R-CNN used 0.1), and minimises the multi-task loss ``L = L_cls(p, u) + [u >= 1] L_loc(t^u, v)``
(eq. 1): softmax log loss over K + 1 classes and smooth L1 on the true class's offsets (eq. 2-3),
with targets scaled by (10, 10, 5, 5) (the usual normalisation of the regression targets, section 2.3).
The mask branch predicts an m x m binary mask per class from a 14 x 14 RoIAlign; its loss is the mean
binary cross-entropy of the true class's mask on foreground RoIs (section 3, "L_mask").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import batched_nms, decode_boxes, encode_boxes, roi_align, roi_pool
from ..ops.boxes import clip_boxes
from .sampling import match, sample

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


@dataclass(frozen=True)
class HeadSettings:
    rois_per_image: int = 64
    positive_fraction: float = 0.25
    foreground_iou: float = 0.5
    background_floor: float = 0.0
    score_threshold: float = 0.05
    nms_iou: float = 0.5
    detections_per_image: int = 100
    mask_size: int = 28


def pool_regions(features: torch.Tensor, rois: list[torch.Tensor], size: int, scale: float, kind: str) -> torch.Tensor:
    """K x C x size x size features of the RoIs (``kind``: ``align`` RoIAlign, ``max`` RoI max pooling)."""
    if kind == "max":
        return roi_pool(features, rois, size, spatial_scale=scale)
    return roi_align(features, rois, size, spatial_scale=scale, sampling_ratio=2, aligned=True)


class BoxHead(nn.Module):
    """RoI pooling (pool x pool) -> fc -> ReLU -> fc -> ReLU -> class scores (K + 1) and per-class boxes (4(K + 1))."""

    def __init__(self, in_channels: int, num_classes: int, *, pool: int = 7, hidden: int = 256):
        super().__init__()
        self.fc6 = nn.Linear(in_channels * pool * pool, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.cls_score = nn.Linear(hidden, num_classes + 1)  # index 0: background
        self.bbox_pred = nn.Linear(hidden, 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)  # Fast R-CNN section 2.3: N(0, 0.01) and N(0, 0.001)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc7(F.relu(self.fc6(pooled.flatten(1)))))  # K x hidden
        return self.cls_score(h), self.bbox_pred(h)  # K x (K+1), K x 4(K+1)


class MaskHead(nn.Module):
    """Mask R-CNN's head (Figure 4, right): 4 x [3 x 3 conv, ReLU] -> 2 x 2 deconv /2 -> 1 x 1 conv to one
    mask per class; 14 x 14 RoIAlign in, 28 x 28 masks out."""

    def __init__(self, in_channels: int, num_classes: int, *, channels: int = 128, convs: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(convs):
            layers += [nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(inplace=True)]
            c = channels
        self.convs = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.logits = nn.Conv2d(channels, num_classes, 1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.logits(F.relu(self.deconv(self.convs(pooled))))  # K x classes x 28 x 28


def sample_rois(proposals: list[torch.Tensor], targets, settings: HeadSettings, generator=None):
    """Per image: the sampled RoIs, their class (0 background, ``k + 1`` class k) and matched box index."""
    rois, labels, matched = [], [], []
    for props, t in zip(proposals, targets):
        candidates = torch.cat([props, t.boxes[~t.iscrowd]]) if len(t.boxes) else props
        m = match(candidates, t.boxes, high=settings.foreground_iou, low=settings.foreground_iou,
                  low_floor=settings.background_floor, gt_ignore=t.iscrowd)
        pos, neg = sample(m, settings.rois_per_image, settings.positive_fraction, generator)
        chosen = torch.cat([pos, neg])
        rois.append(candidates[chosen])
        lab = torch.zeros(len(chosen), dtype=torch.long, device=props.device)
        if len(pos):
            lab[:len(pos)] = t.labels[m[pos]] + 1
        labels.append(lab)
        matched.append(torch.cat([m[pos], torch.full((len(neg),), -1, dtype=torch.long, device=props.device)]))
    return rois, labels, matched


def box_loss(scores: torch.Tensor, deltas: torch.Tensor, rois: list[torch.Tensor], labels: list[torch.Tensor],
             matched: list[torch.Tensor], targets) -> dict[str, torch.Tensor]:
    """Fast R-CNN eq. 1: cross-entropy over the RoIs + smooth L1 of the true class's offsets over foreground."""
    label = torch.cat(labels)
    cls = F.cross_entropy(scores, label)
    fg = torch.nonzero(label > 0).flatten()
    if len(fg) == 0:
        return {"cls": cls, "box": deltas.sum() * 0}
    gt = torch.cat([t.boxes[m.clamp(min=0)] for t, m in zip(targets, matched)])
    target = encode_boxes(gt[fg], torch.cat(rois)[fg], BOX_WEIGHTS)
    pred = deltas.reshape(len(deltas), -1, 4)[fg, label[fg]]
    return {"cls": cls, "box": F.smooth_l1_loss(pred, target, beta=1.0, reduction="sum") / max(1, len(label))}


def mask_targets(rois: torch.Tensor, masks: torch.Tensor, size: int) -> torch.Tensor:
    """K x size x size binary targets: each ground-truth mask (K x H x W, matched to its RoI) cut to the RoI."""
    idx = torch.arange(len(rois), device=rois.device, dtype=rois.dtype)[:, None]
    soft = roi_align(masks[:, None].float(), torch.cat([idx, rois], 1), size, spatial_scale=1.0, sampling_ratio=2)
    return (soft[:, 0] >= 0.5).float()


def mask_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy of the true class's mask (Mask R-CNN's L_mask)."""
    if len(logits) == 0:
        return logits.sum() * 0
    chosen = logits[torch.arange(len(logits), device=logits.device), labels - 1]
    return F.binary_cross_entropy_with_logits(chosen, targets)


def postprocess(scores: torch.Tensor, deltas: torch.Tensor, rois: list[torch.Tensor], image_size: tuple[int, int],
                settings: HeadSettings) -> list[dict[str, torch.Tensor]]:
    """Per image: class-specific boxes, scores > threshold, NMS per class, the top detections."""
    probs = scores.softmax(1)
    k1 = probs.shape[1]
    out = []
    start = 0
    for r in rois:
        n = len(r)
        p = probs[start:start + n, 1:]  # n x K (background dropped)
        boxes = decode_boxes(deltas[start:start + n], r, BOX_WEIGHTS).reshape(n, k1, 4)[:, 1:]
        boxes = clip_boxes(boxes, *image_size)
        start += n
        labels = torch.arange(k1 - 1, device=r.device).expand(n, -1)
        roi_index = torch.arange(n, device=r.device)[:, None].expand(n, k1 - 1)
        boxes, p, labels, roi_index = boxes.reshape(-1, 4), p.reshape(-1), labels.reshape(-1), roi_index.reshape(-1)
        ok = (p > settings.score_threshold) & ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        boxes, p, labels, roi_index = boxes[ok], p[ok], labels[ok], roi_index[ok]
        keep = batched_nms(boxes, p, labels, settings.nms_iou)[:settings.detections_per_image]
        out.append({"boxes": boxes[keep], "scores": p[keep], "labels": labels[keep], "roi": roi_index[keep]})
    return out


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, threshold: float = 0.5) -> torch.Tensor:
    """D x m x m mask probabilities placed in their boxes: D x H x W bool (bilinear, thresholded)."""
    if len(masks) == 0:
        return torch.zeros(0, height, width, dtype=torch.bool, device=masks.device)
    ys = torch.arange(height, device=masks.device, dtype=masks.dtype) + 0.5
    xs = torch.arange(width, device=masks.device, dtype=masks.dtype) + 0.5
    x1, y1, x2, y2 = boxes.unbind(1)
    # pixel centres in the box's normalised [-1, 1] frame (align_corners=False: -1 and 1 are the box edges)
    gx = (xs[None] - x1[:, None]) / (x2 - x1).clamp(min=1e-3)[:, None] * 2 - 1  # D x W
    gy = (ys[None] - y1[:, None]) / (y2 - y1).clamp(min=1e-3)[:, None] * 2 - 1  # D x H
    grid = torch.stack([gx[:, None, :].expand(-1, height, -1), gy[:, :, None].expand(-1, -1, width)], -1)
    pasted = F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    return pasted >= threshold
