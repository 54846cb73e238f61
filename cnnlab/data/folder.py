"""A folder of a user's own images, one sub-folder per class (the layout torchvision's ImageFolder reads).

``root/train/<class>/*.jpg`` and ``root/test/<class>/*.jpg`` give the two splits; a plain
``root/<class>/*.jpg`` is split 80/20 with a fixed seed, the same way every time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
HOLDOUT_FRACTION = 0.2
SPLIT_SEED = 0


def _class_files(root: Path) -> dict[str, list[Path]]:
    classes = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in sub.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            classes[sub.name] = files
    if len(classes) < 2:
        raise DataError(f"{root}: an image folder needs at least two class sub-folders holding images")
    return classes


def load_image_folder(root: Path, split: str, *, image_size: int | None = None):
    from ..predict import image_to_uint8, open_image
    from .datasets import ImageDataset, channel_stats

    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _class_files(root / split)
        files = [(f, label) for label, name in enumerate(classes) for f in classes[name]]
    else:
        classes = _class_files(root)
        files = [(f, label) for label, name in enumerate(classes) for f in classes[name]]
        order = np.random.default_rng(SPLIT_SEED).permutation(len(files))
        cut = int(round(len(files) * HOLDOUT_FRACTION))
        chosen = order[:cut] if split == "test" else order[cut:]
        files = [files[i] for i in sorted(chosen)]
    if not files:
        raise DataError(f"{root}: no images for the {split} split")
    images = [open_image(f) for f, _ in files]
    grey = all(im.mode in ("L", "1", "I;16", "I") for im in images)
    size = image_size or (images[0].height if len({im.size for im in images}) == 1 and images[0].width == images[0].height else 64)
    input_size = (1 if grey else 3, size, size)
    x = torch.stack([image_to_uint8(im, input_size) for im in images])
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    mean, std = channel_stats(x)
    return ImageDataset(root.name, x, labels, list(classes), mean, std, hflip=True, split=split)
