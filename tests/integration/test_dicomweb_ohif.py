"""The OHIF viewer (npm @ohif/app 3.13.2, its prebuilt dist) against MIFAS's DICOMweb, in headless
Chromium with WebGL (issue 12, "Tests — real clients"): the study list shows our studies, opening
one renders the image (read back from the viewport canvas and compared with the stored pixels),
and a multi-frame instance scrolls frame by frame. OHIF is served by tests/integration/ohif_proxy.py
on one origin with /dicom-web forwarded to MIFAS (HTTP Basic as a viewer user); screenshots go to
tests/output."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

import dicom_fixtures as F
import ohif_browser
import render_objects as RO
from browser import OUTPUT_DIR
from mifas_helpers import storescu
from ohif_proxy import OhifProxy, dist_missing
from test_portal_auth import PASSWORD, add_user

ROOT = "1.2.826.0.1.3680043.8.498.78."
MF_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
WAIT = 90  # s; OHIF on SwiftShader with 2 shared cores needs several seconds per page
FRAMES = 8


# --- objects ----------------------------------------------------------------------------------


def square_x(frame: int) -> int:
    """Left edge of the multi-frame's bright square in frame `frame` (0-based): it moves right."""
    return 20 + 25 * frame


def make_ct() -> Dataset:
    """render_objects' CT phantom (body disc, bright bone ring, dark lungs; window 40/400) as a
    study of a patient with a Latin-1 name."""
    ds = RO.make_ct("ohif")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID = "Müller^Jürgen", "OHIF-MUE"
    ds.StudyDate, ds.StudyTime = "20240102", "101010"
    ds.StudyInstanceUID = generate_uid(ROOT, ["ct", "st"])
    ds.SeriesInstanceUID = generate_uid(ROOT, ["ct", "se"])
    ds.SOPInstanceUID = generate_uid(ROOT, ["ct", "i"])
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    return ds


def make_multiframe() -> Dataset:
    """Multi-frame Grayscale Word Secondary Capture, 8 frames of 256×256: a dim vertical
    gradient with a bright square that moves 25 px right per frame; a CJK (UTF-8) name."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = MF_GRAYSCALE_WORD_SC
    ds.StudyInstanceUID = generate_uid(ROOT, ["mf", "st"])
    ds.SeriesInstanceUID = generate_uid(ROOT, ["mf", "se"])
    ds.SOPInstanceUID = generate_uid(ROOT, ["mf", "i"])
    ds.PatientName, ds.PatientID = "郭^政達", "OHIF-KUO"
    ds.StudyDate, ds.StudyTime, ds.Modality = "20230301", "090000", "OT"
    ds.SeriesNumber, ds.InstanceNumber, ds.ConversionType = 1, 1, "WSD"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 256
    ds.NumberOfFrames = FRAMES
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    # no Frame Time: a cine object might start playing by itself and change frames untouched
    ds.FrameIncrementPointer = 0x00182002  # Frame Label Vector
    ds.FrameLabelVector = [f"F{i + 1}" for i in range(FRAMES)]
    ds.WindowCenter, ds.WindowWidth = 1600, 3200
    y = np.mgrid[0:256, 0:256][0]
    frames = []
    for f in range(FRAMES):
        a = (400 + y).astype(np.uint16)
        a[100:150, square_x(f):square_x(f) + 40] = 3000
        frames.append(a)
    ds.PixelData = np.stack(frames).tobytes()
    return ds


def ohif_name(pn: str) -> str:
    """How OHIF's study list prints a one-component PN: "Family, Given"."""
    family, _, given = pn.partition("^")
    return f"{family}, {given}"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ohif(shared_mifas, tmp_path_factory):
    """MIFAS holding the two studies, a viewer user, and OHIF in front of it."""
    why = dist_missing()
    if why:
        pytest.fail(why, pytrace=False)
    out = tmp_path_factory.mktemp("ohif")
    ct, mf = make_ct(), make_multiframe()
    paths = [F.write_part10(ct, out / "ct.dcm"), F.write_part10(mf, out / "mf.dcm")]
    server = shared_mifas
    add_user(server.data_dir, "ohifviewer", "viewer")
    r = storescu(server.host, server.port, paths)
    assert r.returncode == 0, r.stderr[-2000:]
    proxy = OhifProxy(f"http://127.0.0.1:{server.http_port}", ("ohifviewer", PASSWORD)).start()
    try:
        yield proxy, {"ct": ct, "mf": mf}
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def chrome():
    """One Chromium for the module, with WebGL (ohif_browser: browser.py's shared browser has
    --disable-gpu and no SwiftShader)."""
    try:
        driver = ohif_browser.start_chromium()
    except ohif_browser.ChromiumMissing as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield driver
    finally:
        driver.quit()


# --- helpers ----------------------------------------------------------------------------------


def wait_for(driver, fn, what: str, timeout: float = WAIT):
    """Wait until fn(driver) is truthy; on time-out fail with what, the browser's last errors
    and a screenshot."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(fn, message=what)
    except TimeoutException:
        shot = save(driver, "ohif-timeout")
        logs = [e["message"][:300] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        pytest.fail(f"timed out after {timeout} s waiting for {what}; screenshot {shot}; "
                    f"browser errors: {logs[-10:]}", pytrace=False)


def save(driver, name: str):
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def viewport(driver, size: int = 512) -> np.ndarray | None:
    """The viewport canvas as grey levels (downscaled to at most `size` px), None before it exists."""
    v = driver.execute_script(ohif_browser.READ_VIEWPORT_JS, size)
    if not v:
        return None
    return np.array(v["grey"], dtype=np.float64).reshape(v["h"], v["w"])


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def overlay_index(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "[data-cy=viewport-overlay-bottom-right]").text


def no_failed_requests(proxy: OhifProxy):
    failed = [r for r in proxy.requests if r[2] >= 400]
    assert not failed, f"DICOMweb requests OHIF made that MIFAS refused: {failed}"


def open_viewer(driver, proxy: OhifProxy, study: str):
    proxy.clear_requests()
    driver.get(f"{proxy.url}/viewer?StudyInstanceUIDs={study}")


def shown_image(driver) -> np.ndarray | None:
    """The viewport once it shows something that is not one flat colour, else None."""
    img = viewport(driver)
    return img if img is not None and img.std() > 10 else None


# --- tests ------------------------------------------------------------------------------------


def test_study_list_shows_our_studies(ohif, chrome):
    proxy, objs = ohif
    proxy.clear_requests()
    chrome.get(proxy.url + "/")
    # a study's row is selectable (aria-selected); the filter inputs' row is not
    rows_js = ("return [...document.querySelectorAll('table tbody tr[aria-selected]')]"
               ".map(tr => [...tr.cells].map(td => td.innerText.trim()));")
    rows = wait_for(chrome, lambda d: (r := d.execute_script(rows_js)) and len(r) >= 2 and r,
                    "two rows in OHIF's study list")
    headers = chrome.execute_script(
        "return [...document.querySelectorAll('table thead th')].map(th => th.innerText.trim());")
    save(chrome, "ohif-study-list")
    col = {name: headers.index(name) for name in ("Patient", "Study Date", "Modalities")}
    by_name = {row[col["Patient"]]: row for row in rows}
    expected = {
        ohif_name("Müller^Jürgen"): ("02-Jan-2024", "CT"),
        ohif_name("郭^政達"): ("01-Mar-2023", "OT"),
    }
    assert set(by_name) == set(expected), f"study list rows: {rows}"
    for name, (date, modality) in expected.items():
        row = by_name[name]
        assert row[col["Study Date"]].startswith(date), row
        assert row[col["Modalities"]] == modality, row
    # the list came from MIFAS's QIDO-RS, through the proxy
    assert any(p.startswith("/dicom-web/studies?") for _, p, *_ in proxy.requests), proxy.requests
    no_failed_requests(proxy)


def test_opening_a_study_renders_the_image(ohif, chrome):
    proxy, objs = ohif
    ct = objs["ct"]
    open_viewer(chrome, proxy, ct.StudyInstanceUID)
    wait_for(chrome, lambda d: shown_image(d) is not None, "the CT in the viewport")
    # the overlay shows the stored window (40/400) once the image is in
    wait_for(chrome, lambda d: "400" in d.find_element(By.CSS_SELECTOR, "[data-cy=viewport-overlay-bottom-left]").text,
             "the window W:400 L:40 in the viewport overlay")
    save(chrome, "ohif-ct")
    shown = viewport(chrome)

    # expected: the phantom's stored pixels through its rescale and window, 8-bit
    hu = np.frombuffer(ct.PixelData, dtype=np.uint16).reshape(512, 512) * 1.0 - 1024.0
    want = np.clip((hu - (40 - 0.5)) / (400 - 1) + 0.5, 0, 1) * 255
    # the body (soft tissue, bone ring) is the bright part of both; the rest is black
    got_box, want_box = bbox(shown > 40), bbox(want > 40)
    assert got_box is not None, "the viewport is black"
    gy0, gy1, gx0, gx1 = got_box
    wy0, wy1, wx0, wx1 = want_box
    got_crop = shown[gy0:gy1, gx0:gx1]
    want_crop = np.asarray(Image.fromarray(want[wy0:wy1, wx0:wx1].astype(np.uint8))
                           .resize((gx1 - gx0, gy1 - gy0), Image.BILINEAR), dtype=np.float64)
    # same shape of body (aspect ratio), same picture inside it (lungs dark, ring bright)
    got_aspect, want_aspect = (gx1 - gx0) / (gy1 - gy0), (wx1 - wx0) / (wy1 - wy0)
    assert abs(got_aspect / want_aspect - 1) < 0.05, (got_box, want_box)
    corr = np.corrcoef(got_crop.ravel(), want_crop.ravel())[0, 1]
    assert corr > 0.9, f"the viewport does not look like the CT: correlation {corr:.3f}"
    assert np.abs(got_crop - want_crop).mean() < 25, np.abs(got_crop - want_crop).mean()

    paths = [p for _, p, *_ in proxy.requests]
    assert any(p.endswith("/metadata") and ct.SeriesInstanceUID in p for p in paths), paths
    assert any(f"/instances/{ct.SOPInstanceUID}/frames/1" in p for p in paths), paths
    no_failed_requests(proxy)


def test_multiframe_scrolls(ohif, chrome):
    proxy, objs = ohif
    mf = objs["mf"]
    open_viewer(chrome, proxy, mf.StudyInstanceUID)

    def square_at(frame: int):
        """The viewport once it shows frame `frame` (0-based): the bright square's centre, as a
        fraction of the image's width, where that frame has it."""
        def check(driver):
            img = shown_image(driver)
            if img is None:
                return False
            box = bbox(img > 15)  # the image (gradient ≥ 400 of window 0–3200) against black
            if box is None:
                return False
            y0, y1, x0, x1 = box
            bright = np.nonzero(img[y0:y1, x0:x1] > 180)
            if len(bright[1]) == 0:
                return False
            centre = (bright[1].mean() + 0.5) / (x1 - x0)
            want = (square_x(frame) + 20) / 256
            return abs(centre - want) < 0.03 and (frame + 1, centre)
        return check

    wait_for(chrome, square_at(0), "frame 1 of the multi-frame in the viewport")
    wait_for(chrome, lambda d: f"(1/{FRAMES})" in overlay_index(d), f"the overlay's frame index 1/{FRAMES}")
    save(chrome, "ohif-multiframe-frame1")
    first = viewport(chrome)

    canvas = chrome.find_element(By.CSS_SELECTOR, "canvas.cornerstone-canvas")
    ActionChains(chrome).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, 120).perform()
    wait_for(chrome, square_at(1), "frame 2 after one mouse-wheel step")
    wait_for(chrome, lambda d: f"(2/{FRAMES})" in overlay_index(d), f"the overlay's frame index 2/{FRAMES}")
    save(chrome, "ohif-multiframe-frame2")
    assert np.abs(viewport(chrome) - first).mean() > 1, "the image did not change"

    # OHIF's hot key for the next image is the down arrow
    ActionChains(chrome).move_to_element(canvas).click().send_keys(Keys.ARROW_DOWN).perform()
    wait_for(chrome, square_at(2), "frame 3 after the down-arrow key")
    wait_for(chrome, lambda d: f"(3/{FRAMES})" in overlay_index(d), f"the overlay's frame index 3/{FRAMES}")
    save(chrome, "ohif-multiframe-frame3")

    frames = sorted(p for _, p, *_ in proxy.requests if f"/instances/{mf.SOPInstanceUID}/frames/" in p)
    assert {p.rsplit("/", 1)[1] for p in frames} >= {"1", "2", "3"}, frames
    no_failed_requests(proxy)


def test_bulkdata_uris_point_back_at_the_viewer_origin(ohif):
    """The proxy passes the browser's Host on, so the BulkDataURIs MIFAS builds from it lead
    the viewer back to its own origin (and through the proxy's credentials) — the URLs OHIF
    follows when it fetches bulk data."""
    proxy, objs = ohif
    ct = objs["ct"]
    url = f"{proxy.url}/dicom-web/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/metadata"
    req = urllib.request.Request(url, headers={"Accept": "application/dicom+json"})
    with urllib.request.urlopen(req, timeout=30) as r:  # no credentials: the proxy adds them
        meta = json.loads(r.read())
    bulk = meta[0]["7FE00010"]["BulkDataURI"]
    assert bulk.startswith(f"{proxy.url}/dicom-web/studies/{ct.StudyInstanceUID}/"), bulk
    req = urllib.request.Request(bulk, headers={"Accept": "multipart/related; type=\"application/octet-stream\""})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    assert ct.PixelData in body, "the bulk data is not the stored pixel data"
