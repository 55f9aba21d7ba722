"""Default character set (issue 13, item 4): data sets without Specific Character Set (0008,0005)
but with bytes beyond ASCII in their names are indexed in `dicom.default_character_set`
(ISO_IR 100 unless configured, like Orthanc's DefaultEncoding), never refused, stored byte for
byte, and the fact is logged once per association. Stored with pynetdicom, found with pynetdicom
C-FIND in a UTF-8 query and with QIDO-RS; `mifas import` reads them the same way."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess

import pydicom
from pynetdicom.sop_class import CTImageStorage
from pydicom.uid import ExplicitVRLittleEndian

import dicom_fixtures as F
from find_clients import identifier, pyn_find
from find_oracle import STUDY_ROOT
from mifas_helpers import (CHILD_ENV, MIFAS_BIN, check_stored_object, file_dataset_bytes,
                           pyn_associate, run_mifas, write_config)

LOG_LINE = "no Specific Character Set (0008,0005)"
USER, PASSWORD = "charset-viewer", "charset-pass-1"


def _no_charset_ct(path, idx: int, tag: str, name: bytes, patient_id: str):
    """A small CT whose PatientName is `name` as raw bytes and which has no (0008,0005): the
    data set is encoded with an ASCII stand-in of the same length, then the bytes are swapped."""
    ds = F.make_ct(0, idx, 0, 0, tag, F.ct_pixels(idx, 16, 16), 16, 16)
    del ds.SpecificCharacterSet
    stand_in = "Q" * len(name)
    ds.PatientName = stand_in
    ds.PatientID = patient_id
    F.write_part10(ds, path)
    raw = path.read_bytes()
    assert raw.count(stand_in.encode()) == 1
    path.write_bytes(raw.replace(stand_in.encode(), name))
    back = pydicom.dcmread(path)
    assert "SpecificCharacterSet" not in back
    assert back["PatientName"].value.original_string.rstrip(b" ") == name
    return path


def _store(server, files):
    """One association for all `files`; every C-STORE must succeed."""
    assoc = pyn_associate(server, [(CTImageStorage, [ExplicitVRLittleEndian])])
    assert assoc.is_established
    try:
        for f in files:
            status = assoc.send_c_store(pydicom.dcmread(f))
            assert status and int(status.Status) == 0, f"C-STORE of {f.name}: {status}"
    finally:
        assoc.release()


def _find_names(server, name_query: str) -> list[tuple[str, str]]:
    """Study-level C-FIND by PatientName in ISO_IR 192: [(PatientID, PatientName)]."""
    ds = identifier(dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="", PatientID="",
                         PatientName=name_query))
    ds.SpecificCharacterSet = "ISO_IR 192"
    r = pyn_find(server, STUDY_ROOT, ds)
    assert r.final == 0, r.describe()
    return sorted((str(i.PatientID), str(i.PatientName)) for _, i in r.pending)


def _log_lines(server) -> list[str]:
    return [line for line in server.log_path.read_text(errors="replace").splitlines()
            if LOG_LINE in line]


def _qido(server, query: str):
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    conn.request("GET", "/dicom-web/studies?" + query,
                 headers={"Authorization": f"Basic {auth}", "Accept": "application/dicom+json"})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 200, f"QIDO {query}: {r.status} {body[:300]!r}"
    return json.loads(body)


def test_latin1_without_character_set_is_indexed_as_latin1_by_default(mifas, tmp_path):
    server = mifas()
    latin1 = "Müller^Jürgen".encode("latin-1")
    files_a = [_no_charset_ct(tmp_path / f"a{i}.dcm", i, "dcs-a", latin1, "DCS-A") for i in range(2)]
    files_b = [_no_charset_ct(tmp_path / "b0.dcm", 5, "dcs-b", "Doeuf^Renée".encode("latin-1"),
                              "DCS-B")]
    _store(server, files_a)
    _store(server, files_b)

    # Stored byte for byte, (0008,0005) still absent.
    for f in files_a + files_b:
        ds = pydicom.dcmread(f)
        check_stored_object(server.data_dir, ds.SOPClassUID, ds.SOPInstanceUID,
                            ExplicitVRLittleEndian, dataset=file_dataset_bytes(f))

    # Found by a UTF-8 query (case-insensitive name matching) and answered in UTF-8.
    assert _find_names(server, "müller*") == [("DCS-A", "Müller^Jürgen")] * 2
    assert _find_names(server, "Doeuf*") == [("DCS-B", "Doeuf^Renée")]

    # One line per association that brought such objects (two objects, then one).
    lines = _log_lines(server)
    assert len(lines) == 2, "\n".join(lines) or server.log_tail()
    assert all("ISO_IR 100" in line for line in lines), lines

    # QIDO-RS shows the same decoded name.
    r = subprocess.run([str(MIFAS_BIN), "user", "add", USER, "--role", "viewer", "--data-dir",
                        str(server.data_dir)], input=PASSWORD + "\n", capture_output=True,
                       text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, r.stderr
    studies = _qido(server, "PatientID=DCS-A&includefield=00100010")
    names = {s["00100010"]["Value"][0]["Alphabetic"] for s in studies}
    assert names == {"Müller^Jürgen"}


def test_a_configured_utf8_default_reads_utf8_names(mifas, tmp_path):
    server = mifas(config={"dicom": {"default_character_set": "ISO_IR 192"}})
    files = [
        _no_charset_ct(tmp_path / "u0.dcm", 0, "dcs-u", "Müller^Jürgen".encode(), "DCS-U1"),
        _no_charset_ct(tmp_path / "u1.dcm", 1, "dcs-u", "郭^政達".encode(), "DCS-U2"),
    ]
    _store(server, files)
    for f in files:
        ds = pydicom.dcmread(f)
        check_stored_object(server.data_dir, ds.SOPClassUID, ds.SOPInstanceUID,
                            ExplicitVRLittleEndian, dataset=file_dataset_bytes(f))
    assert _find_names(server, "MÜLLER*") == [("DCS-U1", "Müller^Jürgen")]
    assert _find_names(server, "郭*") == [("DCS-U2", "郭^政達")]
    lines = _log_lines(server)
    assert len(lines) == 1 and "ISO_IR 192" in lines[0], lines


def test_import_uses_the_default_and_logs_once(mifas, tmp_path):
    cyrillic = "Люнин^Вит".encode("iso8859-5")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        _no_charset_ct(src / f"c{i}.dcm", i, "dcs-c", cyrillic, "DCS-C")
    cfg = write_config(tmp_path / "cyr.toml", {"dicom": {"default_character_set": "ISO_IR 144"}})
    data = tmp_path / "data"
    r = run_mifas("import", "--config", cfg, "--data-dir", data, src, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "imported: 3" in r.stdout
    assert r.stderr.count(LOG_LINE) == 1, r.stderr
    server = mifas(config={"dicom": {"default_character_set": "ISO_IR 144"}}, data_dir=data)
    assert _find_names(server, "люнин*") == [("DCS-C", "Люнин^Вит")] * 3


def test_an_unknown_default_stops_the_start(tmp_path):
    for bad in ("latin1", "ISO 2022 IR 87", "ISO_IR 100\\\\ISO_IR 144"):
        cfg = tmp_path / "bad.toml"
        cfg.write_text(f'[dicom]\ndefault_character_set = "{bad}"\n')
        r = run_mifas("serve", "--config", cfg, "--data-dir", tmp_path / "data", "--dicom-port", "0",
                      timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "dicom.default_character_set" in r.stderr and "ISO_IR 192" in r.stderr, r.stderr


def test_stow_reads_the_default_and_logs_once_per_request(mifas, tmp_path):
    server = mifas(config={"dicom": {"default_character_set": "ISO_IR 192"}})
    r = subprocess.run([str(MIFAS_BIN), "user", "add", "charset-up", "--role", "uploader",
                        "--data-dir", str(server.data_dir)], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, r.stderr
    files = [_no_charset_ct(tmp_path / f"s{i}.dcm", i, "dcs-s", "Ærø^Ål".encode(), "DCS-S")
             for i in range(2)]
    boundary = "dcs-boundary-1"
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                    + f.read_bytes() + b"\r\n" for f in files) + b"--" + boundary.encode() + b"--\r\n"
    auth = base64.b64encode(f"charset-up:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    conn.request("POST", "/dicom-web/studies", body=body, headers={
        "Authorization": f"Basic {auth}", "Accept": "application/dicom+json",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    resp = conn.getresponse()
    answer = resp.read()
    conn.close()
    assert resp.status == 200, f"{resp.status} {answer[:500]!r}"
    assert _find_names(server, "ærø*") == [("DCS-S", "Ærø^Ål")] * 2
    lines = _log_lines(server)
    assert len(lines) == 1 and "ISO_IR 192" in lines[0], lines
