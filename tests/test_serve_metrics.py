"""The service's /metrics (checked by prometheus_client's own parser), and photographs unlike the
training images: a light background inverted and said so, an odd image flagged, in predict and serve."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.serve import BackgroundServer, ServeConfig, build_app
from cnnlab.train.checkpoint import checkpoint_dir
from cnnlab.train.meta import InputStats, Preprocessing
from test_serve_units import encode, make_checkpoint, sample_images


def with_training_stats(folder, images):
    """Record the input statistics a training run records (make_checkpoint writes none)."""
    path = checkpoint_dir(folder) / "meta.json"
    meta = json.loads(path.read_text())
    import torch

    meta["input_stats"] = InputStats.of(torch.from_numpy(images[:, None])).to_dict()
    path.write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = with_training_stats(make_checkpoint(tmp_path_factory.mktemp("ckpt") / "fm"), sample_images(64))
    config = ServeConfig(port=0, max_batch=8)
    with BackgroundServer(build_app([str(folder)], config), config) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(600):
                if client.get("/readyz").status_code == 200:
                    break
            yield client, folder


def classify(client, picture: np.ndarray, **fields):
    return client.post("/v1/classify", files={"image": ("x.png", encode(Image.fromarray(picture), "PNG"), "image/png")},
                       data=fields)


def test_metrics_count_requests_latency_batches_and_errors(served):
    parser = pytest.importorskip("prometheus_client.parser")
    client, _ = served
    for picture in sample_images(3, seed=5):
        assert classify(client, picture).status_code == 200
    assert client.post("/v1/classify", files={"image": ("x", b"junk", "image/png")}).status_code == 400
    assert client.get("/no/such/page").status_code == 404
    families = {f.name: f for f in parser.text_string_to_metric_families(client.get("/metrics").text)}
    requests = {(s.labels["endpoint"], s.labels["status"]): s.value for s in families["cnnlab_requests"].samples}
    assert requests[("/v1/classify", "200")] >= 3 and requests[("/v1/classify", "400")] >= 1
    assert requests[("other", "404")] >= 1  # unknown paths are not labels of their own
    errors = {s.labels["code"]: s.value for s in families["cnnlab_errors"].samples}
    assert errors["invalid_image"] >= 1 and errors["not_found"] >= 1
    latency = [s for s in families["cnnlab_request_seconds"].samples if s.labels.get("endpoint") == "/v1/classify"]
    count = next(s.value for s in latency if s.name.endswith("_count"))
    buckets = [s.value for s in latency if s.name.endswith("_bucket")]
    assert count == requests[("/v1/classify", "200")] + requests[("/v1/classify", "400")]
    assert buckets == sorted(buckets) and buckets[-1] == count  # cumulative, the last bucket holds everything
    images = next(s.value for s in families["cnnlab_inference_images"].samples)
    batch_sum = next(s.value for s in families["cnnlab_batch_size"].samples if s.name.endswith("_sum"))
    assert images == batch_sum >= 4  # warm-up and three images
    assert [s.value for s in families["cnnlab_queue_depth"].samples] == [0.0]


def test_a_light_background_is_inverted_and_said_so(served):
    client, _ = served
    dark = sample_images(1, seed=9)[0]
    photo = 255 - dark  # the same item, dark on white paper
    auto, forced = classify(client, photo).json(), classify(client, dark).json()
    assert auto["inverted"] and any("light background" in n for n in auto["warnings"])
    assert [r["keyword"] for r in auto["result"]] == [r["keyword"] for r in forced["result"]]
    kept = classify(client, photo, invert="false").json()
    assert not kept["inverted"] and any("background" in n for n in kept["warnings"])
    assert forced["warnings"] == [] and not forced["inverted"]


def test_predict_warns_on_images_unlike_the_training_ones(served, tmp_path, capsys):
    _, folder = served
    Image.fromarray(255 - sample_images(1, seed=9)[0]).save(tmp_path / "paper.png")
    Image.fromarray(np.full((28, 28), 150, np.uint8)).save(tmp_path / "grey.png")  # nothing like the blobs on black
    assert main(["predict", str(folder), str(tmp_path / "paper.png"), str(tmp_path / "grey.png"), "--json"]) == 0
    paper, grey = json.loads(capsys.readouterr().out)
    assert paper["inverted"] and not grey["inverted"]
    assert any("far from the training images" in n for n in grey["warnings"])
    assert any("background (150/255) is unlike" in n for n in grey["warnings"])
    assert main(["predict", str(folder), str(tmp_path / "paper.png")]) == 0
    assert "inverted the grey levels" in capsys.readouterr().err


def test_no_statistics_no_guessing():
    view = Preprocessing((1, 28, 28), (0.5,), (0.25,)).view(Image.fromarray(np.full((28, 28), 250, np.uint8)))
    assert not view.inverted and view.notes == []  # an old checkpoint records no statistics: nothing is assumed
