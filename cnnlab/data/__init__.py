"""Data: the IDX format, datasets held as uint8 tensors, verified downloads, batched augmentation."""

from .datasets import DATASETS, ImageDataset, data_root, ensure_files, load_dataset
from .idx import read_idx, write_idx

__all__ = ["DATASETS", "ImageDataset", "data_root", "ensure_files", "load_dataset", "read_idx", "write_idx"]
