"""Feature maps: what every convolution / pooling stage outputs for one image.

The decks' point ("shallow layers see edges and textures, deep layers see parts and objects",
Zeiler & Fergus, ECCV 2014, Fig. 2) is made visible by drawing each stage's channels, the most
active first.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import style
from .stages import OutputRecorder, Stage, body_chain, feature_body, feature_stages


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(stage name, 1 x C x h x w activations) for each conv / pool stage of ``model`` on input ``x``.

    ``x`` is one model-ready input, 1 x C x H x W (already normalised) or C x H x W. The model is
    run in eval mode; its training flag is restored afterwards.
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"feature_maps takes one image, 1 x C x H x W; got shape {tuple(x.shape)}")
    stages = feature_stages(model)
    was_training = model.training
    model.eval()
    try:
        from ..backbone import Backbone

        body, _ = feature_body(model)
        if isinstance(model, Backbone) or (isinstance(body, nn.Sequential) and body is not model):
            return _run_chain(model, stages, x)
        with OutputRecorder([s.output_module for s in stages]) as rec:
            model(x)
        return [(s.name, rec.outputs[i]) for i, s in enumerate(stages) if i in rec.outputs]
    finally:
        model.train(was_training)


def _run_chain(model: nn.Module, stages: list[Stage], x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Run the feature modules one by one; reading outputs between modules is exact even where a
    layer instance is reused (a shared ReLU would confuse forward hooks)."""
    ends = {s.paths[-1]: s.name for s in stages}
    out = []
    for _, path, module in body_chain(model)[0]:
        x = module(x)
        if path in ends:
            out.append((ends[path], x.detach().cpu().clone()))
    return out


def strongest_channels(maps: torch.Tensor, count: int) -> list[int]:
    """Indices of the ``count`` channels of a 1 x C x h x w map with the largest mean activation."""
    energy = maps[0].flatten(1).mean(1)  # C
    return energy.argsort(descending=True)[:count].tolist()


GAP = 0.12  # space between tiles, in tile widths


def plot_feature_maps(
    maps: list[tuple[str, torch.Tensor]],
    image: np.ndarray | None = None,
    *,
    channels: int = 8,
    title: str = "Feature maps",
):
    """One row per stage: its ``channels`` strongest channels (largest mean activation first).

    Each tile is scaled on its own (``inferno``: dark = quiet, bright = strong), except 1 x 1 maps,
    which share their stage's scale and print their value; the channel index is written above each
    tile, the stage name and its shape C x h x w on the left. ``image`` (H x W or H x W x 3 uint8), if
    given, is drawn first for reference. Each row is one set of axes with its tiles placed side by
    side, all the same size whatever their resolution, so deep networks draw quickly.
    """
    rows = len(maps) + (1 if image is not None else 0)
    cols = max(1, min(channels, max(m.shape[1] for _, m in maps))) if maps else 1
    fig = style.figure(1.0 * cols + 1.4, 1.12 * rows + 0.5)
    fig.suptitle(title)
    axes = list(fig.subplots(rows, 1, squeeze=False)[:, 0])
    if image is not None:
        ax = axes.pop(0)
        view = np.asarray(image)
        view = view[:, :, 0] if view.ndim == 3 and view.shape[2] == 1 else view
        ax.imshow(view, extent=(0, 1, 1, 0), cmap="gray" if view.ndim == 2 else None, vmin=0, vmax=255)
        _frame(ax, cols, "input")
    for ax, (name, m) in zip(axes, maps):
        order = strongest_channels(m, cols)
        tiles = m[0, order].float().numpy()  # k x h x w
        single = tiles.shape[1] * tiles.shape[2] == 1  # 1 x 1 maps: one value each, on the stage's scale
        stage_lo, stage_hi = float(tiles.min()), float(tiles.max())
        for j, (channel, tile) in enumerate(zip(order, tiles)):
            lo, hi = (stage_lo, stage_hi) if single else (float(tile.min()), float(tile.max()))
            left = j * (1 + GAP)
            ax.imshow(tile, cmap=style.HEAT_CMAP, vmin=lo, vmax=max(hi, lo + 1e-12), extent=(left, left + 1, 1, 0))
            ax.text(left + 0.5, -0.04, f"ch {channel}", ha="center", va="bottom", fontsize=7)
            if single:
                value = float(tile[0, 0])
                ax.text(left + 0.5, 0.5, f"{value:.2g}", ha="center", va="center", fontsize=7,
                        color="white" if value < (stage_lo + stage_hi) / 2 else "black")
        c, h, w = m.shape[1:]
        _frame(ax, cols, f"{name}\n{c}x{h}x{w}")
    return fig


def _frame(ax, cols: int, label: str) -> None:
    ax.set_xlim(0, cols + (cols - 1) * GAP)
    ax.set_ylim(1, 0)
    ax.set_aspect("equal")
    style.bare(ax)
    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
