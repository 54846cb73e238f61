"""Images decoded when a batch asks for them, for image folders too large to hold decoded in memory.

:class:`LazyImages` stands where an :class:`~cnnlab.data.dataset.ImageDataset` holds its uint8
``N x C x H x W`` tensor: indexing it (an int, a slice, an index tensor or list) decodes those files
and fits them to the input size, so every consumer of ``dataset.images[...]`` (batching, evaluation,
pictures) works unchanged. :meth:`LazyImages.take` selects files without decoding any.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import torch

from .images import image_to_uint8, open_image


def _decode_threads() -> int:
    # Pillow releases the GIL while it decodes and resamples, so threads overlap real work.
    return max(1, min(8, os.cpu_count() or 1))


class LazyImages:
    """A tensor-like view of image files: ``shape``, ``len``, ``dtype`` and indexing, decoded on access."""

    dtype = torch.uint8

    def __init__(self, files: Sequence[Path], input_size: tuple[int, int, int]):
        self.files = list(files)
        self.input_size = tuple(input_size)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), *self.input_size))

    def __len__(self) -> int:
        return len(self.files)

    def _positions(self, key) -> list[int]:
        if isinstance(key, slice):
            return list(range(len(self.files)))[key]
        if isinstance(key, torch.Tensor):
            if key.dtype == torch.bool:
                key = key.nonzero().flatten()
            return [int(i) for i in key.flatten().tolist()]
        return [int(i) for i in key]

    def decode(self, position: int) -> torch.Tensor:
        """File ``position`` as a C x H x W uint8 tensor at the dataset's input size."""
        return image_to_uint8(open_image(self.files[position]), self.input_size)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, int) or (isinstance(key, torch.Tensor) and key.ndim == 0):
            return self.decode(int(key))
        positions = self._positions(key)
        if not positions:
            return torch.empty((0, *self.input_size), dtype=torch.uint8)
        if len(positions) == 1:
            return self.decode(positions[0]).unsqueeze(0)
        with ThreadPoolExecutor(_decode_threads()) as pool:
            return torch.stack(list(pool.map(self.decode, positions)))  # B x C x H x W

    def take(self, key) -> "LazyImages":
        """The files at ``key`` (as :meth:`__getitem__` takes it), still undecoded."""
        return LazyImages([self.files[i] for i in self._positions(key)], self.input_size)

    def numpy(self):
        return self[:].numpy()

    def __repr__(self) -> str:
        return f"LazyImages({len(self.files)} files, {'x'.join(map(str, self.input_size))})"


def sample_positions(count: int, limit: int) -> torch.Tensor:
    """Up to ``limit`` positions spread evenly over ``count`` items (all of them when there are fewer)."""
    if count <= limit:
        return torch.arange(count)
    return torch.linspace(0, count - 1, limit).round().long().unique()
