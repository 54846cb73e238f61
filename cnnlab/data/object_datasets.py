"""Detection and segmentation data by name or path: the scene sets and users' COCO and VOC folders.

=======================  ====================================================================
``fashion-scenes-mini``  bundled (``cnnlab/bundled/fashion-scenes-mini/``): 200 training and 50 test
                         128 x 128 scenes of items from the bundled Fashion-MNIST sample; offline
``fashion-scenes``       5,000 / 1,000 scenes of Fashion-MNIST items
``mnist-scenes``         5,000 / 1,000 scenes of MNIST digits (never mirrored: ``hflip`` is off)
a COCO JSON file         or a folder holding ``annotations/instances_<split>*.json`` (see :mod:`.coco`)
a VOC folder             ``Annotations/``, ``JPEGImages/``, ``ImageSets/`` ... (see :mod:`.voc`)
=======================  ====================================================================

``fashion-scenes`` and ``mnist-scenes`` live in ``ROOT/<name>/`` (``ROOT`` = ``--data-dir``, else
``$CNNLAB_DATA``, else ``~/.cache/cnnlab``); ``cnnlab data make <name>`` writes them, and the first use
of an absent set generates it with the default settings (from the Fashion-MNIST or MNIST files the
classification loaders provide, downloading those if needed), saying so on the log. Scene sets are
held in memory as tensors; COCO and VOC folders are read lazily.

A scene set folder holds COCO and VOC at once::

    annotations/instances_train.json, instances_test.json    COCO (RLE masks, 'occluded', 'source')
    images/train-000000.png ...                               the scenes
    SegmentationClass/*.png, SegmentationObject/*.png         VOC palette PNGs (class, object index)
    Annotations/*.xml, ImageSets/{Main,Segmentation}/*.txt    VOC boxes and splits
    labels.txt, README.txt
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DataError, unknown_name
from .coco import find_coco_json, load_coco
from .datasets import BUNDLED_DIR, data_root, load_dataset
from .image_files import DEFAULT_CACHE_BYTES
from .objects import ObjectDataset
from .scenes import SceneConfig, SceneSetRecipe, prepare_items, write_scene_set
from .voc import VocDataset, find_voc_root

log = logging.getLogger("cnnlab.data")

BACKGROUND_LICENCE = "backgrounds from six CC0 photographs shipped with scikit-image (cnnlab/bundled/textures)"


@dataclass(frozen=True)
class SceneSetSpec:
    """A named scene set: where its items come from and how many scenes it has by default."""

    name: str
    source: str  # the classification dataset whose items are pasted
    style: str  # "cutout" (clothing) or "ink" (digits)
    hflip: bool
    counts: tuple[int, int]  # train, test
    description: str
    licence: str
    bundled: bool = False


SCENE_SETS: dict[str, SceneSetSpec] = {s.name: s for s in [
    SceneSetSpec("fashion-scenes-mini", "fashion-mnist-mini", "cutout", True, (200, 50),
                 "bundled with cnnlab: 200 train / 50 test 128x128 scenes of 1-6 Fashion-MNIST items (works offline)",
                 f"items: MIT (Zalando Research); {BACKGROUND_LICENCE}", bundled=True),
    SceneSetSpec("fashion-scenes", "fashion-mnist", "cutout", True, (5000, 1000),
                 "5,000 train / 1,000 test 128x128 scenes of 1-6 Fashion-MNIST items, boxes and masks",
                 f"items: MIT (Zalando Research); {BACKGROUND_LICENCE}"),
    SceneSetSpec("mnist-scenes", "mnist", "ink", False, (5000, 1000),
                 "5,000 train / 1,000 test 128x128 scenes of 1-6 MNIST digits, boxes and masks",
                 f"items: CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. Burges); {BACKGROUND_LICENCE}"),
]}
BUNDLED_SCENES = BUNDLED_DIR / "fashion-scenes-mini"


def scene_set_folder(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    spec = SCENE_SETS[name]
    return BUNDLED_SCENES if spec.bundled else data_root(data_dir) / spec.name


def make_scene_set(name: str, *, data_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                   count: int | None = None, test_count: int | None = None, seed: int = 0, source: str | None = None,
                   force: bool = False, progress: Callable[[str, int, int], None] | None = None,
                   **settings) -> Path:
    """Generate the scene set ``name`` (see :data:`SCENE_SETS`) into ``out`` (default ``ROOT/<name>``).

    ``settings`` are :class:`~.scenes.SceneConfig` fields (``height``, ``width``, ``max_objects``,
    ``scale``, ``rotate``, ``channels``, ...). ``source`` replaces the item dataset (e.g. ``mnist-10k``).
    """
    if name not in SCENE_SETS:
        raise unknown_name("scene set", name, list(SCENE_SETS))
    spec = SCENE_SETS[name]
    if spec.style == "ink":
        settings.setdefault("max_hole", 0)
    config = SceneConfig(style=spec.style, **settings)
    counts = {"train": spec.counts[0] if count is None else count, "test": spec.counts[1] if test_count is None else test_count}
    if min(counts.values()) < 0:
        raise DataError(f"scene counts must be non-negative, got {counts}")
    source = source or spec.source
    items, class_names = {}, None
    for split in ("train", "test"):
        data = load_dataset(source, split, data_dir)
        if data.images.shape[1] != 1:
            raise DataError(f"{source}: scene items must be greyscale images, found {data.images.shape[1]} channels")
        items[split] = (prepare_items(data.images, config), data.labels.numpy())
        class_names = data.class_names
    folder = Path(out) if out is not None else (data_root(data_dir) / spec.name)
    recipe = SceneSetRecipe(spec.name, source, class_names, spec.hflip, seed, counts, config,
                            spec.description if source == spec.source and counts["train"] == spec.counts[0]
                            else f"{counts['train']} train / {counts['test']} test scenes of {source} items",
                            spec.licence)
    return write_scene_set(folder, recipe, items, force=force, progress=progress)


def _scene_json(folder: Path, split: str) -> Path:
    return folder / "annotations" / f"instances_{split}.json"


def load_object_dataset(name: str | os.PathLike, split: str = "train", data_dir: str | os.PathLike | None = None, *,
                        format: str | None = None, image_root: str | os.PathLike | None = None,
                        cache_bytes: int = DEFAULT_CACHE_BYTES) -> ObjectDataset:
    """A detection / segmentation dataset by name (:data:`SCENE_SETS`), COCO JSON file, or folder.

    ``format`` (``"coco"`` or ``"voc"``) decides for a folder that holds both; ``image_root`` is where a
    COCO file's images are, when not beside it.
    """
    if format not in (None, "coco", "voc"):
        raise DataError(f"format must be 'coco' or 'voc', not '{format}'")
    name = str(name)
    if name in SCENE_SETS:
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', not '{split}'")
        folder = scene_set_folder(name, data_dir)
        if not _scene_json(folder, split).is_file():
            if SCENE_SETS[name].bundled:
                raise DataError(f"{name}: the bundled files are missing from {folder}; reinstall cnnlab")
            train, test = SCENE_SETS[name].counts
            log.warning("%s: not found in %s; generating it (%s train / %s test scenes, seed 0) from %s",
                        name, folder, f"{train:,}", f"{test:,}", SCENE_SETS[name].source)
            make_scene_set(name, data_dir=data_dir, force=folder.exists())
        return load_coco(_scene_json(folder, split), split, name=name)
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise DataError(f"{path}: expected a COCO .json file or a folder")
        return load_coco(path, split, image_root=Path(image_root) if image_root else None, cache_bytes=cache_bytes)
    if path.is_dir():
        voc_root = find_voc_root(path) if format != "coco" else None
        coco_json = find_coco_json(path, split) if format != "voc" else None
        if coco_json is not None:
            return load_coco(coco_json, split, image_root=Path(image_root) if image_root else None,
                             name=path.name, cache_bytes=cache_bytes)
        if voc_root is not None:
            return VocDataset(voc_root, split, name=path.name, cache_bytes=cache_bytes)
        wanted = {"coco": f"a COCO file for split '{split}' (annotations/instances_{split}*.json)",
                  "voc": "a VOC folder (Annotations/, ImageSets/)"}
        raise DataError(f"{path}: not {wanted[format] if format else wanted['coco'] + ' nor ' + wanted['voc']}")
    if os.sep in name or name.startswith(".") or name.endswith(".json"):
        raise DataError(f"dataset '{name}' does not exist")
    raise unknown_name("detection/segmentation dataset", name, list(SCENE_SETS))


def is_object_dataset(name: str) -> bool:
    """Whether ``name`` names a scene set or points at a COCO file or a COCO / VOC folder."""
    if name in SCENE_SETS:
        return True
    path = Path(name).expanduser()
    if path.is_file():
        return path.suffix.lower() == ".json"
    if path.is_dir():
        return find_voc_root(path) is not None or any(find_coco_json(path, s) for s in ("train", "test", "val"))
    return False
