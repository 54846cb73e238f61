"""The service over real HTTP on 127.0.0.1: good images in many formats and modes, bad ones of every
kind, limits, batching, explanations and docs. Expected answers come from running the model here."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import os
import time

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.serve import BackgroundServer, ServeConfig, build_app
from cnnlab.train.checkpoint import load_checkpoint
from test_serve_units import FASHION, bomb_png, encode, expected_scores, make_checkpoint, sample_images

BODY_LIMIT = 256 * 1024


def wait_ready(client: httpx.Client, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("server never became ready")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ckpt = make_checkpoint(tmp_path_factory.mktemp("serve") / "fashion")
    config = ServeConfig(port=0, max_body_bytes=BODY_LIMIT, max_batch=16, max_wait_ms=20, request_timeout_s=20)
    app = build_app([str(ckpt), f"second={ckpt}"], config)
    with BackgroundServer(app, config) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            wait_ready(client)
            yield {"client": client, "app": app, "model": load_checkpoint(ckpt).model, "url": server.url}


def classify(client, data: bytes, mime: str = "image/png", **fields) -> httpx.Response:
    return client.post("/v1/classify", files={"image": ("x", data, mime)},
                       data={k: str(v) for k, v in fields.items()})


def check_answer(answer: dict, want: np.ndarray, top_k: int = 5) -> None:
    """The answer's classes and scores are the model's own top-k, sorted, summing to at most 1."""
    order = np.argsort(-want)[:top_k]
    assert answer["result_num"] == top_k == len(answer["result"])
    got = [r["index"] for r in answer["result"]]
    assert got == order.tolist(), (got, order.tolist())
    assert [r["keyword"] for r in answer["result"]] == [FASHION[i] for i in order]
    scores = [r["score"] for r in answer["result"]]
    assert scores == sorted(scores, reverse=True)
    assert np.allclose(scores, want[order], atol=2e-6)
    assert sum(scores) <= 1.0 + 1e-9
    assert set(answer) >= {"log_id", "model", "result_num", "result", "time_ms"}
    assert answer["log_id"].isdigit()


def grey_of(data: bytes) -> np.ndarray:
    """What a 28 x 28 image file holds, as grey levels, decoded here with Pillow's own conversions."""
    img = Image.open(io.BytesIO(data))
    if img.mode.startswith("I;16"):
        return np.round(np.asarray(img, dtype=np.float64) / 65535 * 255).astype(np.uint8)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img.convert("RGBA"))
    return np.asarray(img.convert("L"))


def variants(grey: np.ndarray) -> dict[str, bytes]:
    """The same 28 x 28 picture in many formats and modes."""
    L = Image.fromarray(grey)
    rgb = Image.merge("RGB", (L, L.point(lambda v: v // 2), L.point(lambda v: 255 - v)))
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.where(grey > 128, 255, 90).astype(np.uint8)))
    return {
        "png-L": encode(L, "PNG"),
        "png-RGB": encode(rgb, "PNG"),
        "png-RGBA": encode(rgba, "PNG"),
        "png-P": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "PNG"),
        "png-16bit": encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        "jpeg-RGB": encode(rgb, "JPEG", quality=95),
        "jpeg-CMYK": encode(rgb.convert("CMYK"), "JPEG", quality=95),
        "gif-P": encode(L.convert("P"), "GIF"),
        "bmp-RGB": encode(rgb, "BMP"),
        "tiff-CMYK": encode(rgb.convert("CMYK"), "TIFF"),
        "webp-RGB": encode(rgb, "WEBP", lossless=True),
    }


def test_health_models_and_readiness(served):
    c = served["client"]
    assert c.get("/livez").json()["status"] == "alive"
    assert c.get("/readyz").json() == {"status": "ready", "models": ["fashion", "second"]}
    models = c.get("/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["fashion", "second"]
    first = models[0]
    assert first["architecture"] == "lenet5_modern" and first["classes"] == FASHION
    assert first["input_size"] == [1, 28, 28] and first["accuracy"] == 0.9
    assert first["roots"][FASHION.index("Bag")] == "accessory/bag"
    assert first["parameters"] == sum(p.numel() for p in served["model"].parameters())


def test_every_format_and_mode_gets_the_models_own_answer(served):
    c, model = served["client"], served["model"]
    grey = sample_images(1, seed=5)[0]
    seen = set()
    for name, data in variants(grey).items():
        r = classify(c, data, top_k=5)
        assert r.status_code == 200, (name, r.text)
        check_answer(r.json(), expected_scores(model, grey_of(data)))
        seen.add(Image.open(io.BytesIO(data)).mode)
    assert {"L", "RGB", "RGBA", "P", "CMYK", "I;16"} <= seen


def test_images_of_other_sizes_are_fitted_like_the_cli_does(served):
    c, model = served["client"], served["model"]
    big = Image.fromarray(sample_images(1, seed=9)[0]).resize((84, 84), Image.NEAREST)  # 3x, exact
    r = classify(c, encode(big, "PNG"), top_k=3)
    # Shrinking a nearest-neighbour 3x enlargement bilinearly lands close to the original; compare
    # with Pillow's own resize of the file, which is what the service does.
    want = expected_scores(model, np.asarray(big.resize((28, 28), Image.BILINEAR)))
    check_answer(r.json(), want, top_k=3)


def test_json_raw_and_multipart_bodies_agree(served):
    c = served["client"]
    data = encode(Image.fromarray(sample_images(1, seed=2)[0]), "PNG")
    multipart = classify(c, data, top_k=4).json()
    as_json = c.post("/v1/classify", json={"image": base64.b64encode(data).decode(), "top_k": 4}).json()
    raw = c.post("/v1/classify?top_k=4", content=data, headers={"content-type": "image/png"}).json()
    for other in (as_json, raw):
        assert other["result"] == multipart["result"]
    assert len({multipart["log_id"], as_json["log_id"], raw["log_id"]}) == 3


def test_model_choice_and_unknown_model(served):
    c = served["client"]
    data = encode(Image.fromarray(sample_images(1)[0]), "PNG")
    assert classify(c, data, model="second").json()["model"] == "second"
    r = classify(c, data, model="nope")
    assert r.status_code == 404 and r.json()["error_code"] == "unknown_model"


def bad_requests() -> dict[str, tuple[dict, int, str]]:
    png = encode(Image.fromarray(sample_images(1)[0]), "PNG")
    return {
        "truncated": ({"files": {"image": ("x", png[: len(png) // 2], "image/png")}}, 400, "invalid_image"),
        "empty": ({"files": {"image": ("x", b"", "image/png")}}, 400, "invalid_image"),
        "random bytes": ({"files": {"image": ("x", os.urandom(3000), "image/png")}}, 400, "invalid_image"),
        "bomb": ({"files": {"image": ("x", bomb_png(), "image/png")}}, 413, "image_too_large"),
        "oversized body": ({"content": b"\0" * (BODY_LIMIT + 1), "headers": {"content-type": "image/png"}},
                           413, "body_too_large"),
        "oversized chunked body": ({"content": iter([b"\0" * 65536] * 6), "headers": {"content-type": "image/png"}},
                                   413, "body_too_large"),
        "wrong content type": ({"content": png, "headers": {"content-type": "text/plain"}}, 415,
                               "unsupported_media_type"),
        "no content type": ({"content": png}, 415, "unsupported_media_type"),
        "top_k zero": ({"files": {"image": ("x", png, "image/png")}, "data": {"top_k": "0"}}, 400, "invalid_argument"),
        "top_k too big": ({"files": {"image": ("x", png, "image/png")}, "data": {"top_k": "11"}}, 400,
                          "invalid_argument"),
        "top_k not a number": ({"files": {"image": ("x", png, "image/png")}, "data": {"top_k": "all"}}, 400,
                               "invalid_argument"),
        "url instead of image": ({"json": {"url": "http://127.0.0.1:1/x.png"}}, 400, "invalid_argument"),
        "bad json": ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
                     "invalid_argument"),
        "multipart without image": ({"files": {"other": ("x", png, "image/png")}}, 400, "invalid_argument"),
        "icon format": ({"files": {"image": ("x", encode(Image.new("RGB", (16, 16)), "ICO"), "image/x-icon")}},
                        400, "invalid_image"),
    }


@pytest.mark.parametrize("case", list(bad_requests()))
def test_bad_input_is_a_json_error_and_the_server_still_answers(served, case):
    c, model = served["client"], served["model"]
    kwargs, status, code = bad_requests()[case]
    r = c.post("/v1/classify", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == code and body["error_msg"] and "Traceback" not in r.text
    grey = sample_images(1, seed=11)[0]
    good = classify(c, encode(Image.fromarray(grey), "PNG"), top_k=3)
    assert good.status_code == 200
    check_answer(good.json(), expected_scores(model, grey), top_k=3)


def test_unknown_paths_and_methods_are_json(served):
    c = served["client"]
    r = c.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error_code"] == "not_found"
    r = c.get("/v1/classify")
    assert r.status_code == 405 and r.json()["error_code"] == "method_not_allowed"


def test_batch_endpoint_answers_each_image_on_its_own(served):
    c, model = served["client"], served["model"]
    greys = sample_images(3, seed=4)
    files = [("images", (f"{i}.png", encode(Image.fromarray(g), "PNG"), "image/png")) for i, g in enumerate(greys)]
    files.insert(1, ("images", ("bad.png", b"nonsense", "image/png")))
    r = c.post("/v1/classify/batch", files=files, data={"top_k": "2"})
    assert r.status_code == 200
    results = r.json()["results"]
    assert r.json()["image_num"] == 4 and results[1]["error_code"] == "invalid_image"
    for answer, grey in zip([results[0], results[2], results[3]], greys):
        check_answer({**answer, "log_id": "1", "model": "m", "time_ms": 0}, expected_scores(model, grey), top_k=2)


def test_concurrent_requests_are_micro_batched_and_all_correct(served):
    model, url = served["model"], served["url"]
    batcher = served["app"].state.service.models["fashion"].batcher
    greys = sample_images(24, seed=8)
    before_batches, before_images = batcher.batches_run, batcher.images_run

    def one(grey):
        with httpx.Client(base_url=url, timeout=30) as own:
            return classify(own, encode(Image.fromarray(grey), "PNG"), top_k=1).json()

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(one, greys))
    for answer, grey in zip(answers, greys):
        check_answer(answer, expected_scores(model, grey), top_k=1)
    images = batcher.images_run - before_images
    batches = batcher.batches_run - before_batches
    assert images == 24 and batches < images  # at least one forward pass served several requests


def test_cam_returns_the_models_view_cam_and_feature_maps(served):
    pytest.importorskip("cnnlab.viz.cam")
    from cnnlab.viz.features import feature_maps

    c, model = served["client"], served["model"]
    grey = sample_images(1, seed=3)[0]
    r = c.post("/v1/cam", files={"image": ("x", encode(Image.fromarray(grey), "PNG"), "image/png")})
    assert r.status_code == 200, r.text
    ex = r.json()

    def png(url):
        assert url.startswith("data:image/png;base64,")
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))

    assert np.array_equal(png(ex["input_png"]), grey)  # the model's view of a 28x28 grey image is itself
    assert png(ex["cam_png"]).shape == (28, 28, 3)
    assert ex["class_index"] == int(np.argmax(expected_scores(model, grey)))
    x = (torch.from_numpy(grey / 255.0).float()[None, None] - 0.286) / 0.353
    stages = feature_maps(model, x)
    assert [f["name"] for f in ex["feature_maps"]] == [n for n, _ in stages][-8:]
    assert [f["shape"] for f in ex["feature_maps"]] == [list(m.shape[1:]) for _, m in stages][-8:]
    forced = c.post("/v1/cam", files={"image": ("x", encode(Image.fromarray(grey), "PNG"), "image/png")},
                    data={"class_index": "8"}).json()
    assert forced["class_index"] == 8 and forced["keyword"] == "Bag"
    # The old name answers the same for one more release, and says it is deprecated.
    old = c.post("/v1/explain", files={"image": ("x", encode(Image.fromarray(grey), "PNG"), "image/png")},
                 data={"class_index": "8"})
    assert old.status_code == 200 and old.headers["deprecation"] == "true" and "/v1/cam" in old.headers["link"]
    assert old.json()["cam_png"] == forced["cam_png"]


def test_page_docs_and_headers(served):
    c = served["client"]
    page = c.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # Works offline: every asset the page names is served from here.
    import re

    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/") for ref in refs), refs
    for ref in refs:
        assert c.get(ref).status_code == 200, ref
    spec = c.get("/openapi.json").json()
    assert {"/v1/classify", "/v1/classify/batch", "/v1/cam", "/v1/models", "/livez", "/readyz"} <= set(spec["paths"])
    assert spec["paths"]["/v1/explain"]["post"]["deprecated"] is True
    assert "multipart/form-data" in spec["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    docs = c.get("/docs")  # Swagger UI, every file from here and no inline script (the policy forbids them)
    assert docs.status_code == 200 and "default-src 'self'" in docs.headers["content-security-policy"]
    scripts = re.findall(r'<script src="([^"]+)"></script>', docs.text)
    assert scripts and docs.text.count("<script") == len(scripts) and all(s.startswith("/") for s in scripts)
    for ref in scripts + re.findall(r'href="([^"]+)"', docs.text):
        assert c.get(ref).status_code == 200, ref
    assert c.get("/favicon.ico").status_code == 200


# --- a model held back on purpose: overload and timeouts ---------------------------------------------

@pytest.fixture(scope="module")
def gated_server(tmp_path_factory):
    """One model, batches of one, room for two waiting requests, 1.5 s per request; its forward pass
    waits until the test opens the gate."""
    import threading

    ckpt = make_checkpoint(tmp_path_factory.mktemp("gated") / "gated")
    config = ServeConfig(port=0, max_batch=1, max_wait_ms=0, queue_size=2, request_timeout_s=1.5)
    app = build_app([str(ckpt)], config)
    batcher = app.state.service.models["gated"].batcher
    run, gate = batcher.run_batch, threading.Event()
    gate.set()

    def held(batch, k):
        gate.wait(20)
        return run(batch, k)

    batcher.run_batch = held
    with BackgroundServer(app, config) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            wait_ready(client)
            try:
                yield server.url, gate
            finally:
                gate.set()


def test_full_queue_is_503_with_retry_after_and_slow_requests_are_504(gated_server):
    url, gate = gated_server
    png = encode(Image.fromarray(sample_images(1)[0]), "PNG")

    def one(_):
        with httpx.Client(base_url=url, timeout=30) as c:
            return classify(c, png, top_k=1)

    gate.clear()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(one, range(8)))
    finally:
        gate.set()
    # One request in the model and two in the queue are accepted, and time out (the model is held);
    # the other five are refused at once.
    assert sorted(r.status_code for r in responses) == [503] * 5 + [504] * 3
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1" and refused.json()["error_code"] == "overloaded"
    late = next(r for r in responses if r.status_code == 504)
    assert late.json()["error_code"] == "timeout"
    with httpx.Client(base_url=url, timeout=30) as c:  # with the gate open it serves again
        deadline = time.monotonic() + 10
        while (r := classify(c, png, top_k=1)).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)  # the abandoned jobs are still leaving the queue
        assert r.status_code == 200


def test_bench_load_generator_counts_what_the_server_served(served):
    from cnnlab.bench.serve import run_load

    batcher = served["app"].state.service.models["second"].batcher
    before = batcher.images_run
    png = encode(Image.fromarray(sample_images(1)[0]), "PNG")
    result = run_load(served["url"], "second", png, concurrency=4, duration_s=0.6, warmup_s=0.2)
    served_count = batcher.images_run - before
    assert result["errors"] == {} and result["requests"] > 0
    # Requests measured are a subset of those served (warm-up and the last ones in flight are not).
    assert result["requests"] <= served_count <= result["requests"] + 4 + 4 * 200
    assert result["p50_ms"] <= result["p99_ms"]
    assert result["rps"] == pytest.approx(result["requests"] / 0.6)
