"""Checkpoints: atomic, consistent, never unpickled, and refusing what does not fit."""

import json
import os

import pytest
import torch

import cnnlab
from cnnlab.errors import CheckpointError
from cnnlab.train.checkpoint import (checkpoint_dir, flatten_state, load_checkpoint, load_train_state,
                                     save_checkpoint, unflatten_state)

META = {"arch": "lenet5", "arch_kwargs": {"num_classes": 10}, "input_size": [1, 28, 28], "class_names": list("abcdefghij")}


def test_round_trip_with_optimizer_state(tmp_path):
    model = cnnlab.create_model("lenet5")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path, model, META, {"optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "x": (1, 2.5)})
    ckpt = load_checkpoint(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ckpt.model.state_dict().values()))
    state = load_train_state(tmp_path)
    restored = torch.optim.SGD(ckpt.model.parameters(), lr=1.0, momentum=0.0)
    restored.load_state_dict(state["optimizer"])
    assert restored.param_groups[0]["lr"] == 0.1 and restored.param_groups[0]["momentum"] == 0.9
    bufs = [s["momentum_buffer"] for s in restored.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(bufs, [s["momentum_buffer"] for s in opt.state.values()]))
    assert state["x"] == (1, 2.5) and torch.equal(state["rng"], torch.get_rng_state()) is not None


def test_flatten_refuses_arbitrary_objects():
    with pytest.raises(TypeError, match="without pickling"):
        flatten_state({"f": object()})
    tensors, tree = flatten_state({1: [torch.ones(2)], "inf": float("inf")})
    assert unflatten_state(json.loads(json.dumps(tree)), tensors)["inf"] == float("inf")


def test_stale_temporaries_are_cleaned(tmp_path):
    stale = tmp_path / ".history.jsonl.tmp-abc"
    stale.write_bytes(b"half a file")
    os.utime(stale, (1, 1))  # left long ago by a writer that was killed (nobody holds its lock)
    save_checkpoint(tmp_path, cnnlab.create_model("lenet5"), META)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == ["meta.json", "model.safetensors"]


def test_truncated_weights(tmp_path):
    save_checkpoint(tmp_path, cnnlab.create_model("lenet5"), META)
    weights = checkpoint_dir(tmp_path) / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path)


def test_mixed_saves_are_detected(tmp_path):
    model = cnnlab.create_model("lenet5")
    save_checkpoint(tmp_path / "a", model, META)
    save_checkpoint(tmp_path / "b", model, META)
    os.replace(tmp_path / "a" / "last" / "model.safetensors", tmp_path / "b" / "last" / "model.safetensors")
    with pytest.raises(CheckpointError, match="different saves"):
        load_checkpoint(tmp_path / "b")


def test_other_architecture_is_refused(tmp_path):
    save_checkpoint(tmp_path, cnnlab.create_model("lenet5"), META)
    with pytest.raises(CheckpointError, match="holds a lenet5, not a lenet5_modern"):
        load_checkpoint(tmp_path, arch="lenet5_modern")
    meta_file = checkpoint_dir(tmp_path) / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["arch"] = "lenet5_modern"  # weights of one network, metadata of another
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_checkpoint(tmp_path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not a cnnlab checkpoint"):
        load_checkpoint(tmp_path)


def test_no_loading_path_unpickles():
    import pathlib
    import re

    source = pathlib.Path(cnnlab.__file__).parent
    for path in source.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"pickle\.loads?\(|weights_only\s*=\s*False", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
