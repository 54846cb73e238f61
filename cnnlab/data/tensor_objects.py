"""Object data sets held in memory, as classification data is: all images of one size as one
N x C x H x W uint8 tensor and, for the masks, one N x H x W instance-id map (0 background, ``j + 1``
the ``j``-th object of that image). Visible masks never overlap, so a map holds them exactly, in a
fraction of the memory of per-object masks; a batch is an index into memory.

Scene sets (:mod:`.scenes`) load this way from their COCO files, or straight from the generator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import DataError
from . import rle
from .image_files import read_image
from .objects import IGNORE, ImageInfo, ObjectBatch, ObjectDataset, ObjectTable

MAX_OBJECTS = 254  # instance ids fit a uint8 map; 255 stays free


class TensorObjectDataset(ObjectDataset):
    """Images and instance-id maps as tensors; every image has the same size."""

    def __init__(self, *, images_tensor: torch.Tensor, instance_maps: torch.Tensor, **kwargs):
        super().__init__(has_masks=True, channels=int(images_tensor.shape[1]), **kwargs)
        n = len(self.images)
        if images_tensor.dtype != torch.uint8 or images_tensor.ndim != 4 or images_tensor.shape[0] != n:
            raise DataError(f"{self.name}: expected {n} x C x H x W uint8 images, got {tuple(images_tensor.shape)}")
        if instance_maps.shape != (n, *images_tensor.shape[2:]):
            raise DataError(f"{self.name}: instance maps {tuple(instance_maps.shape)} do not match images "
                            f"{tuple(images_tensor.shape)}")
        self.pixels = images_tensor
        self.instance_maps = instance_maps
        counts = (self.table.offsets[1:] - self.table.offsets[:-1])
        # Class of each instance id per image: lut[i, j] = label + 1 of object j - 1 (IGNORE for crowd).
        width = int(counts.max()) + 1 if n else 1
        self._lut = torch.zeros(n, max(width, 1), dtype=torch.long)
        for i in range(n):
            rows = self.table.rows(i)
            cls = self.table.labels[rows] + 1
            cls[self.table.iscrowd[rows]] = IGNORE
            self._lut[i, 1:1 + len(cls)] = cls

    @staticmethod
    def from_coco(parsed, *, name: str, split: str) -> "TensorObjectDataset":
        """Read every image and paint every mask of a checked COCO file (see :func:`.coco.parse_coco`)."""
        from .coco import SCENES_KEY

        sizes = {(im.height, im.width) for im in parsed.images}
        if len(sizes) > 1:
            raise DataError(f"{parsed.path}: images of {len(sizes)} sizes cannot be held as one tensor")
        if not parsed.has_masks:
            raise DataError(f"{parsed.path}: a scene set needs instance masks")
        h, w = sizes.pop() if sizes else (0, 0)
        n = len(parsed.images)
        pixels = torch.zeros(n, parsed.channels, h, w, dtype=torch.uint8)
        maps = torch.zeros(n, h, w, dtype=torch.uint8)
        table = parsed.table
        for i, file in enumerate(parsed.files):
            pixels[i] = read_image(file, parsed.channels)
            rows = table.rows(i)
            if rows.stop - rows.start > MAX_OBJECTS:
                raise DataError(f"{parsed.path}: image '{parsed.images[i].file_name}' has more than {MAX_OBJECTS} objects")
            canvas = np.zeros((h, w), np.uint8)
            for j, r in enumerate(range(rows.start, rows.stop)):
                mask = rle.decode(parsed.segmentations[r], h, w)
                if (canvas[mask] != 0).any():
                    raise DataError(f"{parsed.path}: annotation {int(table.ids[r])} overlaps another object's mask "
                                    f"in '{parsed.images[i].file_name}' (scene masks are visible parts)")
                canvas[mask] = j + 1
            maps[i] = torch.from_numpy(canvas)
        scenes = parsed.info[SCENES_KEY]
        return TensorObjectDataset(
            images_tensor=pixels, instance_maps=maps, name=name, split=split, images=parsed.images, table=table,
            class_names=parsed.class_names, category_ids=parsed.category_ids, mean=tuple(scenes["mean"]),
            std=tuple(scenes["std"]), hflip=bool(scenes.get("hflip", True)), keypoint_names=parsed.keypoint_names,
            skeleton=parsed.skeleton, source=str(parsed.path))

    def _read_image(self, i: int) -> torch.Tensor:
        return self.pixels[i]

    def _read_masks(self, i: int) -> torch.Tensor:
        rows = self.table.rows(i)
        ids = torch.arange(1, rows.stop - rows.start + 1, dtype=torch.uint8).view(-1, 1, 1)
        return self.instance_maps[i].unsqueeze(0) == ids  # N x H x W

    def semantic_mask(self, i: int) -> torch.Tensor:
        i = self._index(i)
        return self._lut[i][self.instance_maps[i].long()]

    def batch(self, indices: Sequence[int] | torch.Tensor, *, size: tuple[int, int] | None = None,
              mode: str = "letterbox") -> ObjectBatch:
        idx = torch.as_tensor([self._index(i) for i in torch.as_tensor(indices).reshape(-1).tolist()], dtype=torch.long)
        if size is not None and tuple(size) != tuple(self.pixels.shape[2:]):
            return super().batch(idx, size=size, mode=mode)
        maps = self.instance_maps[idx].long()  # B x H x W
        semantic = self._lut[idx].gather(1, maps.flatten(1)).view_as(maps)
        return ObjectBatch(self.pixels[idx], [self.target(int(i)) for i in idx], semantic, idx)

    @staticmethod
    def image_list(count: int, height: int, width: int, prefix: str) -> list[ImageInfo]:
        return [ImageInfo(i + 1, f"{prefix}{i:06d}.png", width, height) for i in range(count)]


__all__ = ["TensorObjectDataset", "ObjectTable"]
