"""Attacks on the data and checkpoint paths: FIFOs where images are expected, strips that would fit to
enormous intermediates, every Pillow mode, image folders with empty class folders, checkpoints with
NaN weights, a zero std or int8 weights, and gzip bombs in IDX form."""

from __future__ import annotations

import ast
import gzip
import json
import os
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import cnnlab
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.data.idx import read_idx
from cnnlab.data.images import ImageTooLarge, fit_box, fit_to_size, image_to_uint8, open_image
from cnnlab.errors import CheckpointError, CnnlabWarning, DataError
from cnnlab.train.checkpoint import checkpoint_dir, load_checkpoint, save_checkpoint

DATA_PACKAGE = Path(cnnlab.__file__).parent / "data"


# --- FIFOs -------------------------------------------------------------------------------------------

class FifoWatch:
    """Notices (and ends) any attempt to read a FIFO: it opens the write end whenever a reader waits,
    then closes it, so a blocked reader gets end-of-file instead of hanging the test run forever."""

    def __init__(self, path: Path):
        self.path, self.readers, self.stop = path, 0, threading.Event()
        os.mkfifo(path)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)  # succeeds only while a reader waits
            except OSError:
                time.sleep(0.02)
                continue
            self.readers += 1
            os.close(fd)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_predict_refuses_a_fifo_without_opening_it(tmp_path, capsys):
    from test_serve_units import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "run")
    with FifoWatch(tmp_path / "f.png") as watch:
        code = main(["predict", str(ckpt), str(tmp_path / "f.png")])
        time.sleep(0.1)
    err = capsys.readouterr().err.strip().splitlines()
    assert watch.readers == 0  # nobody ever waited on the pipe
    assert code == 1 and len(err) == 1 and "f.png' is a FIFO (named pipe); only regular files are read" in err[0], err
    with pytest.raises(DataError, match="is a folder"):
        open_image(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_in_an_image_folder_is_skipped_with_a_warning(tmp_path):
    for name, value in (("dark", 20), ("light", 230)):
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.new("L", (28, 28), value + i).save(tmp_path / name / f"{i}.png")
    with FifoWatch(tmp_path / "dark" / "stuck.png") as watch, pytest.warns(CnnlabWarning, match="not a regular file"):
        data = load_dataset(str(tmp_path), "train")
    assert watch.readers == 0 and len(data) + len(load_dataset(str(tmp_path), "test")) == 8
    with FifoWatch(tmp_path / "labels-idx1-ubyte") as watch, pytest.raises(DataError, match="FIFO"):
        read_idx(tmp_path / "labels-idx1-ubyte")
    assert watch.readers == 0


# --- image geometry and modes ------------------------------------------------------------------------

def test_fitting_resamples_only_the_kept_region_and_matches_resize_then_crop():
    rng = np.random.default_rng(0)
    for width, height, out in [(90, 90, 28), (100, 40, 28), (37, 203, 28), (300, 200, 224), (20, 20, 28), (5, 9, 32)]:
        img = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
        scale = max(out / width, out / height)
        sw, sh = max(out, round(width * scale)), max(out, round(height * scale))
        left, top = (sw - out) // 2, (sh - out) // 2
        naive = np.asarray(img.resize((sw, sh), Image.BILINEAR).crop((left, top, left + out, top + out)), np.int16)
        ours = np.asarray(fit_to_size(img, out, out), np.int16)
        assert ours.shape == naive.shape and np.abs(ours - naive).max() <= 1, (width, height)
        assert fit_box(width, height, out, out)[0] >= 0


def test_a_strip_is_refused_and_never_resized_to_a_huge_intermediate(monkeypatch):
    strip = Image.new("L", (1_000_000, 1), 100)
    with pytest.raises(ImageTooLarge, match="sides differ by more than 32:1"):
        image_to_uint8(strip, (1, 28, 28))
    sizes = []
    real_resize = Image.Image.resize

    def watched_resize(self, size, *args, **kwargs):
        sizes.append(tuple(size))
        if size[0] * size[1] > 10 * 28 * 28:
            raise MemoryError(f"asked to resize to {size}")  # what 28 x 28,000,000 would cost, refused cheaply
        return real_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", watched_resize)
    out = image_to_uint8(strip, (1, 28, 28), max_aspect=None)  # even with the limit lifted
    assert sizes == [(28, 28)] and out.shape == (1, 28, 28) and int(out.float().mean().round()) == 100


def all_modes() -> list[Image.Image]:
    grey = np.add.outer(np.arange(28), np.arange(28)).astype(np.uint8) * 4
    rgb = Image.merge("RGB", [Image.fromarray(grey), Image.fromarray(255 - grey), Image.fromarray(grey // 2)])
    images = []
    for mode in Image.MODES:
        try:
            images.append(rgb.convert(mode))
        except ValueError:
            images.append(Image.new(mode, (28, 28)))
    images += [Image.fromarray(grey.astype(np.uint16) * 257).convert(m) for m in ("I;16", "I;16B", "I;16L")]
    images.append(Image.fromarray(grey.astype(np.float32) * np.float32("nan")))  # a float image of NaNs
    return images


def test_every_pillow_mode_is_converted_or_refused_in_one_line():
    converted = 0
    for img in all_modes():
        for size in ((1, 28, 28), (3, 32, 32)):
            try:
                out = image_to_uint8(img, size)
            except DataError as e:
                assert "\n" not in str(e) and ("mode" in str(e) or "NaN" in str(e)), (img.mode, e)
                continue
            assert out.dtype == torch.uint8 and tuple(out.shape) == size, img.mode
            converted += 1
    assert converted >= 2 * (len(Image.MODES) + 2)


def test_lab_is_converted_by_colour_not_refused():
    grey = np.linspace(0, 255, 28 * 28).reshape(28, 28).astype(np.uint8)
    srgb = Image.fromarray(grey).convert("RGB")
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    lab = ImageCms.applyTransform(srgb, to_lab)
    assert lab.mode == "LAB"
    back = image_to_uint8(lab, (1, 28, 28))[0].numpy().astype(int)
    assert np.abs(back - grey).max() <= 3  # the grey levels survive the round trip through L*a*b*
    la = Image.merge("La", [Image.fromarray(grey), Image.new("L", (28, 28), 255)])
    assert np.array_equal(image_to_uint8(la, (1, 28, 28))[0].numpy(), grey)  # premultiplied grey + alpha


def test_data_modules_import_no_cycle_and_nothing_outside_data():
    """No import cycle among the data modules at import time (module-level imports; an import inside a
    function runs on use), and none of them reaches outside data/ but for errors and io (at any level)."""
    graph = {}
    for path in DATA_PACKAGE.glob("*.py"):
        deps = set()
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body if isinstance(n, ast.ImportFrom)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and id(node) not in top:
                assert node.level == 1 or node.module.split(".")[0] in ("errors", "io"), (path.name, node.module)
            elif isinstance(node, ast.ImportFrom) and node.level:
                target = (node.module or "").split(".")[0] if node.level == 1 else f"..{node.module}"
                if node.level == 1 and node.module:
                    deps.add(target)
                elif node.level == 1:
                    deps.update(a.name for a in node.names)
                else:
                    assert node.module.split(".")[0] in ("errors", "io"), (path.name, node.module)
        graph[path.stem] = {d for d in deps if (DATA_PACKAGE / f"{d}.py").exists()}

    def visit(name, stack):
        assert name not in stack, f"import cycle: {' -> '.join(stack + [name])}"
        for dep in graph[name]:
            visit(dep, stack + [name])

    for name in graph:
        visit(name, [])
    assert "images" in graph and "predict" not in str(graph)


# --- image folders -----------------------------------------------------------------------------------

def make_folder(root: Path, layout: dict[str, dict[str, int]], side: int = 28) -> None:
    """``layout``: split (or "" for the plain layout) -> class -> how many images (0: an empty folder)."""
    value = {"a": 30, "b": 130, "c": 230}
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("L", (side, side), value[name] + i).save(folder / f"{i}.png")


def test_classes_are_matched_by_name_between_splits(tmp_path):
    make_folder(tmp_path, {"train": {"a": 6, "b": 6, "c": 6}, "test": {"a": 0, "b": 3, "c": 3}})
    with pytest.warns(CnnlabWarning, match="class 'a' has no images in test/"):
        test = load_dataset(str(tmp_path), "test")
    train = load_dataset(str(tmp_path), "train")
    assert train.class_names == test.class_names == ["a", "b", "c"]
    # Each test image keeps the label of its folder's name: b is class 1 in both splits, not class 0.
    brightness = test.images.float().mean((1, 2, 3))
    assert test.labels[brightness < 180].tolist() == [1, 1, 1] and test.labels[brightness > 180].tolist() == [2, 2, 2]


def test_empty_or_untrainable_classes_are_refused(tmp_path):
    make_folder(tmp_path / "flat", {"": {"a": 5, "b": 5, "c": 0}})
    with pytest.raises(DataError, match="class folder 'c' holds no images"):
        load_dataset(str(tmp_path / "flat"), "train")
    make_folder(tmp_path / "split", {"train": {"a": 3, "b": 3}, "test": {"a": 2, "b": 2, "c": 2}})
    with pytest.raises(DataError, match="class 'c' has no images in train/"):
        load_dataset(str(tmp_path / "split"), "test")


def test_splits_get_one_input_size(tmp_path):
    make_folder(tmp_path, {"train": {"a": 2, "b": 2}}, side=20)
    make_folder(tmp_path, {"test": {"a": 2, "b": 2}}, side=24)
    assert load_dataset(str(tmp_path), "train").input_size == load_dataset(str(tmp_path), "test").input_size


def test_a_run_on_a_folder_with_an_empty_test_class_evaluates_with_every_class(tmp_path, capsys):
    make_folder(tmp_path / "data", {"train": {"a": 8, "b": 8, "c": 8}, "test": {"a": 0, "b": 4, "c": 4}})
    out = tmp_path / "run"
    code = main(["train", "lenet5", "--data", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "8",
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "warning: " in err and "class 'a' has no images in test/" in err
    assert main(["eval", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes"] == ["a", "b", "c"] and len(result["confusion"]) == 3
    assert [sum(row) for row in result["confusion"]] == [0, 4, 4]  # true labels by folder name


def test_eval_on_a_dataset_with_other_classes_is_refused(tmp_path, capsys):
    from test_serve_units import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "run")  # Fashion-MNIST's ten classes
    make_folder(tmp_path / "data", {"train": {"a": 2, "b": 2}, "test": {"a": 2, "b": 2}})
    assert main(["eval", str(ckpt), "--data", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not have the model's classes: class 0 is 'a' there and 'T-shirt/top'" in err[0]


# --- checkpoints that would load and then lie ---------------------------------------------------------

META = {"arch": "lenet5", "arch_kwargs": {}, "input_size": [1, 28, 28], "class_names": list("abcdefghij"),
        "mean": [0.5], "std": [0.25]}


@pytest.mark.parametrize("spoil, message", [
    ("nan", "NaN or infinite weights"),
    ("int8", "stores .* as int8, the model keeps float32"),
    ("std0", "std must be positive"),
    ("std_text", "'std' must be 1 finite numbers"),
])
def test_checkpoints_that_would_give_nonsense_are_refused(tmp_path, capsys, spoil, message):
    model = cnnlab.create_model("lenet5")
    meta = dict(META)
    if spoil == "nan":
        with torch.no_grad():
            model.features[0].weight[0, 0, 0, 0] = float("nan")
    save_checkpoint(tmp_path, model, meta)  # a save refuses such metadata itself: spoil the file afterwards
    if spoil in ("std0", "std_text"):
        path = checkpoint_dir(tmp_path) / "meta.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "std": [0] if spoil == "std0" else ["0.3"]}))
    if spoil == "int8":
        from safetensors.torch import load_file, save_file

        weights = checkpoint_dir(tmp_path) / "model.safetensors"
        state = {k: v.to(torch.int8) if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
        stamp = json.loads((checkpoint_dir(tmp_path) / "meta.json").read_text())["stamp"]
        save_file(state, str(weights), metadata={"stamp": stamp, "format": "cnnlab-checkpoint"})
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path)
    assert main(["predict", str(tmp_path), str(tmp_path / "missing.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and __import__("re").search(message, err[0]), err


# --- gzip bombs in IDX form --------------------------------------------------------------------------

def gzip_of(header: bytes, zeros: int) -> bytes:
    """gzip of ``header`` followed by ``zeros`` zero bytes, built a megabyte at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(header)]
    block = bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(bytes(zeros & ((1 << 20) - 1))))
    parts.append(compressor.flush())
    return b"".join(parts)


def idx_header(dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize("dims, zeros, message", [
    ((10, 28, 28), 64 << 20, "trailing bytes"),  # a small declared size, then 64 MB of zeros
    ((80_000, 28, 28), 1 << 16, "more than a .*-byte gzip file can hold"),  # 63 MB declared, 64 KB inside
    ((2_678_000, 28, 28), 2 << 20, "more than the 1,073,741,824 allowed"),  # 2.1 GB declared in 2 KB
])
def test_gzip_bombs_are_refused_before_they_expand(tmp_path, dims, zeros, message):
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    path.write_bytes(gzip_of(idx_header(dims), zeros))
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=message):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # a few buffers, not the expanded payload


def test_real_sized_gzip_idx_still_reads(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (500, 28, 28), dtype=np.uint8)
    from cnnlab.data.idx import encode_idx

    (tmp_path / "x.gz").write_bytes(gzip.compress(encode_idx(images)))
    assert np.array_equal(read_idx(tmp_path / "x.gz"), images)
    signed = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    (tmp_path / "s.gz").write_bytes(gzip.compress(encode_idx(signed)) + gzip.compress(b""))  # two gzip members
    assert np.array_equal(read_idx(tmp_path / "s.gz"), signed)
