"""Web portal, authentication and file transfer against the real binary: `mifas user` with the
server stopped and running (admin socket), login and sessions, CSRF, login rate limiting, roles,
download of one file and of a study zip (compared byte for byte with what the archive stores),
upload of .dcm files and zips through the ingest pipeline (then found with DCMTK findscu)."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
import socket
import stat
import subprocess
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlencode, quote

import pytest
from pydicom.dataset import Dataset

import dicom_fixtures as F
from find_clients import findscu
from find_oracle import STUDY_ROOT
from mifas_helpers import CHILD_ENV, MIFAS_BIN, file_dataset_bytes, object_path, storescu

PASSWORD = "portal-pass-1"


def user_cmd(*args, password: str | None = None, data_dir=None, timeout=60):
    """`mifas user ...` with the password on stdin (not a terminal: one line)."""
    argv = [str(MIFAS_BIN), "user", *map(str, args)]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    r = subprocess.run(argv, input=(password + "\n") if password is not None else "",
                       capture_output=True, text=True, timeout=timeout, env=CHILD_ENV)
    assert "panicked" not in r.stderr, r.stderr
    return r


def add_user(data_dir, name, role, password=PASSWORD):
    r = user_cmd("add", name, "--role", role, password=password, data_dir=data_dir)
    assert r.returncode == 0, f"user add {name}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


class Portal:
    """A browser-like HTTP client: keeps cookies, never follows redirects."""

    def __init__(self, server):
        self.host, self.port = "127.0.0.1", server.http_port
        self.cookies: dict[str, str] = {}
        self.csrf: str | None = None

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        for value in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            val = rest.split(";", 1)[0]
            if "Max-Age=0" in value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = val
        conn.close()
        return r.status, r.headers, data

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def post_form(self, path, fields):
        return self.request("POST", path, body=urlencode(fields),
                            headers={"Content-Type": "application/x-www-form-urlencoded"})

    def post_multipart(self, path, fields=(), files=()):
        """fields: [(name, value)] first, then files: [(name, filename, bytes)]."""
        boundary = uuid.uuid4().hex
        out = io.BytesIO()
        for name, value in fields:
            out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                      f"{value}\r\n".encode())
        for name, filename, data in files:
            out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                      f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n".encode())
            out.write(data)
            out.write(b"\r\n")
        out.write(f"--{boundary}--\r\n".encode())
        return self.request("POST", path, body=out.getvalue(),
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def login(self, user, password=PASSWORD, next_path=""):
        status, _, html = self.get("/login")
        assert status == 200, html
        token = self.cookies.get("mifas_login")
        assert token and f'value="{token}"'.encode() in html, "login form without its token"
        return self.post_form("/login", {"username": user, "password": password,
                                         "login_token": token, "next": next_path})

    def login_ok(self, user, password=PASSWORD):
        status, headers, body = self.login(user, password)
        assert status == 303, f"login {user}: {status} {body[:300]!r}"
        assert "mifas_session" in self.cookies
        return headers

    def load_csrf(self):
        """The session's CSRF token, from the upload form (uploader) ."""
        status, _, html = self.get("/upload")
        assert status == 200, html[:300]
        m = re.search(rb'name="csrf" value="([0-9a-f]+)"', html)
        assert m, html[:500]
        self.csrf = m[1].decode()
        return self.csrf


# --- users and login ------------------------------------------------------------------------


def test_user_add_with_the_server_stopped_then_login(mifas):
    server = mifas(start=False)
    data = server.data_dir
    r = add_user(data, "alice", "uploader")
    assert "alice" in r.stdout
    # Bad input: exit code 2 and one clear error line, never a panic.
    for args, password, what in [
        (("add", "alice", "--role", "viewer"), PASSWORD, "already exists"),
        (("add", "bad/name", "--role", "viewer"), PASSWORD, "invalid user name"),
        (("add", "bob", "--role", "viewer"), "short", "password"),
        (("passwd", "nobody"), PASSWORD, "no user"),
        (("remove", "nobody"), None, "no user"),
    ]:
        r = user_cmd(*args, password=password, data_dir=data)
        assert r.returncode == 2, f"{args}: rc={r.returncode} {r.stderr}"
        assert r.stderr.startswith("error: ") and what in r.stderr, r.stderr
    r = user_cmd("add", "carol", "--role", "king", password=PASSWORD, data_dir=data)
    assert r.returncode == 2, r.stderr
    r = user_cmd("list", data_dir=data)
    assert r.returncode == 0 and re.search(r"^alice\tuploader\t\d+$", r.stdout, re.M), r.stdout

    server.start()
    portal = Portal(server)
    status, headers, _ = portal.login("alice", "wrong-password")
    assert status == 401
    assert "mifas_session" not in portal.cookies
    headers = portal.login_ok("alice")
    assert headers["Location"] == "/studies"
    # The session cookie's attributes as sent.
    portal2 = Portal(server)
    portal2.get("/login")
    token = portal2.cookies["mifas_login"]
    _, headers, _ = portal2.post_form("/login", {"username": "alice", "password": PASSWORD,
                                                 "login_token": token, "next": "/upload"})
    assert headers["Location"] == "/upload"
    set_cookie = [v for v in headers.get_all("Set-Cookie") if v.startswith("mifas_session=")][0]
    assert re.match(r"mifas_session=[0-9a-f]{64};", set_cookie), set_cookie
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in set_cookie, set_cookie
    # The session is a logged-in user (the upload page names them).
    status, _, html = portal.get("/upload")
    assert status == 200 and b'id="current-user">alice<' in html


def test_user_add_while_the_server_runs(mifas):
    server = mifas()
    sock = server.data_dir / "admin.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    add_user(server.data_dir, "dave", "viewer")
    portal = Portal(server)
    portal.login_ok("dave")
    r = user_cmd("add", "dave", "--role", "viewer", password=PASSWORD, data_dir=server.data_dir)
    assert r.returncode == 2 and "already exists" in r.stderr, r.stderr
    # A password change ends dave's sessions.
    r = user_cmd("passwd", "dave", password="another-pass", data_dir=server.data_dir)
    assert r.returncode == 0 and "1 session(s) ended" in r.stdout, r.stdout + r.stderr
    status, _, _ = portal.get("/instances/1.2.3/file")
    assert status == 401, "session survived the password change"
    status, _, _ = Portal(server).login("dave", PASSWORD)
    assert status == 401
    portal = Portal(server)
    portal.login_ok("dave", "another-pass")
    r = user_cmd("remove", "dave", data_dir=server.data_dir)
    assert r.returncode == 0, r.stderr
    assert portal.get("/instances/1.2.3/file")[0] == 401
    assert Portal(server).login("dave", "another-pass")[0] == 401
    server.stop_ok()
    assert not sock.exists(), "admin socket left behind"
    # The change made through the socket is in the index.
    r = user_cmd("list", data_dir=server.data_dir)
    assert r.returncode == 0 and "dave" not in r.stdout, r.stdout


def test_wrong_passwords_are_rate_limited(mifas):
    server = mifas(config={"http": {"login_max_failures": 3, "login_window_secs": 300}}, start=False)
    add_user(server.data_dir, "erin", "viewer")
    server.start()
    portal = Portal(server)
    for _ in range(3):
        assert portal.login("erin", "wrong-password")[0] == 401
    status, headers, _ = portal.login("erin", PASSWORD)
    assert status == 429, "the right password while blocked must still be refused"
    assert 0 < int(headers["Retry-After"]) <= 300
    assert "mifas_session" not in portal.cookies


def test_pages_need_a_session_and_posts_a_csrf_token(mifas):
    server = mifas(start=False)
    add_user(server.data_dir, "frank", "uploader")
    server.start()
    anon = Portal(server)
    for path in ("/upload", "/instances/1.2.3/file", "/studies/1.2.3/download.zip"):
        assert anon.get(path)[0] == 401, path
        status, headers, _ = anon.get(path, headers={"Accept": "text/html"})
        assert status == 303 and headers["Location"] == "/login?next=" + quote(path, safe="/"), path
    assert anon.post_form("/logout", {"csrf": "x"})[0] == 401
    assert anon.post_multipart("/upload", [("csrf", "x")])[0] == 401
    # Login itself needs the login token of its form (login CSRF).
    assert anon.post_form("/login", {"username": "frank", "password": PASSWORD})[0] == 403
    # Open redirect: next must be a local path.
    p = Portal(server)
    _, headers, _ = p.login("frank", next_path="//evil.example/")
    assert headers["Location"] == "/studies"

    portal = Portal(server)
    portal.login_ok("frank")
    csrf = portal.load_csrf()
    data = F.write_part10(F.make_ct(0, 0, 0, 0, "csrf", F.ct_pixels(1, 8, 8), 8, 8),
                          server.workdir / "c.dcm").read_bytes()
    assert portal.post_multipart("/upload", files=[("files", "c.dcm", data)])[0] == 403
    assert portal.post_multipart("/upload", [("csrf", "0" * 64)], [("files", "c.dcm", data)])[0] == 403
    assert portal.post_form("/logout", {})[0] == 403
    assert portal.post_form("/logout", {"csrf": csrf})[0] == 303
    assert portal.get("/upload")[0] == 401, "logged out"


def test_viewer_cannot_upload(mifas):
    server = mifas(start=False)
    add_user(server.data_dir, "gina", "viewer")
    server.start()
    portal = Portal(server)
    portal.login_ok("gina")
    assert portal.get("/upload")[0] == 403
    status, _, _ = portal.post_multipart("/upload", [("csrf", "x")], [("files", "a.dcm", b"x")])
    assert status == 403


# --- download -------------------------------------------------------------------------------


def test_download_file_and_study_zip(mifas, corpus):
    server = mifas(start=False)
    add_user(server.data_dir, "hank", "viewer")
    server.start()
    study = corpus[0].study
    items = [c for c in corpus if c.study == study]
    r = storescu(server.host, server.port, [c.path for c in items])
    assert r.returncode == 0, r.stdout + r.stderr
    portal = Portal(server)
    portal.login_ok("hank")

    item = items[0]
    status, headers, body = portal.get(f"/instances/{item.sop_instance}/file")
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "application/dicom"
    assert headers["Content-Disposition"] == f'attachment; filename="{item.sop_instance}.dcm"'
    assert int(headers["Content-Length"]) == len(body)
    stored = object_path(server.data_dir, item.sop_instance).read_bytes()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(stored).hexdigest()
    # The data set is the one sent (the meta group is the archive's own).
    assert file_dataset_bytes_of(body) == file_dataset_bytes(item.path)

    status, headers, body = portal.get(f"/studies/{study}/download.zip")
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "application/zip"
    # Info-ZIP's unzip checks every entry's CRC and the local headers against the directory.
    zpath = server.workdir / "study.zip"
    zpath.write_bytes(body)
    r = subprocess.run(["/usr/bin/unzip", "-t", str(zpath)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "No errors detected" in r.stdout, r.stdout + r.stderr
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert z.testzip() is None
        names = sorted(z.namelist())
        assert names == sorted(f"{c.sop_instance}.dcm" for c in items)
        for c in items:
            info = z.getinfo(f"{c.sop_instance}.dcm")
            assert info.compress_type == zipfile.ZIP_STORED
            assert z.read(info) == object_path(server.data_dir, c.sop_instance).read_bytes()

    # Not a UID → 400; a UID we do not have → 404.
    for path in ("/instances/abc/file", "/instances/../file", "/instances/%2e%2e%2fetc/file",
                 "/instances/1..2/file", "/studies/1.2.x/download.zip", f"/instances/{'1' * 65}/file"):
        status, _, _ = portal.get(path)
        assert status in (400, 404), f"{path}: {status}"
        if "abc" in path or "%2e" in path or "x" in path:
            assert status == 400, f"{path}: {status}"
    assert portal.get("/instances/1.2.3.4.5/file")[0] == 404
    assert portal.get("/studies/1.2.3.4.5/download.zip")[0] == 404


def file_dataset_bytes_of(part10: bytes) -> bytes:
    from mifas_helpers import split_part10
    return split_part10(part10)[1]


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def test_study_zip_is_streamed_not_buffered(mifas, tmp_path):
    """A 200 MB study goes out as a zip while the server's resident memory stays far below the
    study's size (sampled during the download)."""
    server = mifas(start=False)
    add_user(server.data_dir, "kate", "viewer")
    server.start()
    items = F.generate_corpus(tmp_path / "big", patients=1, studies=1, series=1, instances=50,
                              tag="bigzip", rows=1448, cols=1448)
    total = sum(c.path.stat().st_size for c in items)
    assert total > 200e6
    r = storescu(server.host, server.port, [c.path for c in items], timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    portal = Portal(server)
    portal.login_ok("kate")
    before = vm_rss_kb(server.proc.pid)
    peak = before
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
    conn.request("GET", f"/studies/{items[0].study}/download.zip",
                 headers={"Cookie": f"mifas_session={portal.cookies['mifas_session']}"})
    resp = conn.getresponse()
    assert resp.status == 200
    zpath = tmp_path / "big.zip"
    received = 0
    with open(zpath, "wb") as out:
        while chunk := resp.read(1 << 20):
            out.write(chunk)
            received += len(chunk)
            peak = max(peak, vm_rss_kb(server.proc.pid))
    conn.close()
    assert received > total
    growth_mb = (peak - before) / 1024
    print(f"study zip: {total / 1e6:.0f} MB sent, server RSS {before / 1024:.0f} MB before, growth {growth_mb:.1f} MB")
    assert growth_mb < 64, f"server RSS grew {growth_mb:.0f} MB while sending a {total / 1e6:.0f} MB study"
    with zipfile.ZipFile(zpath) as z:
        assert sorted(z.namelist()) == sorted(f"{c.sop_instance}.dcm" for c in items)
        assert z.testzip() is None


# --- upload ---------------------------------------------------------------------------------


def rows_of(html: bytes) -> list[tuple[str, str, str]]:
    rows = re.findall(rb'<td class="file">(.*?)</td><td class="outcome">(.*?)</td><td class="detail">(.*?)</td>',
                      html)
    return [(a.decode(), b.decode(), c.decode()) for a, b, c in rows]


def test_upload_files_and_a_zip_then_find_them(mifas, tmp_path):
    server = mifas(config={"http": {"upload_max_mb": 64}}, start=False)
    add_user(server.data_dir, "ivan", "uploader")
    server.start()
    files = F.generate_corpus(tmp_path / "up", patients=1, studies=1, series=1, instances=5,
                              tag="upload", rows=64, cols=64)
    a, b, c, d, e = files
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(c.path, "dir/c.dcm")
        z.write(d.path, "d.dcm")
        z.writestr("notes.txt", "not DICOM")
    portal = Portal(server)
    portal.login_ok("ivan")
    csrf = portal.load_csrf()
    status, _, html = portal.post_multipart("/upload", [("csrf", csrf)], [
        ("files", "a.dcm", a.path.read_bytes()),
        ("files", "b.dcm", b.path.read_bytes()),
        ("files", "batch.zip", zbuf.getvalue()),
        ("files", "broken.dcm", a.path.read_bytes()[:300]),
        ("files", "again.dcm", a.path.read_bytes()),
    ])
    assert status == 200, html[:500]
    rows = rows_of(html)
    outcome = {f: o for f, o, _ in rows}
    assert outcome == {"a.dcm": "stored", "b.dcm": "stored", "batch.zip/dir/c.dcm": "stored",
                       "batch.zip/d.dcm": "stored", "batch.zip/notes.txt": "refused",
                       "broken.dcm": "refused", "again.dcm": "duplicate"}, rows
    detail = {f: d for f, _, d in rows}
    assert detail["broken.dcm"], "a refusal says why"

    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = a.study
    q.SeriesInstanceUID = a.series
    q.SOPInstanceUID = ""
    res = findscu(server, STUDY_ROOT, q, tmp_path / "find")
    assert res.final == 0x0000, res.log[-2000:]
    found = {str(ds.SOPInstanceUID) for _, ds in res.pending}
    assert found == {a.sop_instance, b.sop_instance, c.sop_instance, d.sop_instance}, found
    for item in (a, b, c, d):
        stored = object_path(server.data_dir, item.sop_instance).read_bytes()
        assert file_dataset_bytes_of(stored) == file_dataset_bytes(item.path)
    assert e.sop_instance not in found
    assert not list((server.data_dir / "spool").glob("upload-*")), "temporary upload files left"


def raw_upload(portal, csrf, body_size: int, chunked: bool) -> bytes:
    """POST /upload over a raw socket: the server may answer (413) and close before the body
    is sent, which a plain client reports as a broken pipe instead of reading the answer."""
    boundary = "b" + uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.dcm\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    cookie = "; ".join(f"{k}={v}" for k, v in portal.cookies.items())
    total = len(head) + body_size + len(tail)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    request = (f"POST /upload HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n{length}\r\n\r\n").encode()
    sock = socket.create_connection((portal.host, portal.port), timeout=30)
    try:
        sock.sendall(request)
        piece = os.urandom(64 * 1024)
        parts = [head] + [piece] * (body_size // len(piece)) + [tail]
        for part in parts:
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered early; the answer is read below
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload_larger_than_the_limit_is_413(mifas, chunked):
    server = mifas(config={"http": {"upload_max_mb": 1}}, start=False)
    add_user(server.data_dir, "judy", "uploader")
    server.start()
    portal = Portal(server)
    portal.login_ok("judy")
    csrf = portal.load_csrf()
    answer = raw_upload(portal, csrf, 2 << 20, chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert not list((server.data_dir / "spool").glob("upload-*")), "temporary upload files left"
