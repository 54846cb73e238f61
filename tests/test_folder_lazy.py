"""Image folders: one input side chosen from the images (or --image-size), and lazy reading of large folders."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import folder as folder_module
from cnnlab.data import load_dataset
from cnnlab.data.folder import load_image_folder
from cnnlab.data.lazy import LazyImages
from cnnlab.errors import CnnlabWarning, DataError

# (width, height) of the five images of each class: short sides 18, 30, 24, 40, 26 -> median 26 -> 24 or 28
SIZES = [(18, 30), (30, 44), (36, 24), (40, 52), (26, 26)]


def make_folder(root, sizes=SIZES):
    rng = np.random.default_rng(0)
    for cls, value in (("dark", 40), ("light", 210)):
        (root / "train" / cls).mkdir(parents=True)
        (root / "test" / cls).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes * 2):
            arr = np.clip(rng.normal(value, 12, (h, w)), 0, 255).astype(np.uint8)
            split = "test" if i % 5 == 0 else "train"
            Image.fromarray(arr).save(root / split / cls / f"{i}.png")
    return root


def test_mixed_sizes_get_the_median_short_side_with_a_warning(tmp_path):
    make_folder(tmp_path)
    shorts = sorted(min(w, h) for w, h in SIZES * 4)  # both classes, both copies
    expected = 4 * round(shorts[len(shorts) // 2] / 4)  # 26 -> 24 (round half to even), a multiple of 4
    with pytest.warns(CnnlabWarning, match=f"fitted to {expected} x {expected}.*--image-size"):
        data = load_dataset(str(tmp_path), "train")
    assert data.input_size == (1, expected, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit side is not warned about
        assert load_dataset(str(tmp_path), "train", image_size=20).input_size == (1, 20, 20)
    with pytest.raises(DataError, match="--image-size must be between"):
        load_dataset(str(tmp_path), "train", image_size=3)


def test_lazy_reading_gives_exactly_the_in_memory_tensors(tmp_path):
    make_folder(tmp_path)
    eager = load_image_folder(tmp_path, "train", image_size=20, lazy=False)
    lazy = load_image_folder(tmp_path, "train", image_size=20, lazy=True)
    assert isinstance(lazy.images, LazyImages) and isinstance(eager.images, torch.Tensor)
    assert lazy.images.shape == eager.images.shape and len(lazy) == len(eager)
    assert torch.equal(lazy.images[:], eager.images) and torch.equal(lazy.labels, eager.labels)
    assert (lazy.mean, lazy.std) == (eager.mean, eager.std)  # few images: the sample is all of them
    pick = torch.tensor([5, 0, 3])
    assert torch.equal(lazy.images[pick], eager.images[pick]) and torch.equal(lazy.images[2], eager.images[2])
    part = lazy.subset(pick)
    assert isinstance(part.images, LazyImages) and len(part.images.files) == 3  # still undecoded
    assert torch.equal(part.images[:], eager.images[pick])


def test_a_folder_too_large_for_memory_is_read_lazily(tmp_path, monkeypatch):
    make_folder(tmp_path)
    monkeypatch.setattr(folder_module, "IN_MEMORY_BYTES", 20 * 20 * 7)  # 8 training images of 400 bytes exceed it
    assert isinstance(load_image_folder(tmp_path, "train", image_size=20).images, LazyImages)
    assert isinstance(load_image_folder(tmp_path, "test", image_size=20).images, torch.Tensor)  # 2 images fit


def test_train_with_image_size_then_eval_fits_the_folder_to_the_model(tmp_path, capsys, monkeypatch, one_thread):
    data = make_folder(tmp_path / "shapes")
    monkeypatch.setattr(folder_module, "IN_MEMORY_BYTES", 0)  # every split read lazily, as a huge folder would be
    out = tmp_path / "run"
    args = ["train", "lenet5_modern", "--data", str(data), "--image-size", "28", "--epochs", "2", "--batch-size", "4",
            "--lr", "0.05", "--out", str(out), "--quiet", "--json", "--threads", "1"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    meta = json.loads((out / "last" / "meta.json").read_text())
    assert meta["input_size"] == [1, 28, 28]
    assert main(["eval", str(out), "--data", str(data), "--json"]) == 0  # without --image-size eval fits to 28
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["top1"] == pytest.approx(result["test_acc"])  # the same images, fitted the same way
    assert evaluated["top1"] > 0.5  # dark against light: better than chance after two epochs
