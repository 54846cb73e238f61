"""Matching reference boxes (anchors, proposals) to ground truth and sampling a balanced minibatch:
the labelling rules of Faster R-CNN section 3.1.2 and Fast R-CNN section 2.3."""

from __future__ import annotations

import torch

from ..ops import box_iou

BACKGROUND = -1  # matched to nothing: a negative example
IGNORED = -2  # between the thresholds (or crowd, or outside the image): not sampled


def match(references: torch.Tensor, gt_boxes: torch.Tensor, *, high: float, low: float,
          best_for_each: bool = False, low_floor: float = 0.0, gt_ignore: torch.Tensor | None = None) -> torch.Tensor:
    """For each of the R references, the index of its ground-truth box, :data:`BACKGROUND` or :data:`IGNORED`.

    IoU >= ``high`` is a positive; ``low_floor <= IoU < low`` a negative; the rest ignored. With
    ``best_for_each`` every ground-truth box also claims the references of highest IoU with it, even
    below ``high`` (Faster R-CNN's condition (i), so that each object has at least one positive anchor).
    A reference whose best match is an ignored (crowd) box is ignored.
    """
    r = len(references)
    if len(gt_boxes) == 0:
        return torch.full((r,), BACKGROUND, dtype=torch.long, device=references.device)
    iou = box_iou(gt_boxes, references)  # G x R
    best, index = iou.max(0)  # R
    out = torch.where(best >= high, index, torch.full_like(index, IGNORED))
    out = torch.where((best < low) & (best >= low_floor), torch.full_like(index, BACKGROUND), out)
    if best_for_each:
        top = iou.max(1, keepdim=True).values  # G x 1
        g, a = torch.nonzero((iou == top) & (top > 0), as_tuple=True)
        out[a] = g
    if gt_ignore is not None and bool(gt_ignore.any()):
        out = torch.where((out >= 0) & gt_ignore[out.clamp(min=0)], torch.full_like(out, IGNORED), out)
    return out


def sample(matches: torch.Tensor, total: int, positive_fraction: float,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of sampled positives and negatives: at most ``total * positive_fraction`` positives,
    negatives filling the rest (Faster R-CNN: 256 anchors, up to 1:1; Fast R-CNN: 64 RoIs, 25 %)."""
    pos = torch.nonzero(matches >= 0).flatten()
    neg = torch.nonzero(matches == BACKGROUND).flatten()
    n_pos = min(len(pos), int(total * positive_fraction))
    n_neg = min(len(neg), total - n_pos)
    dev = matches.device
    pos = pos[torch.randperm(len(pos), generator=generator).to(dev)[:n_pos]]
    neg = neg[torch.randperm(len(neg), generator=generator).to(dev)[:n_neg]]
    return pos, neg
