"""Backgrounds for generated scenes: flat levels, linear and radial gradients, and crops of real
photographs (brick, grass, gravel, a camera man, a coffee cup, a cat: six CC0 photos that ship with
scikit-image, bundled as 256 x 256 PNGs in ``cnnlab/bundled/textures/``; see the LICENSE there).

Every draw comes from the NumPy generator passed in and every resampling is torch's CPU bilinear
filter, so a background is the same on every machine for the same generator state. Values are float32
H x W x C on the 0..255 scale; sensor noise is added by the scene composer, over the items as well.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

TEXTURE_DIR = Path(__file__).resolve().parent.parent / "bundled" / "textures"
KINDS = ("flat", "gradient", "radial", "texture")
KIND_WEIGHTS = (0.1, 0.25, 0.15, 0.5)


@lru_cache(maxsize=None)
def textures(channels: int) -> tuple[np.ndarray, ...]:
    """The bundled texture photos as float32 H x W x ``channels`` arrays (colour ones to luma for grey)."""
    out = []
    for path in sorted(TEXTURE_DIR.glob("*.png")):
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(img, dtype=np.float32)
        out.append(arr[:, :, None] if arr.ndim == 2 else arr)
    return tuple(out)


def texture_names() -> list[str]:
    return [p.stem for p in sorted(TEXTURE_DIR.glob("*.png"))]


def _levels(rng: np.random.Generator, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Two colours (C each) for the ends of a gradient or the range of a texture: dark to mid levels,
    so the items (mostly bright) usually stand out, but not always."""
    lo = rng.uniform(0, 120)
    hi = lo + rng.uniform(30, 130)
    if channels == 1:
        return np.array([lo], np.float32), np.array([hi], np.float32)
    tint = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    return lo * tint, hi * tint


def _resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    out = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out[0].numpy().transpose(1, 2, 0)


def make_background(rng: np.random.Generator, height: int, width: int, channels: int = 1) -> tuple[np.ndarray, str]:
    """One background (float32 H x W x C) and the name of its kind."""
    kind = KINDS[int(rng.choice(len(KINDS), p=KIND_WEIGHTS))]
    lo, hi = _levels(rng, channels)
    if kind == "flat":
        level = lo + rng.uniform(0, 1) * (hi - lo)
        return np.broadcast_to(level, (height, width, channels)).astype(np.float32), kind
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = (xs - width / 2) * np.cos(angle) + (ys - height / 2) * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == "radial":
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        t = np.hypot(xs - cx, ys - cy)
        t = t / max(float(t.max()), 1e-6)
    else:
        photos = textures(channels)
        photo = photos[int(rng.integers(len(photos)))]
        side = int(rng.uniform(0.3, 1.0) * min(photo.shape[:2]))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = photo[top:top + side, left:left + side]
        crop = np.rot90(crop, int(rng.integers(4)))
        if rng.uniform() < 0.5:
            crop = crop[:, ::-1]
        crop = _resize(np.ascontiguousarray(crop), height, width)
        flat = crop.mean(axis=2)
        t = (flat - flat.min()) / max(float(flat.max() - flat.min()), 1e-6)
        if channels == 3:  # keep the photo's own colours, squeezed into the chosen range
            spread = (crop - crop.min()) / max(float(crop.max() - crop.min()), 1e-6)
            return (lo + spread * (hi - lo)).astype(np.float32), kind
    return (lo + t[:, :, None] * (hi - lo)).astype(np.float32), kind
