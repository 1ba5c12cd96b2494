"""view.py in a real browser: headless Chromium opens the page, the first frame shows the scene
(pixels not all one colour), and a typed text query changes the picture. Needs Debian's
``chromium`` and ``chromium-driver`` and selenium (``.ci/run`` installs them)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from browser import chromium_paths, open_browser, rendered, status_text, type_query, view_server, wait_for
from viewer_scenes import semantic_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(chromium_paths() is None,
                                reason="needs chromium + chromium-driver (apt-get) and selenium (pip)")


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    """The demo scene (README command 1's), trained for a few steps: a model folder with a scene."""
    model = tmp_path_factory.mktemp("demo") / "model"
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", str(model), "--iterations", "30",
                        "--config", str(ROOT / "tests" / "tiny.yaml"), "--quiet"],
                       capture_output=True, text=True, cwd=str(ROOT), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return model


@pytest.fixture(scope="module")
def browser():
    drv = open_browser()
    yield drv
    drv.quit()


def test_page_shows_the_demo_scene(demo_model, browser):
    with view_server("-m", str(demo_model)) as url:
        browser.get(url)
        assert "Gaussians" in wait_for(browser, lambda d: d.find_element("tag name", "body").text, timeout=60)
        img = wait_for(browser, rendered, timeout=120)
        assert img is not None, f"no frame on the page (status: {status_text(browser)!r})"
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # a picture, not a flat fill


def settled(drv):
    """The canvas centre once a frame is shown and stays the same for a second (the full-resolution
    frame after the camera came to rest)."""
    import time

    a = rendered(drv)
    time.sleep(1.5)
    b = rendered(drv)
    return b if a is not None and b is not None and np.abs(a.astype(int) - b).mean() < 1.0 else None


def saturation(img: np.ndarray) -> float:
    return float((img.max(axis=-1).astype(int) - img.min(axis=-1)).mean())


def test_query_changes_the_overlay(tmp_path, browser):
    model = semantic_model(tmp_path / "sem")
    with view_server("-m", str(model)) as url:
        browser.get(url)
        before = wait_for(browser, settled, timeout=150)
        assert before is not None, f"no steady frame on the page (status: {status_text(browser)!r})"
        type_query(browser, "red ball")
        status = wait_for(browser, lambda d: "'red ball'" in status_text(d) and status_text(d), timeout=120)
        assert status and "query heatmap" in status, status_text(browser)
        after = wait_for(browser, settled, timeout=60)
        assert after is not None and np.abs(after.astype(int) - before).mean() > 5, "the picture did not change"
        # the heatmap greys out everything but the red ball: the picture loses most of its colour
        assert saturation(after) < 0.6 * saturation(before), (saturation(after), saturation(before))
