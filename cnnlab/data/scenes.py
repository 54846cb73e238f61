"""Scenes made of real items: canvases holding several Fashion-MNIST or MNIST items each, with a box,
an instance mask and a semantic mask for every item, for detection and segmentation.

A scene (:func:`render_scene`) is a pure function of ``(seed, split, index)`` and the source items:

1. a background (:mod:`.backgrounds`): a flat level, a linear or radial gradient, or a crop of a real
   photograph;
2. 1 to ``max_objects`` items drawn from the split's own items only (training scenes from training
   items, test scenes from test items), each scaled by a log-uniform factor in ``scale`` (default 0.7 to
   3, so a 28-pixel item spans 20 to 84 pixels), optionally rotated, placed anywhere inside the canvas;
3. items are painted in order, so a later item covers an earlier one: the visible mask of an item is
   the pixels it owns on top, and a placement that would hide more than ``max_occlusion`` of an earlier
   item (or is too small) is drawn again, up to ``tries`` times, else that item is left out;
4. sensor noise (Gaussian, sigma up to ``noise``) over the whole canvas, items included.

Items are pasted with an alpha matte. A clothing item (``cutout``) is opaque where its 28 x 28 image is
at least ``threshold`` (holes of at most ``max_hole`` pixels filled: dark patches inside a garment, not
a bag's handle), keeping its own grey levels times a gain; a digit (``ink``) uses its grey level as
the alpha of an ink whose level contrasts with the background beneath. Scaling and rotation resample
the premultiplied item bilinearly; the item's mask is where its alpha is at least one half.

Boxes are the tight boxes of the visible masks, so the box of a mask is the box of its object.
:func:`write_scene_set` writes COCO JSON, PNG images and VOC-style class and object PNGs (see
:mod:`.object_datasets` for the layout and the named sets).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..io import default_dir_mode
from . import rle
from .backgrounds import make_background, texture_names

SPLIT_CODES = {"train": 0, "test": 1}
MIN_ITEM_PIXELS = 16  # an item smaller than this (after scaling) is drawn again


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn (see the module docstring)."""

    height: int = 128
    width: int = 128
    min_objects: int = 1
    max_objects: int = 6
    scale: tuple[float, float] = (0.7, 3.0)
    rotate: float = 0.0  # largest rotation in degrees, either way
    max_occlusion: float = 0.6
    noise: float = 8.0
    channels: int = 1
    style: str = "cutout"
    threshold: int = 16
    max_hole: int = 8
    tries: int = 8

    def __post_init__(self):
        problems = []
        if not (8 <= self.height <= 4096 and 8 <= self.width <= 4096):
            problems.append(f"size {self.height}x{self.width} (8 to 4096 pixels a side)")
        if not 1 <= self.min_objects <= self.max_objects <= 254:
            problems.append(f"objects {self.min_objects}..{self.max_objects} (need 1 <= min <= max <= 254)")
        if not 0 < self.scale[0] <= self.scale[1]:
            problems.append(f"scale {self.scale}")
        if not 0 <= self.max_occlusion < 1:
            problems.append(f"max_occlusion {self.max_occlusion} (0 <= value < 1)")
        if self.channels not in (1, 3):
            problems.append(f"channels {self.channels} (1 or 3)")
        if self.style not in ("cutout", "ink"):
            problems.append(f"style '{self.style}' (cutout or ink)")
        if self.noise < 0 or self.rotate < 0 or self.tries < 1:
            problems.append("noise, rotate and tries must be non-negative (tries at least 1)")
        if problems:
            raise DataError("scene settings: " + "; ".join(problems))


@dataclass
class SceneObject:
    label: int
    box: tuple[int, int, int, int]  # x1 y1 x2 y2, whole pixels
    area: int
    occluded: float
    source: dict  # index into the split's items and the geometry used to paste it


@dataclass
class Scene:
    image: np.ndarray  # H x W x C uint8
    instances: np.ndarray  # H x W uint8, 0 background, j + 1 object j (paint order)
    objects: list[SceneObject] = field(default_factory=list)
    background: str = ""


# --- items --------------------------------------------------------------------------------------------
def _hole_components(pixels: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """4-connected groups of a few (row, column) pixels."""
    left, groups = set(pixels), []
    while left:
        stack = [left.pop()]
        group = []
        while stack:
            y, x = stack.pop()
            group.append((y, x))
            for q in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if q in left:
                    left.remove(q)
                    stack.append(q)
        groups.append(group)
    return groups


def _unreached_background(masks: np.ndarray) -> np.ndarray:
    """N x H x W bool: background pixels with no 4-connected background path to the image border.

    Each row is packed into the bits of one integer (W <= 63), so growing the reached region by one
    pixel in every direction is a few shifts and ORs over N x H integers: 28 x 28 items take
    microseconds per step, all items at once.
    """
    n, h, w = masks.shape
    if w > 63:  # wide masks: the same growth on booleans
        background = ~masks
        reach = np.zeros_like(background)
        reach[:, [0, -1], :] = True
        reach[:, :, [0, -1]] = True
        reach &= background
        while True:
            grown = reach.copy()
            grown[:, 1:] |= reach[:, :-1]
            grown[:, :-1] |= reach[:, 1:]
            grown[:, :, 1:] |= reach[:, :, :-1]
            grown[:, :, :-1] |= reach[:, :, 1:]
            grown &= background
            if np.array_equal(grown, reach):
                return background & ~reach
            reach = grown
    packed = np.zeros((n, h, 8), np.uint8)
    packed[:, :, :(w + 7) // 8] = np.packbits(masks, axis=2, bitorder="little")
    fg = packed.view(np.uint64)[:, :, 0] if np.little_endian else packed[:, :, ::-1].copy().view(np.uint64)[:, :, 0]
    full = np.uint64((1 << w) - 1)
    background = ~fg & full
    edge = np.uint64(1 | (1 << (w - 1)))
    reach = background & edge
    reach[:, [0, -1]] = background[:, [0, -1]]
    one = np.uint64(1)
    while True:
        grown = reach | (reach << one) | (reach >> one)
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= background
        if np.array_equal(grown, reach):
            break
        reach = grown
    holes = (background & ~reach).reshape(n, h, 1)
    as_bytes = holes.view(np.uint8) if np.little_endian else holes.byteswap().view(np.uint8)
    return np.unpackbits(as_bytes, axis=2, bitorder="little")[:, :, :w].astype(bool)


def fill_small_holes(masks: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill the holes of N x H x W bool masks that hold at most ``max_area`` pixels.

    A hole is a 4-connected background region that does not reach the border. What reaches the border
    is found for all images at once by growing the border's background through 4-neighbours until it
    stops (:func:`_unreached_background`); the few pixels left over are then grouped per image.
    """
    if max_area <= 0 or masks.numel() == 0:
        return masks
    holes = _unreached_background(masks.numpy())
    out = masks.numpy().copy()
    images, ys, xs = np.nonzero(holes)
    starts = np.flatnonzero(np.r_[True, images[1:] != images[:-1]]) if len(images) else np.zeros(0, int)
    for a, b in zip(starts, np.r_[starts[1:], len(images)]):
        for group in _hole_components(list(zip(ys[a:b].tolist(), xs[a:b].tolist()))):
            if len(group) <= max_area:
                gy, gx = zip(*group)
                out[images[a], list(gy), list(gx)] = True
    return torch.from_numpy(out)


def prepare_items(images: torch.Tensor, config: SceneConfig) -> torch.Tensor:
    """N x 1 x h x w uint8 items -> N x 2 x h x w float32 (colour times alpha, alpha), ready to resample."""
    grey = images[:, 0].float()
    if config.style == "ink":
        alpha = grey / 255.0
        colour = torch.ones_like(grey)  # the ink level is chosen per placement
    else:
        alpha = fill_small_holes(images[:, 0] >= config.threshold, config.max_hole).float()
        colour = grey
    return torch.stack([colour * alpha, alpha], dim=1)


def render_item(item: torch.Tensor, scale: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """A prepared item (2 x h x w) scaled and rotated (degrees) into an L x L patch: colour and alpha."""
    _, h, w = item.shape
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    side = max(1, math.ceil(max(h, w) * scale * (abs(c) + abs(s))))
    u = torch.arange(side, dtype=torch.float64) + 0.5 - side / 2
    ys, xs = torch.meshgrid(u, u, indexing="ij")
    # Output pixel centre -> source coordinates: undo the rotation, then the scale, about the centres.
    sx = (c * xs + s * ys) / scale + w / 2
    sy = (-s * xs + c * ys) / scale + h / 2
    grid = torch.stack([2 * sx / w - 1, 2 * sy / h - 1], dim=-1).float().unsqueeze(0)
    out = F.grid_sample(item.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    alpha = out[1].clamp(0, 1)
    colour = torch.where(alpha > 1e-6, out[0] / alpha.clamp(min=1e-6), torch.zeros_like(alpha))
    return colour.numpy(), alpha.numpy()


def _tint(rng: np.random.Generator, channels: int) -> np.ndarray:
    if channels == 1:
        return np.ones(1, np.float32)
    tint = rng.uniform(0.35, 1.0, size=3)
    return (tint / tint.max()).astype(np.float32)


# --- scenes -------------------------------------------------------------------------------------------
def render_scene(items: torch.Tensor, labels: np.ndarray, config: SceneConfig, seed: int, split: str,
                 index: int) -> Scene:
    """Scene ``index`` of ``split``: the same pixels and objects for the same arguments."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    h, w, ch = config.height, config.width, config.channels
    canvas, kind = make_background(rng, h, w, ch)
    canvas = canvas.copy()
    owner = np.zeros((h, w), np.uint8)
    wanted = int(rng.integers(config.min_objects, config.max_objects + 1))
    picks = rng.integers(0, len(items), size=wanted)
    full: list[int] = []
    placed: list[tuple[int, dict]] = []
    item_side = max(items.shape[2:])
    for pick in picks.tolist():
        for _ in range(config.tries):
            angle = float(rng.uniform(-config.rotate, config.rotate)) if config.rotate > 0 else 0.0
            spread = abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle)))
            top_scale = min(config.scale[1], min(h, w) / (item_side * spread))
            low_scale = min(config.scale[0], top_scale)
            # Rounded as recorded, so an item can be re-rendered exactly from its annotation.
            scale = round(float(math.exp(rng.uniform(math.log(low_scale), math.log(top_scale)))), 6)
            angle = round(angle, 6)
            colour, alpha = render_item(items[pick], scale, angle)
            side = colour.shape[0]
            if side > min(h, w):
                continue
            x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            mask = alpha >= 0.5
            size = int(mask.sum())
            if size < MIN_ITEM_PIXELS:
                continue
            trial = owner.copy()
            trial[y0:y0 + side, x0:x0 + side][mask] = len(full) + 1
            visible = np.bincount(trial.ravel(), minlength=len(full) + 2)[1:len(full) + 1]
            if any(v < (1 - config.max_occlusion) * f for v, f in zip(visible, full)):
                continue
            region = canvas[y0:y0 + side, x0:x0 + side]
            a = alpha[:, :, None]
            if config.style == "ink":
                beneath = float(region[mask].mean()) if size else 128.0
                step = rng.uniform(90, 160)
                level = beneath + step if beneath < 128 else beneath - step
                paint = np.clip(level, 0, 255) * _tint(rng, ch)
                source = {"ink": round(float(level), 3)}
                region[:] = a * paint + (1 - a) * region
            else:
                gain = round(float(rng.uniform(0.75, 1.0)), 6)
                paint = colour[:, :, None] * gain * _tint(rng, ch)
                source = {"gain": gain}
                region[:] = a * paint + (1 - a) * region
            owner = trial
            full.append(size)
            placed.append((pick, {"index": int(pick), "scale": scale, "angle": angle,
                                  "x": x0, "y": y0, **source}))
            break
    if config.noise > 0:
        canvas += rng.normal(0.0, rng.uniform(0, config.noise), size=canvas.shape).astype(np.float32)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    scene = Scene(image, owner, background=kind)
    for j, (pick, source) in enumerate(placed):
        visible = owner == j + 1
        ys, xs = np.nonzero(visible)
        area = int(visible.sum())
        scene.objects.append(SceneObject(int(labels[pick]), (int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                                                             int(ys.max()) + 1), area, 1.0 - area / full[j], source))
    return scene


def render_scenes(items: torch.Tensor, labels: np.ndarray, config: SceneConfig, seed: int, split: str, count: int,
                  progress: Callable[[int], None] | None = None):
    """Scenes ``0 .. count - 1`` of ``split``, one at a time."""
    for index in range(count):
        yield render_scene(items, labels, config, seed, split, index)
        if progress:
            progress(index + 1)


# --- writing ------------------------------------------------------------------------------------------
def _png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array).save(
        buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@dataclass
class SceneSetRecipe:
    """Everything that determines a scene set, stored in its COCO files."""

    name: str
    source: str
    class_names: list[str]
    hflip: bool
    seed: int
    counts: dict[str, int]
    config: SceneConfig
    description: str = ""
    licence: str = ""


def write_scene_set(folder: Path, recipe: SceneSetRecipe, items: dict[str, tuple[torch.Tensor, np.ndarray]],
                    *, force: bool = False, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Render and write a whole scene set into ``folder``: all of it, or (on any error) nothing.

    The set is written into a temporary folder beside ``folder`` and renamed into place at the end.
    ``items[split]`` are that split's prepared items (:func:`prepare_items`) and their labels.
    """
    from .coco import SCENES_KEY, write_coco
    from .voc import palette_png_bytes, voc_xml

    folder = Path(folder)
    if folder.exists() and not force:
        raise DataError(f"{folder} already exists; pass --force to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for sub in ("annotations", "images", "Annotations", "SegmentationClass", "SegmentationObject",
                    "ImageSets/Main", "ImageSets/Segmentation"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        config = recipe.config
        coco_sets, stats = {}, None
        for split in ("train", "test"):
            pool, labels = items[split]
            images, annotations, stems = [], [], []
            pixel_sum = np.zeros(config.channels)
            pixel_sq = np.zeros(config.channels)
            count = recipe.counts[split]
            for index, scene in enumerate(render_scenes(pool, labels, config, recipe.seed, split, count)):
                stem = f"{split}-{index:06d}"
                file_name = f"{stem}.png"
                (work / "images" / file_name).write_bytes(_png_bytes(scene.image))
                classes = np.zeros(scene.instances.shape, np.uint8)
                for j, obj in enumerate(scene.objects):
                    classes[scene.instances == j + 1] = obj.label + 1
                (work / "SegmentationClass" / file_name).write_bytes(palette_png_bytes(classes))
                (work / "SegmentationObject" / file_name).write_bytes(palette_png_bytes(scene.instances))
                (work / "Annotations" / f"{stem}.xml").write_text(voc_xml(
                    file_name, config.width, config.height, config.channels,
                    [(recipe.class_names[o.label], o.box, False) for o in scene.objects]))
                stems.append(stem)
                image_id = index + 1
                images.append({"id": image_id, "file_name": file_name, "width": config.width,
                               "height": config.height, "background": scene.background})
                for j, obj in enumerate(scene.objects):
                    x1, y1, x2, y2 = obj.box
                    annotations.append({
                        "id": len(annotations) + 1, "image_id": image_id, "category_id": obj.label + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": obj.area, "iscrowd": 0,
                        "segmentation": rle.encode(scene.instances == j + 1),
                        "occluded": round(obj.occluded, 6), "source": obj.source})
                if split == "train":
                    pix = scene.image.reshape(-1, config.channels).astype(np.float64) / 255.0
                    pixel_sum += pix.sum(0)
                    pixel_sq += (pix ** 2).sum(0)
                if progress:
                    progress(split, index + 1, count)
            if split == "train":
                total = max(1, count * config.height * config.width)
                mean = pixel_sum / total
                std = np.sqrt(np.maximum(pixel_sq / total - mean ** 2, 1e-6))
                stats = ([round(float(v), 4) for v in mean], [round(float(v), 4) for v in std])
            for sub in ("Main", "Segmentation"):
                (work / "ImageSets" / sub / f"{split}.txt").write_text("".join(s + "\n" for s in stems))
            coco_sets[split] = (images, annotations)
        for split, (images, annotations) in coco_sets.items():
            info = {"description": recipe.description, "version": "1",
                    SCENES_KEY: {"name": recipe.name, "split": split, "source": recipe.source, "seed": recipe.seed,
                                 "counts": recipe.counts, "hflip": recipe.hflip, "mean": stats[0], "std": stats[1],
                                 "textures": texture_names(),
                                 "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}}}
            write_coco(work / "annotations" / f"instances_{split}.json", {
                "info": info, "licenses": [{"id": 1, "name": recipe.licence}],
                "images": images, "annotations": annotations,
                "categories": [{"id": k + 1, "name": n, "supercategory": ""} for k, n in enumerate(recipe.class_names)]})
        (work / "labels.txt").write_text("".join(n + "\n" for n in recipe.class_names))
        (work / "README.txt").write_text(_readme(recipe))
        os.chmod(work, default_dir_mode())  # mkdtemp makes the folder private; the set is ordinary data
        _replace_folder(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return folder


def _replace_folder(work: Path, folder: Path) -> None:
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.replace(folder, old / folder.name)
        os.replace(work, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, folder)


def _readme(recipe: SceneSetRecipe) -> str:
    c = recipe.config
    return (f"{recipe.name}: {recipe.description}\n\n"
            f"{recipe.counts['train']} training and {recipe.counts['test']} test scenes of {c.width}x{c.height}, "
            f"{c.min_objects} to {c.max_objects} items each from {recipe.source} (training scenes from its "
            f"training split only, test scenes from its test split only), seed {recipe.seed}.\n"
            "Made by cnnlab (cnnlab data make); every setting is in annotations/*.json under info.cnnlab_scenes.\n\n"
            "annotations/instances_{train,test}.json  COCO: boxes, RLE masks of the visible parts, areas,\n"
            "                                         'occluded' (hidden fraction), 'source' (item and geometry)\n"
            "images/                                  the scenes, PNG\n"
            "SegmentationClass/                       VOC palette PNGs: 0 background, k + 1 class k\n"
            "SegmentationObject/                      VOC palette PNGs: j the j-th object of the image\n"
            "Annotations/, ImageSets/, labels.txt     VOC boxes, splits and class names\n\n"
            f"Licence: {recipe.licence}\n")
