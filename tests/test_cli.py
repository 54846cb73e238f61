"""The command line end to end on a small subset, and its one-line errors."""

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.idx import write_idx


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "lenet"
    code = main(["train", "lenet5_modern", "--data", "fashion-mnist-mini", "--epochs", "2", "--limit-train", "1000",
                 "--limit-test", "300", "--batch-size", "100", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_eval_predict(trained_run, capsys, tmp_path):
    history = [json.loads(line) for line in (trained_run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    result = run_json(capsys, ["eval", str(trained_run), "--limit", "300"])
    assert result["images"] == 300 and result["top1"] == pytest.approx(history[-1]["test_acc"])
    assert sum(map(sum, result["confusion"])) == 300
    # A real test image, saved as an 8-bit PNG and as an RGB JPEG: predict must convert both.
    from cnnlab.data import load_dataset

    test = load_dataset("fashion-mnist-mini", "test")
    Image.fromarray(test.images[0, 0].numpy()).save(tmp_path / "a.png")
    Image.fromarray(test.images[0, 0].numpy()).convert("RGB").resize((90, 90)).save(tmp_path / "b.jpg")
    out = run_json(capsys, ["predict", str(trained_run), str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "--top-k", "3"])
    assert [len(r["top"]) for r in out] == [3, 3]
    scores = [t["score"] for t in out[0]["top"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) <= 1.0 + 1e-6


def test_list_and_data(capsys, shared_data):
    listing = run_json(capsys, ["list"])
    lenet = next(m for m in listing["models"] if m["name"] == "lenet5")
    # LeNet-5 as in the decks: (5*5*1+1)*6 + (5*5*6+1)*16 + (400+1)*120 + (120+1)*84 + (84+1)*10
    assert lenet["params"] == 156 + 2416 + 48120 + 10164 + 850
    info = run_json(capsys, ["data", "info", "mnist-10k", "--data-dir", str(shared_data)])
    assert info["train"]["size"] == 8000 and info["test"]["size"] == 2000


def cli_error(argv, tmp_path):
    """Run the real console entry point; return (exit code, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "cnnlab.cli", *argv], capture_output=True, text=True,
                          env={"CNNLAB_DATA": str(tmp_path / "empty-root"), "CNNLAB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, timeout=120)
    return proc.returncode, proc.stderr


def test_errors_are_one_line_without_traceback(trained_run, tmp_path):
    bad_idx = tmp_path / "idxdata"
    bad_idx.mkdir()
    write_idx(bad_idx / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    write_idx(bad_idx / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    write_idx(bad_idx / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    data = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04\x01\x02")  # promises 4 labels, holds 2
    (bad_idx / "train-labels-idx1-ubyte.gz").write_bytes(data)
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is text, not a picture")
    cases = [
        (["train", "resnet_18"], "unknown model 'resnet_18'"),
        (["train", "lenet5", "--data", "mnist", "--epochs", "1"], "mnist: missing train-images-idx3-ubyte.gz.*downloads are off"),
        (["train", "lenet5", "--data", str(bad_idx), "--epochs", "1"], "truncated"),
        (["predict", str(trained_run), str(not_image)], "not an image"),
        (["train", "lenet5", "--lr", "fast"], "lr expects float"),
    ]
    for argv, message in cases:
        code, err = cli_error(argv, tmp_path)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and "Traceback" not in err, (argv, err)
        assert __import__("re").search(message, lines[0]), (argv, lines[0])


def test_checkpoint_of_another_architecture(trained_run, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    meta_file = other / "last" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["arch"] = "lenet5"
    meta_file.write_text(json.dumps(meta))
    code, err = cli_error(["eval", str(other)], tmp_path)
    assert code == 1 and "does not fit the model" in err and len(err.strip().splitlines()) == 1


def test_list_matches_parts_of_names_and_says_when_nothing_does(capsys):
    listing = run_json(capsys, ["list", "res"])
    names = {m["name"] for m in listing["models"]}
    assert {"resnet18", "se_resnet50", "resnet20"} <= names and "densenet121" not in names
    tasks = {m["name"]: m["task"] for m in listing["models"]}
    assert all("res" in n for n in tasks) and listing["datasets"] == []
    assert tasks["resnet18"] == "classify" and tasks["fcn8s_resnet18"] == "segment"  # each says its task
    assert {d["name"] for d in run_json(capsys, ["list", "cifar"])["datasets"]} == {"cifar10", "cifar100"}
    assert main(["list", "zzz"]) == 1
    assert "no model or dataset matches 'zzz'" in capsys.readouterr().out
