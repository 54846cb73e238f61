"""Batches of object data: images of mixed sizes brought to one training size, and an epoch iterator.

``letterbox`` scales each image to fit inside the training size keeping its aspect ratio and centres
it on the dataset's mean colour (which normalises to zero); ``resize`` stretches it to the size.
Targets are scaled with the pixels (see :func:`.object_transforms.warp`); the letterbox margin is
:data:`~.objects.IGNORE` in the semantic map. :attr:`ObjectBatch.affine` records each placement, and
:meth:`ObjectBatch.boxes_to_original` undoes it for evaluation.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch

from ..errors import DataError
from .object_transforms import ObjectAugment, warp
from .objects import ObjectBatch, ObjectDataset

MODES = ("letterbox", "resize")


def mean_fill(dataset: ObjectDataset) -> tuple[float, ...]:
    """The dataset's mean colour in 0..255, for padding."""
    mean = dataset.mean if len(dataset.mean) == dataset.channels else dataset.mean[:1] * dataset.channels
    return tuple(255.0 * m for m in mean)


def placement(height: int, width: int, size: tuple[int, int], mode: str) -> tuple[float, float, float, float]:
    """``(ax, bx, ay, by)`` taking an image of ``height`` x ``width`` to ``size`` by ``mode``."""
    th, tw = size
    if mode == "resize":
        return tw / width, 0.0, th / height, 0.0
    if mode != "letterbox":
        raise DataError(f"collate mode must be one of {', '.join(MODES)}, not '{mode}'")
    s = min(th / height, tw / width)
    # Whole-pixel margins keep the padding edge crisp.
    return s, float(math.floor((tw - width * s) / 2)), s, float(math.floor((th - height * s) / 2))


def collate(dataset: ObjectDataset, indices: Sequence[int], *, size: tuple[int, int] | None = None,
            mode: str = "letterbox") -> ObjectBatch:
    """Images ``indices`` of ``dataset`` as one batch; with ``size`` (H, W) every image is brought to it."""
    samples = [dataset[i] for i in indices]
    semantic = [dataset.semantic_mask(i) for i in indices] if dataset.has_semantic else None
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    shapes = {tuple(img.shape[1:]) for img, _ in samples}
    if size is None:
        if len(shapes) > 1:
            raise DataError(f"{dataset.name}: images of {len(shapes)} sizes in one batch; give a training size "
                            "(e.g. --image-size 512) to letterbox or resize them")
        return ObjectBatch(torch.stack([img for img, _ in samples]), [t for _, t in samples],
                           None if semantic is None else torch.stack(semantic), idx)
    fill = mean_fill(dataset)
    parts = []
    for k, (img, target) in enumerate(samples):
        h, w = img.shape[1:]
        one = ObjectBatch(img.unsqueeze(0), [target], None if semantic is None else semantic[k].unsqueeze(0), idx[k:k + 1])
        ax, bx, ay, by = placement(h, w, tuple(size), mode)
        parts.append(warp(one, ax, bx, ay, by, tuple(size), fill=fill, min_size=1.0, flip_pairs=dataset.flip_pairs))
    return ObjectBatch(torch.cat([p.images for p in parts]), [p.targets[0] for p in parts],
                       None if semantic is None else torch.cat([p.semantic for p in parts]), idx,
                       torch.cat([p.affine for p in parts]))


def iter_object_batches(dataset: ObjectDataset, batch_size: int, *, shuffle: bool = True,
                        generator: torch.Generator | None = None, augment: ObjectAugment | None = None,
                        size: tuple[int, int] | None = None, mode: str = "letterbox",
                        drop_last: bool = False) -> Iterator[ObjectBatch]:
    """One epoch of batches: shuffled with ``generator``, brought to ``size``, then augmented.

    The same generator seeds order and augmentation, so a seeded epoch is the same every time.
    """
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    fill = mean_fill(dataset)
    for start in range(0, stop, batch_size):
        batch = dataset.batch(order[start:start + batch_size], size=size, mode=mode)
        if augment is not None:
            batch = augment(batch, generator, hflip=dataset.hflip, flip_pairs=dataset.flip_pairs, fill=fill)
        yield batch
