"""COCO JSON data sets (Lin et al. 2014, "Microsoft COCO: Common Objects in Context"; format at
https://cocodataset.org/#format-data): boxes, instance masks as polygons or RLE, keypoints,
``iscrowd``, categories with any ids.

The whole file is checked before a dataset exists, so a bad file raises one :class:`DataError` naming
the file, the annotation or image, and the problem: an image file that is missing or of another size
than the JSON says, a box outside its image (by more than :data:`BOX_TOLERANCE` pixels; less is
clipped) or with zero area, an unknown image or category id, a mask whose size differs from its
image's, a duplicate id. Images are read lazily through a bounded cache (:mod:`.image_files`).

Where the images are: ``image_root`` if given, else the first of these holding the first image: the
JSON's folder (one folder per split), ``ROOT/<split>``, ``ROOT/images/<split>``, ``ROOT/images``,
``ROOT``, where ``ROOT`` is the folder above ``annotations/`` and ``<split>`` the JSON name less
``instances_`` (``instances_val2017.json`` -> ``val2017``).

Normalisation: scene sets written by cnnlab carry their own statistics; other data uses ImageNet's
(0.485, 0.456, 0.406) / (0.229, 0.224, 0.225), as torchvision's detection models do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..io import atomic_write_text
from . import rle
from .image_files import DEFAULT_CACHE_BYTES, GREY_MODES, ImageCache, image_header, read_image
from .objects import ImageInfo, ObjectDataset, ObjectTable, check_unique

BOX_TOLERANCE = 1.0  # pixels a box may reach past its image (rounding in labelling tools); clipped
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_GREY_MEAN, IMAGENET_GREY_STD = (0.449,), (0.226,)
SCENES_KEY = "cnnlab_scenes"  # the "info" entry of scene sets written by cnnlab


@dataclass
class ParsedCoco:
    """A checked COCO file: everything a dataset needs, pixels not yet read."""

    path: Path
    images: list[ImageInfo]
    files: list[Path]
    table: ObjectTable
    segmentations: list[Any]  # per table row: polygons / RLE, or None
    class_names: list[str]
    category_ids: list[int]
    keypoint_names: list[str] | None
    skeleton: list[tuple[int, int]] | None
    channels: int
    has_masks: bool
    info: dict


def read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def _number_list(value: Any, length: int | None = None) -> list[float] | None:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return [float(v) for v in value]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_categories(data: dict, where: str):
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DataError(f"{where}: no 'categories' list")
    for c in cats:
        if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise DataError(f"{where}: every category needs an integer 'id' and a 'name' (got {str(c)[:60]})")
    check_unique([c["id"] for c in cats], "category id", where)
    cats = sorted(cats, key=lambda c: c["id"])
    keypoint_sets = {tuple(c["keypoints"]) for c in cats if c.get("keypoints")}
    if len(keypoint_sets) > 1:
        raise DataError(f"{where}: categories define different keypoint lists; one list for all is supported")
    keypoint_names = list(keypoint_sets.pop()) if keypoint_sets else None
    skeleton = None
    if keypoint_names is not None:
        edges = next(c.get("skeleton") or [] for c in cats if c.get("keypoints"))
        k = len(keypoint_names)
        if not all(isinstance(e, list) and len(e) == 2 and all(_is_int(v) and 1 <= v <= k for v in e) for e in edges):
            raise DataError(f"{where}: skeleton edges must be pairs of keypoint numbers 1..{k}")
        skeleton = [(a - 1, b - 1) for a, b in edges]
    return cats, keypoint_names, skeleton


def _parse_images(data: dict, where: str) -> list[ImageInfo]:
    images = data.get("images")
    if not isinstance(images, list):
        raise DataError(f"{where}: no 'images' list")
    out = []
    for im in images:
        if not (isinstance(im, dict) and _is_int(im.get("id")) and isinstance(im.get("file_name"), str)
                and _is_int(im.get("width")) and _is_int(im.get("height"))):
            raise DataError(f"{where}: every image needs integer 'id', 'width', 'height' and a 'file_name' "
                            f"(got {str(im)[:80]})")
        if im["width"] <= 0 or im["height"] <= 0:
            raise DataError(f"{where}: image {im['id']} has size {im['width']}x{im['height']}")
        out.append(ImageInfo(im["id"], im["file_name"], im["width"], im["height"]))
    check_unique([im.id for im in out], "image id", where)
    check_unique([im.file_name for im in out], "image file name", where)
    return out


def _image_root_candidates(path: Path) -> list[Path]:
    stem = path.stem.removeprefix("instances_").removeprefix("person_keypoints_")
    root = path.parent.parent if path.parent.name == "annotations" else path.parent
    return list(dict.fromkeys([path.parent, root / stem, root / "images" / stem, root / "images", root]))


def _find_files(images: list[ImageInfo], path: Path, image_root: Path | None) -> tuple[list[Path], int]:
    """Each image's file (checking it exists and has the stated size) and the channel count."""
    if not images:
        return [], 3
    candidates = [Path(image_root)] if image_root is not None else _image_root_candidates(path)
    root = next((c for c in candidates if (c / images[0].file_name).is_file()), None)
    if root is None:
        raise DataError(f"{path}: image {images[0].id} '{images[0].file_name}' not found "
                        f"(looked in {', '.join(str(c) for c in candidates)})")
    files, grey = [], True
    for im in images:
        file = root / im.file_name
        if not file.is_file():
            raise DataError(f"{path}: image {im.id} '{im.file_name}' not found in {root}")
        width, height, mode = image_header(file)
        if (width, height) != (im.width, im.height):
            raise DataError(f"{path}: image {im.id} '{im.file_name}' is {width}x{height}, "
                            f"the JSON says {im.width}x{im.height}")
        grey &= mode in GREY_MODES
        files.append(file)
    return files, 1 if grey else 3


def parse_coco(data: Any, path: Path, image_root: Path | None = None, *, check_files: bool = True) -> ParsedCoco:
    """Check a COCO dict completely and turn it into flat tables; raises :class:`DataError` on any flaw."""
    where = str(path)
    if not isinstance(data, dict):
        raise DataError(f"{where}: a COCO file holds a JSON object, not a {type(data).__name__}")
    cats, keypoint_names, skeleton = _parse_categories(data, where)
    label_of = {c["id"]: k for k, c in enumerate(cats)}
    images = _parse_images(data, where)
    index_of = {im.id: i for i, im in enumerate(images)}
    anns = data.get("annotations")
    if not isinstance(anns, list):
        raise DataError(f"{where}: no 'annotations' list (an image-info file without labels cannot be trained on)")
    k = len(keypoint_names) if keypoint_names is not None else 0
    per_image: list[list[dict]] = [[] for _ in images]
    for a in anns:
        if not isinstance(a, dict) or not _is_int(a.get("id")):
            raise DataError(f"{where}: every annotation needs an integer 'id' (got {str(a)[:60]})")
        aid = a["id"]
        if not _is_int(a.get("image_id")) or a["image_id"] not in index_of:
            raise DataError(f"{where}: annotation {aid}: unknown image id {a.get('image_id')}")
        if not _is_int(a.get("category_id")) or a["category_id"] not in label_of:
            raise DataError(f"{where}: annotation {aid}: unknown category id {a.get('category_id')}")
        per_image[index_of[a["image_id"]]].append(a)
    check_unique([a["id"] for a in anns], "annotation id", where)
    has_masks = any(a.get("segmentation") for a in anns)
    counts, boxes, labels, crowd, ids, areas, kps, segs, occluded = [], [], [], [], [], [], [], [], []
    for im, group in zip(images, per_image):
        counts.append(len(group))
        for a in group:
            aid = a["id"]
            box = _number_list(a.get("bbox"), 4)
            if box is None:
                raise DataError(f"{where}: annotation {aid}: 'bbox' must be 4 numbers [x, y, width, height]")
            x, y, w, h = box
            if w <= 0 or h <= 0:
                raise DataError(f"{where}: annotation {aid}: box {box} has zero area")
            t = BOX_TOLERANCE
            if x < -t or y < -t or x + w > im.width + t or y + h > im.height + t:
                raise DataError(f"{where}: annotation {aid}: box {box} lies outside the {im.width}x{im.height} "
                                f"image {im.id} ('{im.file_name}')")
            x1, y1 = max(x, 0.0), max(y, 0.0)
            x2, y2 = min(x + w, float(im.width)), min(y + h, float(im.height))
            iscrowd = a.get("iscrowd", 0)
            if iscrowd not in (0, 1):
                raise DataError(f"{where}: annotation {aid}: iscrowd must be 0 or 1, not {iscrowd!r}")
            seg = a.get("segmentation") or None
            if seg is not None:
                problem = rle.segmentation_problem(seg, im.height, im.width, BOX_TOLERANCE)
                if problem:
                    raise DataError(f"{where}: annotation {aid} (image {im.id} '{im.file_name}'): {problem}")
            elif has_masks:  # box-only annotation among masked ones: its box is its mask
                seg = [[x1, y1, x2, y1, x2, y2, x1, y2]]
            area = a.get("area")
            if not (isinstance(area, (int, float)) and not isinstance(area, bool) and math.isfinite(area) and area >= 0):
                area = float(rle.mask_utils.area(rle.to_rle(seg, im.height, im.width))) if seg is not None else w * h
            if keypoint_names is not None:
                flat = a.get("keypoints")
                if flat is None:
                    flat = [0.0] * (3 * k)
                flat = _number_list(flat, 3 * k)
                if flat is None:
                    raise DataError(f"{where}: annotation {aid}: 'keypoints' must be {3 * k} numbers (x, y, v per keypoint)")
                kp = np.asarray(flat, np.float32).reshape(k, 3)
                if not np.isin(kp[:, 2], (0, 1, 2)).all():
                    raise DataError(f"{where}: annotation {aid}: keypoint visibility must be 0, 1 or 2")
                labelled = kp[:, 2] > 0
                kp[labelled, :2] += 0.5  # pixel index -> pixel centre
                kp[~labelled, :2] = 0
                kps.append(kp)
            boxes.append([x1, y1, x2, y2])
            labels.append(label_of[a["category_id"]])
            crowd.append(bool(iscrowd))
            ids.append(aid)
            areas.append(float(area))
            segs.append(seg)
            occ = a.get("occluded")
            occluded.append(float(occ) if isinstance(occ, (int, float)) and not isinstance(occ, bool) else math.nan)
    known_occlusion = bool(occluded) and not any(math.isnan(v) for v in occluded)
    table = ObjectTable.from_rows(counts, boxes, labels, crowd, ids, areas,
                                  np.stack(kps) if keypoint_names is not None and kps else
                                  (np.zeros((0, k, 3), np.float32) if keypoint_names is not None else None),
                                  occluded if known_occlusion else None)
    files, channels = _find_files(images, path, image_root) if check_files else ([], 3)
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    return ParsedCoco(path, images, files, table, segs, [c["name"] for c in cats], [c["id"] for c in cats],
                      keypoint_names, skeleton, channels, has_masks, info)


class CocoDataset(ObjectDataset):
    """A COCO file's images, read lazily through a bounded cache."""

    def __init__(self, parsed: ParsedCoco, *, name: str, split: str, cache_bytes: int = DEFAULT_CACHE_BYTES):
        grey = parsed.channels == 1
        scenes = parsed.info.get(SCENES_KEY) or {}
        mean = tuple(scenes.get("mean") or (IMAGENET_GREY_MEAN if grey else IMAGENET_MEAN))
        std = tuple(scenes.get("std") or (IMAGENET_GREY_STD if grey else IMAGENET_STD))
        super().__init__(name=name, split=split, images=parsed.images, table=parsed.table,
                         class_names=parsed.class_names, category_ids=parsed.category_ids, mean=mean, std=std,
                         channels=parsed.channels, hflip=bool(scenes.get("hflip", True)), has_masks=parsed.has_masks,
                         keypoint_names=parsed.keypoint_names, skeleton=parsed.skeleton, source=str(parsed.path))
        self.files = parsed.files
        self.segmentations = parsed.segmentations
        self.cache = ImageCache(cache_bytes)
        self._json = parsed.path

    def _read_image(self, i: int) -> torch.Tensor:
        return self.cache.get(i, lambda: read_image(self.files[i], self.channels))

    def _read_masks(self, i: int) -> torch.Tensor | None:
        rows = self.table.rows(i)
        im = self.images[i]
        if rows.stop == rows.start:
            return torch.zeros(0, im.height, im.width, dtype=torch.bool)
        masks = np.stack([rle.decode(self.segmentations[r], im.height, im.width) for r in range(rows.start, rows.stop)])
        return torch.from_numpy(masks)

    def to_coco(self) -> dict:
        """The file's own content (ids, categories and coordinates exactly as stored)."""
        return read_json(self._json)


def find_coco_json(folder: Path, split: str) -> Path | None:
    """The COCO file of ``split`` in ``folder``: ``annotations/instances_<split>*.json`` and the like.

    ``test`` falls back to ``val`` when a folder has no test annotations (COCO publishes none).
    """
    for name in ([split, "val"] if split == "test" else [split]):
        # instances first; a keypoint-only download (a figure set) is a person-detection set too
        patterns = [f"annotations/instances_{name}*.json", f"annotations/person_keypoints_{name}*.json",
                    f"annotations/{name}*.json", f"{name}/_annotations*.json",
                    f"{name}/*.json", f"instances_{name}*.json", f"{name}*.json"]
        for pattern in patterns:
            hits = sorted(folder.glob(pattern))
            if hits:
                return hits[0]
    return None


def write_coco(path: Path, dataset: dict) -> None:
    """Write a COCO dict as compact JSON, atomically."""
    atomic_write_text(path, json.dumps(dataset, separators=(",", ":")))


def load_coco(path: Path, split: str, *, image_root: Path | None = None, name: str | None = None,
              cache_bytes: int = DEFAULT_CACHE_BYTES) -> ObjectDataset:
    """Open a COCO JSON file: a scene set written by cnnlab is held in memory, anything else read lazily."""
    parsed = parse_coco(read_json(path), path, image_root)
    name = name or (path.parent.parent.name if path.parent.name == "annotations" else path.stem)
    if SCENES_KEY in parsed.info:
        from .tensor_objects import TensorObjectDataset

        return TensorObjectDataset.from_coco(parsed, name=name, split=split)
    return CocoDataset(parsed, name=name, split=split, cache_bytes=cache_bytes)
