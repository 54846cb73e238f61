"""Learned filters: the first layer as a colour grid, deeper layers as filter x input-channel grids.

Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
NIPS 2012, Fig. 3 shows AlexNet's 96 first-layer 11 x 11 x 3 kernels as colour tiles; the same
picture is drawn here for any checkpoint. A first layer that sees RGB is drawn in colour (each
filter scaled on its own to [0, 1]); a greyscale one on a signed colour map centred on zero. A
deeper layer's kernel ``W[o, i]`` is a 2-D slice per (filter o, input channel i): one row per filter.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import unknown_name
from . import style
from .stages import feature_stages


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """(module path, layer) of every ``Conv2d`` in ``model``, in registration order."""
    return [(path, m) for path, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def find_conv(model: nn.Module, key: str | None = None) -> tuple[str, nn.Conv2d]:
    """A convolution by module path (``features.0``) or stage name (its first convolution); default the first."""
    convs = conv_layers(model)
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolutional layer")
    if key is None:
        return convs[0]
    for path, conv in convs:
        if path == key:
            return path, conv
    for stage in feature_stages(model):
        if stage.name == key:
            for module in stage.modules:
                for sub_path, sub in module.named_modules():
                    if isinstance(sub, nn.Conv2d):
                        path = next(p for p, m in convs if m is sub)
                        return path, sub
    names = [s.name for s in feature_stages(model) if s.has_conv] + [p for p, _ in convs]
    raise unknown_name("convolution", key, names)


def filter_tiles(weight: torch.Tensor, *, max_filters: int | None = None) -> np.ndarray:
    """First-layer tiles: O x kh x kw x 3 in [0, 1] for 3 input channels (each filter min-max scaled),
    O x kh x kw in [-1, 1] for one input channel (each filter divided by its largest magnitude)."""
    w = weight.detach().float().cpu().numpy()  # O x I x kh x kw
    if max_filters is not None:
        w = w[:max_filters]
    if w.shape[1] == 3:
        flat = w.reshape(w.shape[0], -1)
        lo, hi = flat.min(1), flat.max(1)
        span = np.where(hi > lo, hi - lo, 1.0)
        w = (w - lo[:, None, None, None]) / span[:, None, None, None]
        return np.moveaxis(w, 1, -1)  # O x kh x kw x 3
    m = np.abs(w).reshape(w.shape[0], -1).max(1)
    m = np.where(m > 0, m, 1.0)
    if w.shape[1] == 1:
        return w[:, 0] / m[:, None, None]
    return w / m[:, None, None, None]  # O x I x kh x kw, for per-channel grids


def plot_filters(weight: torch.Tensor, *, title: str = "First-layer filters", max_filters: int = 256):
    """One tile per filter of a first layer (1 or 3 input channels), or a filter x channel grid otherwise."""
    out_ch, in_ch = weight.shape[:2]
    if in_ch not in (1, 3):
        return plot_channel_grid(weight, title=title)
    tiles = filter_tiles(weight, max_filters=max_filters)
    n = tiles.shape[0]
    rows, cols = style.grid_shape(n)
    side = 0.62 if cols > 8 else 0.9
    fig = style.figure(max(3.2, cols * side + (0.9 if in_ch == 1 else 0.2)), rows * side + 0.6)
    shown = f"{n} of {out_ch}" if n < out_ch else f"{n}"
    fig.suptitle(f"{title}\n{shown} filters, {in_ch} x {weight.shape[2]} x {weight.shape[3]}", fontsize=10)
    grid = fig.add_gridspec(rows, cols)
    image = None
    for i in range(n):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        if in_ch == 3:
            ax.imshow(tiles[i])
        else:
            image = ax.imshow(tiles[i], cmap=style.SIGNED_CMAP, vmin=-1, vmax=1)
        style.bare(ax)
        ax.set_title(str(i), fontsize=6, pad=1)
    if image is not None:
        style.colorbar(fig, image, fig.axes, "weight / filter's max |weight|")
    return fig


def plot_channel_grid(weight: torch.Tensor, *, title: str = "Filters", max_filters: int = 32, max_channels: int = 32):
    """Filter o (row) x input channel i (column) kernel slices, as one mosaic with 1-pixel gaps.

    Each filter (row) is scaled by its own largest magnitude; red positive, blue negative.
    """
    tiles = filter_tiles(weight[:max_filters, :max_channels])  # O x I x kh x kw in [-1, 1]
    if tiles.ndim == 3:
        tiles = tiles[:, None]
    o, i, kh, kw = tiles.shape
    gap = 1
    mosaic = np.full((o * (kh + gap) - gap, i * (kw + gap) - gap), np.nan)
    for r in range(o):
        for c in range(i):
            mosaic[r * (kh + gap): r * (kh + gap) + kh, c * (kw + gap): c * (kw + gap) + kw] = tiles[r, c]
    aspect = mosaic.shape[1] / mosaic.shape[0]
    height = min(9.0, max(3.0, 0.28 * o + 1.2))
    fig = style.figure(max(4.0, height * aspect + 1.4), height)
    ax = fig.add_subplot()
    import matplotlib

    cmap = matplotlib.colormaps[style.SIGNED_CMAP].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=-1, vmax=1)
    out_ch, in_ch = weight.shape[:2]
    fig.suptitle(f"{title}\n{min(o, out_ch)} of {out_ch} filters x {min(i, in_ch)} of {in_ch} input channels, "
                 f"{kh} x {kw}", fontsize=10)
    step = max(1, o // 16)
    ax.set_yticks([r * (kh + gap) + (kh - 1) / 2 for r in range(0, o, step)], [str(r) for r in range(0, o, step)])
    step = max(1, i // 16)
    ax.set_xticks([c * (kw + gap) + (kw - 1) / 2 for c in range(0, i, step)], [str(c) for c in range(0, i, step)])
    ax.set_ylabel("filter (output channel)")
    ax.set_xlabel("input channel")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)
    style.colorbar(fig, image, ax, "weight / filter's max |weight|")
    return fig
