"""Metric learning through the command line: ``cnnlab train embedding_net`` on the seen classes of
MNIST (0-4) learns an embedding that retrieves the unseen ones (5-9) far above chance; ``eval``
reproduces the recorded figures, ``viz predictions`` draws the unseen classes (PCA and t-SNE), and
bad settings are refused with a message naming them."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.metric.metrics import retrieval_metrics
from cnnlab.tasks.metric import MetricTask, embed
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.config import TrainConfig

UNSEEN_MNIST = ["5", "6", "7", "8", "9"]


def run_json(capsys, *argv):
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("metric-cli") / "mnist"
    argv = ["train", "embedding_net", "--data", "mnist-10k", "--data-dir", str(shared_data), "--backbone",
            "lenet5_modern", "--embedding-dim", "16", "--metric-loss", "triplet_hard", "--epochs", "1",
            "--batch-size", "50", "--limit-train", "1500", "--limit-test", "600", "--optimizer", "adam",
            "--lr", "0.002", "--threads", "1", "--plan", "no", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_training_on_seen_classes_retrieves_unseen_ones(trained, shared_data):
    ckpt = load_checkpoint(trained)
    assert ckpt.task == "metric" and ckpt.class_names == ["0", "1", "2", "3", "4"]
    metrics = ckpt.meta.metrics
    assert metrics["evaluated_classes"] == UNSEEN_MNIST  # every figure is about classes never trained on
    with open(trained / "steps.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5  # the triplet loss falls
    # chance: the same embeddings with the labels shuffled
    task = MetricTask(TrainConfig(data_dir=str(shared_data)))
    test = task.load_split("mnist-10k", "test", str(shared_data)).subset(slice(0, 600))
    vectors = embed(ckpt.model, test.images, ckpt.mean, ckpt.std)
    shuffled = retrieval_metrics(vectors, test.labels[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))])
    assert metrics["test_precision_at_1"] > 0.5 and shuffled["precision_at_1"] < 0.3
    assert metrics["test_map_at_r"] > shuffled["map_at_r"] + 0.1
    assert metrics["test_auc"] > 0.65 and metrics["test_eer"] < 0.4


def test_eval_reproduces_the_recorded_figures(trained, shared_data, capsys):
    result = run_json(capsys, "eval", str(trained), "--data-dir", str(shared_data), "--limit", "600")
    recorded = load_checkpoint(trained).meta.metrics
    for key in ("map_at_r", "precision_at_1", "r_precision", "auc", "eer", "ident_top1"):
        assert result[key] == pytest.approx(recorded[f"test_{key}"], abs=1e-5)
    assert result["unseen_classes"] == UNSEEN_MNIST
    assert main(["eval", str(trained), "--data-dir", str(shared_data), "--limit", "200"]) == 0
    text = capsys.readouterr().out
    assert "MAP@R" in text and "EER" in text and "top-5" in text


def test_a_checkpoint_keeps_its_own_split_of_classes(trained, shared_data):
    """A task configured with other seen classes still evaluates the checkpoint on the classes it did not see."""
    other = MetricTask(TrainConfig(seen_classes="5-9", data_dir=str(shared_data)))
    data = other.load_split("mnist-10k", "test", str(shared_data)).subset(slice(0, 300))
    assert data.class_names == ["0", "1", "2", "3", "4"]
    again = other.for_checkpoint(data, load_checkpoint(trained), "mnist-10k")
    assert again.class_names == UNSEEN_MNIST and len(again) == 300  # as many images as asked for


def test_viz_draws_the_unseen_classes(trained, shared_data, tmp_path, capsys):
    written = run_json(capsys, "viz", "predictions", str(trained), "--data-dir", str(shared_data), "--limit", "300",
                       "--out", str(tmp_path))
    kinds = {w["kind"]: w for w in written}
    assert set(kinds) == {"embedding-pca", "embedding-tsne"} and kinds["embedding-tsne"]["images"] == 300
    for w in written:
        assert Image.open(w["path"]).size[0] > 300


@pytest.mark.parametrize("extra, message", [
    (["--seen-classes", "0-9"], "leaves no class unseen"),
    (["--seen-classes", "a-b"], "not a list of classes"),
    (["--seen-classes", "3-12"], "must name classes among 0-9"),
    (["--metric-loss", "lifted"], "metric_loss must be one of"),
    (["--batch-size", "8"], "fewer than 2 images of each of the 5 classes"),
    (["--classes-per-batch", "6"], "more than the 5 training classes"),
])
def test_bad_settings_are_named(extra, message, shared_data, tmp_path, capsys):
    argv = ["train", "embedding_net", "--data", "mnist-10k", "--data-dir", str(shared_data), "--epochs", "1",
            "--limit-train", "100", "--limit-test", "50", "--batch-size", "50", "--quiet", "--out", str(tmp_path / "x"), *extra]
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_bench_metric_trains_each_loss_and_the_peer(shared_data, tmp_path, capsys):
    pytest.importorskip("pytorch_metric_learning")
    table = tmp_path / "metric.md"
    rows = run_json(capsys, "bench", "metric", "--data-dir", str(shared_data), "--datasets", "mnist-10k",
                    "--losses", "untrained,triplet_hard,pml_triplet_ms", "--epochs", "1", "--limit-train", "300",
                    "--limit-test", "200", "--out", str(tmp_path / "runs"), "--markdown", str(table))
    assert [r["loss"] for r in rows] == ["untrained", "triplet_hard", "pml_triplet_ms"]
    assert rows[0]["train_seconds"] == 0 and all(r["train_seconds"] > 0 for r in rows[1:]), rows
    peer = load_checkpoint(tmp_path / "runs" / "mnist-10k" / "pml_triplet_ms-seed0")
    assert peer.task == "metric_pml" and peer.meta.metrics["evaluated_classes"] == UNSEEN_MNIST
    # the table quotes the runs' own figures
    trained = load_checkpoint(tmp_path / "runs" / "mnist-10k" / "triplet_hard-seed0").meta.metrics
    assert rows[1]["map_at_r"] == pytest.approx(trained["test_map_at_r"])
    text = table.read_text()
    assert f"{rows[2]['map_at_r']:.4f}" in text and "vs the peer's" in text
    assert main(["bench", "metric", "--losses", "lifted"]) == 1
    assert "unknown loss lifted" in capsys.readouterr().err
