"""Person name matching (issue 15, defect 7): a PN key matches the whole value or a component
group (alphabetic, ideographic, phonetic) — PS3.4 C.2.2.2.4 — so a surname prefix `WIL*` finds
WILSON^JOHN but not SMITH^WILLIAM, and `郭*` still finds Guo^Zhengda=郭^政達. Matching single
components (the given name WILLIAM) is fuzzy semantic matching of person names, used only when
the requester negotiates it (byte 3 of the FIND SOP Class Extended Negotiation, PS3.4 C.5.1.1),
here with pynetdicom."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.data import get_testdata_file

from find_clients import FIND_UID, identifier, pyn_associate, pyn_find_on
from find_oracle import STUDY_ROOT
from mifas_helpers import storescu

ROOT = "1.2.826.0.1.3680043.8.498.7716"
NAMES = {"N1": ("ISO_IR 100", "WILSON^JOHN"), "N2": ("ISO_IR 100", "SMITH^WILLIAM"),
         "N3": ("ISO_IR 192", "Guo^Zhengda=郭^政達"), "N4": ("ISO_IR 100", "WILLIAMS^ANN")}


@pytest.fixture(scope="module")
def archive(shared_mifas, tmp_path_factory):
    d = tmp_path_factory.mktemp("names")
    files = []
    for n, (pid, (charset, name)) in enumerate(NAMES.items()):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        ds.PatientID = pid
        ds.StudyInstanceUID = f"{ROOT}.1.{n}"
        ds.SeriesInstanceUID = f"{ROOT}.2.{n}"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{ROOT}.3.{n}"
        p = d / f"{pid}.dcm"
        ds.save_as(p, enforce_file_format=True)
        files.append(p)
    r = storescu(shared_mifas.host, shared_mifas.port, files, called=shared_mifas.aet)
    log = r.stdout + r.stderr
    assert r.returncode == 0 and log.count("Received Store Response (Success)") == len(files), log[-3000:]
    return shared_mifas


def _find(server, name, ext_info):
    assoc = pyn_associate(server, ext_info=ext_info)
    try:
        info = assoc.acceptor.sop_class_extended.get(FIND_UID[STUDY_ROOT]) if ext_info else None
        res = pyn_find_on(assoc, STUDY_ROOT, identifier(dict(
            QueryRetrieveLevel="STUDY", PatientID="", PatientName=name, StudyInstanceUID="")))
    finally:
        assoc.release()
    assert res.final == 0, res.describe()
    return info, {str(i.PatientID): str(i.PatientName) for _, i in res.pending}


# (key, patients found without fuzzy matching, with it)
CASES = [
    ("WIL*", {"N1", "N4"}, {"N1", "N2", "N4"}),
    ("wil*", {"N1", "N4"}, {"N1", "N2", "N4"}),
    ("WILLIAM", set(), {"N2"}),
    ("*^ANN", {"N4"}, {"N4"}),
    ("郭*", {"N3"}, {"N3"}),
    ("郭政達", {"N3"}, {"N3"}),
    ("guo*", {"N3"}, {"N3"}),
    ("政*", set(), {"N3"}),
    ("Zhengda", set(), {"N3"}),
]


@pytest.mark.parametrize("name,plain,fuzzy", CASES, ids=[c[0] for c in CASES])
def test_names_per_group_and_fuzzy(archive, name, plain, fuzzy):
    # No extended negotiation at all: per component group.
    _, got = _find(archive, name, None)
    assert set(got) == plain, f"{name!r} without negotiation: {got}"
    # Fuzzy matching proposed (byte 3 = 1) and accepted: components too.
    info, got = _find(archive, name, b"\x00\x00\x01")
    assert info is not None and len(info) == 3 and info[2] == 1, f"fuzzy matching not accepted: {info!r}"
    assert set(got) == fuzzy, f"{name!r} with fuzzy matching: {got}"
    for pid, returned in got.items():
        assert returned == NAMES[pid][1]
    # Proposed as 0: not in effect.
    info, got = _find(archive, name, b"\x00\x00\x00")
    assert info is not None and info[2] == 0
    assert set(got) == plain, f"{name!r} with fuzzy matching declined: {got}"
