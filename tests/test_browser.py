"""A person's view: headless Chromium loads the page from a real server, uploads the example photo, and sees
the face labelled. Skips where Chromium or Playwright is not installed (.ci/run installs both)."""
import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()  # the shipped model: it carries age intervals, which the page shows
    process = subprocess.Popen([sys.executable, "-m", "agegender.cli", "serve", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"the server stopped: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=20)


def test_upload_on_the_page_shows_labelled_faces(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1000, "height": 1100})
        page.goto(server)
        page.set_input_files("#file", str(ROOT / "examples" / "astronaut.jpg"))
        page.wait_for_selector("#results tbody tr", timeout=30_000)
        status = page.text_content("#status")
        cells = page.eval_on_selector_all("#results tbody tr td", "cells => cells.map(c => c.textContent)")
        canvas_size = page.eval_on_selector("#canvas", "c => [c.width, c.height]")
        page.screenshot(path=str(ARTIFACTS / "page-after-upload.png"), full_page=True)
        page.set_input_files("#file", str(ROOT / "pyproject.toml"))
        page.wait_for_selector("#status.error", timeout=30_000)
        error = page.text_content("#status")
        page.check("#small")  # the same photo, with small faces asked for: still its one face
        page.set_input_files("#file", str(ROOT / "examples" / "astronaut.jpg"))
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('1 face')", timeout=30_000)
        asked_small = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)"
                                    ".some(name => name.endsWith('/v1/predict?min_face=40'))")
        heic = None
        if importlib.util.find_spec("pi_heif"):  # an iPhone photo, which the server reads and Chromium cannot show
            page.uncheck("#small")
            page.set_input_files("#file", str(ROOT / "tests" / "data" / "astronaut.heic"))
            page.wait_for_function("document.querySelector('#status').textContent.includes('HEIC') || "
                                   "document.querySelector('#status').textContent.includes('cannot show')",
                                   timeout=30_000)
            heic = page.text_content("#status"), page.eval_on_selector_all("#results tbody tr", "rows => rows.length")
        video_reply = None
        if importlib.util.find_spec("av"):  # a video: the people in it, in their own table
            from conftest import panning, write_video

            clip = write_video(ARTIFACTS / "clip.mp4", panning())
            page.uncheck("#small")
            page.set_input_files("#file", str(clip))
            page.wait_for_selector("#people tbody tr", timeout=60_000)
            video_reply = page.text_content("#status"), page.eval_on_selector_all(
                "#people tbody tr td", "cells => cells.map(c => c.textContent)")
        browser.close()
    if video_reply:
        status_line, person = video_reply
        assert status_line.startswith("1 person found in 6 frames")
        assert person[0] == "1" and person[3] == "female" and person[5:] == ["0.0-2.5", "6"]
    assert status.startswith("1 face found")
    assert re.fullmatch(r"\d+-\d+", cells[2]) and cells[3] == "female" and cells[4].endswith("%")
    assert canvas_size == [512, 512]
    assert "not an image" in error
    assert asked_small
    if heic:
        status, rows = heic
        assert status.startswith("1 face found") and "cannot show the photo" in status and rows == 1
    assert os.path.getsize(ARTIFACTS / "page-after-upload.png") > 10_000
