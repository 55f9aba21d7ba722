"""Thumbnails and previews from the real binary (issue 10, renderer): objects stored with DCMTK
storescu, a viewer logged in over HTTP, and our pixels compared with DCMTK dcmj2pnm's rendering
of the same object, frame, window and size (mean absolute difference per sample)."""

from __future__ import annotations

import http.client
import re
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_fixtures import write_part10
from mifas_helpers import CHILD_ENV, MIFAS_BIN, storescu
from render_objects import OBJECTS, ROOT, make_objects, read_png, read_pnm

PASSWORD = "render-pass-1"
SIZE = 128
# Mean absolute difference (0..255) allowed against DCMTK. Both shrink grey values before the
# window; MR's min–max window is taken over the shrunk values here (a little narrower than
# DCMTK's), JPEG 2000 thumbnails come from the wavelet low-pass band and JPEG ones from the
# scaled IDCT, so those differ by a few levels; a wrong window, inversion, frame or colour
# conversion gives tens.
TOLERANCE = {"ct": 1.0, "mr": 3.0, "us_rgb": 1.0, "ct_j2k": 4.0, "us_jpeg_mf": 4.0}


class Browser:
    """Cookies kept, redirects not followed."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        for value in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        conn.close()
        return r.status, r.headers, data

    def login(self, user: str):
        status, _, html = self.request("GET", "/login")
        assert status == 200, html[:300]
        token = self.cookies.get("mifas_login")
        assert token, "no login token cookie"
        status, _, body = self.request(
            "POST", "/login",
            body=urlencode({"username": user, "password": PASSWORD, "login_token": token, "next": ""}),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303 and "mifas_session" in self.cookies, f"login: {status} {body[:300]!r}"


def add_viewer(data_dir: Path, name: str) -> None:
    r = subprocess.run([str(MIFAS_BIN), "user", "add", name, "--role", "viewer", "--data-dir", str(data_dir)],
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, f"user add: rc={r.returncode}\n{r.stdout}\n{r.stderr}"


def make_sr(outdir: Path) -> Path:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = generate_uid(ROOT, ["render", "sr"])
    ds.StudyInstanceUID = generate_uid(ROOT, ["render", "st"])
    ds.SeriesInstanceUID = generate_uid(ROOT, ["render", "sr-se"])
    ds.PatientID, ds.PatientName, ds.Modality = "render-RENDER", "RENDER^PHANTOM", "SR"
    ds.StudyDate, ds.StudyTime = "20240102", "101010"
    return write_part10(ds, outdir / "sr.dcm")


def dcmtk_render(path: Path, out: Path, voi: list[str], frame: int = 0) -> np.ndarray:
    """dcmj2pnm's 8-bit PGM/PPM of `frame` scaled to SIZE columns (every object is landscape or square)."""
    r = subprocess.run(["dcmj2pnm", *voi, "+F", str(frame + 1), "+Sxv", str(SIZE), str(path), str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"dcmj2pnm {path.name}: {r.stderr}"
    return read_pnm(out.read_bytes())


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A running server holding the render objects and an SR; a logged-in viewer."""
    from mifas_helpers import MifasServer

    work = tmp_path_factory.mktemp("render")
    paths = make_objects(work / "objects")
    paths["sr"] = make_sr(work / "objects")
    server = MifasServer(work / "server")
    add_viewer(server.data_dir, "viewer1")
    server.start()
    try:
        # Compressed files go in their own transfer syntax (storescu proposes only
        # uncompressed ones unless told).
        native = [p for label, p in paths.items() if label not in ("ct_j2k", "us_jpeg_mf")]
        for files, ts in [(native, None), ([paths["ct_j2k"]], "1.2.840.10008.1.2.4.90"),
                          ([paths["us_jpeg_mf"]], "1.2.840.10008.1.2.4.50")]:
            r = storescu(server.host, server.port, files, ts=ts)
            assert r.returncode == 0, f"storescu: {r.stdout}\n{r.stderr}"
        uids = {label: str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                for label, p in paths.items()}
        browser = Browser(server.http_port)
        browser.login("viewer1")
        for label, uid in uids.items():
            status, _, body = browser.request("GET", f"/instances/{uid}/thumbnail.jpg")
            assert status == 200, f"{label} not stored? {status} {body[:200]!r}"
        yield server, browser, paths, uids, work
    finally:
        server.stop()


@pytest.mark.parametrize("label", list(OBJECTS))
def test_preview_pixels_match_dcmtk(stored, label):
    server, browser, paths, uids, work = stored
    frame = 5 if label == "us_jpeg_mf" else 0
    status, headers, body = browser.request(
        "GET", f"/instances/{uids[label]}/preview.png?size={SIZE}&frame={frame}")
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "image/png"
    assert headers.get("X-Placeholder") is None
    assert headers["X-Frames"] == ("20" if label == "us_jpeg_mf" else "1")
    ours = read_png(body)
    # DCMTK has no JPEG 2000 decoder: the J2K copy is compared with DCMTK's rendering of the
    # uncompressed CT it was made from (lossless, so the same pixels).
    source = paths["ct"] if label == "ct_j2k" else paths[label]
    theirs = dcmtk_render(source, work / f"{label}.pnm", OBJECTS[label][1], frame)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    diff = float(np.abs(ours.astype(np.int16) - theirs.astype(np.int16)).mean())
    assert diff < TOLERANCE[label], f"{label}: mean difference {diff:.2f} against dcmj2pnm"
    # Not a flat image: the comparison means something.
    assert ours.std() > 10


def test_frames_windows_thumbnails_and_errors(stored):
    server, browser, paths, uids, work = stored
    # The slider: another frame is another image.
    mf = uids["us_jpeg_mf"]
    a = read_png(browser.request("GET", f"/instances/{mf}/preview.png?size=64&frame=0")[2])
    b = read_png(browser.request("GET", f"/instances/{mf}/preview.png?size=64&frame=10")[2])
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 2
    # Past the last frame draws the last one.
    last = browser.request("GET", f"/instances/{mf}/preview.png?size=64&frame=19")[2]
    assert browser.request("GET", f"/instances/{mf}/preview.png?size=64&frame=500")[2] == last

    # A preset and a free window against DCMTK's +Ww.
    ct = uids["ct"]
    status, _, body = browser.request("GET", f"/instances/{ct}/preview.png?size={SIZE}&preset=lung")
    assert status == 200
    theirs = dcmtk_render(paths["ct"], work / "lung.pnm", ["+Ww", "-600", "1500"])
    assert np.abs(read_png(body).astype(int) - theirs.astype(int)).mean() < 3.0
    status, _, body = browser.request("GET", f"/instances/{ct}/preview.png?size={SIZE}&wc=400&ww=1800")
    theirs = dcmtk_render(paths["ct"], work / "bone.pnm", ["+Ww", "400", "1800"])
    assert np.abs(read_png(body).astype(int) - theirs.astype(int)).mean() < 3.0

    # Thumbnail: a JPEG of at most 128 px, cacheable, revalidated by its ETag.
    status, headers, body = browser.request("GET", f"/instances/{ct}/thumbnail.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert headers["Cache-Control"].startswith("private")
    status, _, body = browser.request("GET", f"/instances/{ct}/thumbnail.jpg",
                                      headers={"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""

    # An SR is stored but has no pixels: the placeholder, not an error.
    status, headers, body = browser.request("GET", f"/instances/{uids['sr']}/preview.jpg")
    assert status == 200 and headers["X-Placeholder"] == "1" and body[:2] == b"\xff\xd8"

    for path, expected in [
        (f"/instances/{ct}.x/thumbnail.jpg", 400),
        ("/instances/..%2F..%2Fetc/thumbnail.jpg", 400),
        ("/instances/1.2.3.999999/thumbnail.jpg", 404),
        (f"/instances/{ct}/preview.jpg?preset=liver", 400),
        (f"/instances/{ct}/preview.jpg?wc=40", 400),
        (f"/instances/{ct}/preview.jpg?size=-1", 400),
    ]:
        status, _, body = browser.request("GET", path)
        assert status == expected, f"{path}: {status} {body[:200]!r}"

    # Without a session: no image.
    status, _, _ = Browser(server.http_port).request("GET", f"/instances/{ct}/thumbnail.jpg")
    assert status in (303, 401), status

    # The counters reach /metrics.
    status, _, body = browser.request("GET", "/metrics")
    text = body.decode()
    assert re.search(r"^mifas_render_total [1-9]\d*$", text, re.M), text[-2000:]
    # The SR's thumbnail (fixture) and preview: two placeholders drawn.
    assert re.search(r"^mifas_render_placeholders_total 2$", text, re.M), text[-2000:]
