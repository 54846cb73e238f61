"""R-CNN's two learners on fixed CNN features (Girshick, Donahue, Darrell & Malik 2014, §2.3 and Appendix C).

- **Per-class linear SVMs**: for class ``k`` the positives are the ground-truth boxes of class ``k`` and
  the negatives the proposals overlapping every object of class ``k`` by IoU < 0.3 (the rest of the
  proposals are left out for that class); the loss is the hinge ``max(0, 1 - y (w_k . f + b_k))`` with
  an L2 penalty on ``w``. The paper mines hard negatives over the whole training set; here each step's
  sampled proposals are the negatives, and the hinge itself ignores those beyond the margin.
- **Class-specific box regression** (Appendix C): a linear map of the features to the offsets
  ``(tx, ty, tw, th)`` taking a proposal to its object, fitted by regularised least squares on the
  proposals that overlap an object of the class by IoU >= 0.6.

Both see the features detached: in the paper they are fitted after fine-tuning, on the fine-tuned
network's features, and do not change it.
"""

from __future__ import annotations

import torch

from ..ops import box_iou, encode_boxes

SVM_NEGATIVE_IOU = 0.3
REGRESSION_IOU = 0.6


def svm_targets(rois: torch.Tensor, is_truth: torch.Tensor, truth_labels: torch.Tensor, boxes: torch.Tensor,
                labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """R x K targets of the per-class SVMs: +1 a ground-truth box of the class, -1 a proposal overlapping
    every object of the class by less than 0.3, 0 left out. ``is_truth`` marks the RoIs that are
    ground-truth boxes, ``truth_labels`` their class."""
    target = torch.zeros(len(rois), num_classes, device=rois.device)
    if len(boxes):
        iou = box_iou(rois, boxes)  # R x G
        for k in range(num_classes):
            of_k = labels == k
            best = iou[:, of_k].max(1).values if bool(of_k.any()) else torch.zeros(len(rois), device=rois.device)
            target[best < SVM_NEGATIVE_IOU, k] = -1.0
    else:
        target[:] = -1.0
    target[torch.nonzero(is_truth).flatten(), truth_labels] = 1.0  # a true box of another class stays a negative
    return target


def hinge_loss(scores: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, l2: float) -> torch.Tensor:
    """Mean hinge loss over the labelled (non-zero) entries of the R x K ``targets`` + ``l2 / 2 |w|^2``."""
    used = targets != 0
    margins = (1 - targets * scores).clamp(min=0)[used]
    data = margins.mean() if len(margins) else scores.sum() * 0
    return data + 0.5 * l2 * weight.pow(2).sum()


def regression_loss(deltas: torch.Tensor, rois: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                    weight: torch.Tensor, l2: float) -> torch.Tensor:
    """Least squares of the true class's offsets over the RoIs overlapping an object by IoU >= 0.6
    (R x 4K ``deltas``), + ``l2 |w|^2`` (Appendix C's ridge regression)."""
    if len(boxes) == 0:
        return deltas.sum() * 0 + l2 * weight.pow(2).sum()
    best, index = box_iou(rois, boxes).max(1)
    near = best >= REGRESSION_IOU
    if not bool(near.any()):
        return deltas.sum() * 0 + l2 * weight.pow(2).sum()
    target = encode_boxes(boxes[index[near]], rois[near])
    pred = deltas.reshape(len(deltas), -1, 4)[near, labels[index[near]]]
    return (pred - target).pow(2).sum(1).mean() + l2 * weight.pow(2).sum()
