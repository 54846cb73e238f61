"""Semantic segmentation losses and metrics.

Metrics accumulate one confusion matrix over a whole split (rows: true class, columns: predicted;
pixels labelled :data:`~cnnlab.data.objects.IGNORE` are left out), and every figure is read off it at
the end, never averaged over batches. With ``n_ij`` the pixels of class ``i`` predicted as ``j``,
``t_i = sum_j n_ij`` and ``k`` the classes, the FCN paper's four metrics (Long et al. 2015, §5) are

- pixel accuracy ``sum_i n_ii / sum_i t_i``;
- mean accuracy ``(1 / k) sum_i n_ii / t_i``;
- mean IoU ``(1 / k) sum_i n_ii / (t_i + sum_j n_ji - n_ii)``;
- frequency-weighted IoU ``(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)``;

where a class is counted (in ``k``) when it occurs in the ground truth or in the predictions (mean
accuracy: in the ground truth). The boundary F-score (Csurka et al., BMVC 2013; SegNet's BF) compares
the pixels where the label changes, in prediction and ground truth, matched within a tolerance of
``tolerance`` pixels, per image, then averaged over images.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..data.objects import IGNORE


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE) -> torch.Tensor:
    """``num_classes x num_classes`` int64 counts (true x predicted) of the pixels not ``ignore_index``."""
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).view(num_classes, num_classes).cpu()


def scores(matrix: torch.Tensor) -> dict[str, Any]:
    """The FCN paper's four metrics and per-class IoU / accuracy from a confusion matrix (None where undefined)."""
    m = matrix.double()
    diag, truth, predicted = m.diag(), m.sum(1), m.sum(0)
    union = truth + predicted - diag
    total = float(m.sum())
    iou = [float(diag[i] / union[i]) if union[i] > 0 else None for i in range(len(m))]
    acc = [float(diag[i] / truth[i]) if truth[i] > 0 else None for i in range(len(m))]
    present = [v for v in iou if v is not None]
    seen = [v for v in acc if v is not None]
    fw = sum(float(truth[i]) * iou[i] for i in range(len(m)) if iou[i] is not None) / total if total else 0.0
    return {"pixel_acc": float(diag.sum()) / total if total else 0.0,
            "mean_acc": sum(seen) / len(seen) if seen else 0.0,
            "miou": sum(present) / len(present) if present else 0.0,
            "fwiou": fw, "per_class_iou": iou, "per_class_acc": acc, "pixels": int(total)}


def boundaries(labels: torch.Tensor) -> torch.Tensor:
    """B x H x W bool: the pixels whose label differs from their right or lower neighbour (or left / upper)."""
    edge = torch.zeros_like(labels, dtype=torch.bool)
    dx = labels[:, :, 1:] != labels[:, :, :-1]
    dy = labels[:, 1:, :] != labels[:, :-1, :]
    edge[:, :, 1:] |= dx
    edge[:, :, :-1] |= dx
    edge[:, 1:, :] |= dy
    edge[:, :-1, :] |= dy
    return edge


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return mask
    return F.max_pool2d(mask.float().unsqueeze(1), 2 * radius + 1, stride=1, padding=radius).squeeze(1) > 0


def boundary_f(pred: torch.Tensor, target: torch.Tensor, tolerance: int = 2,
               ignore_index: int = IGNORE) -> list[float]:
    """Per image of B x H x W label maps: the F-score of the predicted boundary pixels against the true
    ones, each matched if the other has a boundary pixel within ``tolerance`` (a square window).
    Ignored pixels count on neither side; an image with no boundary on either side scores 1."""
    valid = target != ignore_index
    tgt = torch.where(valid, target, torch.zeros_like(target))
    prd = torch.where(valid, pred, torch.zeros_like(pred))
    bt, bp = boundaries(tgt) & valid, boundaries(prd) & valid
    near_t, near_p = _dilate(bt, tolerance), _dilate(bp, tolerance)
    out = []
    for i in range(len(target)):
        n_p, n_t = int(bp[i].sum()), int(bt[i].sum())
        if n_p == 0 and n_t == 0:
            out.append(1.0)
            continue
        precision = float((bp[i] & near_t[i]).sum()) / n_p if n_p else 0.0
        recall = float((bt[i] & near_p[i]).sum()) / n_t if n_t else 0.0
        out.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    return out


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss (Milletari et al., V-Net, 2016): ``1 - mean_k 2 |P_k . Y_k| / (|P_k| + |Y_k|)`` over
    the classes present in the batch (in truth or prediction), on the softmax probabilities."""
    k = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)  # B x 1 x H x W
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(torch.where(valid[:, 0], target, torch.zeros_like(target)).long(), k).permute(0, 3, 1, 2)
    onehot = onehot * valid
    inter = (probs * onehot).sum((0, 2, 3))
    sizes = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = (2 * inter + eps) / (sizes + eps)
    present = onehot.sum((0, 2, 3)) > 0
    return 1 - dice[present].mean() if bool(present.any()) else 1 - dice.mean()


def median_frequency_weights(masks: torch.Tensor, num_classes: int, ignore_index: int = IGNORE) -> torch.Tensor:
    """SegNet's median frequency balancing (§4, after Eigen & Fergus 2015): ``w_c = median(f) / f_c`` with
    ``f_c`` the pixels of class ``c`` divided by the pixels of the images where ``c`` occurs."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    image_pixels = torch.zeros(num_classes, dtype=torch.float64)
    for m in masks:
        valid = m[m != ignore_index].long()
        c = torch.bincount(valid, minlength=num_classes).double()[:num_classes]
        counts += c
        image_pixels += (c > 0).double() * float(len(valid))
    freq = torch.where(image_pixels > 0, counts / image_pixels.clamp(min=1), torch.zeros_like(counts))
    med = freq[freq > 0].median() if bool((freq > 0).any()) else torch.tensor(1.0, dtype=torch.float64)
    return torch.where(freq > 0, med / freq.clamp(min=1e-12), torch.zeros_like(freq)).float()


def parse_weights(text: str, num_classes: int, masks: torch.Tensor | None = None) -> torch.Tensor | None:
    """``""`` (none), ``median`` (median frequency balancing of ``masks``) or a comma list of ``num_classes`` numbers."""
    from ..errors import ConfigError

    text = (text or "").strip()
    if not text:
        return None
    if text == "median":
        if masks is None:
            raise ConfigError("class_weights=median needs the training masks")
        return median_frequency_weights(masks, num_classes)
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"class_weights: expected 'median' or {num_classes} comma-separated numbers, got {text!r}") from None
    if len(values) != num_classes or any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"class_weights: expected {num_classes} non-negative numbers (background first), got {text!r}")
    return torch.tensor(values)


def mean_or_zero(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
