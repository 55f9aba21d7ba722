"""DICOM TLS and HTTPS (issue 13, conformance §7.1) with real peers: DCMTK storescu/findscu with
+tls (OpenSSL), pynetdicom with an ssl.SSLContext, DCMTK storescp +tls as a TLS move destination,
and python urllib/ssl against the HTTPS portal and DICOMweb. Certificates are made per run with
the openssl CLI (tls_fixtures.make_pki)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_role
from pynetdicom.sop_class import (CTImageStorage, StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelGet,
                                  StudyRootQueryRetrieveInformationModelMove, Verification)

import find_clients as F
import retrieve_peers as P
from dicom_fixtures import generate_corpus
from mifas_helpers import CHILD_ENV, MIFAS_BIN, STORESCU, MifasServer, split_part10, write_config
from tls_fixtures import CrlMaker, dcmtk_tls_args, make_leaf, make_pki, negotiated, tls_port

SUCCESS = 0x0000


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # 1 patient x 2 studies x 1 series x 2 instances, 64x64 CT, explicit VR LE
    return generate_corpus(tmp_path_factory.mktemp("tls_corpus"), patients=1, studies=2, series=1,
                           instances=2, tag="tls", rows=64, cols=64)


def _dest_port() -> int:
    return P.distinct_free_ports(1)[0]


@pytest.fixture(scope="module")
def dest_port():
    return _dest_port()


@pytest.fixture(scope="module")
def commit_port(dest_port):
    while (p := _dest_port()) == dest_port:
        pass
    return p


def tls_config(pki, dest_port, commit_port=None, **tls) -> dict:
    return {
        "dicom": {"tls": {"enabled": True, "port": 0, "cert": str(pki.server_cert), "key": str(pki.server_key),
                          "ca": str(pki.ca), "require_client_cert": True, **tls}},
        "remote_ae": [
            # must come with the client1 certificate (CN modality1 / SAN modality1.example)
            {"aet": "MODALITY1", "host": "127.0.0.1", "port": 104, "tls_subject": "modality1.example"},
            # a TLS move destination (DCMTK storescp +tls)
            {"aet": "TLSDEST", "host": "127.0.0.1", "port": dest_port, "tls": True},
            # a Storage Commitment requester that takes its reports over TLS (pynetdicom SCP)
            *([{"aet": "CMTMOD", "host": "localhost", "port": commit_port, "tls": True,
                "move_destination": False}] if commit_port else []),
        ],
        "commitment": {"retry_initial_secs": 1, "retry_max_secs": 2, "timeout_secs": 10},
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki, dest_port, commit_port):
    s = MifasServer(tmp_path_factory.mktemp("tls_server"), tls_config(pki, dest_port, commit_port)).start()
    s.tls_port = tls_port(s.ready_line)
    yield s
    s.stop_ok()


def _pyn_ae(aet: str) -> AE:
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    for cx in (CTImageStorage,):
        ae.add_requested_context(cx, [ExplicitVRLittleEndian])
    for cx in (StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelGet,
               StudyRootQueryRetrieveInformationModelMove):
        ae.add_requested_context(cx, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context(Verification)
    return ae


def pyn_associate(server, aet="MODALITY1", ctx=None, cert="client1", pki=None):
    ctx = ctx or pki.client_context(cert)
    return _pyn_ae(aet).associate("127.0.0.1", server.tls_port, ae_title="MIFAS", tls_args=(ctx, "localhost"),
                                  ext_neg=[build_role(CTImageStorage, scu_role=True, scp_role=True)])


def tls_of(assoc) -> tuple[str, str]:
    sock = assoc.dul.socket.socket
    return sock.version(), sock.cipher()[0]


def study_find(assoc, study: str) -> list[Dataset]:
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = study
    q.SeriesInstanceUID = ""
    q.SOPInstanceUID = ""
    out = []
    for status, ident in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind):
        assert status and "Status" in status, "no C-FIND response"
        if status.Status in (0xFF00, 0xFF01):
            out.append(ident)
        else:
            assert status.Status == SUCCESS, f"C-FIND final 0x{status.Status:04X}"
    return out


def get_back(assoc, study: str) -> dict[str, bytes]:
    """C-GET the study on `assoc`; the received data sets' raw bytes by SOP Instance UID."""
    got: dict[str, bytes] = {}

    def on_store(event):
        got[str(event.request.AffectedSOPInstanceUID)] = event.request.DataSet.getvalue()
        return 0x0000

    from pynetdicom import evt
    assoc.bind(evt.EVT_C_STORE, on_store)
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = study
    final = None
    for status, _ in assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet):
        assert status and "Status" in status, "no C-GET response"
        final = status.Status
    assert final == SUCCESS, f"C-GET final 0x{final:04X}"
    return got


def assert_stored_identically(server, pki, items):
    assoc = pyn_associate(server, pki=pki)
    assert assoc.is_established, "pynetdicom TLS association for the read-back failed"
    try:
        got = get_back(assoc, items[0].study)
    finally:
        assoc.release()
    assert sorted(got) == sorted(i.sop_instance for i in items)
    for i in items:
        assert got[i.sop_instance] == split_part10(i.path.read_bytes())[1], f"{i.sop_instance} differs"


def _study(corpus, n):
    uids = sorted({c.study for c in corpus})
    return [c for c in corpus if c.study == uids[n]]


def _log(server) -> str:
    return server.log_path.read_text(errors="replace")


def test_dcmtk_storescu_and_findscu_over_mutual_tls(server, pki, corpus, tmp_path):
    items = _study(corpus, 0)
    r = subprocess.run([STORESCU, "-aet", "MODALITY1", "-aec", "MIFAS", "-to", "10", "-ta", "10", "-td", "30",
                        *dcmtk_tls_args(pki, "client1"), "127.0.0.1", str(server.tls_port),
                        *[str(i.path) for i in items]], capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, f"storescu +tls failed\n{r.stdout}\n{r.stderr}\n{server.log_tail()}"
    # findscu (calling AE FINDSCU: not listed, CA verification only) over TLS
    shim = type("S", (), {"host": "127.0.0.1", "port": server.tls_port, "aet": "MIFAS"})
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = items[0].study
    q.SOPInstanceUID = ""
    res = F.findscu(shim, F.STUDY_ROOT, q, tmp_path / "find", extra=dcmtk_tls_args(pki, "client1"))
    assert res.final == SUCCESS, res.describe() + res.log[-2000:]
    assert sorted(str(d.SOPInstanceUID) for _, d in res.pending) == sorted(i.sop_instance for i in items)
    assert_stored_identically(server, pki, items)
    sessions = negotiated(_log(server))
    assert sessions and all(v in ("TLSv1_2", "TLSv1_3") for v, _ in sessions), sessions
    print("DCMTK negotiated:", sessions[:2])


def test_pynetdicom_store_and_find_over_mutual_tls(server, pki, corpus):
    items = _study(corpus, 1)
    assoc = pyn_associate(server, pki=pki)
    assert assoc.is_established, server.log_tail()
    try:
        version, suite = tls_of(assoc)
        for i in items:
            st = assoc.send_c_store(pydicom.dcmread(i.path))
            assert st.Status == SUCCESS
        found = study_find(assoc, items[0].study)
        assert sorted(str(d.SOPInstanceUID) for d in found) == sorted(i.sop_instance for i in items)
    finally:
        assoc.release()
    assert version in ("TLSv1.2", "TLSv1.3"), version
    assert re.search(r"GCM|CHACHA20", suite), suite
    print(f"pynetdicom negotiated: {version} {suite}")
    assert_stored_identically(server, pki, items)


def test_bcp195_versions_and_suites(server, pki):
    """TLS 1.2 gets an ECDHE AES-GCM suite; TLS 1.1 and a non-AEAD (CBC) TLS 1.2 suite are refused."""
    ctx = pki.client_context("client1")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assoc = pyn_associate(server, ctx=ctx, pki=pki)
    assert assoc.is_established, server.log_tail()
    version, suite = tls_of(assoc)
    assert assoc.send_c_echo().Status == SUCCESS
    assoc.release()
    assert version == "TLSv1.2" and re.fullmatch(r"ECDHE-(RSA|ECDSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)",
                                                suite), (version, suite)
    print(f"pynetdicom limited to TLS 1.2 negotiated: {version} {suite}")
    ctx = pki.client_context("client1")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:AES128-SHA")
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):  # the server's alert: no common suite
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as sock:
            ctx.wrap_socket(sock, server_hostname="localhost").close()
    ctx = pki.client_context("client1")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    # the server's alert (rustls answers a TLS 1.1-only ClientHello with handshake_failure)
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE|PROTOCOL_VERSION"):
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as sock:
            ctx.wrap_socket(sock, server_hostname="localhost").close()
    server.assert_alive()


def _count_instances(server, pki, study) -> int:
    assoc = pyn_associate(server, pki=pki)
    assert assoc.is_established
    try:
        return len(study_find(assoc, study))
    finally:
        assoc.release()


def _fresh_ds(corpus, suffix: str) -> Dataset:
    ds = pydicom.dcmread(corpus[0].path)
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["tls-study", suffix])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["tls-series", suffix])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["tls-sop", suffix])
    return ds


def test_client_without_certificate_is_refused(server, pki, corpus):
    ds = _fresh_ds(corpus, "91")
    assoc = pyn_associate(server, ctx=pki.client_context(None), pki=pki)
    if assoc.is_established:  # TLS 1.3: the client may finish before the server's alert arrives
        try:
            st = assoc.send_c_store(ds)
            assert not st or "Status" not in st, "a client without certificate stored an instance"
        finally:
            assoc.abort()
    assert _count_instances(server, pki, ds.StudyInstanceUID) == 0
    assert "TLS handshake failed" in _log(server)


def test_certificate_subject_must_match_the_calling_ae(server, pki, corpus):
    ds = _fresh_ds(corpus, "92")
    # intruder's certificate (CA-signed, so the handshake succeeds) calling as MODALITY1
    assoc = pyn_associate(server, cert="client2", pki=pki)
    assert not assoc.is_established and assoc.is_rejected, "subject mismatch not rejected"
    assert "client certificate does not match" in _log(server)
    # the same certificate under an AE without tls_subject is fine
    assoc = pyn_associate(server, aet="ANYONE", cert="client2", pki=pki)
    assert assoc.is_established
    assert assoc.send_c_store(ds).Status == SUCCESS
    assoc.release()
    assert _count_instances(server, pki, ds.StudyInstanceUID) == 1


def test_plain_client_on_the_tls_port_stores_nothing(server, pki, corpus, tmp_path):
    ds = _fresh_ds(corpus, "93")
    path = tmp_path / "plain.dcm"
    ds.save_as(path, enforce_file_format=True)
    before = _log(server).count("TLS handshake failed")
    r = subprocess.run([STORESCU, "-aet", "PLAIN", "-aec", "MIFAS", "-to", "10", "-ta", "10", "-td", "10",
                        "127.0.0.1", str(server.tls_port), str(path)],
                       capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode != 0, "a plain storescu succeeded on the TLS port"
    assert _count_instances(server, pki, ds.StudyInstanceUID) == 0
    deadline = time.monotonic() + 10
    while _log(server).count("TLS handshake failed") <= before:
        assert time.monotonic() < deadline, "the failed handshake was not logged"
        time.sleep(0.1)
    server.assert_alive()


def test_c_move_to_a_tls_destination(server, pki, corpus, dest_port, tmp_path):
    items = _study(corpus, 0)
    out = tmp_path / "received"
    out.mkdir()
    log = tmp_path / "storescp.log"
    with open(log, "w") as lf:
        scp = subprocess.Popen(["storescp", "-aet", "TLSDEST", "-od", str(out), "+B",
                                "+tls", str(pki.server_key), str(pki.server_cert), "+cf", str(pki.ca),
                                str(dest_port)], stdout=lf, stderr=subprocess.STDOUT, env=CHILD_ENV)
    try:
        # ready when it accepts a TLS handshake (echoscu +tls)
        deadline = time.monotonic() + 20
        while True:
            r = subprocess.run(["echoscu", "-aet", "READY", "-aec", "TLSDEST", *dcmtk_tls_args(pki, "client1"),
                                "127.0.0.1", str(dest_port)], capture_output=True, text=True, timeout=20)
            if r.returncode == 0:
                break
            assert scp.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assoc = pyn_associate(server, pki=pki)
        assert assoc.is_established
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.StudyInstanceUID = items[0].study
        final = None
        for status, _ in assoc.send_c_move(q, "TLSDEST", StudyRootQueryRetrieveInformationModelMove):
            assert status and "Status" in status, "no C-MOVE response"
            final = status
        assoc.release()
        assert final.Status == SUCCESS, f"C-MOVE final 0x{final.Status:04X}\n{server.log_tail()}"
        assert final.NumberOfCompletedSuboperations == len(items)
    finally:
        scp.terminate()
        scp.wait(timeout=10)
    files = list(out.iterdir())
    assert len(files) == len(items), log.read_text()
    received = {str(pydicom.dcmread(f).SOPInstanceUID): split_part10(f.read_bytes())[1] for f in files}
    for i in items:
        assert received[i.sop_instance] == split_part10(i.path.read_bytes())[1], f"{i.sop_instance} differs"
    assert re.search(r"outgoing association over TLS.*remote=TLSDEST.*tls_version=TLSv1_[23]", _log(server)), \
        server.log_tail()


# --- HTTPS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https_server(tmp_path_factory, pki):
    cfg = {"http": {"tls": {"enabled": True, "cert": str(pki.server_cert), "key": str(pki.server_key)}}}
    s = MifasServer(tmp_path_factory.mktemp("https_server"), cfg).start()
    assert s.ready_line.endswith(" https"), s.ready_line
    r = subprocess.run([str(MIFAS_BIN), "user", "add", "admin", "--role", "admin", "--data-dir", str(s.data_dir)],
                       input="secret-pass-1\n", capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, r.stderr
    yield s
    s.stop_ok()


def _https(server, pki, method, path, body=None, headers=None):
    conn = http.client.HTTPSConnection("localhost", server.http_port, context=pki.client_context(None), timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    version = conn.sock.version()
    conn.close()
    return r, data, version


def test_https_portal_login_and_qido(https_server, pki, corpus):
    s = https_server
    # store one study over plain DICOM, then look for it over HTTPS
    r = subprocess.run([STORESCU, "-aec", "MIFAS", "127.0.0.1", str(s.port), str(corpus[0].path)],
                       capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, r.stderr
    rsp, body, version = _https(s, pki, "GET", "/login")
    assert rsp.status == 200 and version in ("TLSv1.2", "TLSv1.3")
    cookies = rsp.headers.get_all("Set-Cookie") or []
    assert cookies and all("Secure" in c for c in cookies), cookies
    auth = "Basic " + base64.b64encode(b"admin:secret-pass-1").decode()
    rsp, body, _ = _https(s, pki, "GET", f"/dicom-web/studies?StudyInstanceUID={corpus[0].study}",
                          headers={"Authorization": auth, "Accept": "application/dicom+json"})
    assert rsp.status == 200, body[:300]
    studies = json.loads(body)
    assert [st["0020000D"]["Value"][0] for st in studies] == [corpus[0].study]
    # plain HTTP on the HTTPS port gets no page
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, socket.timeout):
            data = b""
    assert b"ok" not in data and not data.startswith(b"HTTP/1.1 200"), data
    # an untrusted client (no CA) refuses our certificate: it is verified, not just encrypted
    with pytest.raises(ssl.SSLCertVerificationError):
        conn = http.client.HTTPSConnection("localhost", s.http_port, context=ssl.create_default_context(),
                                           timeout=10)
        conn.request("GET", "/healthz")


@pytest.mark.parametrize("key,field", [("dicom.tls.cert", "cert"), ("dicom.tls.key", "key"),
                                       ("http.tls.cert", "cert"), ("dicom.tls.ca", "ca")])
def test_bad_certificate_file_is_one_error_line_and_exit_2(tmp_path, pki, key, field):
    missing = tmp_path / "no-such-dir" / "missing.pem"
    section = key.split(".")[0]
    tls = {"enabled": True, "cert": str(pki.server_cert), "key": str(pki.server_key)}
    if section == "dicom":
        tls["port"] = 0
    tls[field] = str(missing)
    cfg = write_config(tmp_path / "bad.toml", {section: {"tls": tls}})
    r = subprocess.run([str(MIFAS_BIN), "serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d"),
                        "--dicom-port", "0", "--http-port", "0"],
                       capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode == 2, (r.returncode, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and key in errors[0] and str(missing) in errors[0], r.stderr
    # a file that is not PEM at all: the same shape
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    tls[field] = str(garbage)
    cfg = write_config(tmp_path / "bad2.toml", {section: {"tls": tls}})
    r = subprocess.run([str(MIFAS_BIN), "serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d"),
                        "--dicom-port", "0", "--http-port", "0"],
                       capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert r.returncode == 2 and len(errors) == 1 and key in errors[0] and str(garbage) in errors[0], r.stderr


def test_revoked_client_certificate_is_refused_and_the_crl_is_reread(tmp_path, pki, corpus):
    """dicom.tls.crl: a client certificate the CA has revoked is refused at the handshake, and a
    new list published while MIFAS runs applies to the next connection, without a restart."""
    leaf = make_leaf(pki, "client3", "modality3")
    crls = CrlMaker(pki, tmp_path / "ca-db")
    crl = tmp_path / "mifas.crl.pem"
    crls.write(crl)  # nothing revoked yet
    cfg = {"dicom": {"tls": {"enabled": True, "port": 0, "cert": str(pki.server_cert), "key": str(pki.server_key),
                             "ca": str(pki.ca), "require_client_cert": True, "crl": [str(crl)]}}}
    s = MifasServer(tmp_path / "srv", cfg).start()
    port = tls_port(s.ready_line)

    def echo(cert) -> subprocess.CompletedProcess:
        return subprocess.run(["echoscu", "-aet", "MOD3", "-aec", "MIFAS", "-to", "10", "-ta", "10",
                               *dcmtk_tls_args(pki, cert), "127.0.0.1", str(port)],
                              capture_output=True, text=True, timeout=60, env=CHILD_ENV)

    def store(cert_key) -> bool:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
        ctx.load_cert_chain(str(cert_key[0]), str(cert_key[1]))
        assoc = _pyn_ae("MOD3").associate("127.0.0.1", port, ae_title="MIFAS", tls_args=(ctx, "localhost"))
        if not assoc.is_established:
            return False
        try:  # TLS 1.3: the client may finish before the server's alert arrives
            st = assoc.send_c_store(_fresh_ds(corpus, "95"))
            return bool(st) and st.get("Status") == SUCCESS
        finally:
            assoc.abort()

    try:
        r = echo(leaf)
        assert r.returncode == 0, f"not yet revoked, yet refused:\n{r.stdout}{r.stderr}"
        crls.revoke(leaf[0])
        crls.write(crl)
        r = echo(leaf)
        assert r.returncode != 0, "a revoked certificate was accepted"
        assert not store(leaf), "a revoked certificate stored an instance"
        ok = echo("client2")
        assert ok.returncode == 0, f"a certificate the list does not name was refused:\n{ok.stdout}{ok.stderr}"
        log = s.log_path.read_text(errors="replace")
        assert "certificate revocation lists re-read" in log
        assert re.search(r"TLS handshake failed.*[Rr]evoked", log), log[-2000:]
        # A list that becomes unreadable: logged, the previous one stays in force.
        crl.write_text("not a CRL\n")
        assert echo(leaf).returncode != 0, "the revocation was forgotten when the list became unreadable"
        assert echo("client2").returncode == 0
        # logged once, not at every connection, until the file changes again
        assert s.log_path.read_text(errors="replace").count("the previous ones stay in force") == 1
    finally:
        s.stop_ok()
    # At start-up an unusable list is one error line and exit 2.
    bad = write_config(tmp_path / "bad-crl.toml", cfg)
    r = subprocess.run([str(MIFAS_BIN), "serve", "--config", str(bad), "--data-dir", str(tmp_path / "d2"),
                        "--dicom-port", "0", "--http-port", "0"],
                       capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert r.returncode == 2 and len(errors) == 1 and "dicom.tls.crl" in errors[0] and str(crl) in errors[0], r.stderr


def test_tls_only_listener(tmp_path, pki):
    """plain_listener = false: one listener, TLS; the READY line's dicom= names it."""
    cfg = {"dicom": {"tls": {"enabled": True, "port": 0, "cert": str(pki.server_cert), "key": str(pki.server_key),
                             "ca": str(pki.ca), "plain_listener": False}}}
    s = MifasServer(tmp_path, cfg).start()
    try:
        assert tls_port(s.ready_line) == s.port, s.ready_line
        plain = subprocess.run(["echoscu", "-aec", "MIFAS", "-to", "5", "-ta", "5", "127.0.0.1", str(s.port)],
                               capture_output=True, text=True, timeout=30, env=CHILD_ENV)
        assert plain.returncode != 0
        tls = subprocess.run(["echoscu", "-aec", "MIFAS", *dcmtk_tls_args(pki, "client2"), "127.0.0.1", str(s.port)],
                             capture_output=True, text=True, timeout=30, env=CHILD_ENV)
        assert tls.returncode == 0, tls.stdout + tls.stderr
    finally:
        s.stop_ok()


def test_storage_commitment_report_over_tls(server, pki, corpus, commit_port):
    """The report on a new association goes over TLS to a tls = true requester, which sees our
    certificate (mutual TLS on its side)."""
    import queue

    from pynetdicom import evt
    from pynetdicom.sop_class import StorageCommitmentPushModel

    items = _study(corpus, 0)
    reports: queue.Queue = queue.Queue()

    def on_report(event):
        sock = event.assoc.dul.socket.socket
        peer = sock.getpeercert()
        cn = [v for rdn in peer["subject"] for k, v in rdn if k == "commonName"]
        reports.put((event.event_type, event.event_information.TransactionUID, sock.version(), cn))
        return 0x0000, None

    ae = AE(ae_title="CMTMOD")
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    scp = ae.start_server(("127.0.0.1", commit_port), block=False, ssl_context=pki.server_context(True),
                          evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    try:
        assoc = pyn_associate(server, pki=pki)
        assert assoc.is_established
        for i in items:  # stored already by another test or not: duplicates are ignored
            assert assoc.send_c_store(pydicom.dcmread(i.path)).Status == SUCCESS
        assoc.release()
        req = _pyn_ae("CMTMOD")
        req.add_requested_context(StorageCommitmentPushModel)
        assoc = req.associate("127.0.0.1", server.tls_port, ae_title="MIFAS",
                              tls_args=(pki.client_context("client2"), "localhost"))
        assert assoc.is_established
        ds = Dataset()
        ds.TransactionUID = generate_uid()
        refs = []
        for i in items:
            r = Dataset()
            r.ReferencedSOPClassUID = CTImageStorage
            r.ReferencedSOPInstanceUID = i.sop_instance
            refs.append(r)
        ds.ReferencedSOPSequence = refs
        status, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
        assoc.release()
        assert status.Status == SUCCESS
        try:
            event_type, tx, version, cn = reports.get(timeout=60)
        except queue.Empty:
            raise AssertionError("no report within 60 s\n" + server.log_tail()) from None
        assert (event_type, tx) == (1, ds.TransactionUID)
        assert version in ("TLSv1.2", "TLSv1.3") and cn == ["mifas-server"], (version, cn)
    finally:
        scp.shutdown()
