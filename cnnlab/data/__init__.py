"""Data: the IDX format, datasets held as uint8 tensors, verified downloads, batched augmentation; and
for detection and segmentation: COCO and VOC readers, generated scenes of real items, per-object
targets and augmentation that carries them."""

from .datasets import DATASETS, ImageDataset, data_root, ensure_files, load_dataset
from .idx import read_idx, write_idx
from .object_batches import collate, iter_object_batches
from .object_datasets import SCENE_SETS, load_object_dataset, make_scene_set
from .object_transforms import ObjectAugment, parse_object_augment
from .objects import IGNORE, ImageInfo, ObjectBatch, ObjectDataset, Objects

__all__ = ["DATASETS", "ImageDataset", "data_root", "ensure_files", "load_dataset", "read_idx", "write_idx",
           "SCENE_SETS", "load_object_dataset", "make_scene_set", "ObjectDataset", "Objects", "ObjectBatch",
           "ImageInfo", "IGNORE", "ObjectAugment", "parse_object_augment", "collate", "iter_object_batches"]
