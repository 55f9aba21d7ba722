"""DICOMweb QIDO-RS and WADO-RS /metadata against the real binary, with dicomweb-client (and raw
HTTP for the error cases): a corpus stored with DCMTK storescu (several patients, studies and
modalities, an ISO 2022 Japanese name, a Latin-1 name, a 500-instance series), then searches
compared with what was stored and with C-FIND answers of the same archive, and metadata compared
element by element with pydicom's JSON of the original files."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess
import time
from urllib.parse import quote

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_charset_files
from pydicom.dataset import Dataset

import dicom_fixtures as F
from find_clients import identifier, pyn_find
from find_oracle import STUDY_ROOT
from mifas_helpers import CHILD_ENV, MIFAS_BIN, object_path, storescu

USER, PASSWORD = "qido-viewer", "qido-pass-1"
MAX_RESULTS = 400  # dicomweb.qido_max_results of the server under test
BIG_SERIES = 500

# (key, patient id, charset, name, study date, [(modality, instances) per series])
STUDIES = [
    ("mue1", "QIDO-MUE", "ISO_IR 100", "Müller^Jürgen", "20200315", [("CT", 2), ("CT", 2)]),
    ("mue2", "QIDO-MUE", "ISO_IR 100", "Müller^Jürgen", "20210610", [("MR", 2)]),
    ("smith", "QIDO-SMI", "ISO_IR 192", "Smith^John", "20200720", [("CT", 1), ("MR", 3)]),
    ("big", "QIDO-BIG", "ISO_IR 192", "Big^Series", "20190101", [("CT", BIG_SERIES)]),
]


def _user_add(data_dir, name, role, password):
    r = subprocess.run([str(MIFAS_BIN), "user", "add", name, "--role", role, "--data-dir", str(data_dir)],
                       input=password + "\n", capture_output=True, text=True, timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, f"user add: {r.stdout}\n{r.stderr}"


def _make(key, s_idx, pid, charset, name, date, se_idx, modality, i, size=16):
    ds = F.make_ct(0, s_idx, se_idx, i, f"qido-{key}", F.ct_pixels(s_idx * 1000 + se_idx * 100 + i, size, size),
                   size, size)
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.PatientID = pid
    ds.StudyDate = date
    ds.Modality = modality
    ds.AccessionNumber = f"ACC-{key}"
    ds.StudyDescription = f"{key} study"
    ds.SeriesDescription = f"{key} {modality} {se_idx}"
    return ds


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("qido_corpus")
    files, stored = [], {}
    for s_idx, (key, pid, charset, name, date, series) in enumerate(STUDIES):
        for se_idx, (modality, n) in enumerate(series):
            for i in range(n):
                ds = _make(key, s_idx, pid, charset, name, date, se_idx, modality, i)
                if key == "smith" and se_idx == 0:
                    # A large private binary value (bulk data), a small one (inline), a sequence.
                    ds.add_new(0x00091010, "LO", "MIFAS TEST")
                    ds.add_new(0x00091011, "OB", bytes(range(256)) * 8)
                    ds.add_new(0x00091012, "OB", b"\x01\x02\x03\x04")
                    item = Dataset()
                    item.CodeValue = "T-A0100"
                    item.CodingSchemeDesignator = "SRT"
                    item.CodeMeaning = "Brain"
                    ds.AnatomicRegionSequence = [item]
                path = d / f"{key}_{se_idx}_{i}.dcm"
                F.write_part10(ds, path)
                files.append(path)
                stored[str(ds.SOPInstanceUID)] = path
    jp = shutil.copy(get_charset_files("chrH31.dcm")[0], d / "chrH31.dcm")
    files.append(jp)
    stored[str(pydicom.dcmread(jp).SOPInstanceUID)] = jp

    # one server for the module (conftest's `mifas` factory is per test)
    from conftest import _Servers
    servers = _Servers(tmp_path_factory.mktemp("qido_server"))
    server = servers(config={"dicomweb": {"qido_max_results": MAX_RESULTS}})
    r = storescu(server.host, server.port, files, called=server.aet, timeout=600)
    assert r.returncode == 0, f"storescu failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    _user_add(server.data_dir, USER, "viewer", PASSWORD)
    yield server, stored
    servers.teardown()


def _base(server):
    return f"http://127.0.0.1:{server.http_port}/dicom-web"


@pytest.fixture(scope="module")
def client(archive):
    server, _ = archive
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    client = DICOMwebClient(url=_base(server), session=session)
    # dicomweb-client sends `Host: <hostname>` without the port (it sets the header itself from
    # the URL's hostname); the server builds RetrieveURL and BulkDataURI from Host, so give it
    # the full authority, as a browser or requests alone would send.
    client.host = f"127.0.0.1:{server.http_port}"
    return client


def _get(server, path, auth=(USER, PASSWORD), headers=None):
    h = {"Host": f"127.0.0.1:{server.http_port}"}
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    conn.request("GET", "/dicom-web" + path, headers=h)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, r.headers, body


def _v(result, tag):
    """The values of `tag` (8 hex digits) in a DICOM JSON object, [] when absent or empty."""
    return result.get(tag, {}).get("Value", [])


def _one(result, tag):
    values = _v(result, tag)
    assert len(values) == 1, f"{tag}: {values}"
    return values[0]


def _by_key(key):
    return next(s for s in STUDIES if s[0] == key)


def _study_uids(stored, key):
    return {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID)
            for p in stored.values() if p.name.startswith(key + "_")}


def _uid_of(stored, key):
    (uid,) = _study_uids(stored, key)
    return uid


# --- QIDO: studies --------------------------------------------------------------------------


def test_study_search_by_name_prefix_has_counts_modalities_and_retrieve_url(archive, client):
    server, stored = archive
    results = client.search_for_studies(search_filters={"PatientName": "smi*"})
    assert len(results) == 1, results
    r = results[0]
    uid = _uid_of(stored, "smith")
    assert _one(r, "0020000D") == uid
    assert _one(r, "00100010") == {"Alphabetic": "Smith^John"}
    assert sorted(_v(r, "00080061")) == ["CT", "MR"]
    assert _one(r, "00201206") == 2  # NumberOfStudyRelatedSeries, a JSON number
    assert _one(r, "00201208") == 4
    assert _one(r, "00080020") == "20200720"
    assert _one(r, "00081190") == f"{_base(server)}/studies/{uid}"
    assert r["00081190"]["vr"] == "UR"


def test_latin1_and_iso2022_japanese_names_come_out_in_unicode(archive, client):
    server, stored = archive
    r = client.search_for_studies(search_filters={"PatientID": "QIDO-MUE"})
    assert len(r) == 2
    assert all(_one(x, "00100010") == {"Alphabetic": "Müller^Jürgen"} for x in r)
    jp = client.search_for_studies(search_filters={"PatientName": "山田*"})
    assert len(jp) == 1, jp
    assert _one(jp[0], "00100010") == {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎",
                                       "Phonetic": "やまだ^たろう"}
    assert _one(jp[0], "00100020") == "H31EXAMPLE"


def test_fuzzymatching_matches_single_name_components(archive, client):
    plain = client.search_for_studies(search_filters={"PatientName": "jürgen*"})
    assert plain == []
    fuzzy = client.search_for_studies(search_filters={"PatientName": "jürgen*"}, fuzzymatching=True)
    assert {_one(x, "00100020") for x in fuzzy} == {"QIDO-MUE"}
    assert len(fuzzy) == 2


def test_date_range_and_uid_lists(archive, client):
    server, stored = archive
    r = client.search_for_studies(search_filters={"StudyDate": "20200101-20201231"})
    assert {_one(x, "0020000D") for x in r} == _study_uids(stored, "mue1") | _study_uids(stored, "smith")
    r = client.search_for_studies(search_filters={"StudyDate": "-20191231"})
    assert {_one(x, "0020000D") for x in r} == _study_uids(stored, "big")
    a, b = _uid_of(stored, "mue2"), _uid_of(stored, "big")
    for value in (f"{a},{b}", f"{a}\\{b}", [a, b]):
        r = client.search_for_studies(search_filters={"StudyInstanceUID": value})
        assert {_one(x, "0020000D") for x in r} == {a, b}, value
    r = client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"})
    assert {_one(x, "0020000D") for x in r} == {_uid_of(stored, "mue2"), _uid_of(stored, "smith")}


def test_includefield_and_all(archive, client):
    r = client.search_for_studies(search_filters={"PatientID": "QIDO-SMI"})
    assert "00080062" not in r[0]  # SOPClassesInStudy is not a default
    r = client.search_for_studies(search_filters={"PatientID": "QIDO-SMI"},
                                  fields=["SOPClassesInStudy", "00100030"])
    assert _v(r[0], "00080062") == [F.CT_IMAGE_STORAGE]
    assert _v(r[0], "00100030") == ["19700101"]
    r = client.search_for_studies(search_filters={"PatientID": "QIDO-SMI"}, fields=["all"])
    for tag in ("00080062", "00100030", "00100040", "00201206", "00200010"):
        assert tag in r[0], tag
    # an attribute outside the key table is read from the instance's header
    r = client.search_for_instances(search_filters={"PatientID": "QIDO-SMI", "Modality": "CT"},
                                    fields=["Manufacturer"])
    assert len(r) == 1 and _v(r[0], "00080070") == ["MIFAS-TESTS"]


def test_limit_offset_pages_and_the_server_maximum(archive, client):
    server, stored = archive
    everything = client.search_for_studies()
    uids = [_one(x, "0020000D") for x in everything]
    assert len(uids) == len(STUDIES) + 1  # + the Japanese file's study
    paged = []
    for offset in range(0, len(uids), 2):
        paged += [_one(x, "0020000D") for x in client.search_for_studies(limit=2, offset=offset)]
    assert paged == uids
    assert client.search_for_studies(offset=len(uids)) == []

    big_study = _uid_of(stored, "big")
    (big_series,) = [_one(x, "0020000E") for x in client.search_for_series(study_instance_uid=big_study)]
    path = f"/studies/{big_study}/series/{big_series}/instances"
    status, headers, body = _get(server, path + "?limit=450")
    assert status == 200
    assert len(json.loads(body)) == MAX_RESULTS  # lowered to dicomweb.qido_max_results
    assert "299" in (headers.get("Warning") or ""), headers
    status, headers, body = _get(server, path + f"?offset={MAX_RESULTS}")
    assert len(json.loads(body)) == BIG_SERIES - MAX_RESULTS
    assert headers.get("Warning") is None


def test_ohif_study_list_query(archive):
    """The query string OHIF's study list sends (comma-separated includefield, an open date range,
    fuzzymatching=false, limit/offset)."""
    server, stored = archive
    status, headers, body = _get(
        server, "/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060"
                "&StudyDate=20200601-&PatientName=*")
    assert status == 200, body[:300]
    r = json.loads(body)
    assert {_one(x, "0020000D") for x in r} == _study_uids(stored, "mue2") | _study_uids(stored, "smith")
    assert all("00081030" in x and "00080060" not in x for x in r)


def test_studies_match_c_find(archive, client):
    server, stored = archive
    qido = {_one(x, "0020000D"): (_one(x, "00201208"), sorted(_v(x, "00080061")))
            for x in client.search_for_studies()}
    res = pyn_find(server, STUDY_ROOT, identifier({
        "QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "NumberOfStudyRelatedInstances": "",
        "ModalitiesInStudy": ""}))
    assert res.final == 0x0000, res.describe()
    cfind = {}
    for _, ds in res.pending:
        mods = ds.ModalitiesInStudy
        mods = [mods] if isinstance(mods, str) else list(mods)
        cfind[str(ds.StudyInstanceUID)] = (int(ds.NumberOfStudyRelatedInstances), sorted(mods))
    assert qido == cfind
    assert sum(n for n, _ in qido.values()) == len(stored)


# --- QIDO: series and instances --------------------------------------------------------------


def test_series_of_a_study_and_relational_series_search(archive, client):
    server, stored = archive
    smith = _uid_of(stored, "smith")
    r = client.search_for_series(study_instance_uid=smith)
    got = {(_one(x, "00080060"), _one(x, "00201209")) for x in r}
    assert got == {("CT", 1), ("MR", 3)}
    for x in r:
        assert _one(x, "00081190") == f"{_base(server)}/studies/{smith}/series/{_one(x, '0020000E')}"
        assert "00100010" not in x  # the study is named by the path: its attributes are not repeated
    # /series without a study: relational by the patient's name, study attributes included
    r = client.search_for_series(search_filters={"PatientName": "müller*", "Modality": "CT"})
    assert len(r) == 2
    assert all(_one(x, "00100010") == {"Alphabetic": "Müller^Jürgen"} for x in r)
    assert all(_one(x, "0020000D") == _uid_of(stored, "mue1") for x in r)
    assert all(_one(x, "00201206") == 2 for x in r)  # NumberOfStudyRelatedSeries from the study
    r = client.search_for_series(search_filters={"StudyDate": "20210610"})
    assert [_one(x, "00080060") for x in r] == ["MR"]


def test_instances_at_every_path(archive, client):
    server, stored = archive
    smith = _uid_of(stored, "smith")
    mr = [x for x in client.search_for_series(study_instance_uid=smith) if _one(x, "00080060") == "MR"][0]
    series = _one(mr, "0020000E")
    r = client.search_for_instances(study_instance_uid=smith, series_instance_uid=series)
    sops = {_one(x, "00080018") for x in r}
    expected = {uid for uid, p in stored.items() if p.name.startswith("smith_1_")}
    assert sops == expected and len(sops) == 3
    assert sorted(_one(x, "00200013") for x in r) == [1, 2, 3]
    x = r[0]
    assert _one(x, "00280010") == 16 and _one(x, "00080016") == F.CT_IMAGE_STORAGE
    assert _one(x, "00081190") == f"{_base(server)}/studies/{smith}/series/{series}/instances/{_one(x, '00080018')}"
    assert "00080060" not in x  # the series is named by the path
    r = client.search_for_instances(study_instance_uid=smith, search_filters={"Modality": "MR"})
    assert {_one(x, "00080018") for x in r} == expected
    assert all(_one(x, "00080060") == "MR" for x in r)  # series attributes: no series in the path
    one = sorted(expected)[0]
    r = client.search_for_instances(search_filters={"SOPInstanceUID": one})
    assert len(r) == 1
    assert _one(r[0], "00100010") == {"Alphabetic": "Smith^John"}
    assert _one(r[0], "00201209") == 3
    r = client.search_for_instances(search_filters={"PatientName": "smith*", "InstanceNumber": "2"})
    assert {_one(x, "00080018") for x in r} == {
        uid for uid, p in stored.items() if p.name == "smith_1_1.dcm"}


# --- WADO-RS metadata -----------------------------------------------------------------------


def _expected_json(path, base):
    """pydicom's DICOM JSON of an original file, with our conventions: Pixel Data (any size) and
    binary values over 1 KiB as BulkDataURIs (top level), Specific Character Set as ISO_IR 192."""
    ds = pydicom.dcmread(path)
    urls = {}

    def bulk(elem):
        url = (f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
               f"{ds.SOPInstanceUID}/bulkdata/{elem.tag:08X}")
        urls[f"{elem.tag:08X}"] = url
        return url

    j = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk)
    # Pixel Data is always bulk data, whatever its size.
    j["7FE00010"] = {"vr": ds["PixelData"].VR, "BulkDataURI": bulk(ds["PixelData"])}
    if "00080005" in j:
        j["00080005"]["Value"] = ["ISO_IR 192"]
    return j


def _norm(value):
    """Comparable form: numbers as floats, "" and null alike, PN groups without trailing ^."""
    if isinstance(value, dict):
        if set(value) <= {"Alphabetic", "Ideographic", "Phonetic"}:
            groups = {k: v.rstrip("^ ") for k, v in value.items() if v.rstrip("^ ")}
            return groups or None
        return {k: _norm(v) for k, v in value.items() if k != "InlineBinary" or v}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if value == "":
        return None
    return value


def _element(e):
    e = _norm(e)
    if "Value" in e and all(v is None for v in e["Value"]):
        del e["Value"]
    return e


def _compare(got, expected, what):
    assert set(got) == set(expected), (what, set(got) ^ set(expected))
    for tag in expected:
        assert _element(got[tag]) == _element(expected[tag]), (what, tag, got[tag], expected[tag])


def test_study_metadata_equals_the_originals(archive, client):
    server, stored = archive
    base = _base(server)
    for key in ("smith", "mue1"):
        study = _uid_of(stored, key)
        t0 = time.monotonic()
        meta = client.retrieve_study_metadata(study)
        print(f"\nstudy metadata {key}: {len(meta)} instances in {time.monotonic() - t0:.3f} s")
        by_sop = {_one(m, "00080018"): m for m in meta}
        expected = {uid for uid, p in stored.items() if p.name.startswith(key + "_")}
        assert set(by_sop) == expected
        for sop in expected:
            _compare(by_sop[sop], _expected_json(stored[sop], base), sop)
    # the private values: 2 KiB as bulk data, 4 bytes inline, the sequence nested
    smith_ct = [m for m in client.retrieve_study_metadata(_uid_of(stored, "smith"))
                if _one(m, "00080060") == "CT"][0]
    assert smith_ct["00091011"]["BulkDataURI"].endswith("/bulkdata/00091011")
    assert smith_ct["00091012"]["InlineBinary"] == base64.b64encode(b"\x01\x02\x03\x04").decode()
    assert _one(smith_ct, "00082218")["00080104"]["Value"] == ["Brain"]
    assert smith_ct["7FE00010"] == {
        "vr": "OW",
        "BulkDataURI": f"{base}/studies/{_uid_of(stored, 'smith')}/series/{_one(smith_ct, '0020000E')}"
                       f"/instances/{_one(smith_ct, '00080018')}/bulkdata/7FE00010"}


def test_series_and_instance_metadata_iso2022(archive, client):
    server, stored = archive
    jp = next(p for p in stored.values() if p.name == "chrH31.dcm")
    ds = pydicom.dcmread(jp)
    expected = _expected_json(jp, _base(server))
    (series_meta,) = client.retrieve_series_metadata(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
    _compare(series_meta, expected, "chrH31 series")
    instance_meta = client.retrieve_instance_metadata(
        str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    _compare(instance_meta, expected, "chrH31 instance")
    assert _one(instance_meta, "00100010")["Ideographic"] == "山田^太郎"
    assert instance_meta["7FE00010"]["vr"] == "OB"  # 8-bit, explicit VR LE


def test_metadata_of_a_500_instance_series_is_fast_and_needs_no_object_file(archive, client):
    server, stored = archive
    study = _uid_of(stored, "big")
    (series,) = [_one(x, "0020000E") for x in client.search_for_series(study_instance_uid=study)]
    client.retrieve_series_metadata(study, series)  # warm the index cache
    timings = []
    for _ in range(3):
        t0 = time.monotonic()
        meta = client.retrieve_series_metadata(study, series)
        timings.append(time.monotonic() - t0)
        assert len(meta) == BIG_SERIES
    print(f"\nseries metadata, {BIG_SERIES} instances: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}")
    assert min(timings) < 1.0, timings
    t0 = time.monotonic()
    status, headers, body = _get(server, f"/studies/{study}/series/{series}/metadata")
    raw = time.monotonic() - t0
    assert status == 200 and headers.get("Transfer-Encoding") == "chunked"  # streamed
    print(f"series metadata over raw HTTP: {len(body)} bytes in {raw * 1000:.0f} ms")
    assert len(json.loads(body)) == BIG_SERIES
    big = {uid: p for uid, p in stored.items() if p.name.startswith("big_")}
    assert {_one(m, "00080018") for m in meta} == set(big)
    sample = sorted(big)[:5]
    by_sop = {_one(m, "00080018"): m for m in meta}
    for sop in sample:
        _compare(by_sop[sop], _expected_json(big[sop], _base(server)), sop)
    # Served from the index alone: with the object files gone it answers the same.
    for sop in big:
        object_path(server.data_dir, sop).unlink()
    again = client.retrieve_series_metadata(study, series)
    assert again == meta


def test_metadata_errors(archive, client):
    server, stored = archive
    smith = _uid_of(stored, "smith")
    other_series = _one(client.search_for_series(study_instance_uid=_uid_of(stored, "mue2"))[0], "0020000E")
    status, _, body = _get(server, f"/studies/{smith}/series/{other_series}/metadata")
    assert status == 404 and other_series.encode() in body, body
    status, _, body = _get(server, "/studies/1.2.3.999/metadata")
    assert status == 404 and b"1.2.3.999" in body
    status, _, body = _get(server, "/studies/1.2.abc/metadata")
    assert status == 400 and b"not a valid UID" in body, body
    status, _, body = _get(server, f"/studies/{smith}/series/{other_series}/instances/1.2.3/metadata")
    assert status == 404
    status, _, _ = _get(server, f"/studies/{smith}/metadata", headers={"Accept": "application/dicom+xml"})
    assert status == 406
    status, headers, body = _get(server, f"/studies/{smith}/metadata")
    assert status == 200 and headers["Content-Type"] == "application/dicom+json"


# --- bad input and authentication ----------------------------------------------------------


@pytest.mark.parametrize("query, expected", [
    ("limit=-1", b"limit"),
    ("offset=abc", b"offset"),
    ("limit=0", b"limit"),
    ("NoSuchAttribute=1", b"NoSuchAttribute"),
    ("StudyInstanceUID=1.2.abc", b"StudyInstanceUID"),
    ("StudyDate=2020-13-45x", b"StudyDate"),
    ("Modality=CT", b"Modality"),
    ("fuzzymatching=maybe", b"fuzzymatching"),
    ("includefield=" + ",".join(["00100010"] * 5000), b"includefield"),
    ("includefield=NotAKeyword", b"NotAKeyword"),
])
def test_bad_queries_are_400_with_a_message(archive, query, expected):
    server, _ = archive
    status, _, body = _get(server, "/studies?" + query)
    assert status == 400, (status, body[:300])
    assert expected in body, body[:300]


def test_bad_path_uid_and_accept(archive):
    server, _ = archive
    status, _, body = _get(server, "/studies/1.2.x/series")
    assert status == 400 and b"not a valid UID" in body
    status, _, body = _get(server, "/studies", headers={"Accept": "application/dicom+xml"})
    assert status == 406 and b"application/dicom+json" in body
    status, headers, body = _get(server, "/studies?PatientName=" + quote("nobody*"))
    assert status == 200 and json.loads(body) == [] and headers["Content-Type"] == "application/dicom+json"


def test_authentication(archive):
    server, stored = archive
    for path in ("/studies", f"/studies/{_uid_of(stored, 'smith')}/metadata"):
        status, headers, _ = _get(server, path, auth=None)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic"), (path, status)
        status, headers, _ = _get(server, path, auth=(USER, "wrong-password"))
        assert status == 401 and "WWW-Authenticate" in headers, (path, status)
        status, _, _ = _get(server, path)
        assert status == 200, path
