"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009, "Learning multiple layers of features from tiny images"),
from their binary release, downloaded and SHA-256 checked like the IDX sets.

The binary release is one ``.tar.gz`` holding fixed-size records: for CIFAR-10, ``data_batch_1..5.bin``
and ``test_batch.bin``, each record 1 label byte and 3,072 pixel bytes (the red, green and blue 32 x 32
planes, row by row); for CIFAR-100, ``train.bin`` and ``test.bin``, each record a coarse and a fine
label byte and the same 3,072 pixel bytes. The archive is read in place (nothing is extracted), and only
the members named here are read.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset

PIXELS = 3 * 32 * 32

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The fine labels of CIFAR-100 in label order (fine_label_names.txt of the release).
CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree",
    "wolf", "woman", "worm"]


@dataclass(frozen=True)
class CifarSpec:
    """A CIFAR binary release: its archive, checksum, members per split and record layout."""

    name: str
    folder: str
    archive: str
    sha256: dict[str, str]
    members: dict[str, tuple[str, ...]]  # split -> members of the archive, in order
    label_bytes: int  # bytes before the pixels in each record
    label_index: int  # which of them is the label used (CIFAR-100: 1, the fine label)
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mirrors: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz",)
    hflip: bool = True
    description: str = ""
    licence: str = "no licence stated; research use, cite Krizhevsky 2009"
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", {split: (self.archive,) for split in self.members})

    def all_files(self) -> list[str]:
        return [self.archive]

    @property
    def record(self) -> int:
        return self.label_bytes + PIXELS

    def verify(self, path: Path) -> tuple[str, list[int] | None]:
        """(status, shape of the training images) after reading every member's records."""
        try:
            images, _ = read_records(path, self, "train")
        except DataError as e:
            return f"invalid: {e}", None
        return "ok", list(images.shape)


CIFAR_DATASETS: dict[str, CifarSpec] = {
    spec.name: spec
    for spec in [
        CifarSpec(
            name="cifar10", folder="cifar10", archive="cifar-10-binary.tar.gz",
            sha256={"cifar-10-binary.tar.gz": "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"},
            members={"train": tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
                     "test": ("cifar-10-batches-bin/test_batch.bin",)},
            label_bytes=1, label_index=0, class_names=CIFAR10_CLASSES,
            # Channel statistics of the 50,000 training images.
            mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
            description="CIFAR-10: 50k train / 10k test 32x32 colour images, 10 classes"),
        CifarSpec(
            name="cifar100", folder="cifar100", archive="cifar-100-binary.tar.gz",
            sha256={"cifar-100-binary.tar.gz": "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"},
            members={"train": ("cifar-100-binary/train.bin",), "test": ("cifar-100-binary/test.bin",)},
            label_bytes=2, label_index=1, class_names=CIFAR100_CLASSES,
            mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
            description="CIFAR-100: 50k train / 10k test 32x32 colour images, 100 fine classes"),
    ]
}


def read_records(path: Path, spec: CifarSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N x 32 x 32 x 3 uint8 images, N int64 labels) of ``split`` from the release archive at ``path``."""
    images, labels = [], []
    try:
        with tarfile.open(path, "r:gz") as archive:
            for name in spec.members[split]:
                try:
                    member = archive.getmember(name)
                except KeyError:
                    raise DataError(f"{path}: the archive has no {name}; is it the {spec.name} binary release?") from None
                if not member.isfile() or member.size % spec.record:
                    raise DataError(f"{path}: {name} is not a whole number of {spec.record}-byte records")
                data = np.frombuffer(archive.extractfile(member).read(), dtype=np.uint8).reshape(-1, spec.record)
                labels.append(data[:, spec.label_index].astype(np.int64))
                images.append(data[:, spec.label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path} is not a readable {spec.name} archive: {e}") from None
    labels_all = np.concatenate(labels)
    if len(labels_all) and labels_all.max() >= len(spec.class_names):
        raise DataError(f"{path}: label {int(labels_all.max())} is out of range for {len(spec.class_names)} classes")
    return np.concatenate(images), labels_all


def load_cifar(spec: CifarSpec, split: str, data_dir: str | os.PathLike | None = None, *,
               download_missing: bool = True) -> ImageDataset:
    from .datasets import ensure_files

    if split not in spec.members:
        raise DataError(f"{spec.name} has no split '{split}' (it has {', '.join(spec.members)})")
    folder = ensure_files(spec, data_dir, download_missing=download_missing)
    images, labels = read_records(Path(folder) / spec.archive, spec, split)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # N x 3 x 32 x 32
    return ImageDataset(spec.name, x, torch.from_numpy(labels), list(spec.class_names), spec.mean, spec.std,
                        spec.hflip, split)
