"""Training LeNet-5 with NumPy alone on the MNIST sample, the IDX reader, and the reference CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import DataError
from cnnlab.reference.idx import read_idx
from cnnlab.reference.threads import blas_threads, set_blas_threads
from cnnlab.reference.train import TrainConfig, load_idx_pair, random_shift, split, train
from cnnlab.registry import create_model

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-10k"
if not MNIST.is_dir():
    MNIST = Path("/work/shared/data/mnist-10k")
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason="the MNIST sample is not on this machine")


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    # Two cores shared by many processes: one BLAS thread is both fairer and faster here.
    previous = blas_threads()
    set_blas_threads(1)
    yield
    if previous:
        set_blas_threads(previous)


@needs_mnist
def test_idx_reader_agrees_with_a_plain_parse():
    raw_images = gzip.decompress((MNIST / "images-idx3-ubyte.gz").read_bytes())
    raw_labels = gzip.decompress((MNIST / "labels-idx1-ubyte.gz").read_bytes())
    images = read_idx(MNIST / "images-idx3-ubyte.gz")
    labels = read_idx(MNIST / "labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    np.testing.assert_array_equal(images.reshape(-1), np.frombuffer(raw_images, np.uint8, offset=16))
    np.testing.assert_array_equal(labels, np.frombuffer(raw_labels, np.uint8, offset=8))


def test_idx_reader_rejects_broken_files(tmp_path):
    with pytest.raises(DataError, match="no such"):
        read_idx(tmp_path / "missing.gz")
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="promises"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "notgz.gz").write_bytes(b"plain text")
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "notgz.gz")


def test_random_shift_translates_each_image_within_the_limit():
    images = np.arange(1, 3 * 36 + 1).reshape(3, 1, 6, 6)
    shifted = random_shift(images, 2, np.random.default_rng(0))
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for original, moved in zip(padded, shifted):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(original[:, dy:dy + 6, dx:dx + 6], moved)]
        assert len(matches) == 1


@needs_mnist
def test_decks_lenet5_learns_mnist_from_a_small_subset():
    images, labels = load_idx_pair(MNIST)
    (x_train, y_train), (x_test, y_test) = split(images, labels, 8000, 2000)
    config = TrainConfig(epochs=4, batch_size=16, lr=2e-3, schedule="step", lr_decay_every=0, shift=0)
    result = train(x_train[:2000], y_train[:2000], x_test[:500], y_test[:500], config)
    # Sigmoid LeNet-5 starts slowly (a plateau near chance, 10%); 500 steps on 2,000 digits lift it well past it.
    # The full 8,000-digit run of `cnnlab reference train` reaches 97.4%.
    assert result.test_accuracy >= 0.70
    assert result.history[-1]["loss"] < result.history[0]["loss"]


@needs_mnist
def test_cli_trains_and_saved_weights_give_torch_the_same_accuracy(tmp_path, capsys):
    weights = tmp_path / "lenet.safetensors"
    code = main(["reference", "train", "--data", str(MNIST), "--arch", "lenet5_modern", "--train-count", "1500",
                 "--test-count", "500", "--epochs", "2", "--save", str(weights), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["test_accuracy"] >= 0.88
    # The weights use torch's names: the torch twin loads them and classifies the test digits the same way.
    from safetensors.torch import load_file

    model = create_model("lenet5_modern")
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    images, labels = load_idx_pair(MNIST)
    x = (torch.tensor(images[-500:], dtype=torch.float32) / 255 - summary["mean"]) / summary["std"]
    with torch.no_grad():
        accuracy = (model(x).argmax(1).numpy() == labels[-500:]).mean()
    assert accuracy == pytest.approx(summary["test_accuracy"], abs=0.005)


@pytest.mark.parametrize("argv,message", [
    (["--data", "/nonexistent/folder"], "no such data folder"),
    (["--train-count", "9000", "--test-count", "2000"], "cannot take"),
    (["--epochs", "0"], "positive"),
])
def test_cli_train_errors_are_one_line(capsys, argv, message):
    if not MNIST.is_dir() and "--data" not in argv:
        pytest.skip("the MNIST sample is not on this machine")
    code = main(["reference", "train", *(["--data", str(MNIST)] if "--data" not in argv else []), *argv])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1


def test_cli_check_reports_agreement_with_torch(capsys):
    assert main(["reference", "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and len(report["checks"]) >= 20
    names = " ".join(row["name"] for row in report["checks"])
    for op in ("conv2d", "max_pool2d", "batch_norm", "local_response_norm", "RNN", "LSTM", "GRU", "dropout",
               "cross-entropy", "MSE", "L1", "hinge", "SGD", "Adam", "lenet5"):
        assert op in names, op
    assert all(row["output"] < 1e-10 and row["gradient"] < 1e-10 for row in report["checks"])


def test_bench_reports_both_engines_and_their_ratio(capsys):
    torch_threads = torch.get_num_threads()
    assert main(["bench", "reference", "--batch-size", "4", "--steps", "1", "--rounds", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ratio"] == pytest.approx(result["reference_seconds_per_step"] / result["torch_seconds_per_step"])
    assert result["reference_images_per_second"] == pytest.approx(4 / result["reference_seconds_per_step"])
    assert result["threads"] == 1 and result["numpy_blas_threads"] in (1, None)
    assert torch.get_num_threads() == torch_threads  # the benchmark gives torch its thread count back


def test_cli_trains_on_a_named_dataset_and_saves_a_checkpoint_eval_and_predict_take(tmp_path, capsys,
                                                                                     isolated_data_root):
    run = tmp_path / "numpy-run"
    assert main(["reference", "train", "--data", "fashion-mnist-mini", "--arch", "lenet5_modern", "--train-count",
                 "1000", "--test-count", "500", "--epochs", "1", "--save", str(run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["test_accuracy"] > 0.5
    assert main(["eval", str(run), "--limit", "500", "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    # torch evaluates the NumPy engine's weights on the same 500 test images: the same accuracy
    assert evaluation["top1"] == pytest.approx(summary["test_accuracy"], abs=0.005)
    assert evaluation["classes"][0] == "T-shirt/top"
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", str(run), str(tmp_path / "x.png"), "--json"]) == 0
