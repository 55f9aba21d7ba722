"""VR UN (issue 15, defect 6): standard attributes that arrive encoded as UN in an explicit VR
data set — Study and Series Instance UIDs, as anonymisers write them, and PatientName, PatientID,
StudyDate, Modality, SeriesNumber — are read through the data dictionary for the index
(PS3.5 6.2.2): the object is stored (byte for byte as sent, UN included) and C-FIND finds it with
the right values. Before, the UN UIDs were read as lists of numbers and the object refused with
0xC001 "UID longer than 64 characters"."""

from __future__ import annotations

import pydicom
import pydicom.config
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import Tag

from find_clients import identifier, pyn_find
from find_oracle import STUDY_ROOT
from mifas_helpers import check_stored_object, storescu

EXPLICIT_LE = "1.2.840.10008.1.2.1"
ROOT = "1.2.826.0.1.3680043.8.498.7715"


def _un(ds, keyword: str, raw: bytes) -> None:
    """Put `raw` as the value of `keyword` with VR UN, written as is."""
    tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
    if len(raw) % 2:
        raw += b"\0" if pydicom.datadict.dictionary_VR(tag) == "UI" else b" "
    ds[tag] = RawDataElement(tag, "UN", len(raw), raw, 0, False, True)


# (suffix, Specific Character Set, PatientName bytes, PatientName as Unicode)
FILES = [
    ("1", "ISO_IR 100", "Müller^Jürgen".encode("latin-1"), "Müller^Jürgen"),
    ("2", ["", "ISO 2022 IR 87"],
     b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
     "Yamada^Tarou=山田^太郎=やまだ^たろう"),
]


def _make(path, suffix, charset, name_bytes):
    old = pydicom.config.replace_un_with_known_vr
    pydicom.config.replace_un_with_known_vr = False
    try:
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        sop = f"{ROOT}.3.{suffix}"
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SpecificCharacterSet = charset
        _un(ds, "StudyInstanceUID", f"{ROOT}.1.{suffix}".encode())
        _un(ds, "SeriesInstanceUID", f"{ROOT}.2.{suffix}".encode())
        _un(ds, "PatientName", name_bytes)
        _un(ds, "PatientID", f"UNVR-{suffix}".encode())
        _un(ds, "StudyDate", b"20240315")
        _un(ds, "Modality", b"CT")
        _un(ds, "SeriesNumber", f"{40 + int(suffix)}".encode())
        ds.save_as(path, enforce_file_format=True)
    finally:
        pydicom.config.replace_un_with_known_vr = old
    raw = path.read_bytes()
    assert b"\x20\x00\x0d\x00UN" in raw, "the fixture lost its UN StudyInstanceUID"
    return sop


@pytest.fixture(scope="module")
def archive(shared_mifas, tmp_path_factory):
    d = tmp_path_factory.mktemp("un_files")
    files = []
    for suffix, charset, name_bytes, _ in FILES:
        p = d / f"un{suffix}.dcm"
        _make(p, suffix, charset, name_bytes)
        files.append(p)
    r = storescu(shared_mifas.host, shared_mifas.port, files, called=shared_mifas.aet, ts=EXPLICIT_LE)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert log.count("Received Store Response (Success)") == len(files), log[-3000:]
    return shared_mifas, files


UN_KEYWORDS = ["StudyInstanceUID", "SeriesInstanceUID", "PatientName", "PatientID", "StudyDate",
               "Modality", "SeriesNumber"]


def test_stored_as_received(archive):
    """The UN elements are stored as storescu sent them: still UN, same bytes. (storescu
    re-encodes the file, so the stored data set is compared element by element.)"""
    server, files = archive
    old = pydicom.config.replace_un_with_known_vr
    pydicom.config.replace_un_with_known_vr = False
    try:
        for f in files:
            sent = pydicom.dcmread(f)
            ds_bytes = check_stored_object(server.data_dir, sent.SOPClassUID, sent.SOPInstanceUID,
                                           EXPLICIT_LE)
            for kw in UN_KEYWORDS:
                tag = Tag(pydicom.datadict.tag_for_keyword(kw))
                raw = sent.get_item(tag)
                # Explicit VR LE: tag, "UN", 2 reserved bytes, 4-byte length, then the value.
                element = (tag.group.to_bytes(2, "little") + tag.element.to_bytes(2, "little")
                           + b"UN\0\0" + len(raw.value).to_bytes(4, "little") + raw.value)
                assert element in ds_bytes, f"{kw} is not stored as the UN element sent"
    finally:
        pydicom.config.replace_un_with_known_vr = old


@pytest.mark.parametrize("suffix,charset,name_bytes,name", FILES, ids=[f[0] for f in FILES])
def test_found_with_dictionary_values(archive, suffix, charset, name_bytes, name):
    server, _ = archive
    family = name.split("=")[-1].split("^")[0] if "=" in name else name.split("^")[0]
    res = pyn_find(server, STUDY_ROOT, identifier(dict(
        QueryRetrieveLevel="STUDY", PatientName=f"{family}*", StudyInstanceUID="", PatientID="",
        StudyDate="20240301-20240331", ModalitiesInStudy="")))
    assert res.final == 0 and len(res.pending) == 1, res.describe()
    study = res.pending[0][1]
    assert study.StudyInstanceUID == f"{ROOT}.1.{suffix}"
    assert study.PatientID == f"UNVR-{suffix}"
    assert str(study.PatientName) == name
    assert study.StudyDate == "20240315"
    assert study.ModalitiesInStudy == "CT"

    res = pyn_find(server, STUDY_ROOT, identifier(dict(
        QueryRetrieveLevel="SERIES", StudyInstanceUID=f"{ROOT}.1.{suffix}", SeriesInstanceUID="",
        Modality="CT", SeriesNumber="")))
    assert res.final == 0 and len(res.pending) == 1, res.describe()
    series = res.pending[0][1]
    assert series.SeriesInstanceUID == f"{ROOT}.2.{suffix}"
    assert int(series.SeriesNumber) == 40 + int(suffix)

    res = pyn_find(server, STUDY_ROOT, identifier(dict(
        QueryRetrieveLevel="IMAGE", StudyInstanceUID=f"{ROOT}.1.{suffix}",
        SeriesInstanceUID=f"{ROOT}.2.{suffix}", SOPInstanceUID="", Rows="")))
    assert res.final == 0 and len(res.pending) == 1, res.describe()
    image = res.pending[0][1]
    assert image.SOPInstanceUID == f"{ROOT}.3.{suffix}"
    assert int(image.Rows) == 128


def test_a_un_key_in_the_request_is_read_through_the_dictionary(archive):
    server, _ = archive
    ds = identifier(dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="",
                         PatientID=DataElement(0x00100020, "UN", b"UNVR-1")))
    res = pyn_find(server, STUDY_ROOT, ds)
    assert res.final == 0 and len(res.pending) == 1, res.describe()
    assert res.pending[0][1].StudyInstanceUID == f"{ROOT}.1.1"
