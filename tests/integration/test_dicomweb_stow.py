"""STOW-RS against the real binary: dicomweb-client's store_instances (CT, multi-frame, a
Japanese ISO 2022 name), byte-for-byte comparison through the portal's /instances/{uid}/file,
C-FIND through pynetdicom; the Store Instances Response (PS3.18 Annex I) and its statuses;
duplicates; bad input (malformed multipart, parts that are not DICOM or are truncated, wrong
media type, roles, credentials, size limits) answered 4xx/409 with nothing stored; a 1 GiB
request with the server's memory sampled from /proc; HTTP Basic caching and rate limiting."""

from __future__ import annotations

import base64
import http.client
import io
import json
import shutil
import socket
import struct
import threading
import time
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

import dicom_fixtures as F
from find_clients import STUDY_ROOT, pyn_find
from mifas_helpers import MifasServer, object_path, split_part10
from test_portal_auth import Portal, add_user, user_cmd

UPLOADER, VIEWER = "stower", "looker"
PASSWORD = "stow-pass-1"
BOUNDARY = "MIFAS-test-boundary-7d3f"
DICOM_RELATED = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'

REFERENCED_SOP_SEQ = "00081199"
FAILED_SOP_SEQ = "00081198"
RETRIEVE_URL = "00081190"
FAILURE_REASON = "00081197"


# --- helpers ------------------------------------------------------------------------------


def auth_header(user=UPLOADER, password=PASSWORD) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def multipart(parts: list[bytes], part_type: str | None = "application/dicom", close=True) -> bytes:
    out = []
    for p in parts:
        out.append(f"--{BOUNDARY}\r\n".encode())
        if part_type:
            out.append(f"Content-Type: {part_type}\r\n".encode())
        out += [b"\r\n", p, b"\r\n"]
    if close:
        out.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(out)


def post(server, path, body, content_type=DICOM_RELATED, headers=None, auth=True):
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
    h = {"Content-Type": content_type} if content_type else {}
    if auth:
        h.update(auth_header())
    h.update(headers or {})
    conn.request("POST", "/dicom-web" + path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.headers, data


def part10(ds: Dataset) -> bytes:
    """The bytes dicomweb-client sends for `ds` (its store_instances calls dcmwrite)."""
    with io.BytesIO() as b:
        pydicom.dcmwrite(b, ds)
        return b.getvalue()


def ct_bytes(tag: str, i: int = 0, study: int = 0) -> tuple[Dataset, bytes]:
    """A small CT as a Part-10 file's bytes, and the data set read back from them."""
    ds = F.make_ct(0, study, 0, i, tag, F.ct_pixels(i + 7 * study, 64, 64), 64, 64)
    with io.BytesIO() as b:
        path = Path("/tmp") / f"stow-{tag}-{i}-{study}-{threading.get_ident()}.dcm"
        F.write_part10(ds, path)
        data = path.read_bytes()
        path.unlink()
    return pydicom.dcmread(io.BytesIO(data)), data


def ct(tag: str, i: int = 0, study: int = 0) -> Dataset:
    return ct_bytes(tag, i, study)[0]


def studies(server) -> set[str]:
    """Study Instance UIDs the index holds (C-FIND, Study Root, STUDY level)."""
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = ""
    res = pyn_find(server, STUDY_ROOT, q)
    assert res.final == 0x0000, res.describe()
    return {str(ident.StudyInstanceUID) for _, ident in res.pending}


def find_instance(server, sop_uid: str) -> Dataset | None:
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = ""
    q.SeriesInstanceUID = ""
    q.SOPInstanceUID = sop_uid
    q.PatientName = ""
    q.SpecificCharacterSet = "ISO_IR 192"
    res = pyn_find(server, STUDY_ROOT, q)
    assert res.final == 0x0000, res.describe()
    return res.pending[0][1] if res.pending else None


def seq(body: dict, tag: str) -> list[dict]:
    return body.get(tag, {}).get("Value", [])


def value(item: dict, tag: str):
    v = item.get(tag, {}).get("Value")
    return v[0] if v else None


def assert_nothing_stored(server, before: set[str]):
    assert studies(server) == before, "a refused request left something in the index"
    leftovers = list((server.data_dir / "spool").iterdir())
    assert not leftovers, f"spool files left behind: {leftovers}"


# --- fixtures -----------------------------------------------------------------------------


def start_server(base: Path, config: dict | None = None) -> MifasServer:
    server = MifasServer(base, config=config).start()
    add_user(server.data_dir, UPLOADER, "uploader", PASSWORD)
    add_user(server.data_dir, VIEWER, "viewer", PASSWORD)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("stow"))
    yield s
    assert s.alive(), s.log_tail()
    assert s.stop() == 0, s.log_tail()


@pytest.fixture
def client(server):
    session = requests.Session()
    session.auth = (UPLOADER, PASSWORD)
    return DICOMwebClient(url=f"http://127.0.0.1:{server.http_port}/dicom-web", session=session)


@pytest.fixture
def portal(server):
    p = Portal(server)
    p.login_ok(UPLOADER, PASSWORD)
    return p


# --- storing with dicomweb-client ---------------------------------------------------------


def test_store_ct_multiframe_japanese_byte_identical(server, client, portal):
    japanese = pydicom.dcmread(F.pydicom_file("chrH31.dcm"))
    multiframe = pydicom.dcmread(F.pydicom_file("SC_rgb_rle_2frame.dcm"))
    datasets = [ct("stow-a"), multiframe, japanese]
    sent = [part10(ds) for ds in datasets]

    response = client.store_instances(datasets)

    assert "FailedSOPSequence" not in response, response
    refs = response.ReferencedSOPSequence
    assert [r.ReferencedSOPInstanceUID for r in refs] == [ds.SOPInstanceUID for ds in datasets]
    assert [r.ReferencedSOPClassUID for r in refs] == [ds.SOPClassUID for ds in datasets]
    # The URLs are built from the Host header, which dicomweb-client sends without the port.
    for ds, r in zip(datasets, refs):
        assert r.RetrieveURL == (f"http://127.0.0.1/dicom-web/studies/"
                                 f"{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
                                 f"{ds.SOPInstanceUID}")
    for ds, data in zip(datasets, sent):
        status, _, stored = portal.get(f"/instances/{ds.SOPInstanceUID}/file")
        assert status == 200, stored[:300]
        _, sent_ds, sent_meta = split_part10(data)
        _, stored_ds, stored_meta = split_part10(stored)
        assert stored_ds == sent_ds, f"{ds.SOPInstanceUID}: stored data set differs from the bytes sent"
        assert stored_meta[(2, 0x10)] == sent_meta[(2, 0x10)], "transfer syntax changed"
        assert stored_meta[(2, 3)].rstrip(b"\0 ") == ds.SOPInstanceUID.encode()

    # C-FIND finds them, with the Japanese name decoded from ISO 2022 IR 87.
    found = find_instance(server, japanese.SOPInstanceUID)
    assert found is not None, "the Japanese object is not in the index"
    assert str(found.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert find_instance(server, multiframe.SOPInstanceUID).StudyInstanceUID == multiframe.StudyInstanceUID
    assert {str(ds.StudyInstanceUID) for ds in datasets} <= studies(server)


def test_store_into_a_study_refuses_other_studies(server, client):
    mine = ct("stow-b", 0, study=0)
    other = ct("stow-b", 1, study=1)
    assert mine.StudyInstanceUID != other.StudyInstanceUID
    before = studies(server)

    status, headers, data = post(server, f"/studies/{mine.StudyInstanceUID}",
                                 multipart([part10(mine), part10(other)]))
    assert status == 202, data
    assert headers["Content-Type"] == "application/dicom+json"
    body = json.loads(data)
    assert value(body, RETRIEVE_URL) == (f"http://127.0.0.1:{server.http_port}/dicom-web/studies/"
                                         f"{mine.StudyInstanceUID}")
    assert [value(i, "00081155") for i in seq(body, REFERENCED_SOP_SEQ)] == [mine.SOPInstanceUID]
    failed = seq(body, FAILED_SOP_SEQ)
    assert [value(i, "00081155") for i in failed] == [other.SOPInstanceUID]
    assert value(failed[0], FAILURE_REASON) == 0xA900
    assert "belongs to study" in headers["Warning"] and str(other.StudyInstanceUID) in headers["Warning"]
    assert studies(server) == before | {str(mine.StudyInstanceUID)}
    assert find_instance(server, other.SOPInstanceUID) is None

    # With dicomweb-client: every instance of another study refused is a 409.
    with pytest.raises(requests.HTTPError) as e:
        client.store_instances([other], study_instance_uid=str(mine.StudyInstanceUID))
    assert e.value.response.status_code == 409
    assert find_instance(server, other.SOPInstanceUID) is None


def test_duplicates_follow_the_archive_policy(server):
    """The default policy (`ignore`): a second copy is answered as stored, the first stays."""
    ds, data = ct_bytes("stow-dup")
    status, _, first = post(server, "/studies", multipart([data]))
    assert status == 200, first
    path = object_path(server.data_dir, ds.SOPInstanceUID)
    stored_before = path.read_bytes()
    changed = data[:-2] + b"\x01\x02"  # same UIDs, other pixel bytes
    status, _, second = post(server, "/studies", multipart([changed]))
    assert status == 200, second
    assert [value(i, "00081155") for i in seq(json.loads(second), REFERENCED_SOP_SEQ)] == [ds.SOPInstanceUID]
    assert path.read_bytes() == stored_before, "policy ignore replaced the stored copy"


def test_duplicate_policy_reject(tmp_path):
    s = start_server(tmp_path / "reject", {"storage": {"duplicate_policy": "reject"}})
    try:
        ds, data = ct_bytes("stow-rej")
        assert post(s, "/studies", multipart([data]))[0] == 200
        status, headers, body = post(s, "/studies", multipart([data]))
        assert status == 409, body
        failed = seq(json.loads(body), FAILED_SOP_SEQ)
        assert value(failed[0], FAILURE_REASON) == 0x0111
        assert "already stored" in headers["Warning"]
    finally:
        assert s.stop() == 0, s.log_tail()


# --- bad parts: failed entries, statuses 202 / 409 ----------------------------------------


def test_bad_parts_are_failed_entries(server):
    good, good_bytes = ct_bytes("stow-c", 0)
    truncated_ds, truncated_full = ct_bytes("stow-c", 1)
    truncated = truncated_full[: len(truncated_full) - 1000]
    mismatch_ds = ct("stow-c", 2)
    mismatch = F.write_part10(mismatch_ds, Path("/tmp/stow-mismatch.dcm"),
                              media_sop_instance="1.2.826.0.1.3680043.8.498.999").read_bytes()
    not_dicom = b"this is not DICOM at all" * 20
    before = studies(server)

    status, headers, data = post(server, "/studies",
                                 multipart([not_dicom, truncated, mismatch, good_bytes]))
    assert status == 202, data
    body = json.loads(data)
    refs = seq(body, REFERENCED_SOP_SEQ)
    assert [value(i, "00081155") for i in refs] == [good.SOPInstanceUID]
    failed = seq(body, FAILED_SOP_SEQ)
    assert [value(i, FAILURE_REASON) for i in failed] == [0xC000, 0xC000, 0xA900]
    assert value(failed[0], "00081155") is None, "a part that is not DICOM names no instance"
    assert value(failed[1], "00081155") == truncated_ds.SOPInstanceUID
    assert value(failed[2], "00081150") == F.CT_IMAGE_STORAGE
    warnings = headers.get_all("Warning")
    assert len(warnings) == 3, warnings
    assert "no DICM" in warnings[0] and "truncated" in warnings[1], warnings
    assert studies(server) == before | {str(good.StudyInstanceUID)}
    assert find_instance(server, truncated_ds.SOPInstanceUID) is None
    assert find_instance(server, mismatch_ds.SOPInstanceUID) is None

    # All failed: 409, nothing stored.
    before = studies(server)
    status, headers, data = post(server, "/studies", multipart([not_dicom, truncated]))
    assert status == 409, data
    assert [value(i, FAILURE_REASON) for i in seq(json.loads(data), FAILED_SOP_SEQ)] == [0xC000, 0xC000]
    assert_nothing_stored(server, before)

    # A part declared as another media type is not stored even if it is DICOM.
    ds, data = ct_bytes("stow-c", 3)
    status, headers, body = post(server, "/studies", multipart([data], part_type="image/jpeg"))
    assert status == 409, body
    assert "not application/dicom" in headers["Warning"]
    assert find_instance(server, ds.SOPInstanceUID) is None


# --- bad requests: 4xx, nothing stored ----------------------------------------------------


def test_malformed_requests_store_nothing(server):
    ds, data = ct_bytes("stow-m")
    before = studies(server)
    cases = [
        ("no final boundary", multipart([data], close=False), DICOM_RELATED, 400, "final boundary"),
        ("garbage", b"\x00garbage" * 5000, DICOM_RELATED, 400, "no opening boundary"),
        ("no boundary parameter", multipart([data]), 'multipart/related; type="application/dicom"', 400,
         "boundary"),
        ("bad delimiter", f"--{BOUNDARY}XX\r\n\r\n".encode() + data, DICOM_RELATED, 400, "after a boundary"),
        ("wrong media type", data, "application/dicom", 415, "multipart/related"),
        ("metadata + bulk data", multipart([b"{}"], part_type="application/dicom+json"),
         f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}', 415, "application/dicom"),
        ("no Content-Type", multipart([data]), None, 415, "multipart/related"),
        ("empty body", f"--{BOUNDARY}--\r\n".encode(), DICOM_RELATED, 400, "no parts"),
    ]
    for name, body, content_type, want, words in cases:
        status, _, text = post(server, "/studies", body, content_type=content_type)
        assert status == want, f"{name}: {status} {text[:300]!r}"
        assert words.encode() in text, f"{name}: unclear message {text[:300]!r}"
    status, _, text = post(server, "/studies/not-a-uid", multipart([data]))
    assert status == 400 and b"Study Instance UID" in text, text
    assert_nothing_stored(server, before)
    assert find_instance(server, ds.SOPInstanceUID) is None


def test_roles_and_credentials(server):
    ds, data = ct_bytes("stow-r")
    before = studies(server)
    status, _, text = post(server, "/studies", multipart([data]), headers=auth_header(VIEWER))
    assert status == 403 and b"uploader" in text, text
    status, _, text = post(server, "/studies/not-a-uid", multipart([data]), headers=auth_header(VIEWER))
    assert status == 403, text
    status, headers, text = post(server, "/studies", multipart([data]), auth=False)
    assert status == 401, text
    assert headers["WWW-Authenticate"].startswith("Basic realm="), headers
    status, headers, _ = post(server, "/studies", multipart([data]), headers={"Authorization": "Bearer abc"})
    assert status == 401 and "Basic" in headers["WWW-Authenticate"]
    status, _, text = post(server, "/studies", multipart([data]), headers={"Authorization": "Basic !!"})
    assert status == 400 and b"Authorization" in text, text
    # A portal session of an uploader works too (a browser viewer on the same origin).
    p = Portal(server)
    p.login_ok(UPLOADER, PASSWORD)
    status, _, text = p.request("POST", "/dicom-web/studies", body=multipart([data]),
                                headers={"Content-Type": DICOM_RELATED})
    assert status == 200, text
    assert studies(server) == before | {str(ds.StudyInstanceUID)}


def chunked_post(server, path, body: bytes) -> str:
    """POST with chunked transfer encoding (no declared length) from a raw socket: the body is
    sent from a thread (the server may answer and close before it is all sent)."""
    conn = socket.create_connection(("127.0.0.1", server.http_port), timeout=60)
    head = (f"POST /dicom-web{path} HTTP/1.1\r\nHost: x\r\nContent-Type: {DICOM_RELATED}\r\n"
            "Transfer-Encoding: chunked\r\n")
    for k, v in auth_header().items():
        head += f"{k}: {v}\r\n"

    def send():
        try:
            conn.sendall((head + "\r\n").encode())
            for i in range(0, len(body), 65536):
                piece = body[i:i + 65536]
                conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed early

    sender = threading.Thread(target=send)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 20:
            got = conn.recv(65536)
            if not got:
                break
            answer += got
    except OSError:
        pass
    sender.join()
    conn.close()
    return answer.decode(errors="replace")


def test_size_limit(tmp_path):
    s = start_server(tmp_path / "small", {"dicomweb": {"stow_max_mb": 1}})
    try:
        before = studies(s)
        # Declared too large: refused before any byte of the body is read.
        conn = socket.create_connection(("127.0.0.1", s.http_port), timeout=30)
        head = (f"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nContent-Type: {DICOM_RELATED}\r\n"
                f"Content-Length: {2 << 20}\r\n")
        for k, v in auth_header().items():
            head += f"{k}: {v}\r\n"
        conn.sendall((head + "\r\n").encode())
        answer = conn.recv(65536).decode(errors="replace")
        conn.close()
        assert answer.startswith("HTTP/1.1 413"), answer
        assert "stow_max_mb" in answer, answer
        # Chunked, no length: refused once the limit is passed.
        ds = ct("stow-big")
        ds.PixelData = bytes(3 << 20)
        ds.Rows, ds.Columns = 1024, 1536
        answer = chunked_post(s, "/studies", multipart([part10(ds)]))
        assert answer.startswith("HTTP/1.1 413"), answer[:300]
        assert "stow_max_mb" in answer
        assert_nothing_stored(s, before)
    finally:
        assert s.stop() == 0, s.log_tail()


# --- a 1 GiB request: streamed, memory bounded --------------------------------------------


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_one_gib_request_keeps_memory_bounded(tmp_path):
    s = start_server(tmp_path / "big")
    try:
        frames, rows, cols = 2048, 512, 512
        pixel_bytes = frames * rows * cols * 2  # 1 GiB
        ds = ct("stow-1g")
        del ds.PixelData
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"  # multi-frame grayscale word SC
        ds.NumberOfFrames = frames
        ds.Rows, ds.Columns = rows, cols
        header = F.write_part10(ds, tmp_path / "head.dcm").read_bytes()
        pixel_element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes)
        opening = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + header + pixel_element
        closing = f"\r\n--{BOUNDARY}--\r\n".encode()
        total = len(opening) + pixel_bytes + len(closing)
        zeros = bytes(1 << 20)

        def body():
            yield opening
            for _ in range(pixel_bytes // len(zeros)):
                yield zeros
            yield closing

        pid = s.proc.pid
        baseline = vm_rss_kb(pid)
        samples: list[int] = []
        done = threading.Event()

        def sample():
            while not done.is_set():
                samples.append(vm_rss_kb(pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            status, _, text = post(s, "/studies", body(), headers={"Content-Length": str(total)})
        finally:
            done.set()
            sampler.join()
        assert status == 200, text
        refs = seq(json.loads(text), REFERENCED_SOP_SEQ)
        assert [value(i, "00081155") for i in refs] == [ds.SOPInstanceUID]
        stored = object_path(s.data_dir, ds.SOPInstanceUID)
        assert stored.stat().st_size > pixel_bytes
        peak = max(samples)
        print(f"1 GiB STOW-RS: RSS {baseline} kB before, peak {peak} kB, {len(samples)} samples")
        assert len(samples) > 10, "the upload ended before memory could be sampled"
        assert peak - baseline < 200 * 1024, (
            f"RSS grew from {baseline} kB to {peak} kB for a {total >> 20} MiB request")
    finally:
        assert s.stop() == 0, s.log_tail()
        shutil.rmtree(s.data_dir, ignore_errors=True)


# --- HTTP Basic: cache invalidation, rate limiting ----------------------------------------


def test_basic_auth_cache_and_rate_limit(tmp_path):
    s = start_server(tmp_path / "auth", {"http": {"login_max_failures": 4, "login_window_secs": 600}})
    try:
        ds, data = ct_bytes("stow-auth")
        assert post(s, "/studies", multipart([data]))[0] == 200
        # A changed password takes effect at once, although the old one was just verified.
        new_password = "stow-pass-2"
        r = user_cmd("passwd", UPLOADER, password=new_password, data_dir=s.data_dir)
        assert r.returncode == 0, r.stderr
        status, _, _ = post(s, "/studies", multipart([data]))
        assert status == 401, "the old password still works after a change"
        assert post(s, "/studies", multipart([data]), headers=auth_header(UPLOADER, new_password))[0] == 200

        # Failed Basic attempts are rate limited like logins (the old password above was the first
        # failure of this address): then even the right password waits.
        for _ in range(3):
            status, _, _ = post(s, "/studies", multipart([data]), headers=auth_header(VIEWER, "wrong-guess"))
            assert status == 401
        status, headers, text = post(s, "/studies", multipart([data]), headers=auth_header(VIEWER, PASSWORD))
        assert status == 429, text
        assert int(headers["Retry-After"]) > 0
        # The portal login form shares the limiter.
        p = Portal(s)
        status, _, _ = p.login(VIEWER, PASSWORD)
        assert status == 429
    finally:
        assert s.stop() == 0, s.log_tail()
