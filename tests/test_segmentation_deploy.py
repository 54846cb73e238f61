"""A segmentation checkpoint exported to ONNX (checked per pixel against PyTorch) and served by
``POST /v1/segment`` (PNG and RLE answers, the service's errors), and an encoder started from a
classifier with ``--init-from``."""

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

import cnnlab
from browser import answer_on_page, needs_chromium, wait_ready
from cnnlab.cli import main
from cnnlab.tasks.segment import load_segmentation
from cnnlab.train.checkpoint import load_checkpoint, save_checkpoint


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An untrained small FCN-8s saved as the scenes' segmentation run (BN statistics moved off (0, 1)
    so that the class maps vary across the image)."""
    torch.manual_seed(0)
    test = load_segmentation("fashion-scenes-mini", "test")
    model = cnnlab.create_model("fcn8s", input_size=test.input_size, num_classes=test.num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.02, 0.1)
            if isinstance(m, torch.nn.Conv2d) and m.out_channels == test.num_classes:  # score layers start at 0
                torch.nn.init.normal_(m.weight, 0, 0.5)
                torch.nn.init.normal_(m.bias, 0, 0.5)
    run = tmp_path_factory.mktemp("segdeploy") / "fcn8s"
    return save_checkpoint(run, model, {
        "arch": "fcn8s", "arch_kwargs": {"num_classes": test.num_classes, "in_channels": 1, "small_input": True},
        "task": "segment", "class_names": test.class_names, "input_size": list(test.input_size),
        "mean": list(test.mean), "std": list(test.std), "dataset": "fashion-scenes-mini", "epoch": 1})


def test_the_saved_model_gives_varied_class_maps(trained):
    ckpt = load_checkpoint(trained)
    test = load_segmentation("fashion-scenes-mini", "test")
    with torch.no_grad():
        masks = ckpt.model.eval()(ckpt.preprocessing.normalize(test.images[:4])).argmax(1)
    assert len(torch.unique(masks)) > 2  # else the checks below would compare constant maps


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
        page = client.get("/").text
        assert "/static/segment.js" in page and 'id="segment-overlay"' in page
        assert "/v1/segment" in client.get("/static/segment.js").text
        assert any(m["task"] == "segment" for m in client.get("/v1/models").json()["models"])


@needs_chromium
def test_the_page_colours_the_classes_the_service_finds(trained, tmp_path):
    from cnnlab.serve import BackgroundServer, ServeConfig, build_app
    from cnnlab.tasks.segment import load_segmentation

    scene = tmp_path / "scene.png"
    Image.fromarray(load_segmentation("fashion-scenes-mini", "test").images[1, 0].numpy()).save(scene)
    config = ServeConfig(port=0)
    with BackgroundServer(build_app([str(trained)], config), config) as server:
        wait_ready(server.url)
        areas = httpx.post(server.url + "/v1/segment", files={"image": ("s.png", scene.read_bytes(), "image/png")}
                           ).json()["result"]["areas"]
        shown = answer_on_page(server.url, scene, "segmented", texts={"legend": "#segment-legend"},
                               counts={"classes": "#segment-legend li"})
    assert shown["errors"] == [] and not shown["classify_card_shown"]
    assert shown["classes"] == len(areas)
    biggest = max(areas, key=lambda k: areas[k]["pixels"])  # the legend lists the largest area first
    assert shown["legend"].splitlines()[0].strip() == f"{biggest}: {100 * areas[biggest]['fraction']:.1f}%"
