"""The app in a real browser: headless Debian Chromium driven by Selenium.

The app runs in a subprocess on a free port of 127.0.0.1 with a tiny random
model; the tests upload files as a user would and read the page. They skip
(saying why) without Gradio, Selenium, `/usr/bin/chromium` or
`/usr/bin/chromedriver`: Selenium is pointed at Debian's driver so that it
downloads nothing (`apt-get install chromium chromium-driver`).

`DERAINDROP_APP_SCREENSHOT=docs/images/app.png` also saves the photo's page there.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]
#: The upload limit of the app under test: above the test photo, below `big_file`.
MAX_UPLOAD_MB = 0.2


def _missing() -> str | None:
    for module, extra in (("gradio", "app"), ("selenium", "browser-tests")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[{extra}]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tiny_model, tmp_path_factory):
    """The app's URL while it runs; stopped (SIGTERM) after the module, its folder checked gone."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "tf_deraindrop.app", "--weights", str(tiny_model)]
    command += ["--port", str(port), "--max-upload-mb", str(MAX_UPLOAD_MB)]
    command += ["--precision", "float32"]  # no bfloat16 probe: a faster first photo
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited ({process.returncode}):\n{log.read_text()}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not answer in 90 s:\n{log.read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    found = re.search(r"Uploads and results go to (\S+)", log.read_text())
    assert found and not os.path.exists(found[1]), "the app's temporary folder outlived it"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    """Random bytes named like a photo, above the app's upload limit."""
    path = tmp_path_factory.mktemp("big") / "huge.png"
    path.write_bytes(os.urandom(int(MAX_UPLOAD_MB * 1e6) + 50_000))
    return path


def _upload(browser, url: str, path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    field = "#upload input[type=file]"
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, field))
    browser.find_element(By.CSS_SELECTOR, field).send_keys(str(path))


def _status(browser, timeout: float = 60) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(lambda b: b.find_element(By.ID, "status").text.strip())
    return browser.find_element(By.ID, "status").text


def _shown_images(browser, element: str) -> list[str]:
    from selenium.webdriver.common.by import By

    images = browser.find_elements(By.CSS_SELECTOR, f"#{element} img")
    return [i.get_attribute("src") for i in images if i.is_displayed() and i.get_attribute("src")]


def test_photo_is_derained_with_heat_map(app, browser, photo, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    _upload(browser, app, photo)
    status = _status(browser)
    assert re.search(r"90 x 60 photo derained in [\d.]+ s", status), status
    assert "Engine: Keras, float32" in status
    # Rainy and derained under the slider, and the heat map.
    WebDriverWait(browser, 15).until(lambda b: len(_shown_images(b, "slider")) == 2)
    WebDriverWait(browser, 15).until(lambda b: len(_shown_images(b, "heatmap")) == 1)
    downloads = browser.find_element("id", "download").text.replace("\n", "")
    assert "rainy_derained.png" in downloads and "rainy_attention.png" in downloads
    browser.save_screenshot(str(tmp_path / "app.png"))
    if target := os.environ.get("DERAINDROP_APP_SCREENSHOT"):
        shutil.copy(tmp_path / "app.png", target)


def test_a_file_that_is_not_a_photo_or_video_gets_a_message(app, browser, not_media):
    _upload(browser, app, not_media)
    status = _status(browser)
    assert "notes.jpg is neither a photo nor a video" in status, status
    assert not _shown_images(browser, "slider")


def test_a_file_too_large_gets_a_message_and_the_app_goes_on(
    app, browser, big_file, photo, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _upload(browser, app, big_file)
    # Gradio refuses it before it is uploaded, in a toast.
    WebDriverWait(browser, 20).until(
        lambda b: "maximum" in b.find_element(By.TAG_NAME, "body").text
    )
    browser.save_screenshot(str(tmp_path / "too_large.png"))
    _upload(browser, app, photo)
    assert "photo derained" in _status(browser)
