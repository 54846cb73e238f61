"""Datasets and batched augmentation."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.transforms import normalize, random_crop, random_hflip
from cnnlab.errors import DataError, UnknownNameError


def test_bundled_sample_loads_offline(isolated_data_root):
    train, test = load_dataset("fashion-mnist-mini", "train"), load_dataset("fashion-mnist-mini", "test")
    assert train.images.shape == (3000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.bincount(train.labels).tolist() == [300] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert train.class_names[9] == "Ankle boot"


def test_fashion_mnist_and_mnist_sample(shared_data):
    train = load_dataset("fashion-mnist", "train", shared_data)
    assert len(train) == 60000 and train.hflip
    # The stored normalisation constants are the training set's own statistics.
    x = train.images.float() / 255
    assert abs(x.mean().item() - train.mean[0]) < 1e-3 and abs(x.std().item() - train.std[0]) < 1e-3
    mnist_train, mnist_test = load_dataset("mnist-10k", "train", shared_data), load_dataset("mnist-10k", "test", shared_data)
    assert (len(mnist_train), len(mnist_test)) == (8000, 2000) and not mnist_train.hflip


def test_unknown_dataset_suggests(isolated_data_root):
    with pytest.raises(UnknownNameError, match="did you mean fashion-mnist"):
        load_dataset("fashion_mnist")


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls, value in (("dark", 30), ("light", 220)):
        (tmp_path / cls).mkdir()
        for i in range(5):
            arr = np.clip(rng.normal(value, 5, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    train, test = load_dataset(str(tmp_path), "train"), load_dataset(str(tmp_path), "test")
    assert len(train) + len(test) == 10 and len(test) == 2
    assert train.class_names == ["dark", "light"] and train.images.shape[1:] == (3, 20, 20)
    dark = train.images[train.labels == 0].float().mean()
    assert dark < 60  # the pixels are the files' pixels, labelled by folder


def test_image_folder_needs_classes(tmp_path):
    (tmp_path / "only").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "only" / "a.png")
    with pytest.raises(DataError, match="two class sub-folders"):
        load_dataset(str(tmp_path))


def test_random_crop_matches_per_image_crops():
    g = torch.Generator().manual_seed(3)
    batch = torch.randint(0, 256, (6, 2, 5, 7), dtype=torch.uint8, generator=g)
    out = random_crop(batch, 2, torch.Generator().manual_seed(11))
    # Recompute with the same random draws, one image at a time, the slow obvious way.
    g2 = torch.Generator().manual_seed(11)
    dy, dx = torch.randint(0, 5, (6,), generator=g2), torch.randint(0, 5, (6,), generator=g2)
    for i in range(6):
        padded = torch.zeros(2, 9, 11, dtype=torch.uint8)
        padded[:, 2:7, 2:9] = batch[i]
        assert torch.equal(out[i], padded[:, dy[i]:dy[i] + 5, dx[i]:dx[i] + 7])


def test_flip_and_determinism():
    batch = torch.arange(4 * 3 * 3, dtype=torch.uint8).view(4, 1, 3, 3)
    a = random_hflip(batch, 0.5, torch.Generator().manual_seed(1))
    b = random_hflip(batch, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    for i in range(4):
        assert torch.equal(a[i], batch[i]) or torch.equal(a[i], batch[i].flip(-1))
    assert torch.equal(random_hflip(batch, 1.0), batch.flip(-1))


def test_normalize():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert normalize(x, (0.5,), (0.25,)).flatten().tolist() == [-2.0, 2.0]
