"""pix2pix: the PatchGAN's 70 x 70 receptive field measured by back-propagation, the generator's loss
as Eq. 4 with lambda 100 computed independently, paired data (masks and edges), and a tiny run on
edges -> item through the command line that lowers the L1 error, with predict on its output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from browser import answer_on_page, needs_chromium, wait_ready
from cnnlab.cli import main
from cnnlab.registry import create_model
from cnnlab.tasks import get_task, task_for_model
from cnnlab.tasks.base import Batch
from cnnlab.tasks.translate import edge_map, load_pairs
from cnnlab.train.checkpoint import read_meta


def test_patchgan_sees_70_by_70_patches():
    model = create_model("pix2pix", in_channels=1, out_channels=1, image_size=128).eval()
    x = torch.randn(1, 2, 128, 128, requires_grad=True)
    out = model.discriminator(x)
    assert out.shape == (1, 1, 14, 14)  # 128 -> 64 -> 32 -> 16 -> 15 -> 14
    out[0, 0, 7, 7].backward()
    rows = torch.nonzero(x.grad[0].abs().sum((0, 2))).flatten()
    cols = torch.nonzero(x.grad[0].abs().sum((0, 1))).flatten()
    # the paper's 70 x 70 (clipped by the 1-pixel zero padding at no border here: position 7 is central)
    assert int(rows.max() - rows.min() + 1) == 70 and int(cols.max() - cols.min() + 1) == 70
    assert task_for_model("pix2pix") == "translate"


def test_generator_loss_is_gan_plus_100_l1():
    torch.manual_seed(0)
    model = create_model("pix2pix", in_channels=1, out_channels=1, image_size=28, width=8)
    task = get_task("translate")
    x, y = torch.randn(4, 1, 28, 28), torch.rand(4, 1, 28, 28) * 2 - 1
    task.training_step(model, model, Batch(x, y, {"kind": "edges"}), "discriminator")
    fake = task._pending[1]
    want = (F.binary_cross_entropy_with_logits(model.score(x, fake), torch.ones(4, 1, 1, 1).expand(4, 1, 1, 1)
                                                .expand_as(model.score(x, fake)))
            + 100 * (fake - y).abs().mean())
    out = task.training_step(model, model, Batch(x, y, {"kind": "edges"}), "generator")
    assert float(out.loss) == pytest.approx(float(want), rel=1e-5)


def test_pairs_from_scenes_and_from_items():
    scenes = load_pairs("fashion-scenes-mini", "test")
    assert scenes.kind == "labels" and scenes.conditions.shape[1] == 1
    assert int(scenes.conditions.max()) <= len(scenes.class_names) - 1 and scenes.class_names[0] == "background"
    image = torch.zeros(1, 1, 9, 9, dtype=torch.uint8)
    image[0, 0, 3:6, 3:6] = 255  # a white square: edges on its border, none in the middle or far outside
    edges = edge_map(image)[0, 0]
    assert edges[4, 4] == 0 and edges[0, 0] == 0 and edges[4, 2] == 255 and edges[2, 4] == 255
    model = create_model("pix2pix", in_channels=1, out_channels=1, num_labels=11, image_size=128, width=8)
    labels = torch.tensor([[[[0.0, 3.0], [10.0, 1.0]]]])
    onehot = model.condition(labels)
    assert onehot.shape == (1, 11, 2, 2) and onehot[0, 10, 1, 0] == 1 and onehot[0, :, 1, 0].sum() == 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("p2p") / "p2p"
    assert main(["train", "pix2pix", "--epochs", "3", "--limit-train", "256",
                 "--limit-test", "64", "--gan-width", "8", "--threads", "1", "--plan", "no", "--out", str(run),
                 "--quiet"]) == 0
    return run


def test_training_edges_to_items_lowers_the_l1_error(trained, tmp_path, capsys):
    run = trained
    meta = read_meta(run)
    assert meta.task == "translate" and meta.extra["pairs"] == "edges" and meta.config["lr"] == 2e-4
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[-1]["test_l1"] < history[0]["test_l1"] and history[-1]["train_l1"] < history[0]["train_l1"]
    assert (run / "samples" / "epoch-003.png").exists()
    test = load_pairs("fashion-mnist-mini", "test")
    Image.fromarray(test.conditions[0, 0].numpy()).save(tmp_path / "edges.png")
    assert main(["predict", str(run), str(tmp_path / "edges.png"), "--out", str(tmp_path / "out")]) == 0
    made = np.asarray(Image.open(tmp_path / "out" / "edges-translated.png"))
    assert made.shape == (28, 28)


def test_serve_translate_answers_the_predictors_image(trained, tmp_path):
    import base64
    import io
    import time

    import httpx

    from cnnlab.serve import BackgroundServer, ServeConfig, build_app
    from cnnlab.train.checkpoint import load_checkpoint

    test = load_pairs("fashion-mnist-mini", "test")
    buffer = io.BytesIO()
    Image.fromarray(test.conditions[3, 0].numpy()).save(buffer, format="PNG")
    want = get_task("translate").predictor(load_checkpoint(trained)).predict_batch(test.conditions[3:4])[0]
    config = ServeConfig(port=0, max_batch=4, max_wait_ms=5, request_timeout_s=30)
    with BackgroundServer(build_app([str(trained)], config), config) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(300):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        answer = client.post("/v1/translate", files={"image": ("e.png", buffer.getvalue(), "image/png")})
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        made = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["image_png"]))))
        assert result["size"] == [1, 28, 28] and np.array_equal(made, want[0].numpy())
        bad = client.post("/v1/translate", files={"image": ("e.png", b"not a picture", "image/png")})
        assert bad.status_code == 400 and "image" in bad.text.lower()


@needs_chromium
def test_the_page_shows_the_translated_image(trained, tmp_path):
    import base64

    import httpx

    from cnnlab.serve import BackgroundServer, ServeConfig, build_app

    test = load_pairs("fashion-mnist-mini", "test")
    edges = tmp_path / "edges.png"
    Image.fromarray(test.conditions[5, 0].numpy()).save(edges)
    config = ServeConfig(port=0, max_batch=4, max_wait_ms=5, request_timeout_s=30)
    with BackgroundServer(build_app([str(trained)], config), config) as server:
        wait_ready(server.url)
        want = httpx.post(server.url + "/v1/translate", files={"image": ("e.png", edges.read_bytes(), "image/png")})
        shown = answer_on_page(server.url, edges, "translated", texts={"caption": "#tr-caption"},
                               counts={"made": f"#tr-output[src='data:image/png;base64,{want.json()['result']['image_png']}']"})
    assert shown["errors"] == [] and not shown["classify_card_shown"]
    assert shown["made"] == 1 and shown["caption"] == "generated 28×28"
    assert base64.b64decode(want.json()["result"]["image_png"])[:4] == b"\x89PNG"
