"""Selective search (Uijlings, van de Sande, Gevers & Smeulders 2013, "Selective Search for Object
Recognition", IJCV): the region proposals of R-CNN and Fast R-CNN.

Start from Felzenszwalb & Huttenlocher's graph-based over-segmentation (2004; scikit-image's
``felzenszwalb``), then group hierarchically (section 3.1, Algorithm 1): repeatedly merge the two
neighbouring regions of highest similarity, the sum of the four measures of section 3.2 --
colour (histogram intersection of 25-bin colour histograms per channel), texture (histogram
intersection of 8 gradient orientations x 10 bins per channel), size (``1 - (size_i + size_j) /
size(image)``, small regions merge first) and fill (``1 - (size(BB_ij) - size_i - size_j) /
size(image)``, regions that fit together merge first). Every region of the hierarchy, from the initial
ones to the whole image, is a proposal box.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

COLOUR_BINS = 25
TEXTURE_BINS = 10
ORIENTATIONS = 8


def _histograms(values: np.ndarray, labels: np.ndarray, n: int, bins: int, lo: float, hi: float) -> np.ndarray:
    """n x bins histogram of ``values`` (one per pixel) per region label, L1-normalised."""
    idx = np.clip(((values - lo) / max(hi - lo, 1e-12) * bins).astype(np.int64), 0, bins - 1)
    h = np.zeros((n, bins))
    np.add.at(h, (labels.ravel(), idx.ravel()), 1.0)
    return h / np.maximum(h.sum(1, keepdims=True), 1e-12)


def selective_search(image: np.ndarray, *, scale: float = 100.0, sigma: float = 0.8, min_size: int = 20,
                     max_boxes: int = 300) -> np.ndarray:
    """K x 4 proposal boxes (x1 y1 x2 y2, pixel edges) for an H x W x C (or H x W) float image."""
    try:
        from skimage.segmentation import felzenszwalb
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError("selective search (the fast_rcnn proposals) needs scikit-image: "
                          "pip install 'cnnlab[detect]'") from None

    img = image.astype(np.float64)
    if img.ndim == 2:
        img = img[..., None]
    span = img.max() - img.min()
    img = (img - img.min()) / (span if span > 0 else 1.0)
    h, w, channels = img.shape
    labels = felzenszwalb(img if channels > 1 else img[..., 0], scale=scale, sigma=sigma, min_size=min_size,
                          channel_axis=-1 if channels > 1 else None)
    n = int(labels.max()) + 1
    # region features: colour and texture histograms per channel, size and bounding box
    colour = np.concatenate([_histograms(img[..., c], labels, n, COLOUR_BINS, 0.0, 1.0) for c in range(channels)], 1)
    texture = []
    for c in range(channels):
        gy, gx = np.gradient(img[..., c])
        angle = (np.arctan2(gy, gx) + np.pi) / (2 * np.pi)  # 0..1
        magnitude = np.hypot(gx, gy)
        orient = np.clip((angle * ORIENTATIONS).astype(np.int64), 0, ORIENTATIONS - 1)
        for o in range(ORIENTATIONS):
            sel = orient == o
            vals = np.where(sel, magnitude, -1.0)  # pixels of other orientations fall outside the bins
            hist = np.zeros((n, TEXTURE_BINS))
            idx = np.clip((vals / max(magnitude.max(), 1e-12) * TEXTURE_BINS).astype(np.int64), 0, TEXTURE_BINS - 1)
            np.add.at(hist, (labels[sel], idx[sel]), 1.0)
            texture.append(hist)
    texture = np.concatenate(texture, 1)
    texture = texture / np.maximum(texture.sum(1, keepdims=True), 1e-12)
    size = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    ys, xs = np.mgrid[0:h, 0:w]
    box = np.zeros((n, 4))
    box[:, 0] = np.full(n, w, float)
    box[:, 1] = np.full(n, h, float)
    np.minimum.at(box[:, 0], labels.ravel(), xs.ravel())
    np.minimum.at(box[:, 1], labels.ravel(), ys.ravel())
    np.maximum.at(box[:, 2], labels.ravel(), xs.ravel() + 1)
    np.maximum.at(box[:, 3], labels.ravel(), ys.ravel() + 1)
    # neighbours: regions meeting across a horizontal or vertical pixel edge
    pairs = np.concatenate([np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
                            np.stack([labels[:-1].ravel(), labels[1:].ravel()], 1)])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(np.sort(pairs, 1), axis=0)
    total = float(h * w)
    regions = {i: (colour[i], texture[i], size[i], box[i]) for i in range(n)}

    def similarity(a, b) -> float:
        ca, ta, sa, ba = regions[a]
        cb, tb, sb, bb = regions[b]
        hull = (max(ba[2], bb[2]) - min(ba[0], bb[0])) * (max(ba[3], bb[3]) - min(ba[1], bb[1]))
        return (np.minimum(ca, cb).sum() + np.minimum(ta, tb).sum() + 1 - (sa + sb) / total
                + 1 - (hull - sa - sb) / total)

    sims = {(int(a), int(b)): similarity(int(a), int(b)) for a, b in pairs}
    boxes = [box[i] for i in range(n)]
    nxt = n
    while sims:
        a, b = max(sims, key=sims.get)
        ca, ta, sa, ba = regions[a]
        cb, tb, sb, bb = regions[b]
        merged = ((ca * sa + cb * sb) / (sa + sb), (ta * sa + tb * sb) / (sa + sb), sa + sb,
                  np.array([min(ba[0], bb[0]), min(ba[1], bb[1]), max(ba[2], bb[2]), max(ba[3], bb[3])]))
        neighbours = {x for pair in sims if a in pair or b in pair for x in pair} - {a, b}
        sims = {p: s for p, s in sims.items() if a not in p and b not in p}
        regions[nxt] = merged
        for m in neighbours:
            sims[(m, nxt)] = similarity(m, nxt)
        boxes.append(merged[3])
        nxt += 1
    # the hierarchy's later (larger) regions first is what max_boxes cuts; duplicates removed
    out = np.unique(np.asarray(boxes[::-1]), axis=0)
    order = np.argsort(-(out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1]), kind="stable")
    return out[order][:max_boxes].astype(np.float32)


class ProposalSource:
    """Selective-search proposals of a batch of normalised images, as the R-CNN family consumes them.

    In training each image's boxes are remembered by its content (a training image recurs every epoch
    and the search is the slowest step); in evaluation they are always computed, so that the time per
    image includes them, as the papers' timings do.
    """

    CACHE_LIMIT = 4096

    def __init__(self, *, scale: float = 50.0, min_size: int = 10):
        self.settings = {"scale": float(scale), "min_size": int(min_size)}
        self._cache: dict[bytes, torch.Tensor] = {}

    def __call__(self, images: torch.Tensor, *, remember: bool) -> list[torch.Tensor]:
        out = []
        for img in images:
            pixels = img.detach().float().cpu().contiguous()
            key = hashlib.blake2b(pixels.numpy().tobytes(), digest_size=16).digest() if remember else b""
            boxes = self._cache.get(key) if remember else None
            if boxes is None:
                boxes = torch.from_numpy(selective_search(pixels.permute(1, 2, 0).numpy(), **self.settings))
                if remember:
                    if len(self._cache) >= self.CACHE_LIMIT:
                        self._cache.clear()
                    self._cache[key] = boxes
            out.append(boxes.to(images.device))
        return out
