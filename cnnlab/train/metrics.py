"""Classification metrics: top-k accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import torch

from ..errors import DataError


def topk_correct(scores: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """How many of the batch have the true class among their ``k`` highest scores, for each ``k``."""
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices  # N x kmax
    hits = top.eq(target.unsqueeze(1))
    return {k: int(hits[:, : min(k, kmax)].any(1).sum()) for k in ks}


def confusion_matrix(pred, target, num_classes: int) -> torch.Tensor:
    """``C[i, j]`` = number of images of true class ``i`` predicted as ``j``; num_classes x num_classes int64.

    ``pred`` and ``target`` are class indices (tensors, arrays or lists). The one confusion matrix of the
    package: training, ``cnnlab eval`` and ``cnnlab viz confusion`` all count with it.
    """
    pred, target = torch.as_tensor(pred).long().flatten(), torch.as_tensor(target).long().flatten()
    if pred.shape != target.shape:
        raise DataError(f"{pred.numel()} predictions for {target.numel()} targets")
    if pred.numel():
        low, high = min(int(pred.min()), int(target.min())), max(int(pred.max()), int(target.max()))
        if low < 0 or high >= num_classes:  # a label beyond the class list would silently widen the matrix
            raise DataError(f"class index {low if low < 0 else high} is outside 0..{num_classes - 1} "
                            f"({num_classes} classes)")
    index = target * num_classes + pred
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> list[float]:
    totals = confusion.sum(1).clamp_min(1)
    return (confusion.diag().double() / totals.double()).tolist()
