"""The charts as a user sees them: a real TensorBoard server, Debian's headless Chromium.

A short real training writes the events; the test loads TensorBoard's Time Series
and Images pages, checks that the page's <img> elements point at our images and
that those load as the PNGs we wrote, and that the screenshots show them. The
screenshots are kept under $RLLIB_SALIENCY_TEST_ARTIFACTS (default tests/artifacts/).
Without Chromium the test skips, except in CI (``CI`` or
``RLLIB_SALIENCY_REQUIRE_BROWSER`` set; ``.ci/run`` installs Chromium), where it fails.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from browser import free_port
from conftest import FRAMEWORK, ppo_config
from PIL import Image

from rllib_saliency import SaliencyCallbacks

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(FRAMEWORK != "tf2", reason="run once (in the tf2 process, to balance the suite)"),
]

NAMES = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]
ARTIFACTS = os.environ.get(
    "RLLIB_SALIENCY_TEST_ARTIFACTS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")
)


def chromium() -> str:
    for name in (os.environ.get("RLLIB_SALIENCY_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    reason = "Chromium is not installed (apt-get install -y chromium); .ci/run installs it"
    if os.environ.get("CI") or os.environ.get("RLLIB_SALIENCY_REQUIRE_BROWSER"):
        pytest.fail(reason + ", and CI must run this test")
    pytest.skip(reason)


def browse(browser: str, url: str, *options: str) -> subprocess.CompletedProcess:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += ["--window-size=1600,1400", "--virtual-time-budget=20000", *options, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def server(ray_cluster, tmp_path_factory):
    """TensorBoard on a log dir one level above a short real training's run."""
    root = tmp_path_factory.mktemp("browser")
    config = ppo_config().callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient", "integrated_gradients"),
            targets=("action", "value"),
            feature_names=NAMES,
            image_every=1,
            logdir=str(root / "cartpole"),
        )
    )
    algo = config.build_algo()
    for _ in range(3):
        algo.train()
    algo.stop()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(root), "--host", "127.0.0.1"]
        + ["--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        tags: dict = {}
        while time.monotonic() < deadline and len(tags.get("cartpole", {})) < 8:
            try:
                tags = json.load(urllib.request.urlopen(f"{base}/data/plugin/images/tags", timeout=5))
            except OSError:
                pass
            time.sleep(1)
        assert len(tags.get("cartpole", {})) == 8, tags
        yield base, tags["cartpole"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_time_series_page_loads_our_images(server):
    base, tags = server
    browser = chromium()
    os.makedirs(ARTIFACTS, exist_ok=True)
    for kind in ("evolution", "importance"):
        url = f"{base}/?tagFilter={kind}#timeseries"
        for attempt in range(6):  # a visit may end before every card fetched its image (loaded machine)
            time.sleep(2 * attempt)
            dom = browse(browser, url, "--dump-dom").stdout
            sources = {html.unescape(s) for s in re.findall(r'<img[^>]+src="([^"]*imageData[^"]*)"', dom)}
            if len(sources) == 4:
                break
        assert len(sources) == 4, dom[-2000:]  # one card per policy/target/method, each with its image
        for source in sources:  # each one loads, as a PNG of the size we render
            with urllib.request.urlopen(f"{base}/{source}", timeout=10) as response:
                picture = Image.open(io.BytesIO(response.read()))
            assert picture.format == "PNG" and picture.width == 662 and picture.height > 200
        shot = os.path.join(ARTIFACTS, f"tensorboard_time_series_{kind}.png")
        count = viridis_pixels if kind == "evolution" else bar_orange_pixels
        assert screenshot(browser, url, shot, count) > 500  # the charts are on screen


def test_images_dashboard_shows_every_chart(server):
    base, tags = server
    browser = chromium()
    os.makedirs(ARTIFACTS, exist_ok=True)
    for name, tag_filter in (("evolution", "evolution"), ("importance", "importance")):
        shot = os.path.join(ARTIFACTS, f"tensorboard_images_{name}.png")
        count = viridis_pixels if name == "evolution" else bar_orange_pixels
        assert screenshot(browser, f"{base}/#images&tagFilter={tag_filter}", shot, count) > 2000


def screenshot(browser: str, url: str, path: str, count) -> int:
    """Screenshot ``url`` (again, while the page had not drawn its images yet); ``count(path)``."""
    found = 0
    for attempt in range(6):  # on a loaded machine the server can answer after the budget ran out
        time.sleep(2 * attempt)
        result = browse(browser, url, f"--screenshot={path}", "--enable-logging=stderr", "--v=0")
        assert os.path.exists(path), result.stderr[-2000:]
        assert "Uncaught" not in result.stderr, result.stderr[-2000:]
        found = count(path)
        if found > 2000:
            break
    return found


def viridis_pixels(path: str) -> int:
    """Pixels of the deep purple at viridis' low end: nothing in TensorBoard's own UI has it."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    purple = np.array([68, 1, 84])
    return int((np.abs(pixels - purple).sum(axis=-1) < 60).sum())


def bar_orange_pixels(path: str) -> int:
    """Pixels of matplotlib's "tab:orange" bars (#ff7f0e), as TensorBoard shows them."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array([255, 127, 14])).sum(axis=-1) < 12).sum())
