"""The four losses the decks list, for a classifier's raw scores (logits) and integer targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def multiclass_hinge(scores: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Multi-class SVM loss (Weston & Watkins 1999; the cs231n form the decks use):
    ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + margin)``, averaged over the batch."""
    correct = scores.gather(1, target.unsqueeze(1))  # N x 1
    margins = (scores - correct + margin).clamp_min(0)
    margins = margins.scatter(1, target.unsqueeze(1), 0.0)  # the j = y_i term is not a violation
    return margins.sum(1).mean()


class OneHotRegression(nn.Module):
    """MSE or L1 between the scores and the one-hot target: classification posed as regression."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(target, scores.shape[1]).to(scores.dtype)
        return F.mse_loss(scores, one_hot) if self.kind == "mse" else F.l1_loss(scores, one_hot)


class MultiClassHinge(nn.Module):
    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = margin

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return multiclass_hinge(scores, target, self.margin)


def make_criterion(name: str, *, label_smoothing: float = 0.0) -> nn.Module:
    """``cross_entropy`` (softmax + negative log-likelihood), ``mse``, ``l1`` or ``hinge``."""
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name in ("mse", "l1"):
        return OneHotRegression(name)
    if name == "hinge":
        return MultiClassHinge()
    if name in ("dice", "cross_entropy+dice"):
        from ..errors import ConfigError

        raise ConfigError(f"{name} is a segmentation loss; classification uses cross_entropy, mse, l1 or hinge")
    raise ValueError(f"unknown loss '{name}'")


def auxiliary_loss(outputs, target: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
    """The loss of a network that may have auxiliary classifiers: the main loss plus each auxiliary
    head's loss times its weight (GoogLeNet §5: main + 0.3 * aux1 + 0.3 * aux2), or the plain loss
    for plain logits (every network in evaluation mode)."""
    from ..backbone import AuxiliaryOutputs

    if not isinstance(outputs, AuxiliaryOutputs):
        return criterion(outputs, target)
    loss = criterion(outputs.logits, target)
    for aux, weight in zip(outputs.aux, outputs.weights):
        loss = loss + weight * criterion(aux, target)
    return loss
