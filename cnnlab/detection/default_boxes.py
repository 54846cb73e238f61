"""SSD's default boxes, their matching to objects, and the MultiBox loss (Liu et al. 2016, §2.2).

Default boxes: on feature map ``k`` of ``m`` (an ``f x f`` grid), centred on ``((j + 0.5) / f, (i + 0.5) / f)``
of the image, of scale ``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)`` and aspect ratios ``a``
(width ``s_k sqrt(a)``, height ``s_k / sqrt(a)``), plus for ``a = 1`` one of scale ``sqrt(s_k s_k+1)``.

Matching: each object takes the default box that overlaps it most, then every default box whose best
IoU with an object is above 0.5 takes that object. Loss: ``(L_conf + alpha L_loc) / N`` over the ``N``
matched boxes, ``L_loc`` the smooth L1 between predicted and target offsets (encoded with the
variances 0.1 / 0.2 of the reference implementation), ``L_conf`` the softmax cross-entropy of the
matched boxes and of the hardest negatives, at most 3 negatives per positive (hard negative mining).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..ops import box_iou, encode_boxes

VARIANCE_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # 1 / 0.1 for the centre, 1 / 0.2 for the size


@dataclass(frozen=True)
class DefaultBoxSettings:
    """Scales (fractions of the image side) and aspect ratios per feature map, and the matching rule."""

    min_scale: float = 0.1
    max_scale: float = 0.7
    ratios: tuple[tuple[float, ...], ...] = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
    match_iou: float = 0.5
    negatives_per_positive: int = 3
    alpha: float = 1.0

    def scales(self, maps: int) -> list[float]:
        step = (self.max_scale - self.min_scale) / max(maps - 1, 1)
        return [self.min_scale + step * k for k in range(maps)] + [self.max_scale + step]

    def boxes_per_cell(self, k: int) -> int:
        return 2 + 2 * len(self.ratios[k])  # ratio 1 twice (s_k and s'_k), then a and 1 / a


def default_boxes(map_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int],
                  settings: DefaultBoxSettings, device: torch.device | str | None = None) -> torch.Tensor:
    """All default boxes, x1 y1 x2 y2 in pixels: map by map, cell-major, the boxes of a cell together."""
    height, width = image_size
    scales = settings.scales(len(map_sizes))
    out = []
    for k, (fh, fw) in enumerate(map_sizes):
        s, s_next = scales[k], scales[k + 1]
        shapes = [(s, s), (math.sqrt(s * s_next),) * 2]
        for a in settings.ratios[k]:
            r = math.sqrt(a)
            shapes += [(s * r, s / r), (s / r, s * r)]
        wh = torch.tensor(shapes, dtype=torch.float32, device=device)  # A x 2, fractions of the image
        ys = (torch.arange(fh, dtype=torch.float32, device=device) + 0.5) / fh
        xs = (torch.arange(fw, dtype=torch.float32, device=device) + 0.5) / fw
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack([cx, cy], -1).reshape(-1, 1, 2)  # (fh fw) x 1 x 2
        boxes = torch.cat([centres - wh / 2, centres + wh / 2], -1).reshape(-1, 4)
        out.append(boxes * torch.tensor([width, height, width, height], dtype=torch.float32, device=device))
    return torch.cat(out)


def match(priors: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
          threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The class (0 background, k + 1 object class k) and the matched object's box for every default box."""
    if len(boxes) == 0:
        return torch.zeros(len(priors), dtype=torch.long, device=priors.device), priors.clone()
    iou = box_iou(boxes, priors)  # G x P
    best_iou, best_object = iou.max(0)  # per default box
    best_prior = iou.argmax(1)  # per object: its own default box, whatever the overlap
    best_object[best_prior] = torch.arange(len(boxes), device=boxes.device)
    best_iou[best_prior] = 1.0
    classes = labels[best_object] + 1
    classes[best_iou < threshold] = 0
    return classes, boxes[best_object]


def multibox_loss(scores: torch.Tensor, offsets: torch.Tensor, priors: torch.Tensor, targets,
                  settings: DefaultBoxSettings) -> dict[str, torch.Tensor]:
    """``cls`` and ``box`` terms of the MultiBox loss for N x P x (K + 1) scores and N x P x 4 offsets."""
    classes, matched = zip(*(match(priors, t.boxes, t.labels, settings.match_iou) for t in targets))
    classes = torch.stack(classes)  # N x P
    positive = classes > 0
    n_pos = positive.sum(1)  # N
    ce = F.cross_entropy(scores.reshape(-1, scores.shape[-1]), classes.reshape(-1), reduction="none").view_as(classes)
    # hard negatives: the background boxes the network is surest are objects, 3 per positive per image
    negative_loss = ce.detach().masked_fill(positive, -1.0)
    rank = negative_loss.argsort(1, descending=True).argsort(1)
    hard = rank < (settings.negatives_per_positive * n_pos)[:, None]
    normaliser = n_pos.sum().clamp(min=1).float()
    cls = (ce * (positive | hard)).sum() / normaliser
    if bool(positive.any()):
        target = torch.cat([encode_boxes(m[p], priors[p], VARIANCE_WEIGHTS) for m, p in zip(matched, positive)])
        box = F.smooth_l1_loss(offsets[positive], target, reduction="sum", beta=1.0) / normaliser
    else:
        box = offsets.sum() * 0
    return {"cls": cls, "box": settings.alpha * box}
