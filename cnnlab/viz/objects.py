"""Pictures of detection and segmentation samples: each image three times, with its boxes and class
names, with its instance masks (one colour per object), and with its semantic mask (one colour per
class; background black, ignored pixels white). Colours follow :mod:`.style`: classes ``tab20``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.objects import IGNORE, ObjectBatch
from .style import figure, grid_shape, save, show_image


def _palette(count: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return (np.array([cmap(i % 20)[:3] for i in range(max(count, 1))]) * 255).astype(np.float64)


def _rgb(image: torch.Tensor) -> np.ndarray:
    arr = image.detach().cpu().numpy()
    arr = np.repeat(arr, 3, axis=0) if arr.shape[0] == 1 else arr[:3]
    return np.moveaxis(arr, 0, -1).astype(np.float64)


def instance_overlay(image: torch.Tensor, masks: torch.Tensor | None, alpha: float = 0.55) -> np.ndarray:
    """C x H x W uint8 image with N x H x W masks painted over it, one colour each: H x W x 3 uint8."""
    out = _rgb(image)
    if masks is not None and len(masks):
        colours = _palette(len(masks))
        for j, mask in enumerate(masks.cpu().numpy()):
            out[mask] = (1 - alpha) * out[mask] + alpha * colours[j]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def semantic_colours(semantic: torch.Tensor, num_classes: int) -> np.ndarray:
    """H x W class map (0 background, k + 1 class k, 255 ignored) as H x W x 3 uint8 colours."""
    lut = np.zeros((256, 3))
    lut[1:num_classes + 1] = _palette(num_classes)[:num_classes]
    lut[IGNORE] = 255
    return lut[semantic.cpu().numpy().clip(0, 255)].astype(np.uint8)


def samples_figure(batch: ObjectBatch, class_names: Sequence[str], *, titles: Sequence[str] | None = None):
    """One figure: for each image of ``batch``, boxes and names | instance masks | semantic mask."""
    from matplotlib.patches import Rectangle

    n = len(batch)
    rows, cols = grid_shape(n, max_cols=4)
    panels = 3 if batch.semantic is not None or any(t.masks is not None for t in batch.targets) else 1
    h, w = batch.images.shape[2:]
    tile = 2.2
    fig = figure(cols * panels * tile * max(w / h, 0.5), rows * tile * 1.1)
    grid = fig.add_gridspec(rows, cols * panels)
    colours = _palette(len(class_names)) / 255
    for i in range(n):
        r, c = divmod(i, cols)
        target = batch.targets[i]
        ax = fig.add_subplot(grid[r, c * panels])
        show_image(ax, _rgb(batch.images[i]).astype(np.uint8), titles[i] if titles else None)
        for box, label, crowd in zip(target.boxes.tolist(), target.labels.tolist(), target.iscrowd.tolist()):
            x1, y1, x2, y2 = box
            colour = colours[label % len(colours)]
            # imshow puts pixel j's centre at j, so the pixel edge x sits at x - 0.5
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, lw=1.0, ec=colour,
                                   ls="--" if crowd else "-"))
            ax.text(x1 - 0.5, y1 - 1.5, class_names[label], color="white", fontsize=5, va="bottom",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 0.6, "alpha": 0.85})
        if target.keypoints is not None:
            kp = target.keypoints.numpy()
            seen = kp[..., 2] > 0
            ax.scatter(kp[..., 0][seen] - 0.5, kp[..., 1][seen] - 0.5, s=3, c="yellow")
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        if panels == 3:
            show_image(fig.add_subplot(grid[r, c * panels + 1]), instance_overlay(batch.images[i], target.masks),
                       f"{len(target)} instance{'' if len(target) == 1 else 's'}")
            if batch.semantic is not None:
                show_image(fig.add_subplot(grid[r, c * panels + 2]),
                           semantic_colours(batch.semantic[i], len(class_names)), "semantic")
    return fig


def write_samples_grid(batch: ObjectBatch, class_names: Sequence[str], path: str | Path, *,
                       titles: Sequence[str] | None = None) -> Path:
    """:func:`samples_figure` written as a PNG at ``path``."""
    return save(samples_figure(batch, class_names, titles=titles), path)
