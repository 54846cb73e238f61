"""Image files read on demand, with a bounded least-recently-used cache, for data sets too large to hold.

Only a file's header is read when a dataset is opened (to check that it exists, is an image and has the
size its annotations claim); pixels are decoded when an image is first used and kept while the cache
has room (``max_bytes``, default 512 MiB). EXIF orientation is not applied: COCO and VOC annotate the
stored pixel grid.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
DEFAULT_CACHE_BYTES = 512 << 20


def image_header(path: Path) -> tuple[int, int, str]:
    """``(width, height, mode)`` of an image file, reading only its header."""
    try:
        with Image.open(path) as img:
            return img.width, img.height, img.mode
    except FileNotFoundError:
        raise DataError(f"image '{path}' does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"'{path}' is not an image cnnlab can read ({type(e).__name__})") from None


def read_image(path: Path, channels: int) -> torch.Tensor:
    """A whole image file as a C x H x W uint8 tensor (C = ``channels``, 1 or 3)."""
    from .images import open_image, to_array

    arr = to_array(open_image(path), channels)  # H x W x C
    return torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class ImageCache:
    """Decoded images keyed by index, evicting the least recently used beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: int, load) -> torch.Tensor:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()
        size = value.numel() * value.element_size()
        with self._lock:
            if size <= self.max_bytes and key not in self._items:
                self._items[key] = value
                self.bytes += size
                while self.bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self.bytes -= old.numel() * old.element_size()
        return value

    def __len__(self) -> int:
        return len(self._items)
