"""One headless Chromium (Debian `chromium` + `chromium-driver`) driven over WebDriver (selenium),
shared by every browser test of the session. Import the fixture into a test module:
`from browser import browser  # noqa: F401`. A missing browser fails the tests with the reason."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Where screenshots go (git-ignored); the tests print each path.
OUTPUT_DIR = Path(__file__).resolve().parents[1] / "output"


@pytest.fixture(scope="session")
def browser():
    for p, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not p.exists():
            pytest.fail(f"{p} is missing: install Debian's {pkg} (tests/run.sh does)", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail(f"selenium is not installed in this interpreter ({e}); tests/run.sh installs it",
                    pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--lang=en-US", "--no-first-run"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def fetch_with_session(driver, url: str) -> bytes:
    """GET `url` with the browser's cookies (the image bytes a page shows)."""
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    request = urllib.request.Request(url, headers={"Cookie": cookies})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()
