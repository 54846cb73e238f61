"""Fully connected layer, flatten and dropout in NumPy, forward and backward side by side.

Dropout is the inverted form: during training each unit is kept with probability 1 - p and kept
units are scaled by 1 / (1 - p), so nothing changes at test time (Srivastava et al., JMLR 2014,
section 10; AlexNet used it on its first two fully connected layers, Krizhevsky et al. 2012, 4.2).
"""

from __future__ import annotations

import numpy as np


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """As ``torch.nn.functional.linear``: y = x W^T + b with W out_features x in_features."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input has {x.shape[-1]} features, weight {weight.shape} expects {weight.shape[1]}")
    y = x @ weight.T
    return y + bias if bias is not None else y


def linear_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, has_bias: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(dx, dW, db)``: dx = g W, dW = g^T x, db = sum of g over every axis but the last."""
    g2 = grad_out.reshape(-1, grad_out.shape[-1])  # (N*...) x out
    x2 = x.reshape(-1, x.shape[-1])  # (N*...) x in
    return grad_out @ weight, g2.T @ x2, (g2.sum(axis=0) if has_bias else None)


def flatten(x: np.ndarray, start_dim: int = 1) -> np.ndarray:
    """N x C x H x W -> N x (C*H*W): the bridge from convolutional to fully connected layers."""
    return x.reshape(*x.shape[:start_dim], -1)


def flatten_backward(grad_out: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    return grad_out.reshape(x_shape)


def dropout_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """0 for a dropped unit, 1/(1-p) for a kept one."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    keep = rng.random(shape) >= p
    return keep.astype(dtype) * np.asarray(1 / (1 - p), dtype=dtype)


def dropout(x: np.ndarray, p: float = 0.5, training: bool = True, rng: np.random.Generator | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns ``(y, mask)``; at inference (or p = 0) y is x and the mask is None."""
    if not training or p == 0:
        return x, None
    mask = dropout_mask(x.shape, p, rng if rng is not None else np.random.default_rng(), x.dtype)
    return x * mask, mask


def dropout_backward(grad_out: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The same mask gates the gradient: dropped units pass nothing back, kept ones are scaled alike."""
    return grad_out if mask is None else grad_out * mask
