"""A headless Chromium (Debian's chromium and chromium-driver, driven by selenium) that
opens a local HTML file and reports what a person would see: whether it rendered, the
console's errors, each image's natural width, any resource fetched that is not a data
URL, and a full-page screenshot. No network: every background service is off."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM: Final = "/usr/bin/chromium"
CHROMEDRIVER: Final = "/usr/bin/chromedriver"
_FLAGS: Final = (
    "--headless=new",
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


@dataclass(frozen=True)
class PageView:
    """What the browser made of one page."""

    ready_state: str
    title: str
    console_errors: list[str]
    images: list[tuple[bool, int]]  # (complete, naturalWidth) per <img>
    fetched: list[str]  # resources loaded other than data: URLs
    body_text: str


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)  # .ci/run installs them: CI must not skip
        pytest.skip(message)


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile in `profile`, quit on exit."""
    _need_browser()
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def view(driver: webdriver.Chrome, page: Path, screenshot: Path) -> PageView:
    """Open `page`, wait for it to load, and save a full-page screenshot."""
    driver.get(page.resolve().as_uri())
    state = driver.execute_script("return document.readyState")
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
    )
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith('data:'))"
    )
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 100, 16000))
    driver.save_screenshot(str(screenshot))
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return PageView(
        ready_state=str(state),
        title=driver.title,
        console_errors=errors,
        images=[(bool(c), int(w)) for c, w in images],
        fetched=list(fetched),
        body_text=driver.find_element("tag name", "body").text,
    )
