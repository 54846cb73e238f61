"""Typed checkpoint metadata: damaged or hostile meta.json and weights are refused in one line, before
anything large is allocated, by every verb that reads a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import cnnlab
from cnnlab.cli import main
from cnnlab.errors import CheckpointError
from cnnlab.train.checkpoint import MODEL_FILE, META_FILE, checkpoint_dir, load_checkpoint, read_meta, save_checkpoint
from cnnlab.train.meta import CheckpointMeta, Preprocessing


@pytest.fixture()
def run(tmp_path):
    torch.manual_seed(0)
    model = cnnlab.create_model("lenet5", num_classes=3)
    meta = CheckpointMeta(arch="lenet5", arch_kwargs={"num_classes": 3, "in_channels": 1, "image_size": 28},
                          class_names=["a", "b", "c"], preprocessing=Preprocessing((1, 28, 28), (0.5,), (0.25,)),
                          dataset="fashion-mnist-mini")
    folder = save_checkpoint(tmp_path / "run", model, meta)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "x.png")
    return folder


def edit_meta(folder, change):
    path = checkpoint_dir(folder) / META_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def one_line_error(capsys, *argv) -> str:
    assert main(list(argv)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_round_trip_and_unknown_fields_are_kept(run):
    edit_meta(run, lambda d: d.update(class_roots=["x/a", "x/b", "x/c"], future_field={"k": 1}))
    meta = read_meta(run)
    assert meta.task == "classify" and meta.class_names == ["a", "b", "c"] and meta.input_size == (1, 28, 28)
    assert meta.preprocessing.mean == (0.5,) and meta.extra == {"class_roots": ["x/a", "x/b", "x/c"],
                                                                "future_field": {"k": 1}}
    assert CheckpointMeta.from_dict(meta.to_dict()).to_dict() == meta.to_dict()


def test_a_file_written_before_tasks_existed_still_loads(run):
    edit_meta(run, lambda d: [d.pop(k) for k in ("task", "invert_photos", "num_classes")])
    checkpoint = load_checkpoint(run)
    assert checkpoint.task == "classify" and checkpoint.class_names == ["a", "b", "c"]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("arch"), "lacks 'arch'"),
    (lambda d: d.update(input_size="1x28x28"), "'input_size' must be a list"),
    (lambda d: d.update(input_size=[1, 28]), "three integers"),
    (lambda d: d.update(input_size=[1, 28, 10**9]), "out of range"),
    (lambda d: d.update(class_names="abc"), "class_names must be a list of strings"),
    (lambda d: d.update(class_names=["a", "b"], num_classes=2), "3 outputs but class_names names 2"),
    (lambda d: d.update(std=[0.0]), "std must be positive"),
    (lambda d: d.update(mean=[0.1, 0.2]), "'mean' must be 1 finite numbers"),
    (lambda d: d.update(epoch="three"), "'epoch' must be an int"),
    (lambda d: d["arch_kwargs"].update(colour="blue"), "do not build a lenet5"),
    (lambda d: d["arch_kwargs"].update(num_classes="ten"), "do not build a lenet5"),
    (lambda d: d["arch_kwargs"].update(image_size=10**6), "parameters, more than"),
    (lambda d: d["arch_kwargs"].update(image_size=64), "cannot take 1x28x28 inputs"),
    (lambda d: d["arch_kwargs"].update(nested=[1, 2]), "arch_kwargs.nested must be"),
    (lambda d: d.update(arch="lenet6"), "unknown model 'lenet6'"),
])
def test_bad_metadata_is_one_line_for_every_verb(run, capsys, tmp_path, change, message):
    edit_meta(run, change)
    for argv in (["eval", str(run)], ["predict", str(run), str(tmp_path / "x.png")], ["summary", str(run)],
                 ["train", "--resume", str(run)]):
        err = one_line_error(capsys, *argv)
        assert message in err or "training state" in err, (argv, err)
    with pytest.raises(CheckpointError if "unknown model" not in message else Exception, match=message):
        load_checkpoint(run)


def test_deeply_nested_json_is_refused_not_a_recursion_error(run, capsys):
    (checkpoint_dir(run) / META_FILE).write_text("[" * 100_000 + "]" * 100_000)
    assert "not valid JSON" in one_line_error(capsys, "eval", str(run))


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.__setitem__("features.0.weight", torch.full_like(t["features.0.weight"], float("nan"))), "NaN"),
    (lambda t: t.__setitem__("features.0.weight", t["features.0.weight"].to(torch.int8)), "int8"),
])
def test_damaged_weights_are_refused(run, capsys, damage, message):
    tensors = load_file(checkpoint_dir(run) / MODEL_FILE)
    damage(tensors)
    stamp = read_meta(run).stamp
    save_file(tensors, checkpoint_dir(run) / MODEL_FILE, metadata={"stamp": stamp, "format": "cnnlab-checkpoint"})
    assert message in one_line_error(capsys, "eval", str(run))


def _idx_folder(root, train_labels, test_labels):
    from cnnlab.data import write_idx

    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, labels in (("train", train_labels), ("t10k", test_labels)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (len(labels), 12, 12), dtype=np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.asarray(labels, dtype=np.uint8))
    return root


def test_training_refuses_labels_out_of_range_before_any_epoch(tmp_path, capsys):
    data = _idx_folder(tmp_path / "idx", [0, 1, 2] * 10, [0, 1, 7] * 4)
    err = one_line_error(capsys, "train", "lenet5", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "r"))
    assert "labels run from 0 to 7, but there are 3 classes" in err
    assert not (tmp_path / "r").exists()  # nothing half-made


def test_a_test_split_lacking_the_last_classes_trains_and_evaluates(tmp_path, capsys):
    data = _idx_folder(tmp_path / "idx", [0, 1, 2] * 10, [0, 1] * 6)
    assert main(["train", "lenet5", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "r"),
                 "--batch-size", "10", "--quiet"]) == 0
    assert main(["eval", str(tmp_path / "r"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes"] == ["0", "1", "2"] and len(result["confusion"]) == 3 and result["images"] == 12
