"""The audit trail (IHE ATNA) against a real syslog collector: Debian's rsyslogd receives MIFAS's
RFC 5424 messages over TCP (RFC 6587 octet counting), UDP (RFC 5426) and mutual TLS (RFC 5425,
GnuTLS, x509/certvalid), and each message is checked against the DICOM PS3.15 A.5.1 schema's
required elements and attributes and against what the operation did (A.5.3: EventID, action,
outcome, requestor, role codes, participant objects). The local file sink gets every message.
A collector that is down never slows or fails a C-STORE: the queue overflows into counted drops,
and the worker reconnects (with back-off) once the collector is up."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pydicom
import pytest

import dicom_fixtures as F
from audit_collector import Rsyslog, make_pki
from find_clients import findscu, identifier
from find_oracle import STUDY_ROOT
from mifas_helpers import free_port, storescu, wait_until
from retrieve_peers import StoreSCP, getscu, movescu
from test_portal_auth import PASSWORD, Portal, add_user

SOURCE_ID = "MIFAS-AUDIT-TEST"
SITE = "Site <&> 'A'"
HOSTILE_AE = 'EV"<&>IL'
HOSTILE_NAME = "O'Brien<&>\"X\"^Evil"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
USER = "auditor"

# --- PS3.15 A.5.1 schema: required elements and attributes ----------------------------------

CODED = ("csd-code", "codeSystemName", "originalText")


def _coded(el: ET.Element, where: str) -> tuple[str, str, str]:
    for a in CODED:
        assert el.get(a), f"{where}: {el.tag} without {a}: {ET.tostring(el)!r}"
    return el.get("csd-code"), el.get("codeSystemName"), el.get("originalText")


def check_schema(root: ET.Element) -> None:
    """The required structure of A.5.1: element order, required attributes and coded values."""
    assert root.tag == "AuditMessage"
    tags = [c.tag for c in root]
    assert tags and tags[0] == "EventIdentification", tags
    n_ap = 1
    while n_ap < len(tags) and tags[n_ap] == "ActiveParticipant":
        n_ap += 1
    assert n_ap > 1, f"no ActiveParticipant: {tags}"
    assert tags[n_ap] == "AuditSourceIdentification", tags
    assert all(t == "ParticipantObjectIdentification" for t in tags[n_ap + 1:]), tags

    ev = root[0]
    stamp = ev.get("EventDateTime")
    assert stamp and stamp.endswith("Z"), stamp
    dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert ev.get("EventOutcomeIndicator") in ("0", "4", "8", "12"), ev.attrib
    assert ev.get("EventActionCode") in tuple("CRUDE"), ev.attrib
    assert ev[0].tag == "EventID", [c.tag for c in ev]
    _coded(ev[0], "EventID")
    for c in ev[1:]:
        assert c.tag in ("EventTypeCode", "EventOutcomeDescription"), c.tag
        if c.tag == "EventTypeCode":
            _coded(c, "EventTypeCode")

    for ap in root.findall("ActiveParticipant"):
        assert ap.get("UserID"), ap.attrib
        assert ap.get("UserIsRequestor") in ("true", "false"), ap.attrib
        has_id, has_type = "NetworkAccessPointID" in ap.attrib, "NetworkAccessPointTypeCode" in ap.attrib
        assert has_id == has_type, ap.attrib
        if has_type:
            assert ap.get("NetworkAccessPointTypeCode") in ("1", "2", "3", "4", "5"), ap.attrib
        for role in ap:
            assert role.tag == "RoleIDCode", role.tag
            _coded(role, "RoleIDCode")
    assert sum(ap.get("UserIsRequestor") == "true" for ap in root.findall("ActiveParticipant")) >= 1

    src = root.find("AuditSourceIdentification")
    assert src.get("AuditSourceID") == SOURCE_ID, src.attrib
    assert src.get("AuditEnterpriseSiteID") == SITE, src.attrib
    for c in src:
        assert c.tag == "AuditSourceTypeCode"
        _coded(c, "AuditSourceTypeCode")

    for po in root.findall("ParticipantObjectIdentification"):
        assert po.get("ParticipantObjectID"), po.attrib
        assert po.get("ParticipantObjectTypeCode") in ("1", "2", "3", "4"), po.attrib
        assert 1 <= int(po.get("ParticipantObjectTypeCodeRole")) <= 24, po.attrib
        assert po[0].tag == "ParticipantObjectIDTypeCode", [c.tag for c in po]
        _coded(po[0], "ParticipantObjectIDTypeCode")
        for c in po[1:]:
            assert c.tag in ("ParticipantObjectName", "ParticipantObjectQuery", "ParticipantObjectDetail",
                             "SOPClass"), c.tag
            if c.tag == "ParticipantObjectQuery":
                base64.b64decode(c.text, validate=True)
            if c.tag == "ParticipantObjectDetail":
                assert c.get("type") and c.get("value") is not None
                base64.b64decode(c.get("value"), validate=True)
            if c.tag == "SOPClass":
                assert c.get("UID") and int(c.get("NumberOfInstances")) >= 1, c.attrib


class Msg:
    """One received message: its syslog header fields and its parsed XML."""

    def __init__(self, record: dict):
        self.record = record
        xml = record["msg"]
        assert xml.startswith("\ufeff<?xml"), f"MSG does not start with BOM + XML: {xml[:60]!r}"
        self.root = ET.fromstring(xml[1:].encode("utf-8"))

    @property
    def event(self) -> str:
        return self.root.find("EventIdentification/EventID").get("csd-code")

    @property
    def types(self) -> list[str]:
        return [e.get("csd-code") for e in self.root.findall("EventIdentification/EventTypeCode")]

    @property
    def action(self) -> str:
        return self.root.find("EventIdentification").get("EventActionCode")

    @property
    def outcome(self) -> str:
        return self.root.find("EventIdentification").get("EventOutcomeIndicator")

    def participants(self) -> list[ET.Element]:
        return self.root.findall("ActiveParticipant")

    def participant(self, user_id: str) -> ET.Element:
        found = [p for p in self.participants() if p.get("UserID") == user_id]
        assert len(found) == 1, f"participant {user_id!r}: {[p.attrib for p in self.participants()]}"
        return found[0]

    def roles(self, user_id: str) -> list[str]:
        return [r.get("csd-code") for r in self.participant(user_id).findall("RoleIDCode")]

    def requestor(self) -> ET.Element:
        req = [p for p in self.participants() if p.get("UserIsRequestor") == "true"]
        assert len(req) == 1, [p.attrib for p in self.participants()]
        return req[0]

    def objects(self, id_type: str) -> list[ET.Element]:
        return [o for o in self.root.findall("ParticipantObjectIdentification")
                if o.find("ParticipantObjectIDTypeCode").get("csd-code") == id_type]

    def study(self) -> tuple[str, dict[str, int]]:
        (study,) = self.objects("110180")
        assert study.get("ParticipantObjectTypeCode") == "2" and study.get("ParticipantObjectTypeCodeRole") == "3"
        return study.get("ParticipantObjectID"), {c.get("UID"): int(c.get("NumberOfInstances"))
                                                  for c in study.findall("SOPClass")}

    def patient(self) -> tuple[str, str | None]:
        (p,) = self.objects("2")
        assert p.find("ParticipantObjectIDTypeCode").get("codeSystemName") == "RFC-3881"
        assert p.get("ParticipantObjectTypeCode") == "1" and p.get("ParticipantObjectTypeCodeRole") == "1"
        name = p.find("ParticipantObjectName")
        return p.get("ParticipantObjectID"), (name.text if name is not None else None)


def messages(collector: Rsyslog, transport: str, pid: int) -> list[Msg]:
    out = []
    for r in collector.records(transport):
        # RFC 5424 header as MIFAS writes it: PRI 85 (authpriv.notice), version 1, our APP-NAME/PROCID.
        assert (r["pri"], r["version"], r["app_name"]) == ("85", "1", "MIFAS"), r
        assert r["hostname"] not in ("", "-"), r
        if r["procid"] != str(pid):
            continue  # another server of this test
        out.append(Msg(r))
    return out


def file_messages(path: Path, pid: int) -> list[Msg]:
    """The local file sink: one RFC 5424 message per line."""
    out = []
    pattern = re.compile(r"^<85>1 (\S+) (\S+) (\S+) (\S+) (\S+) - (.*)$")
    for line in path.read_text(encoding="utf-8").splitlines():
        m = pattern.match(line)
        assert m, f"not an RFC 5424 line: {line[:120]!r}"
        if m[4] != str(pid):
            continue
        assert m[5] == "IHE+RFC-3881"
        out.append(Msg({"msg": m[6]}))
    return out


def wait_for(collector, transport, pid, pred, what, timeout=30.0) -> list[Msg]:
    found: list[Msg] = []

    def check():
        nonlocal found
        found = [m for m in messages(collector, transport, pid) if pred(m)]
        return bool(found)

    wait_until(check, timeout, interval=0.1, what=f"{what} on {transport}")
    return found


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def collector(tmp_path, pki):
    c = Rsyslog(tmp_path / "rsyslog", pki).start()
    yield c
    c.stop()


def corpus(d: Path) -> tuple[list[Path], list[Path]]:
    """Three CT instances of one study (a non-ASCII patient name), and one of another study
    whose patient name is hostile to XML."""
    study_a = [c.path for c in F.generate_corpus(d / "a", patients=1, studies=1, series=1, instances=3,
                                                   tag="audit-a", rows=16, cols=16)]
    (d / "b").mkdir(parents=True, exist_ok=True)
    ds = F.make_ct(0, 0, 0, 0, "audit-b", F.ct_pixels(3, 16, 16), 16, 16)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = HOSTILE_NAME
    ds.PatientID = "AUDIT-HOSTILE"
    return study_a, [F.write_part10(ds, d / "b" / "hostile.dcm")]


def audit_config(collector: Rsyslog, pki, audit_file: Path, storescp_port: int) -> dict:
    return {
        "dicom": {"allowed_calling": [{"aet": a} for a in ("STORESCU", "FINDSCU", "MOVESCU", "GETSCU")]},
        "remote_ae": [{"aet": "STORESCP", "host": "127.0.0.1", "port": storescp_port}],
        "audit": {
            "enabled": True,
            "source_id": SOURCE_ID,
            "enterprise_site_id": SITE,
            "file": str(audit_file),
            "collector": [
                {"name": "tcp", "transport": "tcp", "host": "127.0.0.1", "port": collector.tcp_port},
                {"name": "udp", "transport": "udp", "host": "127.0.0.1", "port": collector.udp_port},
                {"name": "tls", "transport": "tls", "host": "localhost", "port": collector.tls_port,
                 "ca_file": str(pki.ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)},
                # The same collector checked against a CA that did not sign it: never delivered.
                {"name": "wrongca", "transport": "tls", "host": "localhost", "port": collector.tls_port,
                 "ca_file": str(pki.other_ca)},
            ],
        },
    }


def http_get(server, path, auth=None, headers=None):
    h = {"Host": f"127.0.0.1:{server.http_port}"}
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    conn.request("GET", path, headers=h)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def metric(text: str, name: str, sink: str) -> int:
    m = re.search(rf'^{name}\{{sink="{sink}"\}} (\d+)$', text, re.M)
    assert m, f"{name}{{sink={sink}}} not in /metrics:\n{text}"
    return int(m[1])


# --- tests ------------------------------------------------------------------------------------


def test_every_event_reaches_rsyslog_over_tcp_udp_and_tls(mifas, collector, pki, tmp_path):
    study_a, hostile = corpus(tmp_path / "corpus")
    info_a = F.file_info(study_a[0])
    info_h = F.file_info(hostile[0])
    scp = StoreSCP(tmp_path / "storescp", free_port()).start()
    audit_file = tmp_path / "audit.log"
    try:
        server = mifas(config=audit_config(collector, pki, audit_file, scp.port))
        pid = server.proc.pid
        add_user(server.data_dir, USER, "uploader")

        # Application Start (110100 / 110120).
        (start,) = wait_for(collector, "tcp", pid, lambda m: m.event == "110100", "Application Start")
        assert start.types == ["110120"] and start.action == "E" and start.outcome == "0"
        assert "110150" in start.roles(server.aet)  # Application
        assert any("110151" in [r.get("csd-code") for r in p.findall("RoleIDCode")]
                   for p in start.participants())  # Application Launcher

        # C-STORE: one association, two studies -> one message per study.
        r = storescu(server.host, server.port, study_a + hostile)
        assert r.returncode == 0, r.stdout + r.stderr
        stored = wait_for(collector, "tcp", pid, lambda m: m.event == "110104" and m.action == "C",
                          "Instances Transferred (stored)")
        wait_until(lambda: len([m for m in messages(collector, "tcp", pid)
                                if m.event == "110104" and m.action == "C"]) == 2, 30,
                   what="a stored message per study")
        stored = {m.study()[0]: m for m in messages(collector, "tcp", pid)
                  if m.event == "110104" and m.action == "C"}
        a = stored[info_a.study]
        assert a.study()[1] == {CT: 3} and a.outcome == "0"
        assert a.patient() == (info_a.patient_id, "郭政達")
        src = a.participant("STORESCU")
        assert src.get("UserIsRequestor") == "true" and src.get("AlternativeUserID") == "AETITLES=STORESCU"
        assert (src.get("NetworkAccessPointID"), src.get("NetworkAccessPointTypeCode")) == ("127.0.0.1", "2")
        assert a.roles("STORESCU") == ["110153"] and a.roles(server.aet) == ["110152"]
        assert a.participant(server.aet).get("UserIsRequestor") == "false"
        # The hostile patient name survives the XML intact.
        assert stored[info_h.study].patient() == ("AUDIT-HOSTILE", HOSTILE_NAME)

        # C-FIND: Query (110112) with the identifier as ParticipantObjectQuery.
        res = findscu(server, STUDY_ROOT, identifier({"QueryRetrieveLevel": "STUDY",
                                                      "PatientID": info_a.patient_id,
                                                      "StudyInstanceUID": ""}), tmp_path / "find")
        assert res.final == 0 and len(res.pending) == 1, res.log[-2000:]
        (q,) = wait_for(collector, "tcp", pid, lambda m: m.event == "110112" and
                        m.requestor().get("UserID") == "FINDSCU", "C-FIND query")
        assert q.action == "E" and q.outcome == "0"
        assert q.roles("FINDSCU") == ["110153"] and q.roles(server.aet) == ["110152"]
        (obj,) = q.objects("110181")
        assert obj.get("ParticipantObjectID") == STUDY_ROOT_FIND and obj.get("ParticipantObjectTypeCodeRole") == "24"
        query = base64.b64decode(obj.find("ParticipantObjectQuery").text)
        assert info_a.patient_id.encode() in query
        ts = {d.get("type"): base64.b64decode(d.get("value")).decode() for d in obj.findall("ParticipantObjectDetail")}
        assert ts.get("TransferSyntax", "").startswith("1.2.840.10008.1.2"), ts

        # C-MOVE to STORESCP: Instances Transferred (R), destination STORESCP, requestor MOVESCU.
        r, result = movescu(server, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": info_a.study}, "STORESCP")
        assert result.final is not None and result.final.status == 0, r.stdout[-2000:]
        (mv,) = wait_for(collector, "tcp", pid, lambda m: m.event == "110104" and m.action == "R" and
                         any(p.get("UserID") == "STORESCP" for p in m.participants()), "C-MOVE transfer")
        assert mv.requestor().get("UserID") == "MOVESCU"
        assert mv.roles("STORESCP") == ["110152"] and mv.roles(server.aet) == ["110153"]
        assert mv.participant("STORESCP").get("NetworkAccessPointID") == "127.0.0.1"
        assert mv.study() == (info_a.study, {CT: 3}) and mv.outcome == "0"

        # C-GET: the requestor is the destination.
        r, result = getscu(server, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": info_h.study},
                           tmp_path / "get")
        assert result.final is not None and result.final.status == 0, r.stdout[-2000:]
        (gt,) = wait_for(collector, "tcp", pid, lambda m: m.event == "110104" and m.action == "R" and
                         any(p.get("UserID") == "GETSCU" for p in m.participants()), "C-GET transfer")
        assert gt.requestor().get("UserID") == "GETSCU" and gt.roles("GETSCU") == ["110152"]
        assert gt.study() == (info_h.study, {CT: 1})

        # A refused association: Security Alert naming the (hostile) calling AE and the reason.
        r = storescu(server.host, server.port, hostile, calling=HOSTILE_AE)
        assert r.returncode != 0
        (alert,) = wait_for(collector, "tcp", pid, lambda m: m.event == "110113", "Security Alert")
        assert alert.types == ["110126"] and alert.outcome == "4"
        who = alert.participant(HOSTILE_AE)
        assert who.get("UserIsRequestor") == "true" and who.get("NetworkAccessPointID") == "127.0.0.1"
        desc = alert.root.find("EventIdentification/EventOutcomeDescription").text
        # the reason names the rule that refused it (access::report)
        assert "association refused" in desc and "allowed_calling" in desc and HOSTILE_AE in desc, desc
        (node,) = alert.objects("110182")
        assert node.get("ParticipantObjectID") == "127.0.0.1"

        # Portal login: failure (4) then success (0).
        portal = Portal(server)
        assert portal.login(USER, "wrong-password")[0] == 401
        portal.login_ok(USER)
        logins = wait_for(collector, "tcp", pid, lambda m: m.event == "110114", "User Authentication")
        wait_until(lambda: len([m for m in messages(collector, "tcp", pid) if m.event == "110114"]) >= 2, 20,
                   what="both logins")
        logins = [m for m in messages(collector, "tcp", pid) if m.event == "110114"]
        assert [m.outcome for m in logins[:2]] == ["4", "0"]
        for m in logins[:2]:
            assert m.types == ["110122"]
            assert m.requestor().get("UserID") == USER
            assert m.requestor().get("NetworkAccessPointID") == "127.0.0.1"

        # Portal preview: Instances Accessed.
        status, _, _ = portal.get(f"/instances/{info_a.sop_instance}/view")
        assert status == 200
        # QIDO-RS (HTTP Basic): Query with the request as query.
        status, body = http_get(server, f"/dicom-web/studies?PatientID={info_h.patient_id}",
                                auth=(USER, PASSWORD), headers={"Accept": "application/dicom+json"})
        assert status == 200, body[:300]
        (qido,) = wait_for(collector, "tcp", pid, lambda m: m.event == "110112" and
                           m.requestor().get("UserID") == USER, "QIDO-RS query")
        query = base64.b64decode(qido.objects("110181")[0].find("ParticipantObjectQuery").text).decode()
        assert f"PatientID={info_h.patient_id}" in query, query
        # WADO-RS retrieve: Instances Transferred (R) to the user.
        status, body = http_get(server, f"/dicom-web/studies/{info_h.study}", auth=(USER, PASSWORD),
                                headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert status == 200 and len(body) > 1000
        (wado,) = wait_for(collector, "tcp", pid, lambda m: m.event == "110104" and m.action == "R" and
                           any(p.get("UserID") == USER for p in m.participants()), "WADO-RS transfer")
        assert wado.requestor().get("UserID") == USER and wado.roles(USER) == ["110152"]
        assert wado.study() == (info_h.study, {CT: 1})
        # WADO-RS metadata: Instances Accessed (110103), once per user and study per minute.
        for _ in range(2):
            status, _ = http_get(server, f"/dicom-web/studies/{info_h.study}/metadata", auth=(USER, PASSWORD),
                                 headers={"Accept": "application/dicom+json"})
            assert status == 200
        accessed = wait_for(collector, "tcp", pid, lambda m: m.event == "110103", "Instances Accessed")
        wait_until(lambda: {m.study()[0] for m in messages(collector, "tcp", pid) if m.event == "110103"}
                   == {info_a.study, info_h.study}, 20, what="both studies accessed")
        accessed = [m for m in messages(collector, "tcp", pid) if m.event == "110103"]
        assert len(accessed) == 2, "a repeated view within the minute was reported again"
        for m in accessed:
            assert m.action == "R" and m.requestor().get("UserID") == USER

        # STOW-RS by the user: Instances Transferred (C), the user as source (requestor).
        stow_uid = "1.2.826.0.1.3680043.8.498.424242"
        part = F.write_part10(F.with_uids(pydicom.dcmread(study_a[0]), SOPInstanceUID=stow_uid),
                              tmp_path / "stow.dcm").read_bytes()
        body = (b"--AUDITB\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n--AUDITB--\r\n")
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        conn.request("POST", "/dicom-web/studies", body=body, headers={
            "Host": f"127.0.0.1:{server.http_port}", "Accept": "application/dicom+json",
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=AUDITB',
            "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
        r = conn.getresponse()
        assert r.status == 200, r.read()[:300]
        conn.close()
        (stow,) = wait_for(collector, "tcp", pid, lambda m: m.event == "110104" and m.action == "C" and
                           any(p.get("UserID") == USER for p in m.participants()), "STOW-RS transfer")
        assert stow.requestor().get("UserID") == USER and stow.roles(USER) == ["110153"]
        assert stow.study() == (info_a.study, {CT: 1})
        # Portal study zip download: Instances Transferred (R) of the whole study (now 4) to the user.
        status, _, zipped = portal.get(f"/studies/{info_a.study}/download.zip")
        assert status == 200 and zipped[:2] == b"PK"
        (dl,) = wait_for(collector, "tcp", pid, lambda m: m.event == "110104" and m.action == "R" and
                         any(p.get("UserID") == USER for p in m.participants()) and m.study()[0] == info_a.study,
                         "portal download transfer")
        assert dl.study() == (info_a.study, {CT: 4}) and dl.roles(USER) == ["110152"]

        # Portal upload: Instances Transferred (C) with the user (not "IMPORT") as the source.
        up_uid = "1.2.826.0.1.3680043.8.498.424243"
        up = F.write_part10(F.with_uids(pydicom.dcmread(hostile[0]), SOPInstanceUID=up_uid),
                            tmp_path / "upload.dcm").read_bytes()
        status, _, html = portal.post_multipart("/upload", fields=[("csrf", portal.load_csrf())],
                                                files=[("files", "upload.dcm", up)])
        assert status == 200 and b"stored" in html, html[:500]
        (upl,) = wait_for(collector, "tcp", pid, lambda m: m.event == "110104" and m.action == "C" and
                          any(p.get("UserID") == USER for p in m.participants()) and
                          m.study()[0] == info_h.study, "portal upload transfer")
        assert upl.requestor().get("UserID") == USER and upl.roles(USER) == ["110153"]
        assert upl.study() == (info_h.study, {CT: 1}) and upl.patient()[0] == "AUDIT-HOSTILE"

        # /metrics: sent counts per sink; the collector behind the wrong CA got nothing.
        status, body = http_get(server, "/metrics")
        text = body.decode()
        assert metric(text, "mifas_audit_messages_total", "tcp") >= 12
        assert metric(text, "mifas_audit_messages_total", "wrongca") == 0
        assert metric(text, "mifas_audit_failures_total", "wrongca") >= 1
        assert metric(text, "mifas_audit_dropped_total", "tcp") == 0

        server.stop_ok()
        # Application Stop goes out before the process exits (shutdown flush).
        for transport in ("tcp", "tls", "udp"):
            wait_for(collector, transport, pid, lambda m: m.event == "110100" and m.types == ["110121"],
                     "Application Stop")
    finally:
        scp.stop()

    # Every message: schema-valid on every transport; TLS and the file got exactly what TCP got.
    tcp = messages(collector, "tcp", pid)
    for m in tcp:
        check_schema(m.root)
    key = lambda m: ET.tostring(m.root)  # noqa: E731
    wait_until(lambda: len(messages(collector, "tls", pid)) == len(tcp), 20, what="TLS to catch up")
    assert sorted(map(key, messages(collector, "tls", pid))) == sorted(map(key, tcp))
    assert sorted(map(key, file_messages(audit_file, pid))) == sorted(map(key, tcp))
    udp = messages(collector, "udp", pid)
    for m in udp:
        check_schema(m.root)
    # Loopback UDP loses nothing here; datagrams are never retried, so only ask for most.
    assert len(udp) >= len(tcp) - 2, (len(udp), len(tcp))
    events = sorted({(m.event, m.action) for m in tcp})
    assert events == sorted({("110100", "E"), ("110104", "C"), ("110104", "R"), ("110112", "E"),
                             ("110113", "E"), ("110114", "E"), ("110103", "R")}), events


def test_a_collector_that_is_down_never_slows_a_store(mifas, pki, tmp_path):
    study_a, _ = corpus(tmp_path / "corpus")
    down_port = free_port()  # nobody listens here (yet)
    audit_file = tmp_path / "audit.log"
    server = mifas(config={"audit": {
        "enabled": True, "source_id": SOURCE_ID, "enterprise_site_id": SITE, "file": str(audit_file),
        "queue_size": 1, "connect_timeout_secs": 1, "reconnect_max_secs": 2, "shutdown_flush_secs": 2,
        "collector": [{"name": "down", "transport": "tcp", "host": "127.0.0.1", "port": down_port}],
    }})
    pid = server.proc.pid
    for f in study_a:
        t0 = time.monotonic()
        r = storescu(server.host, server.port, [f])
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        assert elapsed < 3.0, f"C-STORE took {elapsed:.1f}s with the collector down"

    # The file gets every message (Application Start + one per association).
    wait_until(lambda: len(file_messages(audit_file, pid)) == 1 + len(study_a), 20, what="file sink")
    for m in file_messages(audit_file, pid):
        check_schema(m.root)

    def counts():
        _, body = http_get(server, "/metrics")
        t = body.decode()
        return (metric(t, "mifas_audit_messages_total", "down"), metric(t, "mifas_audit_dropped_total", "down"),
                metric(t, "mifas_audit_failures_total", "down"))

    wait_until(lambda: counts()[2] >= 1, 10, what="a failed connection attempt counted")
    sent, dropped, failures = counts()
    # Queue of one: the worker holds one message, one waits, the rest are dropped and counted.
    assert sent == 0 and dropped >= len(study_a) - 1, (sent, dropped, failures)

    # The collector comes up on that port: the worker reconnects (back-off at most 2 s) and
    # delivers what it kept.
    c = Rsyslog(tmp_path / "late-rsyslog", pki, tcp_port=down_port).start()
    try:
        wait_until(lambda: counts()[0] >= 2, 20, what="delivery after the collector came up")
        # The two kept (the one the worker held, the one queued) reach rsyslog's file.
        wait_until(lambda: len(messages(c, "tcp", pid)) >= 2, 20, what="rsyslog to write them")
        got = messages(c, "tcp", pid)
        assert all(m.event in ("110100", "110104") for m in got)
        for m in got:
            check_schema(m.root)
        server.stop_ok()
    finally:
        c.stop()

