"""WADO-RS against the real binary (issue 12): retrieve of studies, series and instances
(as stored byte for byte, converted pixel for pixel, 406 for what we cannot make), frames
(uncompressed and as stored, single and multi-frame, offset-table split), bulk data, rendered
and thumbnail images (compared with the portal's own image route), bad input, a stream cut
when an object is missing, and bounded server memory while a ~200 MB study streams out.

Clients: dicomweb-client (PyPI) and, where the raw multipart bytes matter, plain `requests`
with our own multipart reader."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pydicom.encaps
import pytest
import requests
from PIL import Image
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless, generate_uid
from pynetdicom import AE

import dicom_fixtures as F
from mifas_helpers import CHILD_ENV, MIFAS_BIN, file_dataset_bytes, object_path, split_part10

ROOT = "1.2.826.0.1.3680043.8.498.77."
USER, PASSWORD = "wadoviewer", "wado-pass-123"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
RLE = "1.2.840.10008.1.2.5"
JLS = "1.2.840.10008.1.2.4.80"
MR = "1.2.840.10008.5.1.4.1.1.4"


# --- objects --------------------------------------------------------------------------------


def _retag(ds: Dataset, study: str, label: str) -> Dataset:
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid(ROOT, [study, label, "se"])
    ds.SOPInstanceUID = generate_uid(ROOT, [study, label, "i"])
    ds.PatientID = "WADO-1"
    ds.PatientName = "WADO^TEST"
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _from_pydicom(name: str, study: str, label: str, out: Path) -> Path:
    src = F.pydicom_file(name)
    assert src is not None, f"pydicom test file {name} missing"
    ds = _retag(pydicom.dcmread(src), study, label)
    path = out / f"{label}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _multiframe(frames: int = 8, rows: int = 64, cols: int = 48) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = MR
    ds.Modality = "MR"
    ds.StudyDate, ds.StudyTime, ds.SeriesNumber, ds.InstanceNumber = "20240105", "101010", 1, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    y, x = np.mgrid[0:rows, 0:cols]
    pixels = np.stack([(x * 40 + y * 7 + f * 300) % 4096 for f in range(frames)]).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    return ds


def make_objects(out: Path, study: str) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "ct": _from_pydicom("CT_small.dcm", study, "ct", out),
        "jpeg": _from_pydicom("SC_rgb_dcmtk_+eb+cy+np.dcm", study, "jpeg", out),
        "j2k": _from_pydicom("JPEG2000.dcm", study, "j2k", out),
        "rle": _from_pydicom("MR_small_RLE.dcm", study, "rle", out),
        "rle2": _from_pydicom("SC_rgb_rle_2frame.dcm", study, "rle2", out),
        "jls": _from_pydicom("MR_small_jpeg_ls_lossless.dcm", study, "jls", out),
    }
    ct = _retag(pydicom.dcmread(paths["ct"]), study, "ct_implicit")
    del ct.file_meta
    paths["ct_implicit"] = F.write_part10(ct, out / "ct_implicit.dcm", ts=IMPLICIT)
    mf = _retag(_multiframe(), study, "mf")
    paths["mf"] = F.write_part10(mf, out / "mf.dcm")
    # JPEG 2000 multi-frame with two fragments per frame: only the Basic Offset Table tells
    # where each frame starts.
    j2k = pydicom.dcmread(paths["mf"])
    _retag(j2k, study, "mf_j2k")
    j2k.compress(JPEG2000Lossless)
    frames = list(pydicom.encaps.generate_frames(j2k.PixelData, number_of_frames=8))
    # Padded to a multiple of 4 so both fragments of a frame have even lengths (no pad byte
    # inside a frame's bit stream).
    frames = [f + b"\x00" * (-len(f) % 4) for f in frames]
    j2k.PixelData = pydicom.encaps.encapsulate(frames, fragments_per_frame=2, has_bot=True)
    paths["mf_j2k"] = out / "mf_j2k.dcm"
    j2k.save_as(paths["mf_j2k"], enforce_file_format=True)
    return paths


def store(server, paths) -> None:
    """C-STORE each file in its own transfer syntax, data set bytes as in the file."""
    ae = AE(ae_title="WADOTEST")
    contexts = set()
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        contexts.add((ds.SOPClassUID, ds.file_meta.TransferSyntaxUID))
    for sop_class, ts in contexts:
        ae.add_requested_context(sop_class, [ts])
    assoc = ae.associate(server.host, server.port, ae_title=server.aet)
    assert assoc.is_established, "association refused"
    try:
        for p in paths:
            status = assoc.send_c_store(p)
            assert status and status.Status == 0, f"C-STORE {p}: {status}"
    finally:
        assoc.release()


# --- HTTP helpers -----------------------------------------------------------------------------


def parse_multipart(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Our own RFC 2387 reader: [(headers lower-cased, body)]; asserts the closing delimiter."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    assert m, content_type
    boundary = m[1].encode()
    assert body.startswith(b"--" + boundary + b"\r\n"), body[:100]
    assert body.endswith(b"--" + boundary + b"--\r\n"), "no closing delimiter"
    parts = []
    for raw in body[: -len(b"--" + boundary + b"--\r\n")].split(b"--" + boundary + b"\r\n")[1:]:
        head, _, data = raw.partition(b"\r\n\r\n")
        assert data.endswith(b"\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        parts.append((headers, data[:-2]))
    return parts


class Wado:
    def __init__(self, server):
        self.base = f"http://127.0.0.1:{server.http_port}/dicom-web"
        self.session = requests.Session()
        self.session.auth = (USER, PASSWORD)
        self.client = DICOMwebClient(url=self.base, session=self.session)

    def get(self, path, accept=None, params=None, **kw):
        headers = {"Accept": accept} if accept else {}
        return self.session.get(self.base + path, headers=headers, params=params, timeout=kw.pop("timeout", 120), **kw)

    def parts(self, path, accept=None):
        r = self.get(path, accept)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
        return r, parse_multipart(r.headers["Content-Type"], r.content)


def portal_session(server) -> requests.Session:
    """A logged-in portal session (for the portal's own image routes)."""
    s = requests.Session()
    base = f"http://127.0.0.1:{server.http_port}"
    r = s.get(base + "/login", timeout=30)
    assert r.status_code == 200
    token = s.cookies.get("mifas_login")
    assert token, "no login token cookie"
    r = s.post(base + "/login", data={"username": USER, "password": PASSWORD, "login_token": token,
                                      "next": ""}, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text[:300]
    return s


def add_viewer(server) -> None:
    """`mifas user add` (through the running server's admin socket)."""
    r = subprocess.run([str(MIFAS_BIN), "user", "add", USER, "--role", "viewer", "--data-dir",
                        str(server.data_dir)], input=PASSWORD + "\n", capture_output=True, text=True,
                       timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def archive(shared_mifas, tmp_path_factory):
    server = shared_mifas
    add_viewer(server)
    study = generate_uid(ROOT, ["wado-study"])
    paths = make_objects(tmp_path_factory.mktemp("wado"), study)
    store(server, list(paths.values()))
    infos = {k: pydicom.dcmread(p) for k, p in paths.items()}
    return server, study, paths, infos


def uids(ds):
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def instance_path(ds) -> str:
    st, se, i = uids(ds)
    return f"/studies/{st}/series/{se}/instances/{i}"


# --- retrieve -------------------------------------------------------------------------------------


def test_retrieve_study_as_stored_byte_for_byte(archive):
    server, study, paths, infos = archive
    wado = Wado(server)
    r, parts = wado.parts(f"/studies/{study}",
                          'multipart/related; type="application/dicom"; transfer-syntax=*')
    assert r.headers["Content-Type"].startswith('multipart/related; type="application/dicom"')
    assert len(parts) == len(paths)
    by_uid = {ds.SOPInstanceUID: k for k, ds in infos.items()}
    seen = set()
    for headers, body in parts:
        _, dataset, meta = split_part10(body)
        uid = meta[(2, 3)].decode().rstrip("\0 ")
        label = by_uid[uid]
        ts = str(infos[label].file_meta.TransferSyntaxUID)
        assert headers["content-type"] == f"application/dicom; transfer-syntax={ts}", headers
        assert meta[(2, 0x10)].decode().rstrip("\0 ") == ts
        assert dataset == file_dataset_bytes(paths[label]), f"{label}: data set differs"
        seen.add(label)
    assert seen == set(paths)

    # dicomweb-client: the same instances, the same pixel bytes.
    datasets = wado.client.retrieve_study(study, media_types=(("application/dicom", "*"),))
    assert sorted(d.SOPInstanceUID for d in datasets) == sorted(by_uid)
    for d in datasets:
        assert d.PixelData == infos[by_uid[d.SOPInstanceUID]].PixelData


def test_retrieve_series_and_instance(archive):
    server, study, paths, infos = archive
    wado = Wado(server)
    jpeg = infos["jpeg"]
    series = wado.client.retrieve_series(study, jpeg.SeriesInstanceUID,
                                         media_types=(("application/dicom", JPEG_BASELINE),))
    assert [d.SOPInstanceUID for d in series] == [jpeg.SOPInstanceUID]
    assert series[0].file_meta.TransferSyntaxUID == JPEG_BASELINE
    ct = infos["ct"]
    one = wado.client.retrieve_instance(*uids(ct), media_types=(("application/dicom", EXPLICIT),))
    assert one.SOPInstanceUID == ct.SOPInstanceUID and one.PixelData == ct.PixelData
    _, parts = wado.parts(instance_path(ct), 'multipart/related; type="application/dicom"')
    assert len(parts) == 1 and split_part10(parts[0][1])[1] == file_dataset_bytes(paths["ct"])
    # The path's hierarchy must hold: this instance is not in the JPEG's series.
    r = wado.get(f"/studies/{study}/series/{jpeg.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}")
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("label,exact", [("jpeg", False), ("j2k", True), ("rle", True),
                                         ("ct_implicit", True), ("rle2", True)])
def test_retrieve_converts_to_explicit_little_endian_by_default(archive, label, exact):
    server, study, paths, infos = archive
    wado = Wado(server)
    original = infos[label]
    # No transfer-syntax parameter (dicomweb-client's own default would be "*"): Explicit VR LE.
    got = wado.client.retrieve_instance(*uids(original), media_types=("application/dicom",))
    assert got.file_meta.TransferSyntaxUID == EXPLICIT
    # No Accept header at all: the same.
    _, parts = wado.parts(instance_path(original))
    assert parts[0][0]["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT}"
    assert got.PatientName == original.PatientName and got.Rows == original.Rows
    a, b = got.pixel_array.astype(np.int32), original.pixel_array.astype(np.int32)
    assert a.shape == b.shape
    if exact:
        assert np.array_equal(a, b), f"{label}: pixels differ"
    else:
        # Two JPEG decoders (ours and libjpeg) may round the colour conversion differently.
        assert np.abs(a - b).max() <= 3, f"{label}: max diff {np.abs(a - b).max()}"
    # Implicit VR Little Endian on request (dicomweb-client refuses to ask for it: raw request).
    _, parts = wado.parts(instance_path(original),
                          f'multipart/related; type="application/dicom"; transfer-syntax={IMPLICIT}')
    assert parts[0][0]["content-type"] == f"application/dicom; transfer-syntax={IMPLICIT}"
    implicit = pydicom.dcmread(io.BytesIO(parts[0][1]))
    assert implicit.file_meta.TransferSyntaxUID == IMPLICIT
    assert np.array_equal(implicit.pixel_array.astype(np.int32), a)


def test_retrieve_not_acceptable(archive):
    server, study, paths, infos = archive
    wado = Wado(server)
    ct = infos["ct"]
    # We do not compress: JPEG for a native object is 406, naming what we could send.
    r = wado.get(instance_path(ct), f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}')
    assert r.status_code == 406 and EXPLICIT in r.text and IMPLICIT in r.text, r.text
    # JPEG-LS cannot be decoded here: only as stored.
    r = wado.get(instance_path(infos["jls"]), 'multipart/related; type="application/dicom"')
    assert r.status_code == 406 and JLS in r.text and "transfer-syntax=*" in r.text, r.text
    r = wado.get(f"/studies/{study}", "text/plain")
    assert r.status_code == 406 and "text/plain" in r.text, r.text


def test_bad_uids_unknown_and_unauthenticated(archive):
    server, study, _, _ = archive
    wado = Wado(server)
    r = wado.get("/studies/1.2.abc")
    assert r.status_code == 400 and "not a UID" in r.text, r.text
    r = wado.get("/studies/1.2.3.999999")
    assert r.status_code == 404 and "1.2.3.999999" in r.text, r.text
    r = requests.get(f"{wado.base}/studies/{study}", timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")


# --- frames and bulk data ----------------------------------------------------------------------


def _frames(ds) -> list[bytes]:
    """pydicom's decoded pixel bytes, one entry per frame."""
    a = ds.pixel_array
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if n == 1:
        a = a[None]
    return [f.tobytes() for f in a]


def test_frames_uncompressed(archive):
    server, study, paths, infos = archive
    wado = Wado(server)
    octet = ("application/octet-stream",)
    mf = infos["mf"]
    got = wado.client.retrieve_instance_frames(*uids(mf), frame_numbers=[1, 3, 8], media_types=octet)
    size = 64 * 48 * 2
    assert got == [mf.PixelData[(n - 1) * size:n * size] for n in (1, 3, 8)]
    # Compressed objects are decoded for a client that takes only uncompressed frames.
    for label, frames in [("mf_j2k", [2, 7]), ("rle2", [2, 1]), ("rle", [1]), ("j2k", [1])]:
        ds = infos[label]
        got = wado.client.retrieve_instance_frames(*uids(ds), frame_numbers=frames, media_types=octet)
        expected = _frames(ds)
        assert got == [expected[n - 1] for n in frames], label
    got = wado.client.retrieve_instance_frames(*uids(infos["jpeg"]), frame_numbers=[1], media_types=octet)
    a = np.frombuffer(got[0], np.uint8).astype(np.int32)
    b = np.frombuffer(_frames(infos["jpeg"])[0], np.uint8).astype(np.int32)
    assert a.shape == b.shape and np.abs(a - b).max() <= 3
    _, parts = wado.parts(instance_path(mf) + "/frames/2", 'multipart/related; type="application/octet-stream"')
    assert parts[0][0]["content-type"] == f"application/octet-stream; transfer-syntax={EXPLICIT}"


def test_frames_as_stored(archive):
    server, study, paths, infos = archive
    wado = Wado(server)
    for label, media, ts, frames in [("jpeg", "image/jpeg", JPEG_BASELINE, [1]),
                                     ("j2k", "image/jp2", J2K, [1]),
                                     ("mf_j2k", "image/jp2", J2K_LOSSLESS, [8, 1, 4]),
                                     ("rle2", "image/dicom-rle", RLE, [1, 2]),
                                     ("jls", "image/jls", JLS, [1])]:
        ds = infos[label]
        n = int(getattr(ds, "NumberOfFrames", 1) or 1)
        stored = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=n))
        got = wado.client.retrieve_instance_frames(*uids(ds), frame_numbers=frames, media_types=((media, ts),))
        assert got == [stored[f - 1] for f in frames], label
        _, parts = wado.parts(instance_path(ds) + "/frames/1", f'multipart/related; type="{media}"; transfer-syntax={ts}')
        assert parts[0][0]["content-type"] == f"{media}; transfer-syntax={ts}"
    # OHIF asks for octet-stream with transfer-syntax=*: the frames as stored, labelled.
    r, parts = wado.parts(instance_path(infos["jls"]) + "/frames/1",
                          "multipart/related; type=application/octet-stream; transfer-syntax=*")
    assert parts[0][0]["content-type"] == f"image/jls; transfer-syntax={JLS}"
    # Uncompressed JPEG-LS frames would need a decoder we do not have: 406 offering image/jls.
    r = wado.get(instance_path(infos["jls"]) + "/frames/1", 'multipart/related; type="application/octet-stream"')
    assert r.status_code == 406 and "image/jls" in r.text, r.text
    # image/jp2 without a syntax means lossless: not the lossy object.
    r = wado.get(instance_path(infos["j2k"]) + "/frames/1", 'multipart/related; type="image/jp2"')
    assert r.status_code == 406, r.text


@pytest.mark.parametrize("frames,status,says", [("0", 400, "start at 1"), ("1,x", 400, "not a frame number"),
                                                ("9", 404, "has 8 frame(s)"), ("1,2,9", 404, "frame 9")])
def test_frames_bad_input(archive, frames, status, says):
    server, _, _, infos = archive
    r = Wado(server).get(instance_path(infos["mf"]) + f"/frames/{frames}",
                         'multipart/related; type="application/octet-stream"')
    assert r.status_code == status and says in r.text, (r.status_code, r.text)


def test_bulkdata(archive):
    server, study, paths, infos = archive
    wado = Wado(server)
    mf = infos["mf"]
    # The URI form the metadata resource puts in BulkDataURI.
    uri = f"{wado.base}{instance_path(mf)}/bulkdata/7FE00010"
    got = wado.client.retrieve_bulkdata(uri, media_types=("application/octet-stream",))
    assert got == [mf.PixelData]
    # Encapsulated pixel data: its frames (as stored with transfer-syntax=*).
    j2k = infos["mf_j2k"]
    stored = list(pydicom.encaps.generate_frames(j2k.PixelData, number_of_frames=8))
    _, parts = wado.parts(instance_path(j2k) + "/bulkdata/7fe00010",
                          "multipart/related; type=application/octet-stream; transfer-syntax=*")
    assert [b for _, b in parts] == stored
    # Any other top-level element: its value.
    _, parts = wado.parts(instance_path(mf) + "/bulkdata/00080016")
    assert parts[0][1].rstrip(b"\0") == MR.encode()
    r = wado.get(instance_path(mf) + "/bulkdata/7FE0001")
    assert r.status_code == 400 and "8 hexadecimal digits" in r.text
    r = wado.get(instance_path(mf) + "/bulkdata/00091001")
    assert r.status_code == 404, r.text


# --- rendered and thumbnail ------------------------------------------------------------------------


def _image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data))).astype(np.int32)


def test_rendered_matches_the_portal(archive):
    server, study, paths, infos = archive
    wado = Wado(server)
    portal = portal_session(server)
    base = f"http://127.0.0.1:{server.http_port}"
    ct = infos["ct"]
    png = wado.client.retrieve_instance_rendered(*uids(ct), media_types=("image/png",),
                                                 params={"window": "40,400,linear"})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    r = portal.get(f"{base}/instances/{ct.SOPInstanceUID}/preview.png", params={"wc": 40, "ww": 400}, timeout=60)
    assert r.status_code == 200
    assert np.array_equal(_image(png), _image(r.content)), "rendered PNG differs from the portal's"
    # The same window computed here (PS3.3 C.11.2.1.2.1, linear) within rounding.
    hu = ct.pixel_array.astype(np.float64) * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    expected = np.clip(((hu - 39.5) / 399.0 + 0.5) * 255.0, 0, 255)
    assert np.abs(_image(png) - expected).max() <= 1.0
    # JPEG: the same picture within compression error.
    jpeg = wado.client.retrieve_instance_rendered(*uids(ct), media_types=("image/jpeg",),
                                                  params={"window": "40,400,linear", "quality": 95})
    assert jpeg[:2] == b"\xff\xd8"
    assert np.abs(_image(jpeg) - _image(png)).mean() < 2.0
    # A frame of a multi-frame object: frame 3 is the portal's 0-based frame 2.
    mf = infos["mf"]
    # (A fixed window: the frames differ by an offset, which min-max would hide.)
    window = {"window": "1500,3000"}
    frame = wado.client.retrieve_instance_frames_rendered(*uids(mf), frame_numbers=[3], media_types=("image/png",),
                                                          params=window)
    r = portal.get(f"{base}/instances/{mf.SOPInstanceUID}/preview.png",
                   params={"frame": 2, "wc": 1500, "ww": 3000}, timeout=60)
    assert np.array_equal(_image(frame), _image(r.content))
    other = wado.client.retrieve_instance_frames_rendered(*uids(mf), frame_numbers=[1], media_types=("image/png",),
                                                          params=window)
    assert not np.array_equal(_image(frame), _image(other)), "frame number ignored"
    # Study and series level: a representative instance of theirs.
    series = wado.client.retrieve_series_rendered(study, ct.SeriesInstanceUID, media_types=("image/png",))
    whole = wado.client.retrieve_instance_rendered(*uids(ct), media_types=("image/png",))
    assert np.array_equal(_image(series), _image(whole))
    # (dicomweb-client has no study-level rendered call.) The study's image is one of its
    # instances' images.
    r = wado.get(f"/studies/{study}/rendered", "image/png")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    candidates = [wado.get(instance_path(ds) + "/rendered", "image/png").content for ds in infos.values()]
    assert any(r.content == c for c in candidates), "study image is none of its instances' images"


def test_thumbnail_and_viewport(archive):
    server, study, _, infos = archive
    wado = Wado(server)
    ct, j2k = infos["ct"], infos["j2k"]  # 128x128, and 256 wide x 1024 high
    r = wado.get(instance_path(j2k) + "/thumbnail")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (32, 128)
    r = wado.get(instance_path(j2k) + "/rendered", params={"viewport": "100,100"})
    assert Image.open(io.BytesIO(r.content)).size == (25, 100)
    r = wado.get(instance_path(ct) + "/thumbnail", "image/png", params={"viewport": "64,32"})
    assert r.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (32, 32)
    r = wado.get(instance_path(ct) + "/rendered")
    assert Image.open(io.BytesIO(r.content)).size == (128, 128), "rendered is full size by default"
    for path in [f"/studies/{study}/thumbnail", f"/studies/{study}/series/{ct.SeriesInstanceUID}/thumbnail",
                 instance_path(infos["mf"]) + "/frames/2/thumbnail"]:
        r = wado.get(path)
        assert r.status_code == 200, (path, r.text)
        assert max(Image.open(io.BytesIO(r.content)).size) <= 128


@pytest.mark.parametrize("suffix,params,accept,status,says", [
    ("/rendered", {"window": "40,400,sigmoid"}, None, 400, "window"),
    ("/rendered", {"window": "40"}, None, 400, "window"),
    ("/rendered", {"quality": "0"}, None, 400, "quality"),
    ("/rendered", {"viewport": "0,10"}, None, 400, "viewport"),
    ("/rendered", {"annotation": "patient"}, None, 400, "annotation"),
    ("/rendered", None, "text/plain", 406, "image/jpeg"),
    ("/frames/0/rendered", None, None, 400, "start at 1"),
    ("/frames/99/rendered", None, None, 404, "frame 99"),
    ("/frames/1,2/rendered", None, None, 400, "one frame"),
])
def test_rendered_bad_input(archive, suffix, params, accept, status, says):
    server, _, _, infos = archive
    r = Wado(server).get(instance_path(infos["mf"]) + suffix, accept, params=params)
    assert r.status_code == status and says in r.text, (r.status_code, r.text)


# --- failures and memory ---------------------------------------------------------------------------


def test_missing_object_cuts_the_stream(archive, tmp_path):
    """An instance whose only copy is gone: the multipart is cut (the client sees a broken
    transfer), never a complete-looking multipart with a part missing."""
    server, _, _, _ = archive
    study = generate_uid(ROOT, ["wado-missing"])
    paths = []
    for i in range(3):
        ds = _retag(_multiframe(frames=2), study, f"m{i}")
        ds.SeriesInstanceUID = generate_uid(ROOT, [study, "se"])
        paths.append(F.write_part10(ds, tmp_path / f"m{i}.dcm"))
    store(server, paths)
    gone = pydicom.dcmread(paths[1]).SOPInstanceUID
    object_path(server.data_dir, gone).unlink()
    wado = Wado(server)
    r = wado.get(f"/studies/{study}", 'multipart/related; type="application/dicom"; transfer-syntax=*',
                 stream=True, timeout=20)
    assert r.status_code == 200  # the failure comes after the first part
    closing = b"--" + re.search(r"boundary=([^;]+)", r.headers["Content-Type"])[1].encode() + b"--\r\n"
    body = b""
    try:
        for chunk in r.iter_content(64 * 1024):
            body += chunk
        cut = not body.endswith(closing)
    except requests.exceptions.ChunkedEncodingError:
        cut = True  # the connection was cut before the last chunk: what we expect
    assert cut, "a complete-looking multipart came back with an instance missing"
    assert closing not in body
    server.assert_alive("after a cut stream")


def test_large_study_streams_with_bounded_memory(mifas, tmp_path):
    """A ~210 MB study goes out while the server's resident memory stays within a few tens
    of MB of what a freshly started server uses (a buffered response would add the study)."""
    server = mifas()
    add_viewer(server)
    study = generate_uid(ROOT, ["wado-large"])
    count, rows = 100, 1024  # 100 x 2 MiB of pixel data
    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        ds = _retag(_multiframe(frames=1, rows=rows, cols=rows), study, f"big{i}")
        ds.SeriesInstanceUID = generate_uid(ROOT, [study, "se"])
        ds.InstanceNumber = i + 1
        ds.PixelData = rng.integers(0, 4096, size=(rows, rows), dtype=np.uint16).tobytes()
        paths.append(F.write_part10(ds, tmp_path / f"big{i}.dcm"))
    store(server, paths)
    # Restart: memory the ingest left with the allocator would hide a buffered response.
    server.stop_ok()
    server.restart()
    total = sum(p.stat().st_size for p in paths)
    assert total > 200_000_000

    def rss_kb() -> int:
        for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    before = rss_kb()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb())
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wado = Wado(server)
    r = wado.get(f"/studies/{study}", 'multipart/related; type="application/dicom"; transfer-syntax=*',
                 stream=True)
    assert r.status_code == 200
    received, boundaries = 0, 0
    marker = re.search(r"boundary=([^;]+)", r.headers["Content-Type"])[1].encode()
    tail = b""
    for chunk in r.iter_content(chunk_size=256 * 1024):
        received += len(chunk)
        window = tail + chunk
        boundaries += window.count(b"--" + marker + b"\r\n") - tail.count(b"--" + marker + b"\r\n")
        tail = window[-200:]
        time.sleep(0.002)  # a client a little slower than the server
    done.set()
    sampler.join()
    assert received > total and boundaries == count, (received, total, boundaries)
    grown_mb = (peak[0] - before) / 1024
    print(f"RSS before {before} kB, peak {peak[0]} kB, grew {grown_mb:.1f} MB for {total / 1e6:.0f} MB sent",
          file=sys.stderr)
    assert grown_mb < 64, f"server RSS grew {grown_mb:.1f} MB while streaming {total / 1e6:.0f} MB"
