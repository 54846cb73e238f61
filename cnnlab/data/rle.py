"""Instance masks as COCO stores them: polygons and run-length encodings (RLE), checked before decoding.

COCO (Lin et al. 2014, "Microsoft COCO: Common Objects in Context"; the format of
https://cocodataset.org/#format-data) gives each instance's ``segmentation`` as a list of polygons
``[[x1, y1, x2, y2, ...], ...]`` in pixel coordinates, or as an RLE ``{"size": [h, w], "counts": ...}``
over the mask in column-major order, starting with a run of zeros. ``counts`` is a list of run lengths
(uncompressed, used for crowd regions) or a string (compressed: each run as 5-bit groups, the third run
on stored as the difference to the run two before).

pycocotools decodes without bounds checks, so a damaged RLE could write past its buffer. Every
segmentation is therefore checked here first: the run lengths must add up to ``h * w`` exactly.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def compressed_counts(counts: str | bytes) -> np.ndarray:
    """The run lengths of a compressed COCO RLE string (the inverse of pycocotools' ``rleToString``).

    Each run is written as groups of 5 bits, least significant first, each group as ``chr(48 + c)``
    where bit 5 (32) of ``c`` says another group follows and bit 4 (16) of the last group is the sign.
    From the third run on, the stored value is the difference to the run two places before. Decoded
    for all runs at once with NumPy; raises ``ValueError`` on characters outside the code or a string
    that ends in the middle of a number.
    """
    data = np.frombuffer(counts.encode("ascii") if isinstance(counts, str) else bytes(counts), np.uint8)
    if data.size == 0:
        return np.zeros(0, np.int64)
    code = data.astype(np.int64) - 48
    if code.min() < 0 or code.max() > 63:
        raise ValueError("a character is not part of the RLE code")
    last = (code & 0x20) == 0  # the final group of each number
    if not last[-1]:
        raise ValueError("RLE string ends in the middle of a run length")
    ends = np.flatnonzero(last)
    starts = np.r_[0, ends[:-1] + 1]
    position = np.arange(code.size) - np.repeat(starts, ends - starts + 1)  # group number within its run
    if position.max() > 11:
        raise ValueError("RLE run length too large")
    values = np.add.reduceat((code & 0x1F) << (5 * position), starts)
    negative = (code[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (ends - starts + 1))[negative]
    runs = values.copy()
    # runs[i] = values[i] + runs[i - 2] for i > 2: running sums over the odd runs from 1 and the even from 2
    runs[1::2] = np.cumsum(values[1::2])
    if runs.size > 2:
        runs[2::2] = np.cumsum(values[2::2])
    return runs


def segmentation_problem(segmentation: Any, height: int, width: int, tolerance: float = 1.0) -> str | None:
    """Why ``segmentation`` cannot be a mask of a ``height`` x ``width`` image, or None if it can."""
    if isinstance(segmentation, list):
        if not segmentation:
            return "empty polygon list"
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                return "a polygon needs an even number (at least 6) of coordinates"
            try:
                xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
            except (TypeError, ValueError):
                return "polygon coordinates must be numbers"
            if not np.isfinite(xy).all():
                return "polygon coordinates must be finite"
            if (xy[:, 0].min() < -tolerance or xy[:, 1].min() < -tolerance
                    or xy[:, 0].max() > width + tolerance or xy[:, 1].max() > height + tolerance):
                return f"polygon reaches outside the {width}x{height} image"
        return None
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        counts = segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
            return "RLE needs 'size': [height, width]"
        if size != [height, width]:
            return f"mask is {size[1]}x{size[0]} but the image is {width}x{height}"
        if isinstance(counts, list):
            if not all(isinstance(v, int) and v >= 0 for v in counts):
                return "RLE counts must be non-negative integers"
            runs = counts
        elif isinstance(counts, (str, bytes)):
            try:
                runs = compressed_counts(counts)
            except ValueError as e:
                return f"damaged RLE string ({e})"
            if (runs < 0).any():
                return "damaged RLE string (negative run length)"
        else:
            return "RLE 'counts' must be a list or a string"
        covered = int(np.sum(runs))
        if covered != height * width:
            return f"RLE runs cover {covered} pixels, the {width}x{height} image has {height * width}"
        return None
    return "segmentation must be a list of polygons or an RLE dict"


def to_rle(segmentation: Any, height: int, width: int) -> dict:
    """A checked segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    return {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A checked segmentation as an H x W bool mask."""
    rle = to_rle(segmentation, height, width)
    with warnings.catch_warnings():  # pycocotools' Cython __array__ predates NumPy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def encode(mask: np.ndarray) -> dict:
    """An H x W bool mask as a compressed RLE with a JSON-ready string ``counts``."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
