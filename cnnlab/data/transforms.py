"""Batched tensor transforms: whole batches at once, no per-sample Python in the training loop."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (or [0, 255] float) N x C x H x W (or clips, N x C x T x H x W) -> float32 ``(x / 255 - mean) / std``."""
    x = batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch.float() / 255.0
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)  # one value per channel, whatever follows it
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


def random_crop(batch: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad by ``padding`` (zeros) and cut a random window of the original size from each image.

    Implemented as one gather over the padded batch: an index grid per image, offset by that
    image's random shift, so the cost is one pass over the batch whatever its size.
    """
    if padding <= 0:
        return batch
    n, c, h, w = batch.shape
    padded = F.pad(batch, (padding, padding, padding, padding))  # N x C x (H+2p) x (W+2p)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=batch.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=batch.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=batch.device).view(1, h))  # N x H
    cols = (dx.view(n, 1) + torch.arange(w, device=batch.device).view(1, w))  # N x W
    wp = w + 2 * padding
    flat = rows.view(n, h, 1) * wp + cols.view(n, 1, w)  # N x H x W, indices into a padded plane
    flat = flat.view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, flat).view(n, c, h, w)


def random_hflip(batch: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = torch.rand(batch.shape[0], generator=generator, device=batch.device) < p
    if not flip.any():
        return batch
    out = batch.clone()
    out[flip] = batch[flip].flip(-1)
    return out


def random_erasing(batch: torch.Tensor, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.2),
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a random square (area fraction in ``scale``) in each image with probability ``p`` (Zhong et al. 2017)."""
    n, _, h, w = batch.shape
    dev = batch.device
    area = torch.empty(n, device=dev).uniform_(*scale, generator=generator) * h * w
    side = area.sqrt().clamp(1, min(h, w)).long()
    top = (torch.rand(n, generator=generator, device=dev) * (h - side + 1)).long()
    left = (torch.rand(n, generator=generator, device=dev) * (w - side + 1)).long()
    apply = torch.rand(n, generator=generator, device=dev) < p
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = ((ys >= top.view(n, 1, 1)) & (ys < (top + side).view(n, 1, 1))
              & (xs >= left.view(n, 1, 1)) & (xs < (left + side).view(n, 1, 1)) & apply.view(n, 1, 1))
    return batch.masked_fill(inside.unsqueeze(1), 0)
