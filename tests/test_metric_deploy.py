"""Using a metric-learning checkpoint: the embedding index (faiss and the exact torch search agree,
safetensors on disk, updates, damaged files), ``cnnlab index build/search`` on a folder of mixed
images, ``predict`` and ONNX ``export`` of embeddings, and the service's ``POST /v1/search`` and
``POST /v1/verify`` with their errors."""

from __future__ import annotations

import io
import json
import pickle
import time

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import cnnlab
from cnnlab.cli import main
from cnnlab.errors import DataError
from cnnlab.metric.index import EmbeddingIndex, have_faiss
from cnnlab.train.checkpoint import load_checkpoint, save_checkpoint

SEEN = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]


def run_json(capsys, *argv):
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An embedding_net (lenet5_modern, 16-D) at its seeded initialisation, saved as a metric run."""
    torch.manual_seed(0)
    model = cnnlab.create_model("embedding_net", backbone="lenet5_modern", embedding_dim=16, num_classes=5,
                                in_channels=1, image_size=28)
    folder = tmp_path_factory.mktemp("metric") / "embed"
    return save_checkpoint(folder, model, {
        "arch": "embedding_net", "task": "metric", "class_names": SEEN, "input_size": [1, 28, 28],
        "arch_kwargs": {"backbone": "lenet5_modern", "embedding_dim": 16, "num_classes": 5, "in_channels": 1,
                        "image_size": 28},
        "mean": [0.286], "std": [0.353], "dataset": "fashion-mnist", "epoch": 1, "seen_classes": "0-4",
        "metrics": {"eer_threshold": 0.9}})


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """Twelve images of any size and format: PNG 28 x 28 grey, JPEG 40 x 40 RGB, BMP 28 x 35, in subfolders."""
    root = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(0)
    for i in range(12):
        pixels = np.zeros((28, 28), np.uint8)
        pixels[4 + i:14 + i, 3 + 2 * (i % 4):20] = 255  # a bar that moves with i
        pixels = np.clip(pixels.astype(int) + rng.integers(0, 30, pixels.shape), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        sub = root / f"part{i % 2}"
        sub.mkdir(exist_ok=True)
        if i % 3 == 0:
            image.save(sub / f"img{i:02d}.png")
        elif i % 3 == 1:
            image.resize((40, 40)).convert("RGB").save(sub / f"img{i:02d}.jpg", quality=95)
        else:
            image.resize((28, 35)).save(sub / f"img{i:02d}.bmp")
    (root / "notes.txt").write_text("not an image")
    return root


def test_faiss_and_torch_search_agree_and_distances_are_euclidean():
    g = torch.Generator().manual_seed(0)
    index = EmbeddingIndex(F.normalize(torch.randn(500, 32, generator=g), dim=1), [f"x{i}" for i in range(500)])
    queries = torch.randn(20, 32, generator=g)
    rows, dist = index.search(queries, 7, backend="torch")
    exact = torch.cdist(F.normalize(queries, dim=1), index.embeddings)
    want_d, want_rows = exact.topk(7, largest=False)
    assert torch.equal(rows, want_rows) and torch.allclose(dist, want_d, atol=1e-5)
    if not have_faiss():
        pytest.skip("faiss-cpu is not installed")
    f_rows, f_dist = index.search(queries, 7, backend="faiss")
    assert torch.equal(f_rows, rows) and torch.allclose(f_dist, dist, atol=1e-5)


def test_index_file_round_trip_update_and_damage(tmp_path):
    g = torch.Generator().manual_seed(1)
    index = EmbeddingIndex(F.normalize(torch.randn(4, 8, generator=g), dim=1), list("abcd"), {"arch": "x"})
    path = index.save(tmp_path / "i.index")
    back = EmbeddingIndex.load(path)
    assert back.names == list("abcd") and torch.equal(back.embeddings, index.embeddings) and back.info == {"arch": "x"}
    new = F.normalize(torch.randn(2, 8, generator=g), dim=1)
    assert back.add(new, ["b", "e"]) == 1  # b replaced, e added
    assert back.names == list("abcde") and torch.equal(back.embeddings[1], new[0]) and torch.equal(back.embeddings[4], new[1])
    with pytest.raises(DataError, match="8-D embeddings"):
        back.add(torch.randn(1, 5), ["f"])
    with pytest.raises(DataError, match="queries are 5-D"):
        back.search(torch.randn(1, 5))
    (tmp_path / "p.index").write_bytes(pickle.dumps({"embeddings": [1, 2]}))
    with pytest.raises(DataError, match="not an embedding index"):
        EmbeddingIndex.load(tmp_path / "p.index")
    from safetensors.torch import save_file

    save_file({"weights": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(DataError, match="not an embedding index"):
        EmbeddingIndex.load(tmp_path / "w.safetensors")
    with pytest.raises(DataError, match="does not exist"):
        EmbeddingIndex.load(tmp_path / "none.index")


def test_index_build_and_search_through_the_cli(run, gallery, tmp_path, capsys):
    out = tmp_path / "g.index"
    built = run_json(capsys, "index", "build", str(run), str(gallery), "--out", str(out))
    assert built["images"] == 12 and built["added"] == 12 and built["dimensions"] == 16
    again = run_json(capsys, "index", "build", str(run), str(gallery), "--out", str(out))
    assert again["images"] == 12 and again["added"] == 0 and again["updated"] == 12  # updated in place

    # the index holds what the checkpoint gives for each file, through the one image -> input path
    ckpt = load_checkpoint(run)
    index = EmbeddingIndex.load(out)
    files = sorted(p for p in gallery.rglob("*") if p.suffix in {".png", ".jpg", ".bmp"})
    assert index.names == [str(p.resolve()) for p in files]
    with torch.no_grad():
        x = torch.stack([ckpt.preprocessing.image(Image.open(p)) for p in files])
        want = ckpt.model.eval()(ckpt.preprocessing.normalize(x))
    assert torch.allclose(index.embeddings, want, atol=1e-5)

    query = files[5]
    strip = tmp_path / "strip.png"
    found = run_json(capsys, "index", "search", str(out), str(query), "-k", "4", "--out", str(strip))
    names = [n["name"] for n in found["neighbours"]]
    distances = [n["distance"] for n in found["neighbours"]]
    assert names[0] == str(query.resolve()) and distances[0] == pytest.approx(0, abs=1e-3)  # itself first
    expected = torch.cdist(want[5:6], want)[0].argsort()[:4].tolist()
    assert names == [str(files[i].resolve()) for i in expected]
    assert distances == sorted(distances)
    assert Image.open(strip).size[0] > Image.open(strip).size[1]  # a row of five pictures

    assert main(["index", "build", str(run), str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert main(["index", "search", str(out), str(tmp_path / "nothing.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["index", "search", str(tmp_path / "strip.png"), str(query)]) == 1
    assert "not an embedding index" in capsys.readouterr().err


def test_predict_and_export_give_the_embedding(run, gallery, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CNNLAB_INDEX", raising=False)
    image = sorted(gallery.rglob("*.png"))[0]
    ckpt = load_checkpoint(run)
    with torch.no_grad():
        want = ckpt.model.eval()(ckpt.preprocessing.normalize(ckpt.preprocessing.image(Image.open(image))[None]))[0]
    answer = run_json(capsys, "predict", str(run), str(image))
    got = torch.tensor(answer[0]["prediction"]["embedding"])
    assert torch.allclose(got, want, atol=1e-5) and got.norm() == pytest.approx(1, abs=1e-4)
    pytest.importorskip("onnxruntime")
    result = run_json(capsys, "export", str(run), "--out", str(tmp_path / "e.onnx"))
    assert result["check"]["max_rel_diff"] <= 1e-4 and "embeddings N x 16" in result["metadata"]["output"]


def test_an_index_of_another_model_is_refused(run, tmp_path, monkeypatch, capsys):
    other = EmbeddingIndex(F.normalize(torch.randn(3, 8), dim=1), ["a", "b", "c"]).save(tmp_path / "o.index")
    monkeypatch.setenv("CNNLAB_INDEX", str(other))
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    assert main(["predict", str(run), str(image)]) == 1
    assert "8-D embeddings, the model gives 16-D" in capsys.readouterr().err


def test_service_search_and_verify(run, gallery, tmp_path, monkeypatch):
    from cnnlab.commands.index import build_index
    from cnnlab.serve import BackgroundServer, ServeConfig, build_app

    files = sorted(p for p in gallery.rglob("*") if p.suffix in {".png", ".jpg", ".bmp"})
    data = [p.read_bytes() for p in files]
    config = ServeConfig(port=0, max_batch=4, max_wait_ms=5, request_timeout_s=30)
    with BackgroundServer(build_app([str(run)], config), config) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:  # no index yet: 409, and verify works
        for _ in range(300):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        none = client.post("/v1/search", files={"image": ("a.png", data[0], "image/png")})
        assert none.status_code == 409 and "index build" in none.json()["error_msg"]
        page = client.get("/").text
        assert "/static/metric.js" in page and 'id="metric-answer"' in page
        script = client.get("/static/metric.js").text
        assert "/v1/search" in script and "/v1/verify" in script

    out = build_index(str(run), gallery, tmp_path / "s.index")["index"]
    monkeypatch.setenv("CNNLAB_INDEX", out)
    ckpt = load_checkpoint(run)
    with torch.no_grad():
        x = torch.stack([ckpt.preprocessing.image(Image.open(p)) for p in files[:2]])
        a, b = ckpt.model.eval()(ckpt.preprocessing.normalize(x))
    with BackgroundServer(build_app([str(run)], config), config) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(300):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        found = client.post("/v1/search", files={"image": ("q.png", data[3], "image/png")}, data={"top_k": "3"}).json()
        assert found["index_size"] == 12 and len(found["result"]) == 3
        assert found["result"][0]["name"] == str(files[3].resolve()) and found["result"][0]["distance"] < 1e-3

        pair = [("images", ("a", data[0], "image/png")), ("images", ("b", data[1], "image/jpeg"))]
        v = client.post("/v1/verify", files=pair).json()
        distance = float((a - b).norm())
        assert v["distance"] == pytest.approx(distance, abs=1e-4)
        assert v["threshold"] == pytest.approx((2 - 2 * 0.9) ** 0.5, abs=1e-6)  # the recorded EER cosine
        assert v["same"] == (distance <= v["threshold"])
        strict = client.post("/v1/verify", files=pair, data={"threshold": str(distance / 2)}).json()
        assert strict["same"] is False
        loose = client.post("/v1/verify", files=pair, data={"threshold": str(min(2.0, distance * 2))}).json()
        assert loose["same"] is True

        bad = [client.post("/v1/verify", files=pair[:1]),
               client.post("/v1/verify", files=pair, data={"threshold": "7"}),
               client.post("/v1/verify", files=pair, data={"threshold": "nan"}),
               client.post("/v1/search", files={"image": ("q.png", b"not an image", "image/png")}),
               client.post("/v1/search", files={"image": ("q.png", data[3], "image/png")}, data={"top_k": "x"}),
               client.post("/v1/search", files={"image": ("q.png", data[3], "image/png")}, data={"top_k": "0"}),
               client.post("/v1/search", files=[("image", ("q", data[3], "image/png"))] * 2),
               client.post("/v1/search")]
        for r in bad:
            assert 400 <= r.status_code < 500 and r.json()["error_msg"], r.text
        assert "exactly two images" in bad[0].json()["error_msg"]
        assert "threshold" in bad[1].json()["error_msg"] and "top_k" in bad[4].json()["error_msg"]
        # nothing lost: the service still answers
        assert client.post("/v1/search", files={"image": ("q.png", data[3], "image/png")}).status_code == 200
