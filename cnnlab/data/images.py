"""Image files in, model inputs out: reading any image Pillow understands and shaping it to a model's
``C x H x W`` uint8 input.

Reading refuses, in one line, what is not an image, what is damaged, and what is not a regular file
(a FIFO would block forever). Geometry is checked from the header, before any pixel is decoded:
the pixel count and the aspect ratio. Shaping scales the shorter side to the model's input and cuts
the centre (torchvision's ``Resize`` + ``CenterCrop``), but resamples only the centre region straight
to the output size, so the work and the memory are those of the output, whatever the input's shape:
a 1 x 1,000,000 strip never becomes a 28 x 28,000,000 intermediate.

Every Pillow mode is converted or refused: alpha is composited on white; 16-bit and 32-bit grey and
float images are scaled to 8 bits; LAB, CMYK, YCbCr, HSV and palettes go through RGB.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..io import open_regular_file

# An image whose sides differ more than this is refused: fitted to a square input it would keep a
# sliver of itself (1/32 of its length), and no decoder or resize should be asked to handle a strip.
MAX_ASPECT_RATIO = 32.0
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageTooLarge(DataError):
    """An image's header claims more pixels, or a more extreme shape, than allowed."""


def check_geometry(width: int, height: int, *, name: str = "image", max_pixels: int | None = None,
                   max_aspect: float | None = MAX_ASPECT_RATIO) -> None:
    """Refuse sizes that would cost far more to decode or fit than the image can be worth."""
    if width < 1 or height < 1:
        raise DataError(f"{name} is {width}x{height}: it has no pixels")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(f"{name} is {width}x{height}, more than the {max_pixels} pixels allowed")
    if max_aspect is not None and max(width / height, height / width) > max_aspect:
        raise ImageTooLarge(f"{name} is {width}x{height}: its sides differ by more than {max_aspect:g}:1")


def open_image(source: str | Path | bytes, *, max_pixels: int | None = None,
               max_aspect: float | None = MAX_ASPECT_RATIO) -> Image.Image:
    """Open an image from a path or raw bytes, fully decoded; raise :class:`DataError` if it is not one.

    ``max_pixels`` and ``max_aspect`` refuse (:class:`ImageTooLarge`) images whose header claims more
    pixels or a more extreme shape, before any pixel is decoded.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    stream = io.BytesIO(source) if isinstance(source, bytes) else open_regular_file(source, "image")
    try:
        with stream:
            img = Image.open(stream)
            check_geometry(img.width, img.height, name=f"image '{name}'", max_pixels=max_pixels, max_aspect=max_aspect)
            img.load()
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise DataError(f"'{name}' is not an image cnnlab can read ({type(e).__name__})") from None
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"image '{name}' is damaged or truncated: {e}") from None
    return img


def _high_depth_to_grey(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit or float grey -> 8-bit ``L``: 16-bit by its full range, others by 255 unless brighter."""
    arr = np.asarray(img, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise DataError(f"a {img.mode}-mode image holds NaN or infinite pixel values")
    top = 65535.0 if img.mode.startswith("I;16") or (arr.size and arr.max() > 255) else 255.0
    return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def to_model_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode -> ``L`` (``channels`` 1) or ``RGB`` (3); :class:`DataError` where Pillow cannot."""
    if channels not in (1, 3):
        raise DataError(f"a model input needs 1 or 3 channels, not {channels}")
    target = "L" if channels == 1 else "RGB"
    mode = img.mode
    if mode == target:
        return img
    try:
        if mode in HIGH_DEPTH_MODES:
            img = _high_depth_to_grey(img)
        elif mode in ALPHA_MODES or (mode == "P" and "transparency" in img.info):
            if mode == "La":  # premultiplied: Pillow converts it only to LA
                img = img.convert("LA")
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        try:
            return img.convert(target)
        except ValueError:  # e.g. LAB converts to RGB (a real colour conversion) but not straight to L
            return img.convert("RGB").convert(target)
    except ValueError as e:
        raise DataError(f"images in Pillow mode {mode} cannot be converted to {target}: {e}") from None


def to_array(img: Image.Image, channels: int) -> np.ndarray:
    """Any Pillow mode -> H x W x C uint8 with ``channels`` 1 or 3 (alpha composited on white)."""
    arr = np.asarray(to_model_mode(img, channels), dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def fit_box(width: int, height: int, out_width: int, out_height: int) -> tuple[float, float, float, float]:
    """The source region that scaling the shorter side to fit and cutting the centre keeps.

    The scaled size is rounded as a plain resize would round it, so resampling just this region to
    ``out_width x out_height`` gives the same pixels as resizing the whole image and then cropping.
    """
    scale = max(out_width / width, out_height / height)
    scaled_w, scaled_h = max(out_width, round(width * scale)), max(out_height, round(height * scale))
    left, top = (scaled_w - out_width) // 2, (scaled_h - out_height) // 2
    sx, sy = width / scaled_w, height / scaled_h
    return left * sx, top * sy, (left + out_width) * sx, (top + out_height) * sy


def fit_to_size(img: Image.Image, height: int, width: int, *, max_aspect: float | None = MAX_ASPECT_RATIO) -> Image.Image:
    """Scale the shorter side to fit, then cut the centre: what torchvision's Resize+CenterCrop does.

    Only the kept region is resampled, straight to ``width x height``.
    """
    if img.size == (width, height):
        return img
    check_geometry(img.width, img.height, max_aspect=max_aspect)
    return img.resize((width, height), Image.BILINEAR, box=fit_box(img.width, img.height, width, height))


def image_to_uint8(img: Image.Image, input_size: Sequence[int], *, invert: bool = False,
                   max_aspect: float | None = MAX_ASPECT_RATIO) -> torch.Tensor:
    """Pillow image -> C x H x W uint8 tensor of the model's input size."""
    c, h, w = input_size
    img = fit_to_size(to_model_mode(img, c), h, w, max_aspect=max_aspect)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    if invert:
        arr = 255 - arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
