"""``cnnlab viz``: every subcommand on checkpoints of LeNet, VGG, GoogLeNet and ResNet (28x28 forms)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import main
from cnnlab.data.datasets import FASHION_CLASSES
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.viz.features import feature_maps
from cnnlab.viz.stages import feature_stages

torch.set_num_threads(1)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# one network of each family the visualisations must handle; a family not yet in the zoo is skipped
FAMILIES = {"lenet": ["lenet5_modern"], "vgg": ["vgg11", "vgg11_bn", "vgg*"], "googlenet": ["googlenet", "googlenet*"],
            "resnet": ["resnet18", "resnet*"]}


def _pick(patterns: list[str]) -> str | None:
    for pattern in patterns:
        found = cnnlab.list_models(pattern, task="classify")
        if found:
            return found[0]
    return None


def _build(arch: str) -> torch.nn.Module:
    builder = cnnlab.model_info(arch).builder
    accepted = inspect.signature(builder).parameters
    kwargs = {"num_classes": 10}
    for key, value in (("small_input", True), ("in_channels", 1)):
        if key in accepted:
            kwargs[key] = value
    return cnnlab.create_model(arch, **kwargs), kwargs


@pytest.fixture(scope="module", params=list(FAMILIES))
def checkpoint(request, tmp_path_factory):
    arch = _pick(FAMILIES[request.param])
    if arch is None:
        pytest.skip(f"no {request.param} model in the zoo yet")
    torch.manual_seed(0)
    model, kwargs = _build(arch)
    # a few steps on random data, so batch-norm statistics and weights are not the initial ones
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        out = model(torch.randn(8, 1, 28, 28))
        out = out if isinstance(out, torch.Tensor) else out[0]  # GoogLeNet adds its auxiliary heads in training
        loss = torch.nn.functional.cross_entropy(out, torch.randint(0, 10, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    folder = tmp_path_factory.mktemp(arch)
    save_checkpoint(folder, model, {"arch": arch, "arch_kwargs": kwargs, "class_names": FASHION_CLASSES,
                                    "input_size": [1, 28, 28], "mean": [0.286], "std": [0.353],
                                    "dataset": "fashion-mnist-mini"})
    return folder, model


def _viz(capsys, *argv: str):
    code = main(["viz", *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    written = json.loads(out)
    for item in written:
        with open(item["path"], "rb") as f:
            assert f.read(8) == PNG_MAGIC
    return written


def _size(path: str) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def test_filters(checkpoint, capsys, tmp_path):
    folder, model = checkpoint
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    (item,) = _viz(capsys, "filters", str(folder), "--out", str(tmp_path))
    assert item["shape"] == list(first.weight.shape)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if len(convs) <= 4:  # one picture per convolution: kept to the shallowest network for time
        everything = _viz(capsys, "filters", str(folder), "--all", "--out", str(tmp_path))
        assert [tuple(item["shape"]) for item in everything] == [tuple(c.weight.shape) for c in convs]


def test_features_shapes_match_pytorch(checkpoint, capsys, tmp_path):
    folder, model = checkpoint
    (item,) = _viz(capsys, "features", str(folder), "--index", "3", "--out", str(tmp_path))
    x = torch.randn(1, 1, 28, 28)
    assert [s["shape"] for s in item["stages"]] == [list(m.shape[1:]) for _, m in feature_maps(model, x) if m.dim() == 4]
    with torch.no_grad():
        assert item["stages"][-1]["shape"] == list(model.forward_features(x).shape[1:])


def test_cam_on_a_file_and_for_a_named_class(checkpoint, capsys, tmp_path):
    folder, model = checkpoint
    photo = tmp_path / "photo.png"
    Image.fromarray((np.arange(40 * 60) % 251).astype(np.uint8).reshape(40, 60)).save(photo)
    (item,) = _viz(capsys, "cam", str(folder), str(photo), "--class", "Bag", "--out", str(tmp_path))
    assert item["class"] == "Bag" and item["class_index"] == 8
    assert item["target_layer"] in [s.name for s in feature_stages(model)]
    first = item["path"]
    (item,) = _viz(capsys, "cam", str(folder), "--index", "0", "--out", str(tmp_path))
    assert item["class"] in FASHION_CLASSES
    # each picture is named after its image (and class), so the second did not overwrite the first
    assert "photo" in Path(first).name and "Bag" in Path(first).name and "test0" in Path(item["path"]).name
    assert Path(first).is_file() and first != item["path"]
    width, height = _size(item["path"])
    assert width > 2 * height  # four panels side by side


def test_activation(checkpoint, capsys, tmp_path):
    folder, model = checkpoint
    stage = feature_stages(model)[0].name
    (item,) = _viz(capsys, "activation", str(folder), "--layer", stage, "--channel", "1", "--top", "4",
                   "--limit", "200", "--steps", "5", "--out", str(tmp_path))
    scores = [t["score"] for t in item["top"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)


def test_confusion_and_embed(checkpoint, capsys, tmp_path):
    folder, model = checkpoint
    confusion, mistakes = _viz(capsys, "confusion", str(folder), "--limit", "150", "--out", str(tmp_path))
    matrix = np.array(confusion["matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 150
    assert confusion["accuracy"] == pytest.approx(np.trace(matrix) / 150)
    assert len(mistakes["indices"]) == min(24, 150 - np.trace(matrix))
    (embed,) = _viz(capsys, "embed", str(folder), "--limit", "150", "--out", str(tmp_path))
    last = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
            and not n.startswith("aux")][-1]  # the output layer, not an auxiliary head's
    assert embed["dimensions"] == last.in_features and embed["images"] == 150


def test_kernels_on_a_sample_and_on_a_file(capsys, tmp_path):
    (item,) = _viz(capsys, "kernels", "--photo", "astronaut", "--size", "96", "--out", str(tmp_path))
    assert "emboss" in item["kernels"] and "edge8" in item["kernels"]
    photo = tmp_path / "p.png"
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))).save(photo)
    (item,) = _viz(capsys, "kernels", str(photo), "--kernels", "vertical,sobel_x", "--out", str(tmp_path))
    assert item["kernels"] == ["vertical", "sobel_x"]


def test_curves_overlay_runs(capsys, tmp_path):
    for name, acc in (("a", 0.8), ("b", 0.9)):
        run = tmp_path / name
        run.mkdir()
        (run / "history.jsonl").write_text("".join(json.dumps(
            {"epoch": e, "train_loss": 1 / e, "train_acc": acc, "test_loss": 1.1 / e, "test_acc": acc - 0.05,
             "lr": 0.1, "seconds": e}) + "\n" for e in (1, 2)))
    (item,) = _viz(capsys, "curves", str(tmp_path / "a"), str(tmp_path / "b" / "history.jsonl"),
                   "--out", str(tmp_path))
    assert item["runs"] == ["a", "b"]


@pytest.mark.parametrize("argv, message", [
    (["filters", "no/such/checkpoint"], "does not exist"),
    (["kernels", "--kernels", "embos"], "did you mean emboss"),
    (["kernels", "missing.png"], "does not exist"),
    (["curves", "no-run-here"], "no training history"),
])
def test_mistakes_give_one_line_errors(capsys, tmp_path, argv, message):
    assert main(["viz", *argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_layer_and_class_on_a_checkpoint(capsys, tmp_path):
    model = cnnlab.create_model("lenet5")
    save_checkpoint(tmp_path / "ck", model, {"arch": "lenet5", "arch_kwargs": {}, "class_names": FASHION_CLASSES,
                                             "input_size": [1, 28, 28], "mean": [0.286], "std": [0.353]})
    for argv, message in ((["filters", str(tmp_path / "ck"), "--layer", "conv9"], "unknown convolution"),
                          (["cam", str(tmp_path / "ck"), "--class", "Spaceship"], "unknown class"),
                          (["confusion", str(tmp_path / "ck")], "pass --data")):
        assert main(["viz", *argv, "--out", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
