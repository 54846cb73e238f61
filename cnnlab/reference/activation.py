"""Activation functions and softmax in NumPy, forward and backward side by side.

ReLU: Nair & Hinton, ICML 2010; leaky ReLU: Maas, Hannun, Ng, ICML 2013 workshop; sigmoid and tanh
as in LeNet-5 (LeCun et al., Proc. IEEE 1998, appendix A). Backward functions take the forward's
input (ReLU family) or output (sigmoid, tanh, softmax), whichever makes the derivative cheapest.
"""

from __future__ import annotations

import numpy as np


def relu(x: np.ndarray) -> np.ndarray:
    """max(0, x)."""
    return np.maximum(x, 0)


def relu_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """d relu / dx = 1 where x > 0, else 0 (torch also takes 0 at x == 0)."""
    return grad_out * (x > 0)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """x for x > 0, negative_slope * x otherwise."""
    return np.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(grad_out: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    return grad_out * np.where(x > 0, 1.0, negative_slope).astype(grad_out.dtype)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), computed as (1 + tanh(x/2)) / 2: the same function, and it never overflows."""
    return 0.5 * (1 + np.tanh(0.5 * x))


def sigmoid_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """From the output y = sigmoid(x): dy/dx = y (1 - y)."""
    return grad_out * y * (1 - y)


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def tanh_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """From the output y = tanh(x): dy/dx = 1 - y^2."""
    return grad_out * (1 - y * y)


def log_softmax(x: np.ndarray, dim: int = -1) -> np.ndarray:
    """x - logsumexp(x), shifting by the maximum first so exp never overflows."""
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def softmax(x: np.ndarray, dim: int = -1) -> np.ndarray:
    """e^x_i / sum_j e^x_j along ``dim``."""
    return np.exp(log_softmax(x, dim))


def softmax_backward(grad_out: np.ndarray, y: np.ndarray, dim: int = -1) -> np.ndarray:
    """Jacobian-vector product diag(y) - y y^T, without forming the matrix: y * (g - sum(g * y))."""
    return y * (grad_out - (grad_out * y).sum(axis=dim, keepdims=True))
