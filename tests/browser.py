"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium) for the
viewer's browser test, plus the start/stop of a ``view.py`` server on a free local port.

Also a command for the docs' screenshots of a running viewer:
``python tests/browser.py URL OUT.png [--query TEXT]``.
"""

import io
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WINDOW = (1200, 800)


def chromium_paths():
    """``(chromium, chromedriver)`` paths, or None when either (or selenium) is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def view_server(*args: str, timeout: float = 180.0) -> Iterator[str]:
    """Run ``view.py ARGS`` on a free local port; yields its URL once it serves, stops it after."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "view.py"), *args, "--host", "127.0.0.1", "--port", str(port)],
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        start, lines = time.time(), []
        while time.time() - start < timeout:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError("view.py ended: " + "".join(lines)[-2000:])
            lines.append(line)
            if line.startswith("[gs-vq] viewer at"):
                break
        else:
            raise RuntimeError("view.py did not start in time: " + "".join(lines)[-2000:])
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def open_browser():
    """A headless Chromium (software WebGL) through selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",
              f"--window-size={WINDOW[0]},{WINDOW[1]}"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


def canvas_centre(drv) -> np.ndarray:
    """The middle half (in each direction) of the 3D canvas as ``[h, w, 3]`` uint8: away from
    viser's notifications (top left) and axes gizmo (bottom left)."""
    from PIL import Image
    from selenium.webdriver.common.by import By

    canvas = drv.find_element(By.TAG_NAME, "canvas")
    img = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB"))
    h, w = img.shape[:2]
    return img[h // 4: 3 * h // 4, w // 4: 3 * w // 4]


def status_text(drv) -> str:
    """The viewer's status line ("frame N: WxH, ... ms, mode"), or "" before the first frame."""
    from selenium.webdriver.common.by import By

    for el in drv.find_elements(By.XPATH, "//*[starts-with(normalize-space(text()), 'frame ')]"):
        return el.text
    return ""


def wait_for(drv, predicate, timeout: float = 90.0, every: float = 1.0):
    """Poll ``predicate(drv)`` until it returns something truthy; returns it (or the last value)."""
    start, value = time.time(), None
    while time.time() - start < timeout:
        value = predicate(drv)
        if value is not None and (isinstance(value, np.ndarray) or value):
            return value
        time.sleep(every)
    return value


def rendered(drv, min_std: float = 8.0) -> Optional[np.ndarray]:
    """The canvas centre once it shows a frame (not all one colour), else None."""
    if not status_text(drv):
        return None
    img = canvas_centre(drv)
    return img if img.reshape(-1, 3).std(axis=0).max() > min_std else None


def type_query(drv, text: str) -> None:
    """Type ``text`` into the panel's "Text query" box and press Enter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = drv.find_element(By.XPATH, "//label[normalize-space()='Text query']/following::input[1]")
    box.clear()
    box.send_keys(text + Keys.ENTER)


def dismiss_notifications(drv) -> None:
    """Close viser's notifications (e.g. 'Software WebGL rendering detected') for a clean picture."""
    from selenium.webdriver.common.by import By

    for button in drv.find_elements(By.CSS_SELECTOR, ".mantine-Notification-closeButton"):
        try:
            button.click()
        except Exception:  # it may close by itself meanwhile
            pass


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Screenshot a running gs-vq viewer (for the docs).")
    p.add_argument("url")
    p.add_argument("out")
    p.add_argument("--query", help="type this text query first")
    p.add_argument("--wait", type=float, default=8.0, help="seconds to let the full-resolution frame arrive")
    args = p.parse_args(argv)
    drv = open_browser()
    try:
        drv.get(args.url)
        if wait_for(drv, rendered, timeout=180) is None:
            raise SystemExit("no frame arrived")
        if args.query:
            type_query(drv, args.query)
            wait_for(drv, lambda d: args.query in status_text(d), timeout=120)
        time.sleep(args.wait)
        dismiss_notifications(drv)
        time.sleep(1.0)
        drv.save_screenshot(args.out)
    finally:
        drv.quit()


if __name__ == "__main__":
    main()
