"""Max, average and global average pooling in NumPy, forward and backward side by side.

Pooling works on each channel by itself, so the channel count does not change (Goodfellow et al.,
*Deep Learning*, 2016, section 9.3). Windows may overlap (AlexNet's 3x3 stride 2, Krizhevsky et al.
2012, section 3.4) and be padded; the output size is ``floor((n + 2p - k) / s) + 1`` as in torch's
default (``ceil_mode=False``). Max pooling pads with -inf so a padded cell never wins; average pooling
pads with zeros and, like torch's default, counts them (``count_include_pad=True``).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..output_size import output_hw
from .conv import IntPair, pair


def _geometry(x: np.ndarray, kernel_size: IntPair, stride: IntPair | None, padding: IntPair):
    if x.ndim != 4:
        raise ValueError(f"pooling expects N x C x H x W, got shape {x.shape}")
    k = pair(kernel_size)
    s = pair(stride if stride is not None else kernel_size)
    p = pair(padding)
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        raise ValueError(f"padding {p} must be at most half the kernel {k}")
    out = output_hw(x.shape[2:], k, s, p)
    return k, s, p, out


def _tiles(x: np.ndarray, k: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """Non-overlapping windows without padding, by reshaping: N x C x OH x OW x (kH*kW)."""
    n, c = x.shape[:2]
    (kh, kw), (oh, ow) = k, out
    t = x[:, :, :oh * kh, :ow * kw].reshape(n, c, oh, kh, ow, kw).transpose(0, 1, 2, 4, 3, 5)
    return t.reshape(n, c, oh, ow, kh * kw)


def _untile(t: np.ndarray, x_shape: tuple[int, ...], k: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`_tiles`; rows and columns the windows never reached get zero."""
    n, c, oh, ow, _ = t.shape
    (kh, kw) = k
    grid = t.reshape(n, c, oh, ow, kh, kw).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh * kh, ow * kw)
    if grid.shape[2:] == tuple(x_shape[2:]):
        return grid
    full = np.zeros(x_shape, dtype=t.dtype)
    full[:, :, :oh * kh, :ow * kw] = grid
    return full


def _windows(x: np.ndarray, k, s, p, out, fill: float) -> np.ndarray:
    """Every (possibly overlapping, padded) window: N x C x OH x OW x (kH*kW)."""
    if p != (0, 0):
        x = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=fill)
    view = sliding_window_view(x, k, axis=(2, 3))[:, :, ::s[0], ::s[1]][:, :, :out[0], :out[1]]
    return view.reshape(*view.shape[:4], k[0] * k[1])


def _scatter(per_offset: np.ndarray, x_shape, k, s, p, out) -> np.ndarray:
    """Add N x C x OH x OW x (kH*kW) window gradients back onto the input; loops over kernel offsets only."""
    n, c, h, w = x_shape
    padded = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), dtype=per_offset.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            padded[:, :, i:i + s[0] * (out[0] - 1) + 1:s[0], j:j + s[1] * (out[1] - 1) + 1:s[1]] += \
                per_offset[..., i * k[1] + j]
    return padded[:, :, p[0]:p[0] + h, p[1]:p[1] + w]


def _non_overlapping(k, s, p) -> bool:
    return k == s and p == (0, 0)


def max_pool2d(x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0) -> np.ndarray:
    """As ``torch.nn.functional.max_pool2d``: the largest value of each window."""
    k, s, p, out = _geometry(x, kernel_size, stride, padding)
    win = _tiles(x, k, out) if _non_overlapping(k, s, p) else _windows(x, k, s, p, out, -np.inf)
    return win.max(axis=-1)


def max_pool2d_backward(grad_out: np.ndarray, x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None,
                        padding: IntPair = 0) -> np.ndarray:
    """The gradient goes only to the cell that won each window (the first one on ties, as torch)."""
    k, s, p, out = _geometry(x, kernel_size, stride, padding)
    fast = _non_overlapping(k, s, p)
    win = _tiles(x, k, out) if fast else _windows(x, k, s, p, out, -np.inf)
    winner = win.argmax(axis=-1)[..., None]  # N x C x OH x OW x 1
    routed = np.zeros(win.shape, dtype=grad_out.dtype)
    np.put_along_axis(routed, winner, grad_out[..., None], axis=-1)
    return _untile(routed, x.shape, k) if fast else _scatter(routed, x.shape, k, s, p, out)


def _avg_divisor(x_shape, k, s, p, out, count_include_pad: bool, dtype) -> np.ndarray | float:
    if count_include_pad or p == (0, 0):
        return float(k[0] * k[1])
    ones = np.ones((1, 1, *x_shape[2:]), dtype=dtype)
    return _windows(ones, k, s, p, out, 0.0).sum(axis=-1)  # 1 x 1 x OH x OW real cells per window


def avg_pool2d(x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
               count_include_pad: bool = True) -> np.ndarray:
    """As ``torch.nn.functional.avg_pool2d``: the mean of each window."""
    k, s, p, out = _geometry(x, kernel_size, stride, padding)
    if _non_overlapping(k, s, p):  # sum each tile straight from a reshaped view, no copy
        n, c = x.shape[:2]
        tiles = x[:, :, :out[0] * k[0], :out[1] * k[1]].reshape(n, c, out[0], k[0], out[1], k[1])
        return tiles.sum(axis=(3, 5)) / x.dtype.type(k[0] * k[1])
    win = _windows(x, k, s, p, out, 0.0)
    return win.sum(axis=-1) / _avg_divisor(x.shape, k, s, p, out, count_include_pad, x.dtype)


def avg_pool2d_backward(grad_out: np.ndarray, x_shape: tuple[int, ...], kernel_size: IntPair,
                        stride: IntPair | None = None, padding: IntPair = 0,
                        count_include_pad: bool = True) -> np.ndarray:
    """Every cell of a window receives an equal share of that window's gradient."""
    k, s, p, out = _geometry(np.empty((0, 0, *x_shape[2:])), kernel_size, stride, padding)
    share = grad_out / _avg_divisor(x_shape, k, s, p, out, count_include_pad, grad_out.dtype)
    if _non_overlapping(k, s, p):
        n, c, oh, ow = share.shape
        # N x C x OH x 1 x OW x 1 broadcast over each tile, then laid out as the image
        grid = np.broadcast_to(share[:, :, :, None, :, None], (n, c, oh, k[0], ow, k[1]))
        grid = grid.reshape(n, c, oh * k[0], ow * k[1])
        if grid.shape[2:] == tuple(x_shape[2:]):
            return grid
        full = np.zeros(x_shape, dtype=grid.dtype)
        full[:, :, :oh * k[0], :ow * k[1]] = grid
        return full
    spread = np.broadcast_to(share[..., None], (*share.shape, k[0] * k[1]))
    return _scatter(spread, x_shape, k, s, p, out)


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """N x C x H x W -> N x C x 1 x 1 (Lin, Chen, Yan, "Network In Network", 2014, section 3.2)."""
    return x.mean(axis=(2, 3), keepdims=True)


def global_avg_pool2d_backward(grad_out: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(grad_out / (x_shape[2] * x_shape[3]), x_shape).copy()
