"""Pascal VOC data sets (Everingham et al. 2010, "The Pascal Visual Object Classes (VOC) Challenge",
IJCV 88): XML boxes, ``SegmentationClass`` / ``SegmentationObject`` palette PNGs, ``ImageSets`` splits.

Layout, under a folder (or its ``VOCdevkit/VOC20xx``)::

    Annotations/<id>.xml            boxes: <object><name>, <difficult>, <bndbox> xmin ymin xmax ymax
    JPEGImages/<id>.jpg             or images/<id>.<any image suffix>
    ImageSets/Main/<split>.txt      image ids, one a line (else ImageSets/Segmentation/<split>.txt)
    SegmentationClass/<id>.png      palette indices: 0 background, k class k (1-based), 255 void
    SegmentationObject/<id>.png     palette indices: j the j-th <object> of the XML, 255 void
    labels.txt                      optional: class names, one a line (default: VOC's 20 classes when
                                    every name is one of them, else the names found, sorted)

VOC's pixel coordinates are 1-based and inclusive, so ``xmin = 1, xmax = 10`` is the box ``x1 = 0,
x2 = 10`` here. ``difficult`` objects become ``iscrowd`` (ignored by training and COCOeval).
``test`` falls back to ``val`` when there is no ``test.txt`` (VOC 2012 publishes no test labels).
Every file is checked when the dataset opens; a problem raises one :class:`DataError` naming the file.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from ..io import atomic_write_bytes, atomic_write_text
from .coco import BOX_TOLERANCE, IMAGENET_GREY_MEAN, IMAGENET_GREY_STD, IMAGENET_MEAN, IMAGENET_STD
from .folder import IMAGE_SUFFIXES
from .image_files import DEFAULT_CACHE_BYTES, GREY_MODES, ImageCache, image_header, read_image
from .objects import IGNORE, ImageInfo, ObjectDataset, ObjectTable, check_unique, paint_semantic

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]


@lru_cache(maxsize=1)
def voc_palette() -> tuple[int, ...]:
    """VOC's 256-colour palette, flat RGB: the bits of each index spread over R, G, B, high bits first."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return tuple(palette)


def palette_png_bytes(indices: np.ndarray) -> bytes:
    """An H x W uint8 index map as the bytes of a VOC palette PNG."""
    img = Image.fromarray(np.asarray(indices, np.uint8), mode="P")
    img.putpalette(list(voc_palette()))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_palette_png(path: Path, indices: np.ndarray) -> None:
    """An H x W uint8 index map as a VOC palette PNG, written atomically."""
    atomic_write_bytes(path, palette_png_bytes(indices))


def read_index_png(path: Path) -> np.ndarray:
    """The index values of a palette (or greyscale) PNG as H x W uint8."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DataError(f"{path}: expected a palette PNG of class indices, found mode {img.mode}")
            return np.asarray(img, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable PNG ({type(e).__name__})") from None


def voc_xml(file_name: str, width: int, height: int, depth: int, objects: list[tuple[str, tuple[int, int, int, int], bool]]) -> str:
    """A VOC annotation for boxes given as whole-pixel ``x1 y1 x2 y2`` (written 1-based inclusive)."""
    lines = ["<annotation>", f"  <filename>{file_name}</filename>",
             f"  <size><width>{width}</width><height>{height}</height><depth>{depth}</depth></size>",
             "  <segmented>1</segmented>"]
    for name, (x1, y1, x2, y2), difficult in objects:
        lines += ["  <object>", f"    <name>{name}</name>", "    <truncated>0</truncated>",
                  f"    <difficult>{int(difficult)}</difficult>",
                  f"    <bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>",
                  "  </object>"]
    return "\n".join(lines + ["</annotation>", ""])


def write_voc_xml(path: Path, *args) -> None:
    atomic_write_text(path, voc_xml(*args))


def find_voc_root(folder: Path) -> Path | None:
    """``folder`` if it holds ``Annotations/`` or ``ImageSets/``, else a ``VOCdevkit/VOC20xx`` below it."""
    for candidate in [folder, *sorted(folder.glob("VOC*")), *sorted(folder.glob("VOCdevkit/VOC*"))]:
        if (candidate / "ImageSets").is_dir() or (candidate / "Annotations").is_dir():
            return candidate
    return None


def _split_file(root: Path, split: str, image_set: str | None) -> Path:
    sets = [image_set] if image_set else ["Main", "Segmentation"]
    names = [split, "val"] if split == "test" else [split]
    for name in names:
        for s in sets:
            path = root / "ImageSets" / s / f"{name}.txt"
            if path.is_file():
                return path
    raise DataError(f"{root}: no split '{split}' (looked for ImageSets/{'|'.join(sets)}/{'|'.join(names)}.txt)")


def _text(node: ET.Element, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(f"{where}: missing <{tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    value = _text(node, tag, where)
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{where}: <{tag}> is '{value}', not a number") from None


def _parse_xml(path: Path) -> tuple[int | None, int | None, list[tuple[str, list[float], bool]]]:
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except ET.ParseError as e:
        raise DataError(f"{path}: not valid XML ({e})") from None
    size = root.find("size")
    width = height = None
    if size is not None and size.find("width") is not None:
        width, height = int(_number(size, "width", str(path))), int(_number(size, "height", str(path)))
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where = f"{path}: object {k + 1}"
        name = _text(obj, "name", where)
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{where} ('{name}'): missing <bndbox>")
        coords = [_number(box, t, where) for t in ("xmin", "ymin", "xmax", "ymax")]
        difficult = obj.find("difficult")
        objects.append((name, coords, difficult is not None and (difficult.text or "0").strip() == "1"))
    return width, height, objects


def _image_file(root: Path, image_id: str) -> Path | None:
    for folder in ("JPEGImages", "images"):
        for suffix in (".jpg", ".png", ".jpeg"):
            p = root / folder / f"{image_id}{suffix}"
            if p.is_file():
                return p
        hits = [p for p in (root / folder).glob(f"{image_id}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if hits:
            return sorted(hits)[0]
    return None


class VocDataset(ObjectDataset):
    """A VOC split, images and masks read lazily."""

    def __init__(self, root: Path, split: str, *, image_set: str | None = None, name: str | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        split_file = _split_file(root, split, image_set)
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        check_unique(ids, "image id", str(split_file))
        parsed = []
        for image_id in ids:
            xml = root / "Annotations" / f"{image_id}.xml"
            image = _image_file(root, image_id)
            if image is None:
                raise DataError(f"{split_file}: image '{image_id}' not found in {root / 'JPEGImages'}")
            width, height, mode = image_header(image)
            xml_w, xml_h, objects = _parse_xml(xml)
            if xml_w is not None and (xml_w, xml_h) != (width, height):
                raise DataError(f"{xml}: says {xml_w}x{xml_h} but '{image.name}' is {width}x{height}")
            parsed.append((image_id, image, width, height, mode, objects, xml))
        class_names = self._class_names(root, [o[0] for p in parsed for o in p[5]])
        label_of = {n: k for k, n in enumerate(class_names)}
        seg_obj = [root / "SegmentationObject" / f"{p[0]}.png" for p in parsed]
        seg_cls = [root / "SegmentationClass" / f"{p[0]}.png" for p in parsed]
        has_masks = bool(parsed) and all(f.is_file() for f in seg_obj)
        has_semantic = bool(parsed) and all(f.is_file() for f in seg_cls)
        images, files, counts, boxes, labels, crowd, areas = [], [], [], [], [], [], []
        grey = True
        for i, (image_id, image, width, height, mode, objects, xml) in enumerate(parsed):
            grey &= mode in GREY_MODES
            images.append(ImageInfo(i + 1, image.name, width, height))
            files.append(image)
            for masks_file in ([seg_obj[i]] if has_masks else []) + ([seg_cls[i]] if has_semantic else []):
                mw, mh, _ = image_header(masks_file)
                if (mw, mh) != (width, height):
                    raise DataError(f"{masks_file}: mask is {mw}x{mh} but the image '{image.name}' is {width}x{height}")
            instance = read_index_png(seg_obj[i]) if has_masks else None
            counts.append(len(objects))
            for k, (cls, (xmin, ymin, xmax, ymax), difficult) in enumerate(objects):
                where = f"{xml}: object {k + 1} ('{cls}')"
                if cls not in label_of:
                    raise DataError(f"{where}: unknown category '{cls}' (not in {root / 'labels.txt'})")
                x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax  # 1-based inclusive -> continuous
                if x2 <= x1 or y2 <= y1:
                    raise DataError(f"{where}: box {xmin:g},{ymin:g},{xmax:g},{ymax:g} has zero area")
                t = BOX_TOLERANCE
                if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
                    raise DataError(f"{where}: box {xmin:g},{ymin:g},{xmax:g},{ymax:g} lies outside the "
                                    f"{width}x{height} image")
                boxes.append([max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))])
                labels.append(label_of[cls])
                crowd.append(difficult)
                areas.append(float((instance == k + 1).sum()) if instance is not None else (x2 - x1) * (y2 - y1))
        table = ObjectTable.from_rows(counts, boxes, labels, crowd, list(range(1, len(labels) + 1)), areas)
        super().__init__(name=name or root.name, split=split, images=images, table=table, class_names=class_names,
                         category_ids=list(range(1, len(class_names) + 1)),
                         mean=IMAGENET_GREY_MEAN if grey else IMAGENET_MEAN, std=IMAGENET_GREY_STD if grey else IMAGENET_STD,
                         channels=1 if grey else 3, hflip=True, has_masks=has_masks, source=str(root))
        self.has_semantic = has_semantic or has_masks
        self.class_pngs = has_semantic
        self.files = files
        self.object_files = seg_obj
        self.class_files = seg_cls
        self.cache = ImageCache(cache_bytes)

    @staticmethod
    def _class_names(root: Path, found: list[str]) -> list[str]:
        labels = root / "labels.txt"
        if labels.is_file():
            names = [line.strip() for line in labels.read_text().splitlines() if line.strip()]
            check_unique(names, "class name", str(labels))
            return names
        if set(found) <= set(VOC_CLASSES):
            return list(VOC_CLASSES)
        return sorted(set(found))

    def _read_image(self, i: int) -> torch.Tensor:
        return self.cache.get(i, lambda: read_image(self.files[i], self.channels))

    def _read_masks(self, i: int) -> torch.Tensor:
        instance = torch.from_numpy(read_index_png(self.object_files[i]))
        n = self.table.rows(i).stop - self.table.rows(i).start
        return instance.unsqueeze(0) == torch.arange(1, n + 1, dtype=torch.uint8).view(-1, 1, 1)

    def semantic_mask(self, i: int) -> torch.Tensor:
        i = self._index(i)
        if not self.class_pngs:
            return super().semantic_mask(i)
        classes = read_index_png(self.class_files[i])
        bad = (classes > self.num_classes) & (classes != IGNORE)
        if bad.any():
            raise DataError(f"{self.class_files[i]}: class value {int(classes[bad][0])} but there are "
                            f"{self.num_classes} classes")
        return torch.from_numpy(classes.astype(np.int64))


__all__ = ["VOC_CLASSES", "VocDataset", "find_voc_root", "voc_palette", "write_palette_png", "write_voc_xml",
           "paint_semantic"]
