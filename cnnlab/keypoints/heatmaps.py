"""Heatmaps: Gaussian targets, sub-pixel decoding and flip testing.

A heatmap of stride ``s`` has its pixel ``j`` centred on input coordinate ``(j + 0.5) * s`` (continuous
coordinates, pixel ``i`` covering ``[i, i + 1)``), so a keypoint at input ``x`` sits at heatmap index
``x / s - 0.5``. Targets are unnormalised Gaussians of standard deviation ``sigma`` heatmap pixels
peaking at 1 on the keypoint (Tompson et al. 2014; SimpleBaseline uses sigma 2 on 64 x 48 maps).

Decoding: the arg-max, then either the quarter-pixel shift towards the higher neighbour (Newell et al.
2016 §4; SimpleBaseline's code) or DARK (Zhang et al. 2020, "Distribution-Aware Coordinate
Representation for Human Pose Estimation", Eq. 7-8): smooth the map with the target's Gaussian, take
its log, and step by a second-order Taylor expansion, ``mu = m - H^-1 g``, at the maximum ``m``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def gaussian_targets(keypoints: torch.Tensor, height: int, width: int, stride: float,
                     sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """N x K x H x W targets and N x K weights (1 for a labelled keypoint inside the map, else 0) from
    N x K x 3 keypoints in input pixels."""
    u = keypoints[..., 0] / stride - 0.5  # N x K heatmap coordinates
    v = keypoints[..., 1] / stride - 0.5
    xs = torch.arange(width, dtype=keypoints.dtype, device=keypoints.device)
    ys = torch.arange(height, dtype=keypoints.dtype, device=keypoints.device)
    gx = torch.exp(-(xs[None, None, :] - u[..., None]) ** 2 / (2 * sigma ** 2))  # N x K x W
    gy = torch.exp(-(ys[None, None, :] - v[..., None]) ** 2 / (2 * sigma ** 2))  # N x K x H
    targets = gy[..., :, None] * gx[..., None, :]  # N x K x H x W
    inside = (u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
    weights = ((keypoints[..., 2] > 0) & inside).to(keypoints.dtype)
    return targets * weights[..., None, None], weights


def flip_heatmaps(heatmaps: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Heatmaps of a mirrored input turned back: mirrored along x, left and right channels swapped."""
    perm = torch.arange(heatmaps.shape[1])
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return heatmaps.flip(-1)[:, perm]


def _quarter(heatmaps: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)

    def at(dx: int, dy: int) -> torch.Tensor:
        x, y = (ix + dx).clamp(0, w - 1), (iy + dy).clamp(0, h - 1)
        return flat.gather(2, (y * w + x)[..., None])[..., 0]

    inner_x = (ix > 0) & (ix < w - 1)
    inner_y = (iy > 0) & (iy < h - 1)
    dx = torch.sign(at(1, 0) - at(-1, 0)) * 0.25 * inner_x
    dy = torch.sign(at(0, 1) - at(0, -1)) * 0.25 * inner_y
    return ix + dx, iy + dy


def _dark(heatmaps: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    n, k, h, w = heatmaps.shape
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=heatmaps.dtype, device=heatmaps.device)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    maps = heatmaps.reshape(n * k, 1, h, w)
    # DARK's modulation: smooth with the target kernel (separable), rescale to the original maximum
    smooth = F.conv2d(F.pad(maps, (radius, radius, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    smooth = F.conv2d(F.pad(smooth, (0, 0, radius, radius), mode="replicate"), g.view(1, 1, -1, 1))
    peak = maps.amax((2, 3), keepdim=True)
    smooth = smooth * peak.clamp(min=1e-10) / smooth.amax((2, 3), keepdim=True).clamp(min=1e-10)
    log = smooth.clamp(min=1e-10).log().reshape(n, k, h * w)

    def at(dx: int, dy: int) -> torch.Tensor:
        x, y = (ix + dx).clamp(0, w - 1), (iy + dy).clamp(0, h - 1)
        return log.gather(2, (y * w + x)[..., None])[..., 0]

    c = at(0, 0)
    gx, gy = (at(1, 0) - at(-1, 0)) / 2, (at(0, 1) - at(0, -1)) / 2
    hxx, hyy = at(1, 0) - 2 * c + at(-1, 0), at(0, 1) - 2 * c + at(0, -1)
    hxy = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / 4
    det = hxx * hyy - hxy ** 2
    inner = (ix > 0) & (ix < w - 1) & (iy > 0) & (iy < h - 1) & (det.abs() > 1e-8) & (hxx < 0) & (hyy < 0)
    safe = torch.where(inner, det, torch.ones_like(det))
    ox = -(hyy * gx - hxy * gy) / safe  # -H^-1 g with H^-1 = [[hyy, -hxy], [-hxy, hxx]] / det
    oy = -(hxx * gy - hxy * gx) / safe
    ok = inner & (ox.abs() <= 1) & (oy.abs() <= 1)
    return ix + torch.where(ok, ox, 0), iy + torch.where(ok, oy, 0)


def decode_heatmaps(heatmaps: torch.Tensor, stride: float, *, method: str = "dark",
                    sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """N x K x 2 keypoints in input pixels and N x K scores (the heatmap maxima) from N x K x H x W maps.
    ``method``: ``argmax``, ``quarter`` or ``dark``."""
    heatmaps = heatmaps.float()
    n, k, h, w = heatmaps.shape
    scores, index = heatmaps.reshape(n, k, -1).max(2)
    ix, iy = index % w, torch.div(index, w, rounding_mode="floor")
    if method == "argmax":
        x, y = ix.float(), iy.float()
    elif method == "quarter":
        x, y = _quarter(heatmaps, ix, iy)
    elif method == "dark":
        x, y = _dark(heatmaps, ix, iy, sigma)
    else:
        raise ValueError(f"unknown decoding {method!r}: argmax, quarter or dark")
    return torch.stack([(x + 0.5) * stride, (y + 0.5) * stride], -1), scores
