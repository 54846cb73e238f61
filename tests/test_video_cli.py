"""Video classification through the command line: on the bundled moving-items clips, a few epochs of a
small C3D beat the single-frame baseline by a clear margin (the baseline stays near chance: a frame
holds no motion), then eval, predict (a GIF and a frame folder), viz, export and serve
(POST /v1/classify-clip, bad clips refused in one line) use the run; ``data make`` reproduces the
bundled set."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
import torch

from browser import answer_on_page, needs_chromium, wait_ready
from cnnlab.cli import main
from cnnlab.data.moving_items import write_clip
from cnnlab.tasks.video import load_clip_split
from cnnlab.train.checkpoint import load_checkpoint, read_meta

COMMON = ["--epochs", "5", "--threads", "1", "--plan", "no", "--seed", "0", "--quiet"]


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    assert main(["train", "c3d_small", *COMMON, "--lr", "0.002", "--out", str(root / "c3d")]) == 0
    assert main(["train", "frame_cnn", *COMMON, "--out", str(root / "frame")]) == 0
    return root


def test_c3d_beats_the_single_frame_baseline_which_stays_near_chance(runs, capsys):
    meta = read_meta(runs / "c3d")
    assert meta.task == "video" and meta.dataset == "moving-items-mini" and list(meta.input_size) == [1, 16, 32, 32]
    c3d = run_json(capsys, "eval", str(runs / "c3d"))
    frame = run_json(capsys, "eval", str(runs / "frame"))
    assert c3d["task"] == "video" and c3d["clips"] == 72 and c3d["chance"] == pytest.approx(1 / 9)
    assert frame["acc"] <= 0.25  # chance is 0.111; 72 clips leave room for luck, not for seeing motion
    assert c3d["acc"] >= frame["acc"] + 0.15 and c3d["acc"] >= 0.3
    # the figures are those of the model on the test clips
    test = load_clip_split("moving-items-mini", "test")
    ckpt = load_checkpoint(runs / "c3d")
    with torch.no_grad():
        pred = ckpt.model.eval()(ckpt.preprocessing.normalize(test.clips)).argmax(1)
    assert c3d["acc"] == pytest.approx(float((pred == test.labels).float().mean()))
    assert sum(map(sum, c3d["confusion"])) == 72
    main(["eval", str(runs / "c3d")])
    assert "chance 0.1111" in capsys.readouterr().out


def test_predict_reads_a_gif_and_a_frame_folder_and_refuses_bad_clips(runs, tmp_path, capsys):
    test = load_clip_split("moving-items-mini", "test")
    clip = test.clips[3, 0].numpy()
    gif = write_clip(clip, tmp_path / "clip", "gif")
    folder = write_clip(clip, tmp_path / "frames", "frames")
    out = run_json(capsys, "predict", str(runs / "c3d"), str(gif), str(folder))
    assert [item["image"] for item in out] == [str(gif), str(folder)]
    first, second = (item["prediction"] for item in out)
    assert set(first["probabilities"]) == set(test.class_names)
    assert sum(first["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert first["label"] == second["label"] == max(first["probabilities"], key=first["probabilities"].get)
    ckpt = load_checkpoint(runs / "c3d")
    with torch.no_grad():
        expected = ckpt.model.eval()(ckpt.preprocessing.normalize(test.clips[3:4])).softmax(1)[0]
    assert first["score"] == pytest.approx(float(expected.max()), abs=1e-3)
    main(["predict", str(runs / "c3d"), str(gif)])
    text = capsys.readouterr().out
    assert first["label"] in text and "zoom_out" in text
    one = write_clip(clip[:1], tmp_path / "one", "gif")
    assert main(["predict", str(runs / "c3d"), str(one)]) != 0
    err = capsys.readouterr().err.strip()
    assert "at least 2 frames" in err and len(err.splitlines()) == 1
    junk = tmp_path / "junk.gif"
    junk.write_bytes(b"GIF89a nonsense")
    assert main(["predict", str(runs / "c3d"), str(junk)]) != 0
    err = capsys.readouterr().err.strip()
    assert "not a readable clip" in err and len(err.splitlines()) == 1


def test_viz_draws_frames_with_the_class_probabilities(runs, tmp_path, capsys):
    from PIL import Image

    (picture,) = run_json(capsys, "viz", "predictions", str(runs / "c3d"), "--limit", "3", "--out", str(tmp_path))
    test = load_clip_split("moving-items-mini", "test")
    assert picture["kind"] == "predictions" and picture["truth"] == [test.class_names[int(i)] for i in test.labels[:3]]
    with Image.open(picture["path"]) as img:
        assert img.height > 3 * 64 and img.width > 8 * 64  # three rows of eight frames drawn twice as large


def test_export_writes_a_clip_model_that_agrees_with_the_checkpoint(runs, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    run_json(capsys, "export", str(runs / "c3d"), "--format", "onnx", "--out", str(tmp_path / "c3d.onnx"))
    session = ort.InferenceSession(str(tmp_path / "c3d.onnx"), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert list(given.shape)[1:] == [1, 16, 32, 32]  # N x C x T x H x W
    test = load_clip_split("moving-items-mini", "test")
    ckpt = load_checkpoint(runs / "c3d")
    x = ckpt.preprocessing.normalize(test.clips[:4])
    with torch.no_grad():
        expected = ckpt.model.eval()(x).numpy()
    (got,) = session.run(None, {given.name: x.numpy()})
    assert np.allclose(got, expected, atol=1e-4)


def test_bench_infer_measures_clip_models_and_their_accuracy(runs):
    from cnnlab.bench.infer import measure

    result = measure(str(runs / "c3d"), batch_sizes=[4], variants=["eager", "folded+cl"], seconds=0.05, rounds=1,
                     limit_test=24)
    test = load_clip_split("moving-items-mini", "test").subset(slice(0, 24))
    ckpt = load_checkpoint(runs / "c3d")
    with torch.no_grad():
        pred = ckpt.model.eval()(ckpt.preprocessing.normalize(test.clips)).argmax(1)
    assert result["input_size"] == [1, 16, 32, 32] and result["metric"] == "test_top1"
    assert result["quality"]["eager"] == pytest.approx(float((pred == test.labels).float().mean()))
    assert result["quality"]["folded+cl"] == pytest.approx(result["quality"]["eager"], abs=1 / 24)
    assert result["images_per_second"]["4"]["folded+cl"] > 0


def test_serve_classifies_an_uploaded_gif_and_refuses_bad_ones(runs, tmp_path, capsys):
    from cnnlab.serve import BackgroundServer, ServeConfig, build_app

    test = load_clip_split("moving-items-mini", "test")
    gif = write_clip(test.clips[3, 0].numpy(), tmp_path / "clip", "gif").read_bytes()
    (expected,) = run_json(capsys, "predict", str(runs / "c3d"), str(tmp_path / "clip.gif"))
    one = write_clip(np.zeros((1, 32, 32), np.uint8), tmp_path / "one", "gif").read_bytes()
    config = ServeConfig(port=0, max_batch=4, max_wait_ms=5, request_timeout_s=30)
    with BackgroundServer(build_app([str(runs / "c3d")], config), config) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(300):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        answer = client.post("/v1/classify-clip", files={"clip": ("c.gif", gif, "image/gif")}, data={"top_k": "2"})
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        assert result["label"] == expected["prediction"]["label"] and len(result["top"]) == 2
        assert result["top"][0]["label"] == result["label"]
        as_image = client.post("/v1/classify-clip", files={"image": ("c.gif", gif, "image/gif")})
        assert as_image.status_code == 200 and as_image.json()["result"]["label"] == result["label"]
        short = client.post("/v1/classify-clip", files={"clip": ("one.gif", one, "image/gif")})
        assert short.status_code == 400 and "at least 2 frames" in short.json()["error_msg"]
        junk = client.post("/v1/classify-clip", files={"clip": ("j.gif", b"not a gif", "image/gif")})
        assert junk.status_code == 400 and "animated GIF" in junk.json()["error_msg"]
        bad_k = client.post("/v1/classify-clip", files={"clip": ("c.gif", gif, "image/gif")}, data={"top_k": "99"})
        assert bad_k.status_code == 400
        page = client.get("/").text
        assert "/static/video.js" in page and client.get("/static/video.js").status_code == 200


def test_data_make_reproduces_the_bundled_mini_set(tmp_path, capsys):
    from cnnlab.data.datasets import BUNDLED_DIR

    info = run_json(capsys, "data", "make", "moving-items-mini", "--out", str(tmp_path / "mini"))
    assert info["statistics"]["train"]["clips"] == 216 and info["statistics"]["test"]["clips"] == 72
    assert set(info["statistics"]["test"]["per_class"].values()) == {8}
    for split in ("train", "test"):
        with np.load(tmp_path / "mini" / f"{split}.npz") as made, np.load(BUNDLED_DIR / "moving-items-mini" / f"{split}.npz") as shipped:
            assert np.array_equal(made["clips"], shipped["clips"]) and np.array_equal(made["labels"], shipped["labels"])
    gifs = run_json(capsys, "data", "make", "moving-items-mini", "--out", str(tmp_path / "gifs"), "--layout", "gif",
                    "--count", "9", "--test-count", "9")
    assert gifs["statistics"]["test"]["shape"] == [1, 16, 32, 32]
    assert len(list((tmp_path / "gifs" / "train" / "right").glob("*.gif"))) == 1


@needs_chromium
def test_the_page_shows_the_clip_class_the_service_answers(runs, tmp_path):
    from cnnlab.serve import BackgroundServer, ServeConfig, build_app

    test = load_clip_split("moving-items-mini", "test")
    gif = write_clip(test.clips[5, 0].numpy(), tmp_path / "clip", "gif")
    config = ServeConfig(port=0)
    with BackgroundServer(build_app([str(runs / "c3d")], config), config) as server:
        wait_ready(server.url)
        want = httpx.post(server.url + "/v1/classify-clip",
                          files={"clip": ("c.gif", gif.read_bytes(), "image/gif")}).json()["result"]
        shown = answer_on_page(server.url, gif, "classified-clip", texts={"label": "#video-label"},
                               counts={"classes": "#video-classes li"})
    assert shown["errors"] == [] and not shown["classify_card_shown"]
    assert shown["label"] == want["label"] and shown["classes"] == len(test.class_names)
