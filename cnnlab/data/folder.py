"""A folder of a user's own images, one sub-folder per class (the layout torchvision's ImageFolder reads).

``root/train/<class>/*.jpg`` and ``root/test/<class>/*.jpg`` give the two splits; a plain
``root/<class>/*.jpg`` is split 80/20 with a fixed seed, the same way every time.

Classes are matched by name, never by position: the class list is the sorted union of the class
folders of both splits, so a class missing from one split cannot shift the labels of the others. A
class without training images is refused (nothing could learn it); a class without test images is
a warning (its accuracy cannot be measured); an empty class folder in the plain layout is refused
(dropping it would silently change the number of classes). Both splits get one input size, decided
from every image's header: ``image_size`` (``--image-size``) when given, else the images' own side
when all are the same square, else the median of their shorter sides (said in a warning). Only
regular files are read; anything else with an image suffix (a FIFO, a socket) is skipped with a
warning.

A folder whose decoded images fit in :data:`IN_MEMORY_BYTES` is decoded once and held as one tensor
(the fastest for training: nothing is decoded twice); a larger one is read lazily, each batch decoding
its own files (:class:`cnnlab.data.lazy.LazyImages`), so memory stays flat whatever the folder's size.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import CnnlabWarning, DataError
from ..io import is_regular_file, open_regular_file
from .dataset import ImageDataset, channel_stats
from .images import image_to_uint8, open_image
from .lazy import LazyImages, sample_positions

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
HOLDOUT_FRACTION = 0.2
SPLIT_SEED = 0
MIN_SIDE, MAX_SIDE = 16, 512  # the range a side chosen from the images' own sizes is kept in
IN_MEMORY_BYTES = 1 << 30  # decoded size up to which a folder is held in memory rather than read lazily
STATS_SAMPLE = 2000  # images a lazy folder's mean and std are measured on
GREY_MODES = ("1", "L", "I;16", "I;16B", "I;16L", "I", "F")


def _class_files(root: Path, warn: bool = True) -> dict[str, list[Path]]:
    """Class name -> its image files, for every class sub-folder of ``root`` (empty ones included)."""
    classes: dict[str, list[Path]] = {}
    skipped = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = []
        for p in sorted(sub.rglob("*")):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if is_regular_file(p):
                files.append(p)
            elif not p.is_dir():
                skipped.append(p)
        classes[sub.name] = files
    if skipped and warn:
        warnings.warn(f"{root}: skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} that "
                      f"{'is' if len(skipped) == 1 else 'are'} not a regular file (e.g. {skipped[0]})",
                      CnnlabWarning, stacklevel=3)
    return classes


def _split_layout(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def folder_classes(root: Path, split: str = "train") -> tuple[list[str], dict[str, dict[str, list[Path]]]]:
    """The class names of an image folder and, per split, each class's files (see the module docstring).

    Warnings concern ``split``, the one being loaded (so loading both splits says each thing once)."""
    if _split_layout(root):
        per_split = {s: _class_files(root / s, warn=s == split) for s in ("train", "test")}
        names = sorted(set(per_split["train"]) | set(per_split["test"]))
        for part in per_split:
            per_split[part] = {name: per_split[part].get(name, []) for name in names}
        untrainable = [n for n in names if not per_split["train"][n]]
        if untrainable:
            raise DataError(f"{root}: class {untrainable[0]!r} has no images in train/ "
                            f"({len(untrainable)} such class{'es' if len(untrainable) > 1 else ''}); "
                            "every class needs training images")
        untested = [n for n in names if not per_split["test"][n]]
        if untested and split == "test":
            warnings.warn(f"{root}: class {untested[0]!r} has no images in test/ ({len(untested)} such "
                          f"class{'es' if len(untested) > 1 else ''}); its test accuracy cannot be measured",
                          CnnlabWarning, stacklevel=3)
    else:
        classes = _class_files(root, warn=split == "train")
        names = sorted(classes)
        empty = [n for n in names if not classes[n]]
        if empty:
            raise DataError(f"{root}: class folder {empty[0]!r} holds no images; add images or remove the folder "
                            "(an empty class would change the number of classes)")
        files = [(f, name) for name in names for f in classes[name]]
        order = np.random.default_rng(SPLIT_SEED).permutation(len(files))
        cut = int(round(len(files) * HOLDOUT_FRACTION))
        per_split = {}
        for part, chosen in (("test", order[:cut]), ("train", order[cut:])):
            per_split[part] = {name: [] for name in names}
            for i in sorted(chosen):
                per_split[part][files[i][1]].append(files[i][0])
    if len(names) < 2:
        raise DataError(f"{root}: an image folder needs at least two class sub-folders holding images")
    return names, per_split


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, size) from the file's header, without decoding its pixels."""
    try:
        with open_regular_file(path, "image") as f, Image.open(f) as img:
            return img.mode, img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"'{path}' is not an image cnnlab can read ({type(e).__name__})") from None


def folder_input_size(files: list[Path], image_size: int | None = None) -> tuple[int, int, int]:
    """One input size for every split: grey if every image is grey, their side if all are the same square."""
    headers = [_header(f) for f in files]
    channels = 1 if all(mode in GREY_MODES for mode, _ in headers) else 3
    sizes = {size for _, size in headers}
    if image_size:
        if not MIN_SIDE <= int(image_size) <= 4096:
            raise DataError(f"--image-size must be between {MIN_SIDE} and 4096 pixels, not {image_size}")
        side = int(image_size)
    elif len(sizes) == 1 and next(iter(sizes))[0] == next(iter(sizes))[1]:
        side = next(iter(sizes))[0]
    else:
        side = median_short_side(size for _, size in headers)
        warnings.warn(f"the images differ in size ({len(sizes)} sizes); each is fitted to {side} x {side} "
                      "(the median of their shorter sides); --image-size chooses another side",
                      CnnlabWarning, stacklevel=3)
    return channels, side, side


def median_short_side(sizes) -> int:
    """The median of the images' shorter sides, rounded to a multiple of 4 and kept in [MIN_SIDE, MAX_SIDE]."""
    short = sorted(min(w, h) for w, h in sizes)
    middle = short[len(short) // 2]
    return int(min(MAX_SIDE, max(MIN_SIDE, 4 * round(middle / 4))))


def load_image_folder(root: Path, split: str, *, image_size: int | None = None,
                      lazy: bool | None = None) -> ImageDataset:
    """One split of an image folder; ``lazy`` None decides by the decoded size (see the module docstring)."""
    names, per_split = folder_classes(root, split)
    files = [(f, label) for label, name in enumerate(names) for f in per_split[split][name]]
    if not files:
        raise DataError(f"{root}: no images for the {split} split")
    every_file = [f for s in per_split.values() for fs in s.values() for f in fs]
    input_size = folder_input_size(every_file, image_size)
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    decoded_bytes = len(files) * input_size[0] * input_size[1] * input_size[2]
    if lazy or (lazy is None and decoded_bytes > IN_MEMORY_BYTES):
        x = LazyImages([f for f, _ in files], input_size)
        mean, std = channel_stats(x[sample_positions(len(x), STATS_SAMPLE)])
    else:
        x = torch.stack([image_to_uint8(open_image(f), input_size) for f, _ in files])
        mean, std = channel_stats(x)
    return ImageDataset(root.name, x, labels, list(names), mean, std, hflip=True, split=split)
