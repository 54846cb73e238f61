"""Detection through the command line: a small Mask R-CNN trained for two epochs on a dozen bundled
scenes lowers its loss, then eval, predict, viz and serve (POST /v1/detect) use the run."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from browser import answer_on_page, needs_chromium, wait_ready
from cnnlab.cli import main
from cnnlab.tasks import task_for_model
from cnnlab.tasks.detect import load_detection
from cnnlab.train.checkpoint import load_checkpoint, read_meta

COMMON = ["--epochs", "2", "--batch-size", "4", "--optimizer", "adam", "--lr", "0.001", "--weight-decay", "0",
          "--schedule", "constant", "--threads", "1", "--limit-train", "12", "--limit-test", "4", "--plan", "no",
          "--augment", "flip"]


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("det") / "mask_rcnn"
    assert main(["train", "mask_rcnn", *COMMON, "--out", str(run), "--quiet"]) == 0  # bundled mini scenes by default
    return run


def test_training_lowers_the_loss_and_eval_reports_box_and_mask_ap(trained, capsys):
    assert task_for_model("faster_rcnn") == "detect" and task_for_model("mask_rcnn") == "detect"
    meta = read_meta(trained)
    assert meta.task == "detect" and meta.dataset == "fashion-scenes-mini" and len(meta.class_names) == 10
    history = [json.loads(line) for line in (trained / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]
    # the RPN's objectness starts at log 2 (a coin toss over sampled anchors) and must fall below it
    assert history[-1]["train_rpn_objectness"] < 0.5
    evaluation = run_json(capsys, "eval", str(trained), "--limit", "10")
    assert evaluation["task"] == "detect"
    for key in ("map", "map50_voc", "ap50", "ap75", "mask_map", "mask_ap50", "seconds_per_image"):
        assert 0 <= evaluation[key] <= 1 or key == "seconds_per_image", key
    assert len(evaluation["per_class_ap"]) == 10


def scene_png(tmp_path, index: int = 0):
    from cnnlab.tasks.detect import load_detection

    test = load_detection("fashion-scenes-mini", "test")
    path = tmp_path / "scene.png"
    Image.fromarray(test.images[index, 0].numpy()).save(path)
    return path, test.images[index:index + 1]


def test_predict_writes_a_picture_and_the_decks_fields(trained, tmp_path, capsys):
    path, image = scene_png(tmp_path)
    out = run_json(capsys, "predict", str(trained), str(path), "--out", str(tmp_path / "out"))
    (item,) = out["predictions"]
    picture = Image.open(out["files"][0])
    assert picture.size == (128 * 3, 128 * 3)
    ckpt = load_checkpoint(trained)
    with torch.no_grad():
        (want,) = ckpt.model.eval()(ckpt.preprocessing.normalize(image))
    keep = want["scores"] >= 0.5
    assert len(item["prediction"]["objects"]) == int(keep.sum())
    for obj, box in zip(item["prediction"]["objects"], want["boxes"][keep].tolist()):
        assert set(obj) == {"keyword", "score", "location"} and obj["keyword"] in ckpt.class_names
        assert obj["location"]["left"] == pytest.approx(box[0], abs=0.06)
        assert obj["location"]["width"] == pytest.approx(box[2] - box[0], abs=0.11)


@pytest.mark.parametrize("kind", ["predictions", "proposals", "anchors", "objectness"])
def test_viz_draws_each_kind(trained, tmp_path, capsys, kind):
    written = run_json(capsys, "viz", "predictions", str(trained), "--kind", kind, "--limit", "3",
                       "--out", str(tmp_path))
    files = written if isinstance(written, list) else written.get("files", written)
    assert Image.open(files[0]["path"]).width > 300


def test_serve_detect_answers_boxes_and_rle_masks(trained, tmp_path):
    import httpx
    from pycocotools import mask as mask_utils

    from cnnlab.serve import BackgroundServer, ServeConfig, build_app

    path, image = scene_png(tmp_path, 1)
    data = path.read_bytes()
    ckpt = load_checkpoint(trained)
    with torch.no_grad():
        (want,) = ckpt.model.eval()(ckpt.preprocessing.normalize(image))
    config = ServeConfig(port=0, max_batch=4, max_wait_ms=5, request_timeout_s=60)
    app = build_app([str(trained)], config)
    with BackgroundServer(app, config) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(300):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        answer = client.post("/v1/detect", files={"image": ("x.png", data, "image/png")},
                             data={"threshold": "0"}).json()
        objects = answer["result"]["objects"]
        assert len(objects) == len(want["boxes"]) > 0
        for obj, box, mask in zip(objects, want["boxes"].tolist(), want["masks"]):
            assert obj["location"]["top"] == pytest.approx(box[1], abs=0.06)
            decoded = mask_utils.decode({"size": obj["mask"]["size"], "counts": obj["mask"]["counts"].encode()})
            assert np.array_equal(decoded.astype(bool), mask.numpy())
        bad = client.post("/v1/detect", files={"image": ("x.png", data, "image/png")}, data={"threshold": "2"})
        assert bad.status_code == 400 and "threshold" in json.dumps(bad.json())


def test_bench_detect_tables_a_finished_run(trained, capsys):
    (row,) = run_json(capsys, "bench", "detect", "--runs", str(trained))
    history = [json.loads(line) for line in (trained / "history.jsonl").read_text().splitlines()]
    assert row["model"] == "mask_rcnn" and row["epochs"] == 2 and row["map"] == history[-1]["test_map"]
    assert row["mask_map"] == history[-1]["test_mask_map"] and row["params"] > 1e6


@needs_chromium
def test_the_page_lists_the_objects_the_service_finds(trained, tmp_path):
    import httpx

    from cnnlab.serve import BackgroundServer, ServeConfig, build_app

    path, _ = scene_png(tmp_path, 1)
    config = ServeConfig(port=0, request_timeout_s=60)
    with BackgroundServer(build_app([str(trained)], config), config) as server:
        wait_ready(server.url)
        objects = httpx.post(server.url + "/v1/detect", files={"image": ("x.png", path.read_bytes(), "image/png")},
                             timeout=60).json()["result"]["objects"]
        shown = answer_on_page(server.url, path, "detected", texts={"status": "#status"},
                               counts={"objects": "#detect-list li"})
    assert shown["errors"] == [] and not shown["classify_card_shown"]
    assert shown["objects"] == len(objects) and shown["status"] == f"Done: {len(objects)} objects."


def test_eval_writes_coco_detection_results(trained, tmp_path, capsys):
    out = tmp_path / "detections.json"
    run_json(capsys, "eval", str(trained), "--limit", "4", "--write-results", str(out))
    results = json.loads(out.read_text())
    data = load_detection("fashion-scenes-mini", "test").subset(slice(0, 4))
    assert 0 < len(results) <= 4 * 100 and {r["image_id"] for r in results} <= set(data.image_ids)
    for r in results:  # [x, y, w, h] inside the 128-pixel scene, scores as the detector gave them
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 128.01 and y + h <= 128.01 and 0 < r["score"] <= 1
    assert main(["eval", str(trained), "--boxes", str(out)]) != 0  # a detector takes no boxes
    assert "--boxes" in capsys.readouterr().err


def test_coco_detections_of_the_truth_score_ap_1_in_cocoeval():
    """The results file's coordinates, image and category ids, as pycocotools reads them: the ground truth
    written as detections has AP 1, and the same boxes moved by half their width far less."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from cnnlab.data import load_object_dataset
    from cnnlab.tasks.detect import coco_detections

    data = load_detection("fashion-scenes-mini", "test").subset(slice(0, 10))
    truth = load_object_dataset("fashion-scenes-mini", "test").to_coco()
    gt = COCO()
    gt.dataset = truth
    gt.createIndex()

    def ap(shift: float) -> float:
        dets = [{"boxes": t.boxes + torch.tensor([1.0, 0, 1, 0]) * (t.boxes[:, 2:3] - t.boxes[:, 0:1]) * shift,
                 "scores": torch.ones(len(t.boxes)), "labels": t.labels} for t in data.targets]
        ev = COCOeval(gt, gt.loadRes(coco_detections(data, dets)), "bbox")
        ev.params.imgIds = data.image_ids
        ev.evaluate(), ev.accumulate(), ev.summarize()
        return ev.stats[0]

    assert ap(0.0) == pytest.approx(1.0)
    assert ap(0.5) < 0.2
