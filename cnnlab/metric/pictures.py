"""Pictures of embeddings: the unseen classes by PCA and by t-SNE (van der Maaten and Hinton 2008),
and a strip of a query image beside its nearest indexed images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch


def tsne_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """scikit-learn's t-SNE of the rows (perplexity 30, or less for few points), seeded."""
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(vectors) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)


def plot_embeddings(vectors: torch.Tensor, labels: torch.Tensor, class_names: list[str], out_dir: Path, *,
                    title: str, stem: str) -> list[dict[str, Any]]:
    """Two PNGs in ``out_dir``: the embeddings' PCA and t-SNE, coloured by class."""
    from ..viz import style
    from ..viz.embed import pca_2d, plot_embedding

    x, y = vectors.numpy().astype(np.float64), labels.numpy()
    coords, explained = pca_2d(x)
    pca = style.save(plot_embedding(coords, y, class_names, explained, title=f"{title}, PCA"),
                     Path(out_dir) / f"embedding-pca-{stem}.png")
    fig = plot_embedding(tsne_2d(x), y, class_names, np.zeros(2), title=f"{title}, t-SNE")
    ax = fig.axes[0]
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    tsne = style.save(fig, Path(out_dir) / f"embedding-tsne-{stem}.png")
    return [{"kind": "embedding-pca", "path": str(pca), "images": len(x)},
            {"kind": "embedding-tsne", "path": str(tsne), "images": len(x)}]


def neighbour_strip(query: np.ndarray, neighbours: Sequence[np.ndarray], captions: Sequence[str], path: Path,
                    title: str = "query") -> Path:
    """A row of images (H x W or H x W x C uint8): the query, then each neighbour with its caption."""
    from ..viz import style

    n = 1 + len(neighbours)
    fig = style.figure(1.6 * n, 2.0)
    for i, (image, caption) in enumerate([(query, title)] + list(zip(neighbours, captions))):
        ax = fig.add_subplot(1, n, i + 1)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(caption, fontsize=7)
        ax.axis("off")
    return style.save(fig, path)
