"""Segmentation through the command line: a small FCN-8s trained for two epochs on the bundled scenes
beats the all-background answer, then eval, predict (mask PNG and overlay) and viz use the run
(export, serve and --init-from: tests/test_segmentation_deploy.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.tasks import get_task, task_for_model
from cnnlab.train import segmetrics
from cnnlab.train.checkpoint import load_checkpoint, read_meta

TEST_IMAGES = 25
COMMON = ["--epochs", "2", "--batch-size", "4", "--optimizer", "adam", "--lr", "0.005", "--weight-decay", "0",
          "--schedule", "constant", "--loss", "cross_entropy+dice", "--threads", "1", "--limit-train", "120",
          "--limit-test", str(TEST_IMAGES), "--plan", "no"]


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("seg") / "fcn8s"
    assert main(["train", "fcn8s", *COMMON, "--out", str(run), "--quiet"]) == 0  # the bundled mini scenes by default
    return run


def test_training_beats_the_all_background_answer(trained, capsys):
    assert task_for_model("fcn8s") == "segment" and task_for_model("unet") == "segment"
    meta = read_meta(trained)
    assert meta.task == "segment" and meta.dataset == "fashion-scenes-mini" and meta.class_names[0] == "background"
    history = [json.loads(line) for line in (trained / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    test = get_task("segment").load_split("fashion-scenes-mini", "test").subset(slice(0, TEST_IMAGES))
    background = segmetrics.scores(segmetrics.confusion(torch.zeros_like(test.masks.long()), test.masks.long(), 11))
    # Two epochs of 120 scenes find the objects (telling ten garments apart takes longer): the
    # all-background answer scores 0 on "object vs background", and a mean IoU of 1/11 of its pixel share.
    assert history[-1]["test_miou"] > 1.1 * background["miou"]

    evaluation = run_json(capsys, "eval", str(trained))
    assert evaluation["task"] == "segment" and len(evaluation["per_class_iou"]) == 11
    assert 0 <= evaluation["boundary_f"] <= 1 and evaluation["miou"] > background["miou"]
    m = np.array(evaluation["confusion"])
    assert m[1:, 1:].sum() / (m.sum() - m[0, 0]) > 0.15  # IoU of "some object" vs background


def test_predict_writes_a_mask_png_and_an_overlay(trained, tmp_path, capsys):
    from cnnlab.tasks.segment import load_segmentation

    test = load_segmentation("fashion-scenes-mini", "test")
    Image.fromarray(test.images[0, 0].numpy()).save(tmp_path / "scene.png")
    out = run_json(capsys, "predict", str(trained), str(tmp_path / "scene.png"), "--out", str(tmp_path / "out"))
    (item,) = out["predictions"]
    mask = np.asarray(Image.open(tmp_path / "out" / "scene-mask.png"))
    assert mask.shape == (128, 128)
    areas = item["prediction"]["areas"]
    names = read_meta(trained).class_names
    assert {names[k]: int((mask == k).sum()) for k in np.unique(mask)} == {k: v["pixels"] for k, v in areas.items()}
    overlay = Image.open(tmp_path / "out" / "scene-overlay.png")
    assert overlay.width >= 128 and overlay.height > 128  # the legend lies below the picture
    # The CLI's mask is the model's argmax on the same pixels.
    ckpt = load_checkpoint(trained)
    with torch.no_grad():
        want = ckpt.model.eval()(ckpt.preprocessing.normalize(test.images[:1])).argmax(1)[0].numpy()
    assert np.array_equal(mask, want)


def test_viz_draws_predictions_and_worst_images(trained, tmp_path, capsys):
    for kind in ("predictions", "worst"):
        written = run_json(capsys, "viz", "predictions", str(trained), "--kind", kind, "--limit", "12",
                           "--out", str(tmp_path))
        files = written if isinstance(written, list) else written.get("files", written)
        path = files[0]["path"]
        assert Image.open(path).width > 300
    worst = files[0]["image_miou"]
    assert worst == sorted(worst)
