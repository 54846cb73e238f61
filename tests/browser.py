"""The service's web page in headless Chromium, for the tests of each task's card: serve checkpoints,
drop one image on the page, wait for the card's answer and read elements from it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def wait_ready(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while httpx.get(url + "/readyz").status_code != 200:
        assert time.monotonic() < deadline, "server never became ready"
        time.sleep(0.05)


def answer_on_page(url: str, image: Path, state: str, texts: dict[str, str] = {},
                   counts: dict[str, str] = {}) -> dict:
    """Open the page at ``url``, drop ``image`` on it, wait for ``body[data-state=STATE]``; the inner
    text of each selector in ``texts``, the number of matches of each in ``counts``, and ``errors`` (the
    page's script errors) and ``classify_card_shown``."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + "/")
            page.wait_for_selector("#model option", state="attached", timeout=15_000)
            page.set_input_files("#file", str(image))
            page.wait_for_selector(f"body[data-state={state}]", timeout=20_000)
            out = {name: page.inner_text(selector).strip() for name, selector in texts.items()}
            out.update({name: page.locator(selector).count() for name, selector in counts.items()})
            out["classify_card_shown"] = page.is_visible("#answer")
        finally:
            browser.close()
    out["errors"] = errors
    return out
