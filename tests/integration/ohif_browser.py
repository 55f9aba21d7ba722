"""Headless Chromium for the OHIF viewer (test and benchmark, issue 12): browser.py's approach
(Debian chromium + chromium-driver over selenium) with WebGL on. OHIF renders through
Cornerstone3D, which needs WebGL; headless Chromium only offers it through the SwiftShader
software rasteriser, which Chromium no longer enables by itself (`--enable-unsafe-swiftshader`),
and browser.py's `--disable-gpu` would turn WebGL off. The portal tests keep browser.py's
session-wide browser unchanged; OHIF gets its own.

Also the in-page JavaScript that reads the viewport: Cornerstone3D renders each viewport into its
own 2D canvas (`canvas.cornerstone-canvas`, copied from the shared WebGL context), so the page can
read back exactly what is shown, without the overlays (text, tool bars) that a screenshot has."""

from __future__ import annotations

import os
import shutil
import tempfile

from browser import CHROMEDRIVER, CHROMIUM

WINDOW = (1400, 1000)

# A downscaled grey copy of the first viewport canvas: {w, h, grey: [..]} or null (no canvas,
# size 0). Downscaled in the page (drawImage) so a poll costs little and the transfer is small.
READ_VIEWPORT_JS = """
const size = arguments[0];
const c = document.querySelector('canvas.cornerstone-canvas');
if (!c || !c.width || !c.height) return null;
const scale = Math.min(1, size / Math.max(c.width, c.height));
const w = Math.max(1, Math.round(c.width * scale)), h = Math.max(1, Math.round(c.height * scale));
const t = document.createElement('canvas');
t.width = w; t.height = h;
const ctx = t.getContext('2d', {willReadFrequently: true});
ctx.drawImage(c, 0, 0, w, h);
const d = ctx.getImageData(0, 0, w, h).data;
const grey = new Array(w * h);
for (let i = 0; i < w * h; i++) grey[i] = Math.round((d[4 * i] + d[4 * i + 1] + d[4 * i + 2]) / 3);
return {w: w, h: h, cw: c.width, ch: c.height, grey: grey};
"""

# Installed before the viewer's own scripts (CDP Page.addScriptToEvaluateOnNewDocument): on every
# animation frame, look at the viewport canvas (downscaled to 48 px) and record the first moment
# it is not blank in window.__mifasFirstImage (performance.now(): ms since navigation start).
# "Not blank": some pixel differs from the first by more than 24 grey levels — an empty viewport
# is one uniform colour (black).
FIRST_IMAGE_HOOK_JS = """
(function () {
  window.__mifasFirstImage = null;
  const probe = document.createElement('canvas');
  probe.width = 48; probe.height = 48;
  let ctx = null;
  function look() {
    if (window.__mifasFirstImage !== null) return;
    const c = document.querySelector('canvas.cornerstone-canvas');
    if (c && c.width && c.height) {
      ctx = ctx || probe.getContext('2d', {willReadFrequently: true});
      ctx.clearRect(0, 0, 48, 48);
      ctx.drawImage(c, 0, 0, 48, 48);
      const d = ctx.getImageData(0, 0, 48, 48).data;
      for (let i = 4; i < d.length; i += 4) {
        if (Math.abs(d[i] - d[0]) + Math.abs(d[i + 1] - d[1]) + Math.abs(d[i + 2] - d[2]) > 72) {
          window.__mifasFirstImage = performance.now();
          return;
        }
      }
    }
    requestAnimationFrame(look);
  }
  requestAnimationFrame(look);
})();
"""


class ChromiumMissing(RuntimeError):
    pass


def start_chromium(window: tuple[int, int] = WINDOW):
    """A headless Chromium with WebGL (SwiftShader) and its own throw-away profile (so every
    start has a cold HTTP cache and empty local storage); the caller quits it."""
    for p, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not p.exists():
            raise ChromiumMissing(f"{p} is missing: install Debian's {pkg} (tests/run.sh does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ohif-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--disable-dev-shm-usage", f"--window-size={window[0]},{window[1]}",
                "--lang=en-US", "--no-first-run", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
                "--force-device-scale-factor=1", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    except Exception:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    quit_ = driver.quit

    def quit_and_clean():
        try:
            quit_()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean
    return driver


def webgl_renderer(driver) -> str | None:
    """The WebGL renderer string of the current page, or None without WebGL."""
    return driver.execute_script("""
        const gl = document.createElement('canvas').getContext('webgl2');
        if (!gl) return null;
        const ext = gl.getExtension('WEBGL_debug_renderer_info');
        return ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    """)
