"""The explainer page (GET /explain) in headless Chromium: the decks' examples, the controls, a kernel on a
picture and the walk through a served model, every number the page shows checked against cnnlab's NumPy
reference engine, torch or Pillow. Screenshots go to the test's output folder (and to
``$CNNLAB_EXPLAIN_SCREENSHOTS`` when set). Skips where Debian's chromium or Playwright is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.analysis.tracer import trace
from cnnlab.reference import conv as ref_conv
from cnnlab.reference import explain as ex
from cnnlab.serve import BackgroundServer, ServeConfig, build_app
from cnnlab.train.checkpoint import load_checkpoint
from test_serve_units import FASHION, encode, expected_scores, make_checkpoint, sample_images

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = os.environ.get("CNNLAB_EXPLAIN_SCREENSHOTS")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

# The decks' numbers, written out by hand from the slides (see tests/test_explain.py for the slide names).
DECK = {
    "basic": [[[19, 25], [37, 43]]],
    "padding": [[[0, 3, 8, 4], [9, 19, 25, 10], [21, 37, 43, 16], [6, 7, 8, 0]]],
    "stride": [[[0, 8], [6, 8]]],
    "channels": [[[56, 72], [104, 120]]],
    "edge": [[[0, 30, 30, 0]] * 4],
    "pool-ramp": [[[4, 5], [7, 8]]],
    "pool-max": [[[6, 8], [3, 4]]],
    "pool-avg": [[[3.25, 5.25], [2, 2]]],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A served LeNet-5 checkpoint, a Chromium page on /explain and the URLs it requested."""
    sync_api = pytest.importorskip("playwright.sync_api")
    root = tmp_path_factory.mktemp("explain")
    ckpt = make_checkpoint(root / "fashion")
    config = ServeConfig(port=0)
    with BackgroundServer(build_app([str(ckpt)], config), config) as server:
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.05)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requested: list[str] = []
            errors: list[str] = []
            page.on("request", lambda req: requested.append(req.url))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/explain")
            page.wait_for_selector("body[data-ready=true]", timeout=15_000)
            try:
                yield {"page": page, "url": server.url, "ckpt": ckpt, "root": root, "requested": requested,
                       "errors": errors, "browser": browser}
            finally:
                browser.close()


def shot(site, name: str, **kw) -> Path:
    path = site["root"] / f"{name}.png"
    site["page"].screenshot(path=str(path), **kw)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SHOTS) / f"explain-{name}.png")
    return path


def shown_output(page) -> np.ndarray:
    """The output grids as the page shows them: F x OH x OW from the cells' exact values."""
    return np.array(page.evaluate("""() => [...document.querySelectorAll('#output-grids table')].map(t =>
        [...t.rows].map(r => [...r.querySelectorAll('button')].map(b => Number(b.dataset.value))))"""))


def example_arrays(page, name: str) -> dict:
    e = page.evaluate(f"() => window.cnnExplain.EXAMPLES[{json.dumps(name)}]")
    return e


def pair(text: str | None, default: int) -> tuple[int, int]:
    if not text:
        return default, default
    v = [int(t) for t in text.split(",")]
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def reference(e: dict) -> np.ndarray:
    x = np.array(e["x"], float)[None]
    if e["op"] == "conv":
        w = np.array(e["w"], float)
        b = np.array(e.get("b") or [0.0] * len(w), float)
        return ref_conv.conv2d_sliding(x, w, b, pair(e.get("stride"), 1), pair(e.get("padding"), 0),
                                       pair(e.get("dilation"), 1))[0]
    size = pair(e["size"], 2)
    pool = torch.nn.functional.max_pool2d if e["op"] == "max" else torch.nn.functional.avg_pool2d
    return pool(torch.tensor(x), size, pair(e.get("stride"), size[0]), pair(e.get("padding"), 0))[0].numpy()


def test_every_deck_example_shows_the_reference_engines_numbers(site):
    page = site["page"]
    names = page.evaluate("() => Object.keys(window.cnnExplain.EXAMPLES)")
    assert {"basic", "padding", "stride", "channels", "one-by-one", "volume", "edge", "edge-deck", "seven-s3",
            "pool-max", "pool-avg"} <= set(names)
    for name in names:
        page.select_option("#example", name)
        shown = shown_output(page)
        want = reference(example_arrays(page, name))
        np.testing.assert_allclose(shown, want, rtol=1e-12, atol=1e-12, err_msg=name)
        if name in DECK:
            np.testing.assert_allclose(shown, DECK[name], rtol=1e-12, err_msg=name)
        if name == "edge-deck":
            assert shown[0, 0, 0] == -5  # the deck's 3 + 1 + 2 + 0 + 0 + 0 - 1 - 8 - 2
        if name == "volume":
            # cs231n's demo: two 3x3x3 filters over the padded 7x7x3 volume, stride 2 -> 2 x 3 x 3, by torch as well
            e = example_arrays(page, name)
            t = torch.nn.functional.conv2d(torch.tensor(e["x"], dtype=torch.float64)[None],
                                           torch.tensor(e["w"], dtype=torch.float64),
                                           torch.tensor(e["b"], dtype=torch.float64), stride=2, padding=1)[0]
            assert shown.shape == (2, 3, 3)
            np.testing.assert_array_equal(shown, t.numpy())
            shot(site, "volume", full_page=False)


def test_the_window_steps_with_its_products_and_sum(site):
    page = site["page"]
    page.select_option("#example", "basic")
    assert page.inner_text("#step .total") == "sum = 19"
    assert "0×0 + 1×1 + 3×2 + 4×3 = 19" in page.inner_text("#step")
    page.focus("#next")
    page.keyboard.press("Enter")  # keyboard: the button steps to the next window
    assert "1×0 + 2×1 + 4×2 + 5×3 = 25" in page.inner_text("#step")
    page.click('#output-grids button[data-i="1"][data-j="1"]')
    assert "4×0 + 5×1 + 7×2 + 8×3 = 43" in page.inner_text("#step")
    highlighted = page.evaluate("() => [...document.querySelectorAll('#input-grids td.win')].map(td => Number(td.dataset.value))")
    assert highlighted == [4, 5, 7, 8]
    # two channels: each channel's products labelled with its input and kernel, then the sum over channels
    page.select_option("#example", "channels")
    lines = page.locator("#step .terms").all_inner_texts()
    assert lines == ["channel 0, x[0] · w[0][0]: 0×0 + 1×1 + 3×2 + 4×3 = 19",
                     "channel 1, x[1] · w[0][1]: 1×1 + 2×2 + 4×3 + 5×4 = 37"]
    assert page.inner_text("#step .total") == "19 + 37 = 56"
    # the volume: the bias joins the sum
    page.select_option("#example", "volume")
    e = example_arrays(page, "volume")
    total = page.inner_text("#step .total")
    assert total.endswith(f"+ bias 1 = {int(reference(e)[0, 0, 0])}")
    # pooling shows the window's maximum, or its mean
    page.select_option("#example", "pool-avg")
    assert page.inner_text("#step .total") == "(1 + 1 + 5 + 6) / 4 = 3.25"
    page.select_option("#example", "pool-max")
    assert page.inner_text("#step .total") == "max(1, 1, 5, 6) = 6"
    shot(site, "playground", full_page=False)


def test_output_size_formula_and_the_does_not_fit_case(site):
    page = site["page"]
    page.select_option("#example", "seven-s2")
    assert page.get_attribute("#size-formula", "data-fits") == "true"
    assert "floor((7 + 2·0 − 1·(3 − 1) − 1) / 2) + 1 = floor(4 / 2) + 1 = 3" in page.inner_text("#size-formula")
    page.select_option("#example", "seven-s3")
    text = page.inner_text("#size-formula")
    assert page.get_attribute("#size-formula", "data-fits") == "false"
    assert "Does not fit" in text and "4 / 3 is not a whole number" in text and "1 row(s) at the bottom" in text
    assert "(7 − 3 + 2·0) / 3 + 1 = ≈2.3333" in text  # the decks' formula, not a whole number
    want = torch.nn.functional.conv2d(torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 3, 3), stride=3).shape[2:]
    assert shown_output(page).shape[1:] == tuple(want) == (2, 2)
    page.select_option("#example", "seven-s3-p1")
    assert page.get_attribute("#size-formula", "data-fits") == "true"
    assert shown_output(page).shape[1:] == (3, 3)
    page.select_option("#example", "seven-s3")
    shot(site, "does-not-fit", full_page=False)


def test_controls_channels_filters_stride_padding_dilation_against_torch(site):
    page = site["page"]
    rng = np.random.default_rng(5)
    page.select_option("#example", "basic")
    page.fill("#channels", "2")
    page.dispatch_event("#channels", "change")
    page.fill("#filters", "3")
    page.dispatch_event("#filters", "change")
    x = rng.integers(-5, 6, (2, 6, 7)).astype(float)
    w = np.round(rng.normal(size=(3, 2, 2, 3)), 2)
    b = np.array([0.5, -1.25, 0.0])
    for c in range(2):
        page.fill(f"#in-{c}", "\n".join(" ".join(str(int(v)) for v in row) for row in x[c]))
    for f in range(3):
        for c in range(2):
            page.fill(f"#k-{f}-{c}", "\n".join(" ".join(repr(float(v)) for v in row) for row in w[f, c]))
        page.fill(f"#b-{f}", str(b[f]))
    for stride, padding, dilation in [("1", "0", "1"), ("2,1", "1", "2"), ("1,2", "2,1", "1,2")]:
        page.fill("#stride", stride)
        page.fill("#padding", padding)
        page.fill("#dilation", dilation)
        want = torch.nn.functional.conv2d(torch.tensor(x)[None], torch.tensor(w), torch.tensor(b),
                                          stride=pair(stride, 1), padding=pair(padding, 0),
                                          dilation=pair(dilation, 1))[0].numpy()
        np.testing.assert_allclose(shown_output(page), want, rtol=1e-12, atol=1e-12)
    page.fill("#stride", "0")
    assert page.is_visible("#pg-error") and "stride" in page.inner_text("#pg-error")
    page.fill("#stride", "1")
    page.fill("#k-0-0", "1 2; 3")
    assert "not rectangular" in page.inner_text("#pg-error")
    # The arithmetic itself on random shapes, through the page's functions, against the reference engine.
    for trial in range(20):
        c, f, kh, kw = (int(v) for v in rng.integers(1, 4, 4))
        h, wd = int(rng.integers(kh + 2, 9)), int(rng.integers(kw + 2, 9))
        s, p, d = [int(v) for v in rng.integers(1, 3, 2)], [int(v) for v in rng.integers(0, 2, 2)], [1, int(rng.integers(1, 3))]
        xs, ws, bs = rng.normal(size=(c, h, wd)), rng.normal(size=(f, c, kh, kw)), rng.normal(size=f)
        got = page.evaluate("([x, w, b, o]) => window.cnnExplain.conv2d(x, w, b, o).out",
                            [xs.tolist(), ws.tolist(), bs.tolist(), {"stride": s, "padding": p, "dilation": d}])
        want = ref_conv.conv2d_sliding(xs[None], ws, bs, tuple(s), tuple(p), tuple(d))[0]
        np.testing.assert_allclose(np.array(got), want, rtol=1e-12, atol=1e-12)
        for mode, fn in (("max", torch.nn.functional.max_pool2d), ("avg", torch.nn.functional.avg_pool2d)):
            size = [int(v) for v in rng.integers(2, 4, 2)]
            pad = [int(rng.integers(0, size[0] // 2 + 1)), int(rng.integers(0, size[1] // 2 + 1))]
            got = page.evaluate("([x, o]) => window.cnnExplain.pool2d(x, o).out",
                                [xs.tolist(), {"size": size, "stride": s, "padding": pad, "mode": mode}])
            want = fn(torch.tensor(xs)[None], size, s, pad)[0].numpy()
            np.testing.assert_allclose(np.array(got), want, rtol=1e-12, atol=1e-12)


def test_a_kernel_on_an_uploaded_picture(site):
    page = site["page"]
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:48, 0:64]
    rgb = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8)
    rgb[12:36, 20:44] = [250, 240, 30]  # a bright square: edges to find
    rgb = np.clip(rgb + rng.integers(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    photo = site["root"] / "photo.png"
    photo.write_bytes(encode(Image.fromarray(rgb), "PNG"))
    grey = np.asarray(Image.fromarray(rgb).convert("L"), float)  # Pillow's own grey conversion
    page.set_input_files("#image-file", str(photo))
    page.wait_for_selector("body[data-image=done]", timeout=10_000)
    shown_grey = np.array(page.evaluate("() => window.cnnExplain.picture.grey"))
    np.testing.assert_array_equal(shown_grey, grey)
    for kernel in ("emboss", "edge", "edge8"):
        page.select_option("#image-kernel", kernel)
        k = np.array(page.evaluate("() => window.cnnExplain.picture.kernel"), float)
        out = np.array(page.evaluate("() => window.cnnExplain.picture.out"))
        want = ref_conv.conv2d_sliding(grey[None, None], k[None, None], None, 1, 1)[0, 0]
        np.testing.assert_array_equal(out, want)
        drawn = np.array(page.evaluate("""() => { const c = document.getElementById('image-out');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return Array.from({length: c.height}, (_, i) => Array.from({length: c.width}, (_, j) => d[(i * c.width + j) * 4])); }"""))
        np.testing.assert_array_equal(drawn, np.clip(want, 0, 255))  # integers, so clipping is the only change
    assert np.array(page.evaluate("() => window.cnnExplain.picture.kernel")).tolist() == [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]
    page.select_option("#image-kernel", "emboss")
    assert page.evaluate("() => window.cnnExplain.picture.kernel") == [[-1, -1, 0], [-1, 0, 1], [0, 1, 1]]  # the deck's 浮雕
    page.locator("#image-mode").screenshot(path=str(site["root"] / "image.png"))
    if SHOTS:
        shutil.copy(site["root"] / "image.png", Path(SHOTS) / "explain-image.png")


def test_walk_through_the_served_model(site):
    page = site["page"]
    grey = sample_images(1, seed=21)[0]
    item = site["root"] / "item.png"
    item.write_bytes(encode(Image.fromarray(grey), "PNG"))
    page.set_input_files("#walk-file", str(item))
    page.wait_for_selector("body[data-walk=done]", timeout=30_000)
    model = load_checkpoint(site["ckpt"]).model.eval()
    # softmax: every class, its probability as shown equals the model's (float32) within float32 rounding
    probs = np.array(page.evaluate("() => [...document.querySelectorAll('#softmax td.prob')].map(t => Number(t.dataset.value))"))
    classes = page.locator("#softmax tbody th").all_inner_texts()
    want = expected_scores(model, grey)
    assert classes == FASHION
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-7)
    answer = json.loads(page.inner_text("#answer-json"))
    assert answer["result"][0]["keyword"] == FASHION[int(np.argmax(want))] and answer["result_num"] == 5
    assert {"log_id", "result_num", "result"} <= set(answer)
    # every layer, every channel drawn
    x = (torch.from_numpy(grey.astype(np.float32) / 255.0)[None, None] - 0.286) / 0.353
    acts = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: acts.setdefault(n, o.detach())) for n, m in model.named_modules()
             if n and not list(m.children())]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    names = page.evaluate("() => [...document.querySelectorAll('#layers .layer')].map(s => s.dataset.name)")
    assert names == list(acts)
    conv_channels = page.locator('#layers .layer[data-name="features.4"] button.chan').count()
    assert conv_channels == 16  # all channels, not the strongest few
    # a clicked unit of the second convolution: its value, its receptive field, the weights that made its channel
    page.click('#layers .layer[data-name="features.4"] button.chan[data-channel="5"]')
    big = page.locator('#layers canvas.big[data-layer]').nth(4)
    box = big.bounding_box()
    scale = float(big.get_attribute("data-scale")) * box["width"] / float(page.evaluate(
        "() => document.querySelectorAll('#layers canvas.big')[4].width"))
    page.mouse.click(box["x"] + (7 + 0.5) * scale, box["y"] + (3 + 0.5) * scale)  # row 3, column 7
    shown = float(page.get_attribute("#unit-value", "data-value"))
    assert shown == pytest.approx(float(acts["features.4"][0, 5, 3, 7]), rel=1e-6, abs=1e-6)
    records = {r.name: r for r in trace(model, x)[0]}
    fr, fc = records["features.4"].rf
    want_field = [*fr.covers(3), *fc.covers(7)]
    assert [int(v) for v in page.get_attribute("#unit-field", "data-field").split(",")] == want_field
    assert want_field == [4, 17, 12, 25]  # by hand: jump 2, size 14, start -2: 3*2 - 2 = 4 ... 17; 7*2 - 2 = 12 ... 25
    page.focus('#layers canvas.big >> nth=4')
    page.keyboard.press("ArrowDown")  # keyboard: the unit moves a row down
    assert float(page.get_attribute("#unit-value", "data-value")) == pytest.approx(float(acts["features.4"][0, 5, 4, 7]),
                                                                                    rel=1e-6, abs=1e-6)
    weights = np.array(page.evaluate("() => [...document.querySelectorAll('#unit .weights td')].map(t => Number(t.dataset.value))"))
    conv = dict(model.named_modules())["features.4"]
    np.testing.assert_allclose(weights, conv.weight[5].detach().numpy().ravel(), rtol=1e-6)
    assert float(page.get_attribute("#unit .bias", "data-value")) == pytest.approx(float(conv.bias[5].detach()), rel=1e-6)
    shot(site, "walk", full_page=True)
    assert site["errors"] == []
    assert all(u.startswith((site["url"], "data:", "blob:")) for u in site["requested"]), site["requested"]


def test_phone_width_is_readable_and_the_page_is_reachable_from_the_index(site):
    page = site["browser"].new_page(viewport={"width": 390, "height": 844})
    try:
        page.goto(site["url"] + "/")
        page.click("a[href='/explain']")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        page.select_option("#example", "volume")
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a phone"
        path = site["root"] / "phone.png"
        page.screenshot(path=str(path), full_page=False)
        if SHOTS:
            shutil.copy(path, Path(SHOTS) / "explain-phone.png")
    finally:
        page.close()


def test_cli_web_serves_the_page_without_a_model(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from cnnlab.cli import main; sys.exit(main(sys.argv[1:]))",
                             "explain", "--web", "--no-browser", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/explain")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None, "explain --web never answered"
                time.sleep(0.1)
        assert page.status_code == 200 and "explain.js" in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").json() == {"models": []}
        assert "content-security-policy" in page.headers
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert f"http://127.0.0.1:{port}/explain" in out
