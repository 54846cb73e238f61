"""Datasets as whole uint8 tensors: MNIST, Fashion-MNIST, a bundled offline sample, any folder of IDX
files, and a folder of a user's own images (one sub-folder per class).

A dataset is held as one ``N x C x H x W`` uint8 tensor plus an int64 label vector, so a training
batch is an index into memory and augmentation runs on whole batches (see :mod:`.transforms`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DataError, DownloadError, unknown_name
from .cifar import CIFAR_DATASETS, CifarSpec, load_cifar
from .dataset import ImageDataset, channel_stats
from .download import download
from .folder import load_image_folder
from .idx import read_idx, read_image_label_pair

__all__ = ["DATASETS", "ImageDataset", "IdxDatasetSpec", "channel_stats", "data_root", "ensure_files", "load_dataset"]

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(i) for i in range(10)]
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled"


@dataclass(frozen=True)
class IdxDatasetSpec:
    """A named dataset stored as IDX files: where its files live and how to fetch and check them."""

    name: str
    folder: str
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    files: dict[str, tuple[str, str]]  # split -> (images file, labels file)
    sha256: dict[str, str] = field(default_factory=dict)  # official checksums, for downloads
    mirrors: tuple[str, ...] = ()
    hflip: bool = False
    # For sets shipped as one pair of files: split -> (start, stop) rows of that pair.
    rows: dict[str, tuple[int, int | None]] | None = None
    description: str = ""
    licence: str = ""

    def all_files(self) -> list[str]:
        return sorted({f for pair in self.files.values() for f in pair})

    def verify(self, path: Path) -> tuple[str, list[int] | None]:
        """(status, shape) of one of the files: its IDX structure read in full."""
        try:
            return "ok", list(read_idx(path).shape)
        except DataError as e:
            return f"invalid: {e}", None


DATASETS: dict[str, "IdxDatasetSpec | CifarSpec"] = {
    spec.name: spec
    for spec in [
        IdxDatasetSpec(
            name="fashion-mnist", folder="fashion-mnist", class_names=FASHION_CLASSES,
            # Channel statistics of the 60,000 training images.
            mean=(0.2860,), std=(0.3530,), hflip=True,
            files={"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                   "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
            sha256={
                "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            },
            mirrors=("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",),
            description="Zalando's article images, 60k train / 10k test, 28x28 grey, 10 classes",
            licence="MIT (Zalando Research; Xiao, Rasul, Vollgraf 2017)",
        ),
        IdxDatasetSpec(
            name="mnist", folder="mnist", class_names=DIGIT_CLASSES, mean=(0.1307,), std=(0.3081,),
            files={"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                   "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
            sha256={
                "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            },
            mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist", "https://storage.googleapis.com/cvdf-datasets/mnist"),
            description="handwritten digits, 60k train / 10k test, 28x28 grey",
            licence="CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. Burges)",
        ),
        IdxDatasetSpec(
            name="mnist-10k", folder="mnist-10k", class_names=DIGIT_CLASSES, mean=(0.1307,), std=(0.3081,),
            files={"train": ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"),
                   "test": ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz")},
            rows={"train": (0, 8000), "test": (8000, None)},
            description="a shuffled 10,000-digit MNIST sample: first 8,000 train, last 2,000 test (local files only)",
            licence="CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. Burges)",
        ),
        IdxDatasetSpec(
            name="fashion-mnist-mini", folder=str(BUNDLED_DIR), class_names=FASHION_CLASSES,
            mean=(0.2860,), std=(0.3530,), hflip=True,
            files={"train": ("fashion-mnist-mini-train-images.idx.gz", "fashion-mnist-mini-train-labels.idx.gz"),
                   "test": ("fashion-mnist-mini-test-images.idx.gz", "fashion-mnist-mini-test-labels.idx.gz")},
            description="bundled with cnnlab: 3,000 train / 1,000 test Fashion-MNIST images (works offline)",
            licence="MIT (Zalando Research); see cnnlab/bundled/LICENSE-fashion-mnist.txt",
        ),
    ]
}

DATASETS.update(CIFAR_DATASETS)


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Where datasets live: ``data_dir``, else ``$CNNLAB_DATA``, else the user cache folder."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("CNNLAB_DATA"):
        return Path(os.environ["CNNLAB_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "cnnlab"


def dataset_folder(spec: IdxDatasetSpec, data_dir: str | os.PathLike | None = None) -> Path:
    folder = Path(spec.folder)
    return folder if folder.is_absolute() else data_root(data_dir) / spec.folder


def ensure_files(spec: IdxDatasetSpec, data_dir: str | os.PathLike | None = None, *, download_missing: bool = True,
                 mirrors: Sequence[str] | None = None, files: Sequence[str] | None = None) -> Path:
    """Make sure the files of ``spec`` are present, downloading what is missing; returns the folder."""
    folder = dataset_folder(spec, data_dir)
    wanted = list(files) if files is not None else spec.all_files()
    missing = [f for f in wanted if not (folder / f).is_file()]
    if not missing:
        return folder
    mirrors = list(mirrors) if mirrors is not None else list(spec.mirrors)
    offline = os.environ.get("CNNLAB_OFFLINE", "") not in ("", "0")
    if download_missing and mirrors and not offline:
        try:
            for name in missing:
                download(name, mirrors, folder, spec.sha256.get(name))
            return folder
        except DownloadError as e:
            reason = f" and could not be downloaded ({e})"
    elif not mirrors:
        reason = " (this dataset has no download mirror)"
    elif offline:
        reason = " (downloads are off: CNNLAB_OFFLINE is set)"
    else:
        reason = f" (not downloaded yet: 'cnnlab data download {spec.name}' fetches them)"
    raise DataError(f"{spec.name}: missing {', '.join(missing)} in {folder}{reason}; put the files there, "
                    f"or point --data-dir / CNNLAB_DATA at a folder holding {spec.folder}/")


def _to_nchw(images: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(images)
    return tensor.unsqueeze(1).contiguous() if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2).contiguous()


def load_idx_dataset(spec: IdxDatasetSpec, split: str, data_dir: str | os.PathLike | None = None,
                     *, download_missing: bool = True) -> ImageDataset:
    if split not in spec.files:
        raise DataError(f"{spec.name} has no split '{split}' (it has {', '.join(spec.files)})")
    images_file, labels_file = spec.files[split]
    folder = ensure_files(spec, data_dir, download_missing=download_missing, files=[images_file, labels_file])
    images, labels = read_image_label_pair(folder / images_file, folder / labels_file, len(spec.class_names))
    if spec.rows:
        start, stop = spec.rows[split]
        images, labels = images[start:stop], labels[start:stop]
    return ImageDataset(spec.name, _to_nchw(images), torch.from_numpy(labels), list(spec.class_names),
                        spec.mean, spec.std, spec.hflip, split)


def _find_idx_pair(folder: Path, split: str) -> tuple[Path, Path]:
    prefixes = {"train": ("train",), "test": ("t10k", "test")}[split]
    found = {}
    for kind, tag in (("images", "idx3"), ("labels", "idx1")):
        hits = sorted(p for p in folder.iterdir() if tag in p.name and p.name.startswith(prefixes))
        if not hits:
            raise DataError(f"{folder}: no {split} {kind} file ({'|'.join(prefixes)}*{tag}*)")
        found[kind] = hits[0]
    return found["images"], found["labels"]


def load_idx_folder(folder: Path, split: str) -> ImageDataset:
    """Any folder holding MNIST-style ``train-*``/``t10k-*`` IDX files."""
    images_path, labels_path = _find_idx_pair(folder, split)
    images, labels = read_image_label_pair(images_path, labels_path)
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    x = _to_nchw(images)
    mean, std = channel_stats(x)
    return ImageDataset(folder.name, x, torch.from_numpy(labels), [str(i) for i in range(num_classes)], mean, std,
                        False, split)


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None, *,
                 download_missing: bool = True, image_size: int | None = None) -> ImageDataset:
    """Load a dataset by name (see :data:`DATASETS`) or from a folder path.

    A folder of IDX files (``train-images-idx3-ubyte.gz`` ...) or of images in one sub-folder per class
    (optionally under ``train/`` and ``test/``) are both accepted.
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', not '{split}'")
    if name in DATASETS:
        spec = DATASETS[name]
        if isinstance(spec, CifarSpec):
            return load_cifar(spec, split, data_dir, download_missing=download_missing)
        return load_idx_dataset(spec, split, data_dir, download_missing=download_missing)
    path = Path(name).expanduser()
    if path.is_dir():
        if any("idx" in p.name for p in path.iterdir() if p.is_file()):
            return load_idx_folder(path, split)
        return load_image_folder(path, split, image_size=image_size)
    if os.sep in name or name.startswith("."):
        raise DataError(f"dataset folder '{name}' does not exist")
    from .object_datasets import SCENE_SETS

    if name in SCENE_SETS:
        raise DataError(f"'{name}' is a detection / segmentation dataset, not a classification one "
                        "(cnnlab.data.load_object_dataset reads it)")
    raise unknown_name("dataset", name, list(DATASETS))
