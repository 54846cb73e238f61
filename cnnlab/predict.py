"""Using a trained model: read any image Pillow understands, shape it the way the model expects,
and return the top-k classes with their scores."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import DataError


def open_image(source: str | Path | bytes, *, max_pixels: int | None = None) -> Image.Image:
    """Open an image from a path or raw bytes, fully decoded; raise :class:`DataError` if it is not one.

    ``max_pixels`` refuses images whose header claims more pixels, before decoding them.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except FileNotFoundError:
        raise DataError(f"image '{name}' does not exist") from None
    except IsADirectoryError:
        raise DataError(f"'{name}' is a folder, not an image") from None
    try:
        with stream:
            img = Image.open(stream)
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise DataError(f"image '{name}' is {img.width}x{img.height}, more than the {max_pixels} pixels allowed")
            img.load()
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise DataError(f"'{name}' is not an image cnnlab can read ({type(e).__name__})") from None
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"image '{name}' is damaged or truncated: {e}") from None
    return img


def to_array(img: Image.Image, channels: int) -> np.ndarray:
    """Any Pillow mode -> H x W x C uint8 with ``channels`` 1 or 3 (alpha composited on white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def fit_to_size(img: Image.Image, height: int, width: int) -> Image.Image:
    """Scale the shorter side to fit, then cut the centre: what torchvision's Resize+CenterCrop does."""
    if img.size == (width, height):
        return img
    scale = max(width / img.width, height / img.height)
    new = (max(width, round(img.width * scale)), max(height, round(img.height * scale)))
    img = img.resize(new, Image.BILINEAR)
    left, top = (new[0] - width) // 2, (new[1] - height) // 2
    return img.crop((left, top, left + width, top + height))


def image_to_uint8(img: Image.Image, input_size: Sequence[int], *, invert: bool = False) -> torch.Tensor:
    """Pillow image -> C x H x W uint8 tensor of the model's input size."""
    c, h, w = input_size
    img = fit_to_size(img if img.mode not in ("I;16", "I;16B", "I;16L", "I", "F") else Image.fromarray(to_array(img, 1)[:, :, 0]), h, w)
    arr = to_array(img, c)
    if invert:
        arr = 255 - arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


@dataclass
class Prediction:
    index: int
    label: str
    score: float


class Predictor:
    """Top-k classification with a loaded :class:`~cnnlab.train.checkpoint.Checkpoint`."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu"):
        self.checkpoint = checkpoint
        self.model = checkpoint.model.to(device).eval()
        self.device = torch.device(device)
        self.preprocessing = checkpoint.preprocessing
        self.input_size = checkpoint.input_size
        self.class_names = checkpoint.class_names
        self.invert = self.preprocessing.invert

    def prepare(self, img: Image.Image, *, invert: bool | None = None) -> torch.Tensor:
        """C x H x W uint8 input as the model will see it (before normalisation)."""
        return self.preprocessing.image(img, invert=invert)

    @torch.inference_mode()
    def predict_batch(self, batch_uint8: torch.Tensor, top_k: int = 5) -> list[list[Prediction]]:
        x = self.preprocessing.normalize(batch_uint8.to(self.device))
        probs = torch.softmax(self.model(x).float(), dim=1)
        k = max(1, min(top_k, probs.shape[1]))
        scores, idx = probs.topk(k, dim=1)
        return [
            [Prediction(int(i), self.class_names[int(i)], float(s)) for s, i in zip(srow, irow)]
            for srow, irow in zip(scores.tolist(), idx.tolist())
        ]

    def predict(self, images: Sequence[Image.Image], top_k: int = 5) -> list[list[Prediction]]:
        if not images:
            return []
        return self.predict_batch(torch.stack([self.prepare(im) for im in images]), top_k)
