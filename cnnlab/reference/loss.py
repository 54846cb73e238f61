"""Loss functions in NumPy, forward and backward side by side; every loss is the batch mean.

Softmax cross-entropy (the classifier loss of every network in the decks), mean squared error, L1,
and the multi-class hinge loss of Weston & Watkins / Crammer & Singer as torch's
``multi_margin_loss`` defines it: sum_{i != y} max(0, margin - x_y + x_i) / C.
"""

from __future__ import annotations

import numpy as np

from .activation import log_softmax, softmax


def _check_targets(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    target = np.asarray(target)
    if logits.ndim != 2 or target.shape != (logits.shape[0],):
        raise ValueError(f"expected N x C scores and N class indices, got {logits.shape} and {target.shape}")
    if target.size and (target.min() < 0 or target.max() >= logits.shape[1]):
        raise ValueError(f"class index out of range 0..{logits.shape[1] - 1}")
    return target.astype(np.int64)


def cross_entropy(logits: np.ndarray, target: np.ndarray) -> float:
    """-mean_n log softmax(logits_n)[y_n]."""
    target = _check_targets(logits, target)
    return float(-log_softmax(logits, 1)[np.arange(len(target)), target].mean())


def cross_entropy_backward(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(softmax(z) - onehot(y)) / N: the famous clean gradient of softmax followed by log loss."""
    target = _check_targets(logits, target)
    grad = softmax(logits, 1)
    grad[np.arange(len(target)), target] -= 1
    return grad / len(target)


def mse_loss(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(((prediction - target) ** 2).mean())


def mse_loss_backward(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    return 2 * (prediction - target) / prediction.size


def l1_loss(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(np.abs(prediction - target).mean())


def l1_loss_backward(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """sign(p - t) / numel, with 0 at p == t (the subgradient torch also picks)."""
    return np.sign(prediction - target) / prediction.size


def _hinge_margins(scores: np.ndarray, target: np.ndarray, margin: float) -> np.ndarray:
    correct = scores[np.arange(len(target)), target][:, None]  # N x 1
    margins = np.maximum(0, margin - correct + scores)  # N x C
    margins[np.arange(len(target)), target] = 0  # the true class is not compared with itself
    return margins


def multi_margin_loss(scores: np.ndarray, target: np.ndarray, margin: float = 1.0) -> float:
    """Multi-class hinge: mean_n sum_{i != y_n} max(0, margin - s_y + s_i) / C."""
    target = _check_targets(scores, target)
    return float(_hinge_margins(scores, target, margin).sum(axis=1).mean() / scores.shape[1])


def multi_margin_loss_backward(scores: np.ndarray, target: np.ndarray, margin: float = 1.0) -> np.ndarray:
    """Each violating class i gets +1, the true class -1 per violation; scaled by 1 / (N C)."""
    target = _check_targets(scores, target)
    active = (_hinge_margins(scores, target, margin) > 0).astype(scores.dtype)
    active[np.arange(len(target)), target] = -active.sum(axis=1)
    return active / (scores.shape[0] * scores.shape[1])
