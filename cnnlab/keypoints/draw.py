"""Pictures of keypoints: skeletons drawn on images, and the heatmap of every keypoint."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

LEFT, RIGHT, MIDDLE = (255, 140, 0), (30, 144, 255), (50, 205, 50)  # the figure's left, right, centre line


def _side(name: str) -> tuple[int, int, int]:
    return LEFT if "left" in name else RIGHT if "right" in name else MIDDLE


def draw_people(image: torch.Tensor, xy: torch.Tensor, scores: torch.Tensor | None, skeleton: Sequence[Sequence[int]],
                *, scale: int = 4, min_score: float = 0.0, names: Sequence[str] | None = None) -> Image.Image:
    """``image`` (C x H x W uint8) enlarged ``scale`` times with each person's skeleton (``xy`` P x K x 2 in
    image pixels, continuous coordinates) drawn: limbs of the figure's left orange, right blue."""
    arr = image.permute(1, 2, 0).numpy()
    arr = np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr
    pil = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(pil)
    k = xy.shape[1]
    names = names or [""] * k
    from ..data.figures import KEYPOINT_NAMES

    if k == len(KEYPOINT_NAMES) and not any(names):
        names = KEYPOINT_NAMES
    for p in range(xy.shape[0]):
        ok = [scores is None or float(scores[p, j]) >= min_score for j in range(k)]
        pts = [(float(xy[p, j, 0]) * scale, float(xy[p, j, 1]) * scale) for j in range(k)]
        for a, b in skeleton:
            if ok[a] and ok[b]:
                colour = LEFT if "left" in names[a] and "left" in names[b] else \
                    RIGHT if "right" in names[a] and "right" in names[b] else MIDDLE
                draw.line([pts[a], pts[b]], fill=colour, width=max(1, scale // 2 + 1))
        for j in range(k):
            if ok[j]:
                x, y = pts[j]
                r = max(2, scale // 2 + 1)
                draw.ellipse([x - r, y - r, x + r, y + r], fill=_side(names[j]), outline=(0, 0, 0))
    return pil


def prediction_grid(images: torch.Tensor, xy: torch.Tensor, scores: torch.Tensor, truth: torch.Tensor,
                    skeleton: Sequence[Sequence[int]], path: Path, *, title: str = "") -> Path:
    """Pairs of crops: predicted skeleton (left), labelled one (right, keypoints with v > 0)."""
    from ..viz import style

    n = len(images)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = style.figure(2.6 * cols, 1.4 * rows + 0.4)
    for i in range(n):
        pred = draw_people(images[i], xy[i:i + 1], None, skeleton)
        labelled = truth[i, :, 2] > 0
        edges = [(a, b) for a, b in skeleton if labelled[a] and labelled[b]]
        true = draw_people(images[i], truth[i:i + 1, :, :2], truth[i:i + 1, :, 2], edges, min_score=0.5)
        both = Image.new("RGB", (pred.width * 2 + 4, pred.height), (255, 255, 255))
        both.paste(pred, (0, 0))
        both.paste(true, (pred.width + 4, 0))
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(np.asarray(both))
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return style.save(fig, path)


def heatmap_grid(images: torch.Tensor, heatmaps: torch.Tensor, names: Sequence[str], path: Path, *,
                 title: str = "") -> Path:
    """One row per crop: the crop, then each keypoint's heatmap over it."""
    from ..viz import style

    n, k = heatmaps.shape[:2]
    fig = style.figure(1.1 * (k + 1), 1.2 * n + 0.4)
    for i in range(n):
        ax = fig.add_subplot(n, k + 1, i * (k + 1) + 1)
        ax.imshow(style.as_hwc(images[i]).squeeze())
        ax.set_axis_off()
        for j in range(k):
            ax = fig.add_subplot(n, k + 1, i * (k + 1) + j + 2)
            ax.imshow(style.overlay_heatmap(images[i], heatmaps[i, j].clamp(min=0), alpha=0.6))
            ax.set_axis_off()
            if i == 0:
                ax.set_title(names[j].replace("_", " "), fontsize=6)
    if title:
        fig.suptitle(title)
    return style.save(fig, path)
