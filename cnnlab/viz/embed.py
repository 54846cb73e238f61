"""A 2-D picture of what the network has learned: the penultimate features of many images,
projected onto their two principal components and coloured by class."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import style


def penultimate_layer(model: nn.Module) -> nn.Module:
    """The last fully connected layer; its *input* is the penultimate representation."""
    head = getattr(model, "classifier", model)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no fully connected output layer to read features from")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model: nn.Module, images: torch.Tensor, *, preprocessing, batch_size: int = 256) -> torch.Tensor:
    """N x D features entering the last layer, for uint8 ``images`` N x C x H x W: a zoo model's
    pre-logits (``forward_head(..., pre_logits=True)``), else the input of its last linear layer."""
    from ..backbone import Backbone

    model.eval()
    if isinstance(model, Backbone):
        return torch.cat([model.forward_head(model.forward_features(preprocessing.normalize(images[i:i + batch_size])),
                                             pre_logits=True).flatten(1) for i in range(0, len(images), batch_size)])
    layer = penultimate_layer(model)
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].detach().flatten(1)))
    model.eval()
    try:
        for i in range(0, len(images), batch_size):
            model(preprocessing.normalize(images[i:i + batch_size]))
    finally:
        handle.remove()
    return torch.cat(captured)


def pca_2d(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Project N x D rows onto their two leading principal components.

    Returns the N x 2 coordinates and the fraction of the variance each component explains. Signs
    are fixed so each component's largest-magnitude loading is positive (the result is reproducible).
    """
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:2]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    vt = vt * signs[:, None]
    variance = s ** 2
    explained = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    coords = x @ vt.T
    if coords.shape[1] < 2:  # one-dimensional features: pad so the plot still has two axes
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        explained = np.pad(explained, (0, 2 - len(explained)))
    return coords, explained


def plot_embedding(coords: np.ndarray, labels: np.ndarray, class_names: list[str], explained: np.ndarray, *,
                   title: str = "Penultimate features (PCA)"):
    """Scatter of the 2-D projection, one colour per class, with a legend of class names."""
    fig = style.figure(7.2, 5.6)
    ax = fig.add_subplot()
    palette = "tab10" if len(class_names) <= 10 else "tab20"
    import matplotlib

    colours = matplotlib.colormaps[palette]
    labels = np.asarray(labels)
    for c, name in enumerate(class_names):
        mask = labels == c
        if mask.any():
            ax.scatter(coords[mask, 0], coords[mask, 1], s=6, alpha=0.7, color=colours(c % colours.N), label=name,
                       linewidths=0)
    ax.set_title(f"{title}\n{len(labels)} images")
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=2.5, frameon=False)
    return fig
