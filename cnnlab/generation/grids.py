"""Sample grids and latent interpolations as uint8 images (PNG files through Pillow)."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """A generator's output in [-1, 1] (N x C x H x W) as uint8 in [0, 255]."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def image_grid(images: torch.Tensor, *, columns: int | None = None, padding: int = 2) -> torch.Tensor:
    """uint8 N x C x H x W -> one uint8 C x H' x W' image, ``columns`` per row (default: a square)."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.full((c, rows * (h + padding) + padding, columns * (w + padding) + padding), 255, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid


def save_png(image: torch.Tensor, path: str | Path, *, scale: int = 2) -> Path:
    """Write a uint8 C x H x W image (1 or 3 channels) as a PNG, each pixel ``scale`` x ``scale``."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    picture.save(path)
    return path


def interpolate_latents(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` latents from ``start`` to ``end`` (each N x D) on the great circle (spherical linear
    interpolation: a Gaussian latent's norm stays typical, which a straight line through the origin's
    neighbourhood does not): ``steps`` x N x D."""
    a, b = start / start.norm(dim=-1, keepdim=True), end / end.norm(dim=-1, keepdim=True)
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))  # N x 1
    out = []
    for t in torch.linspace(0, 1, steps):
        out.append((torch.sin((1 - t) * omega) * start + torch.sin(t * omega) * end) / torch.sin(omega))
    return torch.stack(out)
