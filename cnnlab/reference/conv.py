"""2-D convolution and transposed convolution in NumPy, forward and backward side by side.

Layouts follow ``torch.nn.functional``: inputs N x C x H x W, conv weights O x C/groups x kH x kW,
transposed-conv weights C_in x C_out/groups x kH x kW. What frameworks call convolution is
cross-correlation: the kernel is *not* turned 180 degrees (Goodfellow, Bengio, Courville, *Deep
Learning*, 2016, section 9.1).

Two forward paths that give the same numbers:

* :func:`conv2d_sliding` slides the kernel over every output position, one window at a time, as the
  lecture decks draw it; it is for reading and for checking.
* :func:`conv2d` lays every window out as one row of a matrix ("im2col", Chellapilla, Puri, Simard,
  2006) through a strided view, then does one matrix multiply per group; it is the training path.

The output size per axis is ``floor((n + 2p - d(k - 1) - 1) / s) + 1``; with d = 1 this is the decks'
``(n - k + 2p + s) / s`` rounded down. It comes from :func:`cnnlab.output_size.output_hw`, the
formula the shape calculator uses too.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..output_size import output_hw

IntPair = int | tuple[int, int]


def pair(value: IntPair) -> tuple[int, int]:
    """``3 -> (3, 3)``; a pair stays a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"expected one number or two, got {value}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _check_conv_shapes(x: np.ndarray, weight: np.ndarray, groups: int) -> None:
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d expects N x C x H x W input and O x C x kH x kW weight, "
                         f"got {x.shape} and {weight.shape}")
    out_channels, in_per_group = weight.shape[:2]
    if x.shape[1] != in_per_group * groups or out_channels % groups:
        raise ValueError(
            f"input has {x.shape[1]} channels, weight {weight.shape} with groups={groups} "
            f"expects {in_per_group * groups}"
        )


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
             dilation: tuple[int, int]) -> np.ndarray:
    """Strided view of every window: N x C x OH x OW x kH x kW (no copy except the zero padding)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    view = sliding_window_view(x, (span_h, span_w), axis=(2, 3))  # N x C x H' x W' x span_h x span_w
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def im2col(x: np.ndarray, kernel: IntPair, stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
           groups: int = 1, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """Windows as rows: groups x (N*OH*OW) x (C/groups*kH*kW), one contiguous copy.

    ``out_size`` keeps only the first OH x OW windows (the transposed conv's backward needs that).
    """
    win = _windows(x, pair(kernel), pair(stride), pair(padding), pair(dilation))
    if out_size is not None:
        win = win[:, :, :out_size[0], :out_size[1]]
    n, c, oh, ow, kh, kw = win.shape
    # groups x N x OH x OW x C/g x kH x kW: the channel-and-kernel axes last so one row is one window.
    win = win.reshape(n, groups, c // groups, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    return np.ascontiguousarray(win).reshape(groups, n * oh * ow, (c // groups) * kh * kw)


def col2im(cols_t: np.ndarray, x_shape: tuple[int, ...], kernel: IntPair, stride: IntPair = 1, padding: IntPair = 0,
           dilation: IntPair = 1, groups: int = 1, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """Adjoint of :func:`im2col`: add every window's values back onto the pixels they came from.

    ``cols_t`` is the *transposed* window matrix, groups x (C/g*kH*kW) x (N*OH*OW), the layout the
    input gradient comes out of its matrix product in. ``out_size`` (OH, OW) defaults to the conv output
    size of ``x_shape``; a transposed conv with output padding passes a smaller one.

    The loop runs over the kH*kW kernel offsets (25 for a 5x5 kernel), never over pixels: each offset
    adds one strided slab of the image at once.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pair(kernel), pair(stride), pair(padding), pair(dilation)
    n, c, h, w = x_shape
    if out_size is None:
        out_size = output_hw((h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw))
    oh, ow = out_size
    # groups x C/g x kH x kW x N x OH x OW  ->  kH x kW x N x C x OH x OW (a view)
    grid = cols_t.reshape(groups, c // groups, kh, kw, n, oh, ow).transpose(2, 3, 4, 0, 1, 5, 6)
    grid = grid.reshape(kh, kw, n, c, oh, ow)
    padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols_t.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            padded[:, :, top:top + sh * (oh - 1) + 1:sh, left:left + sw * (ow - 1) + 1:sw] += grid[i, j]
    return padded[:, :, ph:ph + h, pw:pw + w]


def _grouped_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """O x C/g x kH x kW  ->  groups x O/g x (C/g*kH*kW)."""
    out_channels = weight.shape[0]
    return weight.reshape(groups, out_channels // groups, -1)


# BLAS is fast only when both operands of a product are C-contiguous here (a transposed view of the
# tall window matrix makes OpenBLAS up to 30x slower), so every product below is arranged that way and
# the small operands (weights, output gradients) are the ones copied into shape.


def _each_group(product, groups: int) -> np.ndarray:
    """Stack ``product(g)`` over the groups (no stacking copy for the common groups == 1)."""
    return product(0)[None] if groups == 1 else np.stack([product(g) for g in range(groups)])


def conv2d_im2col(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntPair = 1,
                  padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1,
                  out_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fast forward that also returns the window matrix, so a layer can reuse it in backward."""
    _check_conv_shapes(x, weight, groups)
    n, _, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    oh, ow = out_size or output_hw((h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw))
    cols = im2col(x, (kh, kw), stride, padding, dilation, groups, (oh, ow))  # G x (N*OH*OW) x (C/g*kH*kW)
    kernels = _grouped_weight(weight, groups)
    # per group: (N*OH*OW) x (C/g*k*k) times (C/g*k*k) x O/g
    out = _each_group(lambda g: cols[g] @ np.ascontiguousarray(kernels[g].T), groups)
    out = out.reshape(groups, n, oh, ow, out_channels // groups).transpose(1, 0, 4, 2, 3)
    out = out.reshape(n, out_channels, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1).astype(out.dtype, copy=False)
    return np.ascontiguousarray(out), cols


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntPair = 1,
           padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1) -> np.ndarray:
    """Cross-correlation as ``torch.nn.functional.conv2d``: N x C x H x W -> N x O x OH x OW."""
    return conv2d_im2col(x, weight, bias, stride, padding, dilation, groups)[0]


def _grad_rows(grad_out: np.ndarray, groups: int) -> np.ndarray:
    """N x O x OH x OW  ->  groups x O/g x (N*OH*OW), contiguous (columns in the window-row order)."""
    n, o, oh, ow = grad_out.shape
    g = grad_out.reshape(n, groups, o // groups, oh * ow).transpose(1, 2, 0, 3)
    return np.ascontiguousarray(g).reshape(groups, o // groups, n * oh * ow)


def conv2d_input_grad(grad_out: np.ndarray, weight: np.ndarray, x_shape: tuple[int, ...], stride: IntPair = 1,
                      padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1) -> np.ndarray:
    """dL/dx of :func:`conv2d`: each output's gradient spread back over its window, weighted by the kernel."""
    rows, kernels = _grad_rows(grad_out, groups), _grouped_weight(weight, groups)
    # per group: (C/g*k*k) x O/g times O/g x (N*OH*OW)
    cols_t = _each_group(lambda g: np.ascontiguousarray(kernels[g].T) @ rows[g], groups)
    return col2im(cols_t, x_shape, weight.shape[2:], stride, padding, dilation, groups, grad_out.shape[2:])


def conv2d_weight_grad(grad_out: np.ndarray, x: np.ndarray | None, weight_shape: tuple[int, ...],
                       stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1,
                       cols: np.ndarray | None = None) -> np.ndarray:
    """dL/dW of :func:`conv2d`: each kernel entry's gradient is its window values times the output gradient."""
    if cols is None:
        cols = im2col(x, weight_shape[2:], stride, padding, dilation, groups)
    rows = _grad_rows(grad_out, groups)
    # per group: O/g x (N*OH*OW) times (N*OH*OW) x (C/g*k*k)
    dw = _each_group(lambda g: rows[g] @ cols[g], groups)
    return dw.reshape(weight_shape)


def conv2d_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, stride: IntPair = 1,
                    padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1, has_bias: bool = True,
                    cols: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients ``(dx, dweight, dbias)`` of :func:`conv2d`; ``cols`` from :func:`conv2d_im2col` saves a copy."""
    dx = conv2d_input_grad(grad_out, weight, x.shape, stride, padding, dilation, groups)
    dw = conv2d_weight_grad(grad_out, x, weight.shape, stride, padding, dilation, groups, cols)
    db = grad_out.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


# ---------------------------------------------------------------------------------------------------
# The readable version: one window at a time, as in the decks.


def conv2d_sliding(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntPair = 1,
                   padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1) -> np.ndarray:
    """Same result as :func:`conv2d`, computed window by window: out[n, o, i, j] = sum(window * kernel_o) + b_o."""
    _check_conv_shapes(x, weight, groups)
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // groups
    oh, ow = output_hw((h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw))
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((n, o, oh, ow), dtype=np.result_type(x, weight))
    for out_channel in range(o):
        group = out_channel // og
        channels = slice(group * cg, (group + 1) * cg)
        for i in range(oh):
            for j in range(ow):
                top, left = i * sh, j * sw
                # N x C/g x kH x kW: the input values under the kernel at output position (i, j)
                window = padded[:, channels, top:top + dh * (kh - 1) + 1:dh, left:left + dw * (kw - 1) + 1:dw]
                out[:, out_channel, i, j] = (window * weight[out_channel]).sum(axis=(1, 2, 3))
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out


def conv2d_sliding_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, stride: IntPair = 1,
                            padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window-by-window gradients: every window gets ``grad * kernel``, every kernel gets ``grad * window``."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // groups
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dpadded = np.zeros_like(padded, dtype=np.result_type(x, weight, grad_out))
    dweight = np.zeros_like(weight, dtype=dpadded.dtype)
    for out_channel in range(o):
        channels = slice((out_channel // og) * cg, (out_channel // og + 1) * cg)
        for i in range(grad_out.shape[2]):
            for j in range(grad_out.shape[3]):
                rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                g = grad_out[:, out_channel, i, j].reshape(n, 1, 1, 1)
                dpadded[:, channels, rows, cols] += g * weight[out_channel]
                dweight[out_channel] += (g * padded[:, channels, rows, cols]).sum(axis=0)
    return dpadded[:, :, ph:ph + h, pw:pw + w], dweight, grad_out.sum(axis=(0, 2, 3))


def true_convolution(x: np.ndarray, kernel: np.ndarray, stride: IntPair = 1, padding: IntPair = 0) -> np.ndarray:
    """Convolution in the mathematical sense: cross-correlation with the kernel turned 180 degrees."""
    return conv2d(x, np.ascontiguousarray(kernel[..., ::-1, ::-1]), None, stride, padding)


# ---------------------------------------------------------------------------------------------------
# Transposed convolution: the adjoint of conv2d, used for upsampling.


def conv_transpose2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: IntPair = 1,
                     padding: IntPair = 0, output_padding: IntPair = 0, groups: int = 1,
                     dilation: IntPair = 1) -> np.ndarray:
    """As ``torch.nn.functional.conv_transpose2d``; weight C_in x C_out/g x kH x kW.

    It is exactly the input gradient of a conv2d whose weight is this weight: each input pixel
    stamps a scaled copy of the kernel onto the output. OH = (H-1)s - 2p + d(k-1) + output_padding + 1.
    """
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[0] or weight.shape[0] % groups:
        raise ValueError(f"conv_transpose2d: input {x.shape} does not fit weight {weight.shape} with groups={groups}")
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = pair(stride), pair(padding), pair(output_padding), pair(dilation)
    n, _, h, w = x.shape
    kh, kw = weight.shape[2:]
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    out = conv2d_input_grad(x, weight, (n, weight.shape[1] * groups, oh, ow), stride, padding, dilation, groups)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def conv_transpose2d_backward(grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, stride: IntPair = 1,
                              padding: IntPair = 0, groups: int = 1, dilation: IntPair = 1,
                              has_bias: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`conv_transpose2d`: its input gradient is an ordinary conv2d of ``grad_out``."""
    db = grad_out.sum(axis=(0, 2, 3)) if has_bias else None
    # dx[i] = sum_j grad_out[i*s - p + j*d] W[j]: an ordinary conv2d of grad_out, of which only the
    # first H x W positions exist in x (output_padding can leave a few more).
    dx, cols = conv2d_im2col(grad_out, weight, None, stride, padding, dilation, groups, out_size=x.shape[2:])
    # The same windows give dW; the roles swap: grad_out plays the input, x the output gradient.
    dw = conv2d_weight_grad(x, None, weight.shape, stride, padding, dilation, groups, cols=cols)
    return dx, dw, db
