"""Batch normalisation and local response normalisation in NumPy, forward and backward side by side.

Batch norm: Ioffe & Szegedy, ICML 2015, Algorithm 1 (training: normalise with the batch's mean and
biased variance) and Algorithm 2 (inference: the running averages). As in torch, the running variance
is updated with the *unbiased* batch variance and ``momentum`` weighs the new batch.

Local response normalisation: Krizhevsky, Sutskever, Hinton, NIPS 2012, section 3.3,
``b_c = a_c / (k + alpha * sum_{j near c} a_j^2) ** beta`` with n = 5, k = 2, alpha = 1e-4,
beta = 0.75. The sum runs over n neighbouring channels at the same pixel. Note: torch's
``local_response_norm`` divides alpha by n; ``alpha_torch = alpha_paper * n`` gives the same numbers.
"""

from __future__ import annotations

import numpy as np


def _reduce_axes(x: np.ndarray) -> tuple[int, ...]:
    """Every axis but the channel axis 1: (0,) for N x C, (0, 2, 3) for N x C x H x W."""
    if x.ndim < 2:
        raise ValueError(f"batch norm expects N x C or N x C x H x W, got shape {x.shape}")
    return (0, *range(2, x.ndim))


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape(1, -1, *([1] * (ndim - 2)))


def batch_norm(x: np.ndarray, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: np.ndarray | None = None, bias: np.ndarray | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> np.ndarray:
    """As ``torch.nn.functional.batch_norm``; in training the running statistics are updated in place."""
    axes = _reduce_axes(x)
    if training:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)  # biased: what the batch is normalised with
        count = x.size // x.shape[1]
        if count < 2:
            raise ValueError("batch norm in training needs more than one value per channel")
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * count / (count - 1)  # unbiased, as torch
    else:
        mean, var = running_mean, running_var
    y = (x - _per_channel(mean, x.ndim)) / np.sqrt(_per_channel(var, x.ndim) + eps)
    if weight is not None:
        y = y * _per_channel(weight, x.ndim)
    if bias is not None:
        y = y + _per_channel(bias, x.ndim)
    return y.astype(x.dtype, copy=False)


def batch_norm_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray | None,
                        running_var: np.ndarray | None = None, training: bool = True, eps: float = 1e-5,
                        running_mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dweight, dbias)``.

    Training: x_hat = (x - mu) / sigma with mu, sigma from the batch, so every x moves every output;
    dx = (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)) / sigma with g_hat = g * gamma.
    Inference: the statistics are constants and dx = g * gamma / sigma.
    """
    axes = _reduce_axes(x)
    gamma = _per_channel(weight, x.ndim) if weight is not None else 1.0
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / np.sqrt(_per_channel(var, x.ndim) + eps)
    x_hat = (x - _per_channel(mean, x.ndim)) * inv_std
    dbias = grad_out.sum(axis=axes)
    dweight = (grad_out * x_hat).sum(axis=axes)
    g_hat = grad_out * gamma
    if training:
        dx = (g_hat - g_hat.mean(axis=axes, keepdims=True)
              - x_hat * (g_hat * x_hat).mean(axis=axes, keepdims=True)) * inv_std
    else:
        dx = g_hat * inv_std
    return dx, dweight, dbias


def _channel_window_sum(sq: np.ndarray, before: int, after: int) -> np.ndarray:
    """s_c = sum of sq[c - before .. c + after] along axis 1, zero outside; by a running sum, no loop."""
    n, c = sq.shape[:2]
    padded = np.concatenate([np.zeros((n, before + 1, *sq.shape[2:]), sq.dtype), sq,
                             np.zeros((n, after, *sq.shape[2:]), sq.dtype)], axis=1)
    running = np.cumsum(padded, axis=1)
    size = before + after + 1
    return running[:, size:size + c] - running[:, :c]


def local_response_norm(x: np.ndarray, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 2.0) -> np.ndarray:
    """AlexNet's b_c = a_c / (k + alpha * sum_{j=c-n/2}^{c+n/2} a_j^2) ** beta (paper's alpha, not alpha/n)."""
    scale = k + alpha * _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    return x * scale ** -beta


def local_response_norm_backward(grad_out: np.ndarray, x: np.ndarray, size: int = 5, alpha: float = 1e-4,
                                 beta: float = 0.75, k: float = 2.0) -> np.ndarray:
    """a_c appears in its own denominator and in those of its neighbours j, whose windows contain c:
    dL/da_c = g_c s_c^-beta - 2 alpha beta a_c sum_{j: c in window(j)} g_j a_j s_j^(-beta-1)."""
    scale = k + alpha * _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    through_neighbours = _channel_window_sum(grad_out * x * scale ** (-beta - 1), (size - 1) // 2, size // 2)
    return grad_out * scale ** -beta - 2 * alpha * beta * x * through_neighbours
