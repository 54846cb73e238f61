"""The decks' classic hand-made kernels, applied to a real photograph.

Like every deep-learning framework (and the decks' worked examples), "convolution" here is
cross-correlation: the kernel slides over the image unflipped and each output is the sum of the
element-wise products of the kernel and the window under it. The deck's 6 x 6 example with the
vertical-edge kernel ``[[1, 0, -1]] * 3`` gives 4 x 4 outputs (``n - k + 1``); ``padding="same"``
pads by reflection instead, so a photograph keeps its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, unknown_name
from . import style


@dataclass(frozen=True)
class Kernel:
    name: str
    weights: np.ndarray  # k x k
    what: str
    signed: bool = True  # is the response signed (edges) or an image (blurs, sharpen, emboss)?
    offset: float = 0.0  # added to the response before display (emboss shows on mid-grey)


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """A normalised ``size`` x ``size`` Gaussian."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r ** 2) / (2 * sigma ** 2))
    k = np.outer(g, g)
    return k / k.sum()


def _k(rows) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64)


KERNELS: dict[str, Kernel] = {k.name: k for k in [
    Kernel("identity", _k([[0, 0, 0], [0, 1, 0], [0, 0, 0]]), "the photograph itself", signed=False),
    Kernel("emboss", _k([[-1, -1, 0], [-1, 0, 1], [0, 1, 1]]), "emboss: relief along the diagonal (deck)",
           signed=False, offset=0.5),
    Kernel("edge", _k([[1, 1, 1], [1, -7, 1], [1, 1, 1]]), "edge: neighbours minus 7x centre (deck)",
           signed=False),
    Kernel("edge8", _k([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]), "edge: 8x centre minus neighbours (deck)"),
    Kernel("vertical", _k([[1, 0, -1], [1, 0, -1], [1, 0, -1]]), "vertical edges (deck's 6x6 example)"),
    Kernel("horizontal", _k([[1, 1, 1], [0, 0, 0], [-1, -1, -1]]), "horizontal edges"),
    Kernel("sobel_x", _k([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]), "Sobel: horizontal gradient"),
    Kernel("sobel_y", _k([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]), "Sobel: vertical gradient"),
    Kernel("laplacian", _k([[0, 1, 0], [1, -4, 1], [0, 1, 0]]), "4-neighbour Laplacian"),
    Kernel("box", np.full((5, 5), 1 / 25), "5x5 box blur (mean)", signed=False),
    Kernel("gaussian", gaussian_kernel(5, 1.0), "5x5 Gaussian blur, sigma 1", signed=False),
    Kernel("sharpen", _k([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]), "sharpen: image plus its negative Laplacian",
           signed=False),
]}

DEFAULT_KERNELS = ["identity", "emboss", "edge", "edge8", "sobel_x", "sobel_y", "laplacian", "box",
                   "gaussian", "sharpen"]

PHOTOS = ["camera", "astronaut", "chelsea", "coffee"]


def get_kernel(name: str) -> Kernel:
    if name not in KERNELS:
        raise unknown_name("kernel", name, list(KERNELS))
    return KERNELS[name]


def apply_kernel(image: np.ndarray, kernel: np.ndarray, *, padding: str = "same") -> np.ndarray:
    """Cross-correlate a 2-D ``image`` with a 2-D ``kernel``.

    ``padding="valid"``: no padding, output (H - k + 1) x (W - k + 1), as in the decks' examples;
    ``"same"``: reflect-pad so the output is H x W. Computed in float64 with ``torch.conv2d``.
    """
    image = np.asarray(image, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    if image.ndim != 2 or kernel.ndim != 2:
        raise ValueError(f"apply_kernel takes 2-D image and kernel, got {image.shape} and {kernel.shape}")
    x = torch.from_numpy(image)[None, None]  # 1 x 1 x H x W
    w = torch.from_numpy(kernel)[None, None]  # 1 x 1 x kh x kw
    if padding == "same":
        kh, kw = kernel.shape
        pads = (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2)
        mode = "reflect" if min(image.shape) > max(kh, kw) else "replicate"
        x = F.pad(x, pads, mode=mode)
    elif padding != "valid":
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    return F.conv2d(x, w)[0, 0].numpy()


def load_photo(source: str | Path | None = None, *, max_side: int = 384) -> np.ndarray:
    """A greyscale photograph as H x W float in [0, 1].

    ``source``: a file path, the name of a scikit-image sample (camera, astronaut, chelsea, coffee),
    or None for ``camera``. Large images are scaled down so the longer side is ``max_side``.
    """
    from PIL import Image

    from ..data.images import open_image, to_model_mode

    if source is None or str(source) in PHOTOS:
        try:
            from skimage import data as samples
        except ImportError:  # pragma: no cover - scikit-image is a dependency of the viz extra
            raise DataError("scikit-image is needed for the sample photographs; pass an image path") from None
        arr = getattr(samples, str(source or "camera"))()
        img = Image.fromarray(arr)
    else:
        img = open_image(source, max_aspect=None)  # shown whole, never fitted to a model's input
    img = to_model_mode(img, 1)
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    return np.asarray(img, dtype=np.float64) / 255.0


def plot_kernels(photo: np.ndarray, names: list[str] | None = None, *, title: str = "Classic kernels"):
    """One panel per kernel: its weights (numbers printed on a signed colour map) above its response.

    Image-like responses (blurs, sharpen, emboss) are drawn in grey on the photograph's scale; edge
    responses are signed, drawn with ``RdBu_r`` centred on zero (red positive, blue negative).
    """
    names = names or DEFAULT_KERNELS
    kernels = [get_kernel(n) for n in names]
    cols = min(5, len(kernels))
    rows = int(np.ceil(len(kernels) / cols))
    h, w = photo.shape
    tile = 2.6
    fig = style.figure(tile * cols, rows * (tile * h / w + 0.95) + 0.4)
    fig.suptitle(title)
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[0.7, tile * h / w] * rows)
    for i, k in enumerate(kernels):
        r, c = divmod(i, cols)
        ax_k = fig.add_subplot(grid[2 * r, c])
        _draw_kernel(ax_k, k)
        ax = fig.add_subplot(grid[2 * r + 1, c])
        response = apply_kernel(photo, k.weights)
        if k.signed:
            m = float(np.percentile(np.abs(response), 99.5)) or 1.0
            ax.imshow(response, cmap=style.SIGNED_CMAP, vmin=-m, vmax=m, interpolation="antialiased")
        else:
            ax.imshow(np.clip(response + k.offset, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
        style.bare(ax)
        ax.set_xlabel(k.what, fontsize=7)
    return fig


def _draw_kernel(ax, k: Kernel) -> None:
    """The kernel's weights as a small coloured matrix with its numbers (fractions for blurs)."""
    weights = k.weights
    size = weights.shape[0]
    m = float(np.abs(weights).max()) or 1.0
    ax.imshow(weights, cmap=style.SIGNED_CMAP, vmin=-m, vmax=m)
    if size <= 3:
        for (y, x), v in np.ndenumerate(weights):
            ax.text(x, y, f"{v:g}", ha="center", va="center", fontsize=7)
    elif np.allclose(weights, weights.flat[0]):
        ax.text((size - 1) / 2, (size - 1) / 2, f"1/{round(1 / weights.flat[0])}", ha="center", va="center",
                fontsize=8, color="white")
    style.bare(ax)
    ax.set_title(k.name, fontsize=9, fontweight="bold")
