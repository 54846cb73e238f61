"""Box geometry, suppression, region pooling and anchors, in plain torch.

Boxes are ``x1 y1 x2 y2`` in continuous pixel coordinates (pixel ``j`` spans ``[j, j + 1)``, as in
:mod:`cnnlab.data.objects`). Every function works on whole tensors (no Python loop over boxes except
where an algorithm is sequential by definition: greedy NMS picks one box after another, but each pick
discards all its overlaps at once).

- :func:`box_iou`, :func:`generalized_box_iou`: intersection over union (and GIoU, Rezatofighi et al.
  2019, eq. 1: ``IoU - |C \\ (A u B)| / |C|`` with ``C`` the smallest enclosing box);
- :func:`nms`, :func:`batched_nms`: greedy non-maximum suppression, class by class in the second;
- :func:`roi_pool` (Fast R-CNN, Girshick 2015, section 2.1: max over a ``H x W`` grid of sub-windows,
  box corners rounded to the feature grid) and :func:`roi_align` (Mask R-CNN, He et al. 2017,
  section 3: bilinear samples at regularly spaced points, no rounding, averaged per bin);
- :func:`encode_boxes`, :func:`decode_boxes`: the R-CNN box parametrisation (Girshick et al. 2014,
  appendix C; Faster R-CNN eq. 2): ``tx = (x - xa) / wa``, ``tw = log(w / wa)``, with weights;
- :func:`make_anchors`: ``scales x ratios`` reference boxes tiled over a feature map
  (Faster R-CNN section 3.1.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

BBOX_CLIP = math.log(1000.0 / 16)  # largest log-size change decoded (keeps exp finite), as detectors commonly use


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """N x 4 -> N areas (zero for degenerate boxes)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _intersection(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])  # N x M x 2
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # N x M
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter, union


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """N x M intersection over union of boxes ``a`` (N x 4) and ``b`` (M x 4); 0 where the union is empty."""
    inter, union = _intersection(a, b)
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """N x M generalised IoU (Rezatofighi et al. 2019, Algorithm 1), in [-1, 1]."""
    inter, union = _intersection(a, b)
    iou = inter / union.clamp(min=1e-12)
    lt = torch.minimum(a[:, None, :2], b[None, :, :2])
    rb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull.clamp(min=1e-12)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, by decreasing score: each kept box discards every later
    box overlapping it by IoU > ``iou_threshold``."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    iou = box_iou(boxes[order], boxes[order])  # K x K, in score order
    # ``suppress[i, j]``: box i (earlier) would remove box j (later)
    suppress = (iou > iou_threshold).triu(diagonal=1)
    rows = suppress.cpu().numpy()
    alive = np.ones(len(order), dtype=bool)
    for i in range(len(order)):
        if alive[i]:
            alive &= ~rows[i]
    return order[torch.from_numpy(alive).to(boxes.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each class at once: boxes are shifted apart by class so boxes of different classes never
    overlap; returns the kept indices by decreasing score."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    offset = classes.to(boxes.dtype)[:, None] * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offset, scores, iou_threshold)


def _split_rois(rois: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """K x 5 ``(image index, x1, y1, x2, y2)`` from a K x 5 tensor or a list of per-image K_i x 4 boxes."""
    if isinstance(rois, torch.Tensor):
        return rois
    parts = [torch.cat([torch.full((len(b), 1), float(i), dtype=b.dtype, device=b.device), b], 1)
             for i, b in enumerate(rois)]
    return torch.cat(parts) if parts else torch.zeros(0, 5)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def roi_pool(features: torch.Tensor, rois: torch.Tensor | Sequence[torch.Tensor], output_size: int | Sequence[int],
             spatial_scale: float = 1.0) -> torch.Tensor:
    """Fast R-CNN's RoI max pooling: K x C x h x w.

    Each RoI is rounded to the feature grid (``round(x * scale)``, inclusive corners, at least 1 x 1 cell),
    split into ``h x w`` bins of ``floor``/``ceil`` edges, and each bin takes the maximum (0 if empty).
    """
    rois = _split_rois(rois)
    ph, pw = _pair(output_size)
    n, c, height, width = features.shape
    k = len(rois)
    if k == 0:
        return features.new_zeros(0, c, ph, pw)
    corners = torch.round(rois[:, 1:] * spatial_scale).long()  # K x 4: x1 y1 x2 y2 on the grid
    x1, y1 = corners[:, 0], corners[:, 1]
    rw = (corners[:, 2] - x1 + 1).clamp(min=1)
    rh = (corners[:, 3] - y1 + 1).clamp(min=1)
    # A RoI's bins are adaptive max pooling's bins over its rows y1 .. y1 + rh - 1 (floor / ceil edges);
    # the map is padded with -inf so that RoIs reaching outside it keep their bins, and a bin wholly
    # outside (all -inf) becomes 0, as RoI pooling defines it.
    pad = int(max(0, int((-x1).max()), int((-y1).max()), int((x1 + rw - width).max()), int((y1 + rh - height).max())))
    padded = F.pad(features, (pad, pad, pad, pad), value=float("-inf")) if pad else features
    idx = rois[:, 0].long().tolist()
    cols, rows, ws, hs = (x1 + pad).tolist(), (y1 + pad).tolist(), rw.tolist(), rh.tolist()
    out = torch.stack([F.adaptive_max_pool2d(padded[idx[r], :, rows[r]:rows[r] + hs[r], cols[r]:cols[r] + ws[r]], (ph, pw))
                       for r in range(k)])  # K x C x ph x pw
    return torch.where(torch.isinf(out), torch.zeros_like(out), out)


def roi_align(features: torch.Tensor, rois: torch.Tensor | Sequence[torch.Tensor], output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = 2, aligned: bool = True) -> torch.Tensor:
    """Mask R-CNN's RoIAlign: K x C x h x w.

    The RoI (scaled, shifted by half a cell when ``aligned``: pixel centres sit at ``j + 0.5``) is split
    into ``h x w`` bins without rounding; each bin averages ``sampling_ratio`` x ``sampling_ratio``
    bilinear samples at regular points (``sampling_ratio <= 0``: ``ceil(bin size)`` points, fixed here
    per call to the largest RoI's so that the whole batch is one tensor operation is not exact, so
    adaptive sampling is done RoI by RoI). Samples further than one cell outside the map are 0.
    """
    rois = _split_rois(rois)
    ph, pw = _pair(output_size)
    n, c, height, width = features.shape
    if len(rois) == 0:
        return features.new_zeros(0, c, ph, pw)
    if sampling_ratio <= 0:
        return torch.cat([_roi_align_fixed(features, rois[i:i + 1], ph, pw, spatial_scale, aligned, None)
                          for i in range(len(rois))])
    return _roi_align_fixed(features, rois, ph, pw, spatial_scale, aligned, sampling_ratio)


def _roi_align_fixed(features, rois, ph, pw, spatial_scale, aligned, sampling_ratio):
    n, c, height, width = features.shape
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    x2 = rois[:, 3] * spatial_scale - offset
    y2 = rois[:, 4] * spatial_scale - offset
    rw, rh = x2 - x1, y2 - y1
    if not aligned:  # the legacy form forces RoIs to at least one cell
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    bw, bh = rw / pw, rh / ph  # K
    if sampling_ratio is None:
        sy = max(1, int(math.ceil(float(bh[0]))))
        sx = max(1, int(math.ceil(float(bw[0]))))
    else:
        sy = sx = sampling_ratio
    dev, dt = features.device, features.dtype
    # sample coordinates (cell centres at integers): bin p, sample i at y1 + (p + (i + 0.5) / sy) * bh
    fy = (torch.arange(ph, device=dev, dtype=dt)[:, None] + (torch.arange(sy, device=dev, dtype=dt)[None] + 0.5) / sy)
    fx = (torch.arange(pw, device=dev, dtype=dt)[:, None] + (torch.arange(sx, device=dev, dtype=dt)[None] + 0.5) / sx)
    y = y1[:, None] + fy.reshape(-1)[None] * bh[:, None]  # K x (ph * sy)
    x = x1[:, None] + fx.reshape(-1)[None] * bw[:, None]  # K x (pw * sx)
    # RoIAlign reads 0 beyond one cell outside the map and the edge value within it: grid_sample's
    # "border" padding (the edge value everywhere outside) times that validity mask
    valid = (((y >= -1.0) & (y <= height))[:, :, None] & ((x >= -1.0) & (x <= width))[:, None, :]).to(dt)
    # grid_sample's normalised coordinates (align_corners=False): cell j's centre is (2j + 1) / size - 1
    gy = (2 * y + 1) / height - 1
    gx = (2 * x + 1) / width - 1
    k = len(rois)
    grid = torch.stack([gx[:, None, :].expand(k, gy.shape[1], -1), gy[:, :, None].expand(k, -1, gx.shape[1])], -1)
    image = rois[:, 0].long()
    order = torch.argsort(image, stable=True)
    parts = []
    for i in torch.unique(image).tolist():  # one grid_sample per image, over all its RoIs at once
        sel = order[image[order] == i]
        g = grid[sel].reshape(1, -1, gx.shape[1], 2)  # 1 x (K_i * ph * sy) x (pw * sx) x 2
        out = F.grid_sample(features[i:i + 1], g, mode="bilinear", padding_mode="border", align_corners=False)
        parts.append(out[0].reshape(c, len(sel), gy.shape[1], gx.shape[1]).transpose(0, 1))
    samples = torch.cat(parts)[torch.argsort(order)]  # back to the RoIs' order
    samples = samples * valid[:, None]
    return samples.reshape(k, c, ph, sy, pw, sx).mean((3, 5))


def encode_boxes(boxes: torch.Tensor, reference: torch.Tensor,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """N x 4 regression targets ``(tx, ty, tw, th)`` taking ``reference`` boxes to ``boxes``
    (R-CNN appendix C): ``wx * (x - xa) / wa``, ``ww * log(w / wa)``."""
    wx, wy, ww, wh = weights
    rw = reference[:, 2] - reference[:, 0]
    rh = reference[:, 3] - reference[:, 1]
    rx = reference[:, 0] + 0.5 * rw
    ry = reference[:, 1] + 0.5 * rh
    gw = boxes[:, 2] - boxes[:, 0]
    gh = boxes[:, 3] - boxes[:, 1]
    gx = boxes[:, 0] + 0.5 * gw
    gy = boxes[:, 1] + 0.5 * gh
    return torch.stack([wx * (gx - rx) / rw, wy * (gy - ry) / rh, ww * torch.log(gw / rw), wh * torch.log(gh / rh)], 1)


def decode_boxes(deltas: torch.Tensor, reference: torch.Tensor,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """The inverse of :func:`encode_boxes`: N x 4 deltas (or N x 4k, k boxes per reference) -> boxes."""
    wx, wy, ww, wh = weights
    rw = (reference[:, 2] - reference[:, 0])[:, None]
    rh = (reference[:, 3] - reference[:, 1])[:, None]
    rx = reference[:, 0:1] + 0.5 * rw
    ry = reference[:, 1:2] + 0.5 * rh
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw = (deltas[:, 2::4] / ww).clamp(max=BBOX_CLIP)
    dh = (deltas[:, 3::4] / wh).clamp(max=BBOX_CLIP)
    cx, cy = dx * rw + rx, dy * rh + ry
    w, h = torch.exp(dw) * rw, torch.exp(dh) * rh
    out = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], 2)  # N x k x 4
    return out.reshape(deltas.shape)


def clip_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes clipped to a ``height`` x ``width`` image."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)


def cell_anchors(sizes: Sequence[float], ratios: Sequence[float]) -> torch.Tensor:
    """A x 4 reference boxes centred on 0: for each ratio ``r = h / w`` and size ``s`` a box of area
    ``s**2`` (``w = s / sqrt(r)``, ``h = s * sqrt(r)``), ratio-major as Faster R-CNN lists them."""
    s = torch.as_tensor(sizes, dtype=torch.float32)
    r = torch.as_tensor(ratios, dtype=torch.float32)
    hr = torch.sqrt(r)
    ws = (s[None, :] / hr[:, None]).reshape(-1)
    hs = (s[None, :] * hr[:, None]).reshape(-1)
    return torch.round(torch.stack([-ws, -hs, ws, hs], 1) / 2)


@dataclass(frozen=True)
class Anchors:
    """Anchor settings for one feature map: box sides (pixels) and height/width ratios."""

    sizes: tuple[float, ...]
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)

    @property
    def per_cell(self) -> int:
        return len(self.sizes) * len(self.ratios)


def make_anchors(height: int, width: int, stride: int | Sequence[int], sizes: Sequence[float],
                 ratios: Sequence[float] = (0.5, 1.0, 2.0), device: torch.device | str | None = None) -> torch.Tensor:
    """(H * W * A) x 4 anchors for an ``height`` x ``width`` feature map of ``stride`` pixels, cell-major
    (all A anchors of cell (0, 0), then of cell (0, 1) ...), centred on ``(j * stride, i * stride)`` like
    torchvision's AnchorGenerator."""
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    base = cell_anchors(sizes, ratios).to(device)
    ys = torch.arange(height, device=device, dtype=torch.float32) * sy
    xs = torch.arange(width, device=device, dtype=torch.float32) * sx
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([xx, yy, xx, yy], -1).reshape(-1, 1, 4)
    return (shifts + base[None]).reshape(-1, 4)
