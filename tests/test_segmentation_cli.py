"""Segmentation through every verb: a small FCN-8s trained for two epochs on the bundled scenes beats
the all-background answer, then eval, predict (mask PNG and overlay), viz, export (ONNX against
PyTorch), --init-from a classifier, and the service's ``POST /v1/segment`` (PNG and RLE)."""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
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


def test_export_onnx_matches_pytorch_per_pixel(trained, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    result = run_json(capsys, "export", str(trained), "--out", str(tmp_path / "m.onnx"), "--check-images", "8")
    check = result["check"]
    assert check["max_rel_diff"] <= 1e-4 and check["top1_agreement"] > 0.999 and check["samples"] == 8  # the scenes' test images
    assert "N x 11 x 128 x 128" in result["metadata"]["output"]


def test_an_encoder_starts_from_a_classifier_checkpoint(tmp_path, capsys):
    classifier = tmp_path / "vgg"
    run_json(capsys, "train", "vgg16_bn", "--epochs", "1", "--limit-train", "64", "--limit-test", "32",
             "--batch-size", "32", "--threads", "1", "--plan", "no", "--out", str(classifier))
    seg = tmp_path / "seg"
    run_json(capsys, "train", "fcn8s", "--epochs", "1", "--limit-train", "8", "--limit-test", "4", "--batch-size", "8",
             "--threads", "1", "--plan", "no", "--lr", "1e-9", "--momentum", "0", "--weight-decay", "0",
             "--init-from", str(classifier), "--out", str(seg))
    first = load_checkpoint(classifier).model.features[0].weight
    assert torch.allclose(load_checkpoint(seg).model.encoder.model.features[0].weight, first, atol=1e-6)
    assert main(["train", "fcn8s", "--epochs", "1", "--init-from", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "x")]) == 1


def test_serve_segment_answers_png_and_rle(trained):
    from pycocotools import mask as mask_utils

    from cnnlab.serve import BackgroundServer, ServeConfig, build_app
    from cnnlab.tasks.segment import load_segmentation

    test = load_segmentation("fashion-scenes-mini", "test")
    buf = io.BytesIO()
    Image.fromarray(test.images[1, 0].numpy()).save(buf, format="PNG")
    config = ServeConfig(port=0, max_batch=4, max_wait_ms=5, request_timeout_s=30)
    app = build_app([str(trained)], config)
    ckpt = load_checkpoint(trained)
    with torch.no_grad():
        want = ckpt.model.eval()(ckpt.preprocessing.normalize(test.images[1:2])).argmax(1)[0].numpy()
    with BackgroundServer(app, config) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(300):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        answer = client.post("/v1/segment", files={"image": ("x.png", buf.getvalue(), "image/png")}).json()
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["result"]["mask_png"]))))
        assert np.array_equal(mask, want)
        areas = answer["result"]["areas"]
        assert sum(v["pixels"] for v in areas.values()) == 128 * 128
        rle = client.post("/v1/segment", files={"image": ("x.png", buf.getvalue(), "image/png")},
                          data={"format": "rle"}).json()["result"]["rle"]
        names = answer["result"]["classes"]
        for name, encoded in rle.items():
            decoded = mask_utils.decode({"size": encoded["size"], "counts": encoded["counts"].encode()})
            assert np.array_equal(decoded.astype(bool), want == names.index(name))
        bad = client.post("/v1/segment", files={"image": ("x.png", buf.getvalue(), "image/png")}, data={"format": "gif"})
        assert bad.status_code == 400 and "format" in json.dumps(bad.json())
        junk = client.post("/v1/segment", files={"image": ("x.png", b"not an image", "image/png")})
        assert junk.status_code in (400, 415, 422)
