"""One look for every cnnlab figure: matplotlib on the Agg backend, shared sizes, colour maps and
helpers for turning tensors into displayable images.

Colour conventions used throughout :mod:`cnnlab.viz`:

- activations and heat maps (non-negative): ``inferno`` (dark = quiet, bright = strong);
- signed quantities (filter weights, kernel responses): ``RdBu_r`` centred on zero, red positive;
- counts (confusion matrix): ``Blues``;
- classes: the ``tab10`` / ``tab20`` qualitative palettes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

HEAT_CMAP = "inferno"
SIGNED_CMAP = "RdBu_r"
COUNT_CMAP = "Blues"
DPI = 120

_RC = {
    "figure.facecolor": "white",
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 11,
    "figure.titleweight": "bold",
    "image.interpolation": "nearest",
}


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), with cnnlab's style applied."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(_RC)
    return plt


def figure(width: float, height: float, **kwargs: Any):
    """A new figure of ``width`` x ``height`` inches with constrained layout."""
    plt = pyplot()
    return plt.figure(figsize=(width, height), layout="constrained", **kwargs)


def save(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (creating folders), close it and return the path."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    plt.close(fig)
    return path


def bare(ax) -> None:
    """Hide ticks and frame: for image tiles."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def rescale(values: np.ndarray, *, symmetric: bool = False) -> np.ndarray:
    """Map ``values`` to [0, 1]: min..max, or -m..m around zero when ``symmetric`` (0 -> 0.5).

    A constant array maps to 0 (or 0.5 when symmetric) rather than dividing by zero.
    """
    values = np.asarray(values, dtype=np.float64)
    if symmetric:
        m = float(np.abs(values).max()) if values.size else 0.0
        return np.full_like(values, 0.5) if m == 0 else 0.5 + values / (2 * m)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    return np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo)


def chw_to_display(image: np.ndarray) -> np.ndarray:
    """C x H x W (C = 1 or 3) -> H x W or H x W x 3, for ``imshow``."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.shape[0] == 1:
        return image[0]
    return np.moveaxis(image[:3], 0, -1)


def show_image(ax, image: np.ndarray, title: str | None = None) -> None:
    """Draw an H x W (grey) or H x W x 3 image, uint8 or float in [0, 1], without axes."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        vmax = 255 if image.dtype == np.uint8 else 1.0
        ax.imshow(image, cmap="gray", vmin=0, vmax=vmax)
    else:
        ax.imshow(image)
    bare(ax)
    if title:
        ax.set_title(title)


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def as_hwc(image) -> np.ndarray:
    """An image as a NumPy H x W x C array, from NumPy H x W (x C), a torch C x H x W (or 1 x C x H x W)
    tensor (what ``Preprocessing.image`` gives) or a Pillow image."""
    if hasattr(image, "detach"):  # a torch tensor, channels first
        array = image.detach().cpu().numpy()
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 3 and array.shape[0] in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        return array
    return np.asarray(image)


def overlay_heatmap(image, heat, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a heat map over an image: ``image`` uint8 H x W x C (C = 1 or 3, or H x W), a torch C x H x W
    tensor or a Pillow image; ``heat`` H x W (NumPy or torch, e.g. what :func:`cnnlab.viz.grad_cam` returns).

    ``heat`` is rescaled to [0, 1] (so callers may pass raw scores), coloured with ``cmap`` and mixed
    with the image as ``(1 - alpha) * image + alpha * colour``. A heat map of another size is resized
    to the image's size (bilinear). Returns uint8 H x W x 3.
    """
    image = as_hwc(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be H x W x C with C 1, 3 or 4, got shape {image.shape}")
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    heat = np.asarray(heat.detach().cpu() if hasattr(heat, "detach") else heat, dtype=np.float64)
    if heat.ndim == 3 and heat.shape[0] == 1:
        heat = heat[0]
    if heat.ndim != 2:
        raise ValueError(f"heat map must be H x W, got shape {heat.shape}")
    if heat.shape != rgb.shape[:2]:
        heat = resize(heat, rgb.shape[:2])
    colour = _colormap(cmap)(rescale(heat))[:, :, :3] * 255.0  # H x W x 3
    base = rgb.astype(np.float64) if rgb.dtype == np.uint8 else rescale(rgb) * 255.0
    mixed = (1.0 - alpha) * base + alpha * colour
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an H x W float array to ``size`` (height, width), corners aligned as in torch."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(values, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()


def grid_shape(count: int, *, max_cols: int = 16) -> tuple[int, int]:
    """Rows and columns of a near-square grid holding ``count`` tiles (at most ``max_cols`` wide)."""
    if count <= 0:
        return 0, 0
    cols = min(max_cols, int(np.ceil(np.sqrt(count))))
    rows = int(np.ceil(count / cols))
    return rows, cols


def colorbar(fig, mappable, ax, label: str | None = None, *, shrink: float = 1.0) -> None:
    """A slim colour bar beside ``ax`` (an axes or a list of them)."""
    bar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02, shrink=shrink)
    bar.ax.tick_params(labelsize=7)
    if label:
        bar.set_label(label, fontsize=8)
