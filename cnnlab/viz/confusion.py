"""Confusion matrix and the most confident mistakes of a classifier on a dataset."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import style


@torch.no_grad()
def predict_probabilities(model: nn.Module, images: torch.Tensor, *, preprocessing, batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities, N x num_classes, for uint8 ``images`` N x C x H x W."""
    model.eval()
    out = [torch.softmax(model(preprocessing.normalize(images[i:i + batch_size])).float(), 1)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 0)


def worst_mistakes(probabilities: torch.Tensor, labels: torch.Tensor, k: int = 16) -> list[int]:
    """Indices of misclassified samples, the most confident wrong prediction first."""
    confidence, predicted = probabilities.max(1)
    wrong = torch.nonzero(predicted != labels).flatten()
    order = confidence[wrong].argsort(descending=True)
    return wrong[order][:k].tolist()


def plot_confusion(matrix: np.ndarray, class_names: list[str], *, title: str = "Confusion matrix"):
    """Rows are true classes, columns predictions; colour is the row's share, numbers are counts."""
    n = len(class_names)
    totals = matrix.sum(1, keepdims=True)
    share = matrix / np.where(totals > 0, totals, 1)
    side = max(4.5, 0.55 * n + 2.2)
    fig = style.figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap=style.COUNT_CMAP, vmin=0, vmax=1)
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    ax.set_title(f"{title}\n{int(matrix.sum())} images, accuracy {accuracy:.2%}")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 20:
        for (r, c), count in np.ndenumerate(matrix):
            if count:
                ax.text(c, r, str(count), ha="center", va="center", fontsize=7 if n <= 12 else 5,
                        color="white" if share[r, c] > 0.5 else "black")
    style.colorbar(fig, image, ax, "share of the true class")
    return fig


def plot_mistakes(images: torch.Tensor, labels: torch.Tensor, probabilities: torch.Tensor, indices: list[int],
                  class_names: list[str], *, title: str = "Most confident mistakes"):
    """A grid of misclassified images: predicted class and score in red, true class and its score below."""
    n = max(1, len(indices))
    rows, cols = style.grid_shape(n, max_cols=8)
    fig = style.figure(1.45 * cols + 0.2, 1.75 * rows + 0.5)
    fig.suptitle(title if indices else f"{title}: none")
    for j, i in enumerate(indices):
        ax = fig.add_subplot(rows, cols, j + 1)
        style.show_image(ax, style.chw_to_display(images[i].numpy()))
        p = probabilities[i]
        predicted, true = int(p.argmax()), int(labels[i])
        ax.set_title(f"{class_names[predicted]} {float(p[predicted]):.0%}", color="#c0392b", fontsize=7, pad=2)
        ax.set_xlabel(f"true: {class_names[true]} {float(p[true]):.0%}", fontsize=7, labelpad=2)
    return fig
