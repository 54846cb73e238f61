"""Images with many objects: the target of one image, and the dataset type that detection, semantic and
instance segmentation and keypoint tasks all read.

One image's target is an :class:`Objects`:

- ``boxes``: N x 4 float32, ``x1 y1 x2 y2`` in pixels. Coordinates are continuous: pixel ``j`` spans
  ``[j, j + 1)``, so a box holding only pixel column 3 is ``x1 = 3, x2 = 4`` (COCO's ``[x, y, w, h]``
  is the same convention);
- ``labels``: N int64, an index into ``class_names`` (there is no background class in ``class_names``);
- ``masks``: N x H x W bool, the visible part of each instance, or None for box-only data;
- ``keypoints``: N x K x 3 float32 ``x, y, visibility`` with COCO's visibility (0 not labelled,
  1 labelled but hidden, 2 visible), in the same continuous coordinates: a keypoint on pixel
  ``(i, j)`` is at ``(j + 0.5, i + 0.5)``. COCO files store the pixel index, so readers add 0.5 and
  :meth:`ObjectDataset.to_coco` / :meth:`ObjectDataset.coco_results` subtract it again;
- ``iscrowd``: N bool: a crowd region (COCO) or a "difficult" object (VOC), which training may ignore
  and COCOeval does not count as a miss;
- ``ids``: N int64 annotation ids, unique within the dataset.

An :class:`ObjectDataset` gives ``dataset[i] -> (image, target)`` with the image a C x H x W uint8
tensor, :meth:`~ObjectDataset.semantic_mask` (H x W int64: 0 background, ``k + 1`` for class ``k``,
:data:`IGNORE` = 255 for crowd regions or VOC's void border), :meth:`~ObjectDataset.image_info`,
the ground truth as a COCO dict or a pycocotools ``COCO`` object for COCOeval, and a whole batch at a
time (:meth:`~ObjectDataset.batch`). The readers are :mod:`.coco`, :mod:`.voc` and the in-memory scene
sets of :mod:`.tensor_objects`; :func:`cnnlab.data.object_datasets.load_object_dataset` picks one by
name or folder.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import DataError

IGNORE = 255  # semantic label of pixels that no loss or metric should count
BACKGROUND = 0


@dataclass
class Objects:
    """The objects in one image (see the module docstring for the conventions)."""

    boxes: torch.Tensor  # N x 4 float32, x1 y1 x2 y2
    labels: torch.Tensor  # N int64
    iscrowd: torch.Tensor  # N bool
    ids: torch.Tensor  # N int64
    masks: torch.Tensor | None = None  # N x H x W bool
    keypoints: torch.Tensor | None = None  # N x K x 3 float32

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def select(self, keep: torch.Tensor) -> "Objects":
        """The objects picked by a bool mask or an index tensor."""
        return Objects(self.boxes[keep], self.labels[keep], self.iscrowd[keep], self.ids[keep],
                       None if self.masks is None else self.masks[keep],
                       None if self.keypoints is None else self.keypoints[keep])

    def to(self, device: torch.device | str) -> "Objects":
        return Objects(*(None if t is None else t.to(device) for t in
                         (self.boxes, self.labels, self.iscrowd, self.ids, self.masks, self.keypoints)))

    def box_areas(self) -> torch.Tensor:
        return (self.boxes[:, 2] - self.boxes[:, 0]).clamp(min=0) * (self.boxes[:, 3] - self.boxes[:, 1]).clamp(min=0)

    @staticmethod
    def empty(height: int = 0, width: int = 0, *, masks: bool = False, num_keypoints: int | None = None) -> "Objects":
        return Objects(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool),
                       torch.zeros(0, dtype=torch.long),
                       torch.zeros(0, height, width, dtype=torch.bool) if masks else None,
                       None if num_keypoints is None else torch.zeros(0, num_keypoints, 3))


@dataclass(frozen=True)
class ImageInfo:
    """One image of a dataset as COCO lists it."""

    id: int
    file_name: str
    width: int
    height: int


@dataclass
class ObjectTable:
    """Every annotation of a dataset in flat arrays, grouped by image: image ``i`` owns rows
    ``offsets[i]:offsets[i + 1]``. Statistics and COCO export read this without touching pixels."""

    offsets: torch.Tensor  # N + 1 int64
    boxes: torch.Tensor  # M x 4 float32
    labels: torch.Tensor  # M int64
    iscrowd: torch.Tensor  # M bool
    ids: torch.Tensor  # M int64
    areas: torch.Tensor  # M float64: mask area where there are masks, else box area
    keypoints: torch.Tensor | None = None  # M x K x 3 float32
    occluded: torch.Tensor | None = None  # M float32: hidden fraction of each object, where known

    @staticmethod
    def from_rows(counts: Sequence[int], boxes, labels, iscrowd, ids, areas, keypoints=None,
                  occluded=None) -> "ObjectTable":
        offsets = torch.zeros(len(counts) + 1, dtype=torch.long)
        offsets[1:] = torch.as_tensor(list(counts), dtype=torch.long).cumsum(0)
        kp = None if keypoints is None else torch.as_tensor(np.asarray(keypoints, np.float32)).reshape(len(labels), -1, 3)
        return ObjectTable(offsets, torch.as_tensor(np.asarray(boxes, np.float32)).reshape(-1, 4),
                           torch.as_tensor(np.asarray(labels, np.int64)), torch.as_tensor(np.asarray(iscrowd, bool)),
                           torch.as_tensor(np.asarray(ids, np.int64)), torch.as_tensor(np.asarray(areas, np.float64)),
                           kp, None if occluded is None else torch.as_tensor(np.asarray(occluded, np.float32)))

    def rows(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def image_index(self) -> torch.Tensor:
        """M int64: the image each annotation belongs to."""
        counts = self.offsets[1:] - self.offsets[:-1]
        return torch.repeat_interleave(torch.arange(len(counts)), counts)


@dataclass
class ObjectBatch:
    """A training batch: images of one size, their targets in batch pixel coordinates, and how each
    image was placed (``batch x = ax * original x + bx``, the same with ``ay, by`` for y)."""

    images: torch.Tensor  # B x C x H x W uint8
    targets: list[Objects]
    semantic: torch.Tensor | None  # B x H x W int64, or None for box-only data
    indices: torch.Tensor  # B int64, dataset indices
    affine: torch.Tensor = field(default=None)  # B x 4 float64 (ax, bx, ay, by)

    def __post_init__(self):
        if self.affine is None:
            b = self.images.shape[0]
            self.affine = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64).repeat(b, 1)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def boxes_to_original(self, i: int, boxes: torch.Tensor) -> torch.Tensor:
        """N x 4 boxes of batch image ``i`` in its original image's pixels (undoes letterbox and resize)."""
        ax, bx, ay, by = self.affine[i].tolist()
        scale = torch.tensor([ax, ay, ax, ay], dtype=boxes.dtype, device=boxes.device)
        shift = torch.tensor([bx, by, bx, by], dtype=boxes.dtype, device=boxes.device)
        out = (boxes - shift) / scale
        if ax < 0:  # a mirrored image: left and right edges swap
            out = out[:, [2, 1, 0, 3]]
        if ay < 0:
            out = out[:, [0, 3, 2, 1]]
        return out


def keypoint_flip_pairs(names: Sequence[str] | None) -> list[tuple[int, int]] | None:
    """Index pairs that swap under a left-right mirror: names differing only in ``left``/``right``."""
    if names is None:
        return None
    lowered = [n.lower() for n in names]
    pairs = []
    for i, name in enumerate(lowered):
        if "left" not in name:
            continue
        mate = name.replace("left", "right")
        if mate in lowered:
            pairs.append((i, lowered.index(mate)))
    return pairs


def flip_permutation(num_keypoints: int, pairs: Sequence[tuple[int, int]] | None) -> torch.Tensor:
    """K int64: where each keypoint goes under a mirror (left and right members of each pair swap)."""
    perm = torch.arange(num_keypoints)
    for a, b in pairs or ():
        perm[a], perm[b] = b, a
    return perm


def quiet_coco(dataset: dict):
    """A pycocotools ``COCO`` object over ``dataset`` (a COCO dict), without its progress prints."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class ObjectDataset:
    """Images with per-object annotations. Subclasses read pixels and masks; this class holds what is
    common: image list, annotation table, class names, normalisation and keypoint metadata.

    ``category_ids[k]`` is the file's category id of class ``k`` (COCO ids need not be contiguous).
    ``hflip`` says whether a mirror image is still a valid example (false for digits).
    """

    def __init__(self, *, name: str, split: str, images: list[ImageInfo], table: ObjectTable,
                 class_names: list[str], category_ids: list[int], mean: tuple[float, ...], std: tuple[float, ...],
                 channels: int, hflip: bool, has_masks: bool, keypoint_names: list[str] | None = None,
                 skeleton: list[tuple[int, int]] | None = None, source: str = ""):
        self.name = name
        self.split = split
        self.images = images
        self.table = table
        self.class_names = list(class_names)
        self.category_ids = list(category_ids)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.channels = channels
        self.hflip = hflip
        self.has_masks = has_masks
        self.has_semantic = has_masks  # a class map can be painted from masks; readers with class PNGs say so too
        self.keypoint_names = None if keypoint_names is None else list(keypoint_names)
        self.flip_pairs = keypoint_flip_pairs(self.keypoint_names)
        self.skeleton = None if skeleton is None else [tuple(e) for e in skeleton]
        self.source = source
        sizes = {(im.height, im.width) for im in images}
        self.input_size: tuple[int, int, int] | None = (channels, *sizes.pop()) if len(sizes) == 1 else None

    # --- what subclasses provide -------------------------------------------------------------
    def _read_image(self, i: int) -> torch.Tensor:
        """C x H x W uint8 pixels of image ``i``: each reader (COCO, VOC, scenes) says where they live."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to read its images")

    def _read_masks(self, i: int) -> torch.Tensor | None:
        """N x H x W bool visible masks of image ``i``'s annotations, in table order."""
        return None

    # --- the common interface ----------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_keypoints(self) -> int | None:
        return None if self.keypoint_names is None else len(self.keypoint_names)

    def __len__(self) -> int:
        return len(self.images)

    def _index(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"{self.name} {self.split} has {n} images; index {i} is out of range")
        return i % n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Objects]:
        i = self._index(i)
        return self._read_image(i), self.target(i)

    def image(self, i: int) -> torch.Tensor:
        """C x H x W uint8."""
        return self._read_image(self._index(i))

    def target(self, i: int) -> Objects:
        i = self._index(i)
        rows = self.table.rows(i)
        t = self.table
        return Objects(t.boxes[rows].clone(), t.labels[rows].clone(), t.iscrowd[rows].clone(), t.ids[rows].clone(),
                       self._read_masks(i) if self.has_masks else None,
                       None if t.keypoints is None else t.keypoints[rows].clone())

    def semantic_mask(self, i: int) -> torch.Tensor:
        """H x W int64: 0 background, ``k + 1`` class ``k``, :data:`IGNORE` crowd regions.

        Instances are painted largest first, so a smaller object lying on a larger one keeps its
        pixels; crowd regions then mark only pixels no instance claimed.
        """
        i = self._index(i)
        if not self.has_masks:
            raise DataError(f"{self.name}: image '{self.images[i].file_name}' has no segmentation masks")
        target = self.target(i)
        return paint_semantic(target.masks, target.labels, target.iscrowd, self.images[i].height, self.images[i].width)

    def image_info(self, i: int) -> ImageInfo:
        return self.images[self._index(i)]

    def batch(self, indices: Sequence[int] | torch.Tensor, *, size: tuple[int, int] | None = None,
              mode: str = "letterbox") -> ObjectBatch:
        """Images ``indices`` as one batch, brought to ``size`` (H, W) if given or if they differ."""
        from .object_batches import collate

        idx = [self._index(i) for i in torch.as_tensor(indices).reshape(-1).tolist()]
        return collate(self, idx, size=size, mode=mode)

    def describe(self) -> dict:
        from .object_stats import object_statistics

        return object_statistics(self)

    # --- COCO ground truth --------------------------------------------------------------------
    def categories(self) -> list[dict]:
        cats = []
        for k, name in enumerate(self.class_names):
            cat = {"id": self.category_ids[k], "name": name, "supercategory": ""}
            if self.keypoint_names is not None:
                cat["keypoints"] = list(self.keypoint_names)
                cat["skeleton"] = [[a + 1, b + 1] for a, b in self.skeleton or []]
            cats.append(cat)
        return cats

    def to_coco(self) -> dict:
        """The ground truth as a COCO dict (boxes ``[x, y, w, h]``, RLE masks, keypoints as pixel indices)."""
        from . import rle

        annotations = []
        t = self.table
        for i, info in enumerate(self.images):
            rows = t.rows(i)
            masks = self._read_masks(i) if self.has_masks and rows.stop > rows.start else None
            for j, r in enumerate(range(rows.start, rows.stop)):
                x1, y1, x2, y2 = t.boxes[r].tolist()
                ann = {"id": int(t.ids[r]), "image_id": info.id, "category_id": self.category_ids[int(t.labels[r])],
                       "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(t.areas[r]), "iscrowd": int(t.iscrowd[r])}
                if masks is not None:
                    ann["segmentation"] = rle.encode(masks[j].numpy())
                if t.keypoints is not None:
                    ann["keypoints"], ann["num_keypoints"] = keypoints_to_coco(t.keypoints[r])
                annotations.append(ann)
        return {"images": [{"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
                           for im in self.images],
                "annotations": annotations, "categories": self.categories()}

    def coco(self):
        """The ground truth as a pycocotools ``COCO`` object, ready for ``COCOeval``."""
        return quiet_coco(self.to_coco())

    def coco_results(self, i: int, prediction: Objects, scores: torch.Tensor) -> list[dict]:
        """Predictions for image ``i`` (in its own pixels) as COCO result dicts for ``COCO.loadRes``."""
        from . import rle

        i = self._index(i)
        image_id = self.images[i].id
        results = []
        for j in range(len(prediction)):
            x1, y1, x2, y2 = prediction.boxes[j].tolist()
            res = {"image_id": image_id, "category_id": self.category_ids[int(prediction.labels[j])],
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[j])}
            if prediction.masks is not None:
                res["segmentation"] = rle.encode(prediction.masks[j].cpu().numpy())
            if prediction.keypoints is not None:
                res["keypoints"], _ = keypoints_to_coco(prediction.keypoints[j].cpu())
            results.append(res)
        return results

    def __repr__(self) -> str:
        size = "x".join(map(str, self.input_size)) if self.input_size else "mixed sizes"
        return (f"{type(self).__name__}({self.name!r}, split={self.split!r}, images={len(self)}, "
                f"objects={len(self.table.labels)}, classes={self.num_classes}, {size})")


def keypoints_to_coco(keypoints: torch.Tensor) -> tuple[list[float], int]:
    """K x 3 continuous keypoints -> COCO's flat ``[x, y, v, ...]`` (pixel indices) and the labelled count."""
    kp = keypoints.clone().double()
    labelled = kp[:, 2] > 0
    kp[labelled, :2] -= 0.5
    kp[~labelled, :2] = 0
    return [round(v, 3) for v in kp.reshape(-1).tolist()], int(labelled.sum())


def paint_semantic(masks: torch.Tensor, labels: torch.Tensor, iscrowd: torch.Tensor, height: int,
                   width: int) -> torch.Tensor:
    """H x W int64 class map from N x H x W instance masks (largest first, crowd regions as IGNORE)."""
    out = torch.zeros(height, width, dtype=torch.long)
    if masks is None or len(labels) == 0:
        return out
    areas = masks.flatten(1).sum(1)
    order = [int(j) for j in torch.argsort(areas, descending=True, stable=True) if not iscrowd[j]]
    for j in order:
        out[masks[j]] = int(labels[j]) + 1
    for j in torch.nonzero(iscrowd).flatten().tolist():
        out[masks[j] & (out == BACKGROUND)] = IGNORE
    return out


def check_unique(values: Sequence[Any], what: str, where: str) -> None:
    """Raise :class:`DataError` naming the first repeated value in ``values``."""
    seen = set()
    for v in values:
        if v in seen:
            raise DataError(f"{where}: duplicate {what} {v}")
        seen.add(v)


__all__ = ["IGNORE", "Objects", "ImageInfo", "ObjectTable", "ObjectBatch", "ObjectDataset", "keypoint_flip_pairs",
           "flip_permutation", "keypoints_to_coco", "paint_semantic", "quiet_coco"]
