"""The web page in headless Chromium: upload an image, read the top-1 class from the page, and check
it against the model run directly. Skips where Debian's chromium or Playwright is missing."""

from __future__ import annotations

import importlib.util
import os
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from browser import CHROMIUM, CHROMIUM_ARGS
from cnnlab.serve import BackgroundServer, ServeConfig, build_app
from cnnlab.train.checkpoint import load_checkpoint
from test_serve_units import FASHION, encode, expected_scores, make_checkpoint, sample_images

SCREENSHOT = os.environ.get("CNNLAB_SERVE_SCREENSHOT")  # a path, to look at the page after the test


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_page_uploads_an_image_and_shows_the_models_top_class(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    ckpt = make_checkpoint(tmp_path / "fashion")
    grey = sample_images(1, seed=13)[0]
    image_file = tmp_path / "item.png"
    image_file.write_bytes(encode(Image.fromarray(grey), "PNG"))
    want = FASHION[int(np.argmax(expected_scores(load_checkpoint(ckpt).model, grey)))]

    config = ServeConfig(port=0)
    with BackgroundServer(build_app([str(ckpt)], config), config) as server:
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.05)
        requested: list[str] = []
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.on("request", lambda req: requested.append(req.url))
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(server.url + "/")
                page.wait_for_selector("#model option", state="attached", timeout=15_000)
                empty_before = not page.is_visible("#answer") and not page.is_visible("#warnings")
                bad_file = tmp_path / "notes.png"
                bad_file.write_bytes(b"not an image at all")
                page.set_input_files("#file", str(bad_file))
                page.wait_for_selector("#status.error", timeout=15_000)
                bad_status = page.inner_text("#status")
                empty_after_error = not page.is_visible("#answer")
                page.set_input_files("#file", str(image_file))
                page.wait_for_selector("body[data-state=classified], body[data-state=cam-shown]", timeout=20_000)
                top1 = page.inner_text("#top1").strip()
                bars = page.locator("#results li").count()
                cam_shown = True
                try:
                    page.wait_for_selector("body[data-state=cam-shown]", timeout=20_000)
                except sync_api.TimeoutError:
                    cam_shown = False
                stages = page.locator("#features figure").count()
                channel_labels = page.locator("#features li[data-channel]").count()
                view_src = page.get_attribute("#model-view", "src") or ""
                if SCREENSHOT:
                    page.screenshot(path=SCREENSHOT, full_page=True)
                page.goto(server.url + "/docs")  # Swagger UI, from the swagger-ui-bundle package
                page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
                operations = page.locator(".swagger-ui .opblock").count()
            finally:
                browser.close()
    assert errors == []
    assert empty_before and empty_after_error  # no empty cards or broken images before an answer, nor after an error
    assert "invalid_image" in bad_status and "HTTP 400" in bad_status
    assert operations >= 8  # every endpoint of the API on the interactive page
    assert top1 == want
    assert bars == 5
    if importlib.util.find_spec("cnnlab.viz.cam"):  # feature maps and CAM need the visualisation package
        assert cam_shown and stages == 4 and view_src.startswith("data:image/png;base64,")  # LeNet: 2 conv + 2 pool
        assert channel_labels > 4  # each feature-map tile names its channel and value range
    # Works offline: the page asked nothing of any other host.
    assert requested and all(u.startswith((server.url, "data:", "blob:")) for u in requested), requested
