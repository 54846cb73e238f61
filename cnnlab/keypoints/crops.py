"""Top-down person crops: each person's box, widened and made square, cut out and resized to the model's
input (Xiao et al. 2018 §4.1 widen each box to a fixed aspect ratio and by 1.25 times; the crops here
are square since the figures' boxes vary from tall to wide).

Coordinates are continuous with pixel ``i`` covering ``[i, i + 1)``, as :mod:`cnnlab.data.coco` keeps
them (COCO's file values + 0.5). A crop maps back by ``original = offset + crop * scale``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import DataError

WIDEN = 1.25  # SimpleBaseline's box enlargement


def square_region(box: Sequence[float], widen: float = WIDEN) -> tuple[float, float, float]:
    """(x0, y0, side) of the square centred on ``box`` (x1 y1 x2 y2), its longer side times ``widen``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * widen
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return cx - side / 2, cy - side / 2, side


def crop_image(image: torch.Tensor, region: tuple[float, float, float], size: int) -> torch.Tensor:
    """C x size x size uint8: ``region`` (x0, y0, side) of ``image`` (C x H x W uint8) resampled bilinearly;
    outside the image is black."""
    x0, y0, side = region
    arr = image.permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    out = pil.transform((size, size), Image.EXTENT, (x0, y0, x0 + side, y0 + side), Image.BILINEAR)
    out = np.asarray(out, np.uint8)
    out = out[:, :, None] if out.ndim == 2 else out
    return torch.from_numpy(out.copy()).permute(2, 0, 1).contiguous()


@dataclass
class PersonCrops:
    """One example per person: the crop, its keypoints in crop pixels, and how it maps back.

    ``keypoints`` N x K x 3 (x, y in crop pixels; v the COCO visibility), ``offsets`` N x 2 and ``scales``
    N (original = offset + crop * scale), ``boxes`` N x 4 the person boxes in the original image,
    ``image_ids`` / ``ann_ids`` the COCO ids, ``coco`` the ground truth as a COCO dict (for OKS AP).
    """

    name: str
    split: str
    images: torch.Tensor  # N x C x S x S uint8
    keypoints: torch.Tensor  # N x K x 3 float32
    offsets: torch.Tensor  # N x 2 float32
    scales: torch.Tensor  # N float32
    boxes: torch.Tensor  # N x 4 float32
    box_scores: torch.Tensor  # N float32: 1 for ground-truth boxes
    image_ids: torch.Tensor  # N int64
    ann_ids: torch.Tensor  # N int64
    keypoint_names: list[str]
    skeleton: list[tuple[int, int]]
    flip_pairs: list[tuple[int, int]]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    coco: dict
    hflip: bool = True
    detected: bool = False  # crops of detected boxes: no keypoints of their own, measured by OKS AP only

    @property
    def class_names(self) -> list[str]:  # the task's "classes" are its keypoints: one heatmap each
        return self.keypoint_names

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> "PersonCrops":
        pick = lambda t: t[index]  # noqa: E731
        return replace(self, images=pick(self.images), keypoints=pick(self.keypoints), offsets=pick(self.offsets),
                       scales=pick(self.scales), boxes=pick(self.boxes), box_scores=pick(self.box_scores),
                       image_ids=pick(self.image_ids), ann_ids=pick(self.ann_ids))

    def random_split(self, fraction: float, seed: int) -> tuple["PersonCrops", "PersonCrops"]:
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, int(round(len(self) * fraction)))
        return self.subset(order[n_val:]), replace(self.subset(order[:n_val]), split="val")

    def to_original(self, xy: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """N x K x 2 crop coordinates -> original image coordinates (continuous)."""
        offsets, scales = (self.offsets, self.scales) if index is None else (self.offsets[index], self.scales[index])
        return offsets[:, None, :] + xy * scales[:, None, None]


def crop_people(dataset, *, size: int = 64, widen: float = WIDEN, boxes: dict[int, list] | None = None) -> PersonCrops:
    """Crop every person of ``dataset`` (a :class:`~cnnlab.data.objects.ObjectDataset` with keypoints)
    with at least one labelled keypoint; or, with ``boxes`` ({image index: [(x1, y1, x2, y2, score)]}),
    those boxes (detected people) instead."""
    if dataset.keypoint_names is None:
        raise DataError(f"{dataset.name}: the file has no keypoints (a COCO person-keypoints file names them in its "
                        "category's 'keypoints' list)")
    k = len(dataset.keypoint_names)
    crops, kps, offs, scales, bxs, scores, img_ids, ann_ids = [], [], [], [], [], [], [], []
    for i in range(len(dataset)):
        info = dataset.image_info(i)
        target = dataset.target(i)
        if boxes is not None:
            chosen = [(torch.tensor(b[:4], dtype=torch.float32), float(b[4]) if len(b) > 4 else 1.0,
                       torch.zeros(k, 3), -1) for b in boxes.get(i, [])]
        else:
            keep = (~target.iscrowd) & (target.keypoints[:, :, 2] > 0).any(1)
            chosen = [(target.boxes[j], 1.0, target.keypoints[j], int(target.ids[j])) for j in torch.nonzero(keep)[:, 0]]
        if not chosen:
            continue
        image = dataset.image(i)
        for box, score, kp, aid in chosen:
            x0, y0, side = square_region(box.tolist(), widen)
            crops.append(crop_image(image, (x0, y0, side), size))
            scale = side / size
            local = kp.clone()
            local[:, :2] = (kp[:, :2] - torch.tensor([x0, y0])) / scale
            local[kp[:, 2] == 0, :2] = 0
            kps.append(local)
            offs.append([x0, y0])
            scales.append(scale)
            bxs.append(box.tolist())
            scores.append(score)
            img_ids.append(info.id)
            ann_ids.append(aid)
    if not crops:
        raise DataError(f"{dataset.name}/{dataset.split}: no person with a labelled keypoint")
    flip_pairs = dataset.flip_pairs or []
    coco = dataset.to_coco()
    return PersonCrops(dataset.name, dataset.split, torch.stack(crops), torch.stack(kps).float(),
                       torch.tensor(offs, dtype=torch.float32), torch.tensor(scales, dtype=torch.float32),
                       torch.tensor(bxs, dtype=torch.float32), torch.tensor(scores, dtype=torch.float32),
                       torch.tensor(img_ids), torch.tensor(ann_ids), list(dataset.keypoint_names),
                       [tuple(e) for e in (dataset.skeleton or [])], [tuple(p) for p in flip_pairs],
                       tuple(dataset.mean), tuple(dataset.std), coco, bool(dataset.hflip), boxes is not None)


def read_detection_boxes(path: str, dataset, *, min_score: float = 0.0) -> dict[int, list[tuple[float, ...]]]:
    """The person boxes of a COCO detection results file (a list of ``{"image_id", "category_id", "bbox":
    [x, y, w, h], "score"}``, what detectors and ``cnnlab eval DETECTOR --write-results`` write) as
    ``{image index: [(x1, y1, x2, y2, score)]}`` for :func:`crop_people`. Entries of another category than
    the keypoint category, or scoring below ``min_score``, are left out."""
    from pathlib import Path

    from ..data.coco import read_json

    entries = read_json(Path(path).expanduser())
    if isinstance(entries, dict):
        raise DataError(f"{path}: a COCO ground-truth file, not detection results (a JSON list of "
                        "image_id / bbox / score entries)")
    if not isinstance(entries, list):
        raise DataError(f"{path}: detection results must be a JSON list of image_id / bbox / score entries")
    index_of = {dataset.image_info(i).id: i for i in range(len(dataset))}
    person = set(dataset.category_ids)  # the keypoint file's categories (one: person)
    boxes: dict[int, list[tuple[float, ...]]] = {}
    for n, e in enumerate(entries):
        where = f"{path}: entry {n}"
        if not isinstance(e, dict) or not {"image_id", "bbox", "score"} <= set(e):
            raise DataError(f"{where}: needs image_id, bbox [x, y, w, h] and score")
        box, score = e["bbox"], e["score"]
        if (not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box)
                or not isinstance(score, (int, float))):
            raise DataError(f"{where}: bbox must be 4 numbers [x, y, w, h] and score a number")
        if e["image_id"] not in index_of:
            raise DataError(f"{where}: image_id {e['image_id']} is not an image of {dataset.name}/{dataset.split}")
        if box[2] <= 0 or box[3] <= 0:
            raise DataError(f"{where}: box width and height must be positive, got {box[2]} x {box[3]}")
        if ("category_id" in e and e["category_id"] not in person) or score < min_score:
            continue
        x, y, w, h = (float(v) for v in box)
        boxes.setdefault(index_of[e["image_id"]], []).append((x, y, x + w, y + h, float(score)))
    if not boxes:
        raise DataError(f"{path}: no person box scoring at least {min_score} in {dataset.name}/{dataset.split}")
    return boxes
