"""The in-memory dataset every loader returns: images as one ``N x C x H x W`` uint8 tensor, labels as
one int64 vector, and what a model needs to know about them (class names, normalisation)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from ..errors import DataError


@dataclass
class ImageDataset:
    """Images and labels held in memory as tensors, with what a model needs to know about them."""

    name: str
    images: torch.Tensor  # N x C x H x W, uint8 (or LazyImages, decoded per batch: cnnlab.data.lazy)
    labels: torch.Tensor  # N, int64
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = False  # is a left-right mirror label-preserving for this data?
    split: str = "train"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices: torch.Tensor | Sequence[int] | slice, split: str | None = None) -> "ImageDataset":
        if not isinstance(indices, slice):
            indices = torch.as_tensor(indices, dtype=torch.long)
        from .lazy import LazyImages

        images = self.images.take(indices) if isinstance(self.images, LazyImages) else self.images[indices]  # lazy stays lazy
        return replace(self, images=images, labels=self.labels[indices], split=split or self.split)

    def random_split(self, fraction: float, seed: int) -> tuple["ImageDataset", "ImageDataset"]:
        """Split off ``fraction`` of the data (seeded) as a validation set: returns (rest, held_out)."""
        if not 0.0 < fraction < 1.0:
            raise DataError(f"validation fraction must be between 0 and 1, got {fraction}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        cut = int(round(len(self) * fraction))
        return self.subset(order[cut:]), self.subset(order[:cut], split="val")

    def describe(self) -> dict:
        counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
        return {"name": self.name, "split": self.split, "size": len(self), "input_size": list(self.input_size),
                "classes": self.class_names, "per_class": counts, "mean": list(self.mean), "std": list(self.std)}


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, on the [0, 1] scale."""
    x = images.float().div(255).transpose(0, 1).reshape(images.shape[1], -1)
    return tuple(round(v, 4) for v in x.mean(1).tolist()), tuple(round(max(v, 1e-3), 4) for v in x.std(1).tolist())
