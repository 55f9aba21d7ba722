"""C-STORE with real peers: DCMTK storescu (incl. compressed syntaxes) and pynetdicom."""

import concurrent.futures
import copy

import pydicom
import pytest

import dicom_fixtures as F
from mifas_helpers import (check_stored_object, contexts_for_files, file_dataset_bytes,
                           list_objects, object_path, pyn_associate, spool_files, storescu)

FIXTURES = F.available_fixtures()
FIXTURE_IDS = [f.id for f in FIXTURES]


def test_fixture_set_is_complete():
    """The features the issue lists are covered by files present offline."""
    ids = set(FIXTURE_IDS)
    for needed in ("ct", "mr", "rgb", "multiframe_jpeg", "jpeg_baseline", "jpeg_lossless", "jpeg_ls",
                   "j2k_lossless", "rle", "big_endian", "utf8", "latin1", "gb18030"):
        assert needed in ids, f"fixture {needed} not found in the installed pydicom"


def assert_pixel_and_names_equal(stored_path, source_path):
    src = pydicom.dcmread(source_path)
    got = pydicom.dcmread(stored_path)
    assert got.SOPInstanceUID == src.SOPInstanceUID
    assert got.StudyInstanceUID == src.StudyInstanceUID
    assert got.SeriesInstanceUID == src.SeriesInstanceUID
    assert str(got.get("PatientName", "")) == str(src.get("PatientName", ""))
    if "PixelData" in src:
        assert got.PixelData == src.PixelData, "pixel data changed on the way"


def store_one_pyn(server, path, **kw):
    assoc = pyn_associate(server, contexts_for_files([path]), **kw)
    assert assoc.is_established, "association not established"
    try:
        return assoc.send_c_store(path)
    finally:
        assoc.release()


@pytest.mark.parametrize("fx", FIXTURES, ids=FIXTURE_IDS)
def test_storescu_fixture(mifas, fx):
    info = F.file_info(fx.path)
    s = mifas()
    r = storescu(s.host, s.port, [fx.path], ts=info.ts)
    assert r.returncode == 0, f"storescu failed ({fx.what}):\n{r.stdout}\n{r.stderr}"
    assert "Received Store Response (Success)" in r.stderr + r.stdout, r.stderr
    p = object_path(s.data_dir, info.sop_instance)
    check_stored_object(s.data_dir, info.sop_class, info.sop_instance, info.ts)
    assert_pixel_and_names_equal(p, fx.path)
    assert not spool_files(s.data_dir)
    s.stop_ok()
    st = s.stats()
    assert st == {"patients": 1, "studies": 1, "series": 1, "instances": 1, "bytes": p.stat().st_size}


@pytest.mark.parametrize("fx", FIXTURES, ids=FIXTURE_IDS)
def test_pynetdicom_fixture_byte_for_byte(mifas, fx):
    info = F.file_info(fx.path)
    s = mifas()
    status = store_one_pyn(s, fx.path)
    assert status.Status == 0x0000, f"{fx.what}: status 0x{status.Status:04X} {status.get('ErrorComment')}"
    check_stored_object(s.data_dir, info.sop_class, info.sop_instance, info.ts,
                        dataset=file_dataset_bytes(fx.path))
    assert len(list_objects(s.data_dir)) == 1


def test_store_everything_then_stats(mifas, corpus):
    """All fixtures + the generated corpus over one association; then `mifas stats`."""
    files = [f.path for f in FIXTURES] + [c.path for c in corpus]
    infos = [F.file_info(p) for p in files]
    s = mifas()
    assoc = pyn_associate(s, contexts_for_files(files))
    assert assoc.is_established
    statuses = [assoc.send_c_store(p).Status for p in files]
    assoc.release()
    assert statuses == [0] * len(files), [hex(x) for x in statuses]

    # duplicates (same SOP Instance UID) are ignored by default: the first one stays
    first = {}
    for i in infos:
        first.setdefault(i.sop_instance, i)
    for uid, i in first.items():
        check_stored_object(s.data_dir, i.sop_class, uid, i.ts, dataset=file_dataset_bytes(i.path))
    objects = list_objects(s.data_dir)
    assert len(objects) == len(first)
    s.stop_ok()
    st = s.stats()
    exp = F.expected_counts(infos)
    exp["bytes"] = sum(p.stat().st_size for p in objects)
    assert st == exp


def test_storescu_corpus_scan_directory(mifas, corpus):
    s = mifas()
    r = storescu(s.host, s.port, [corpus[0].path.parent], ts="1.2.840.10008.1.2.1",
                 extra=["+sd", "+r"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert (r.stdout + r.stderr).count("Received Store Response (Success)") == len(corpus), r.stderr[-3000:]
    for c in corpus:
        p = object_path(s.data_dir, c.sop_instance)
        assert p.is_file()
        assert_pixel_and_names_equal(p, c.path)
    s.stop_ok()
    st = s.stats()
    assert st["patients"] == 2 and st["studies"] == 4 and st["series"] == 8 and st["instances"] == 24, st


def test_parallel_associations(mifas, tmp_path, corpus):
    """4 concurrent storescu associations (group commit path); every instance durable + indexed."""
    s = mifas()
    groups = [corpus[i::4] for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda g: storescu(s.host, s.port, [c.path for c in g],
                                                 ts="1.2.840.10008.1.2.1"), groups))
    for g, r in zip(groups, results):
        assert r.returncode == 0, r.stderr[-2000:]
        assert (r.stdout + r.stderr).count("Received Store Response (Success)") == len(g)
    for c in corpus:
        check_stored_object(s.data_dir, F.CT_IMAGE_STORAGE, c.sop_instance, "1.2.840.10008.1.2.1",
                            dataset=None)
    s.stop_ok()
    assert s.stats()["instances"] == len(corpus)


def test_charset_names_survive(mifas, corpus):
    """The stored objects keep the original bytes of non-ASCII names (ISO_IR 192 and ISO_IR 100)."""
    s = mifas()
    files = [corpus[0].path, corpus[-1].path]
    assoc = pyn_associate(s, contexts_for_files(files))
    assert [assoc.send_c_store(p).Status for p in files] == [0, 0]
    assoc.release()
    names = set()
    for c in (corpus[0], corpus[-1]):
        ds = pydicom.dcmread(object_path(s.data_dir, c.sop_instance))
        names.add((ds.SpecificCharacterSet, str(ds.PatientName)))
    assert names == {("ISO_IR 192", "郭政達"), ("ISO_IR 100", "MÜLLER^JÜRGEN")}


# --- statuses ---------------------------------------------------------------------------


def _variant(tmp_path, name, base="CT_small.dcm", meta_instance=None, delete=(), **changes):
    ds = F.load(base)
    ds = F.with_uids(ds, **changes) if changes else copy.deepcopy(ds)
    for kw in delete:
        del ds[kw]
    return F.write_part10(ds, tmp_path / name, ts=str(ds.file_meta.TransferSyntaxUID),
                          media_sop_instance=meta_instance)


def assert_nothing_stored(server, *uids):
    assert not list_objects(server.data_dir), f"objects stored: {list_objects(server.data_dir)}"
    assert not spool_files(server.data_dir), f"spool not empty: {spool_files(server.data_dir)}"
    for u in uids:
        assert not object_path(server.data_dir, u).exists()


def test_sop_instance_mismatch_a900(mifas, tmp_path):
    cmd_uid = "1.2.826.0.1.3680043.9.7777.3.1"
    ds_uid = "1.2.826.0.1.3680043.9.7777.3.2"
    path = _variant(tmp_path, "mismatch.dcm", meta_instance=cmd_uid, SOPInstanceUID=ds_uid)
    assert F.file_info(path).sop_instance == cmd_uid
    assert pydicom.dcmread(path).SOPInstanceUID == ds_uid
    s = mifas()
    status = store_one_pyn(s, path)
    assert status.Status == 0xA900, f"got 0x{status.Status:04X}"
    assert status.get("ErrorComment"), "non-success status without ErrorComment"
    assert_nothing_stored(s, cmd_uid, ds_uid)
    s.echo_ok()
    s.stop_ok()
    assert s.stats()["instances"] == 0


def test_sop_class_mismatch_a900(mifas, tmp_path):
    """Command says MR Image Storage, the data set is a CT image."""
    ds = F.load("CT_small.dcm")
    path = F.write_part10(ds, tmp_path / "classmismatch.dcm", media_sop_class="1.2.840.10008.5.1.4.1.1.4")
    assert F.file_info(path).sop_class == "1.2.840.10008.5.1.4.1.1.4"
    s = mifas()
    status = store_one_pyn(s, path)
    assert status.Status == 0xA900, f"got 0x{status.Status:04X}"
    assert status.get("ErrorComment")
    assert_nothing_stored(s, str(ds.SOPInstanceUID))


@pytest.mark.parametrize("attr", ["StudyInstanceUID", "SeriesInstanceUID"])
def test_missing_required_attribute_c002(mifas, tmp_path, attr):
    path = _variant(tmp_path, f"no_{attr}.dcm", delete=[attr])
    s = mifas()
    status = store_one_pyn(s, path)
    assert status.Status == 0xC002, f"got 0x{status.Status:04X}"
    assert status.get("ErrorComment")
    assert_nothing_stored(s)
    s.stop_ok()
    assert s.stats()["instances"] == 0


def test_missing_sop_instance_uid_in_dataset(mifas, tmp_path):
    uid = "1.2.826.0.1.3680043.9.7777.3.9"
    path = _variant(tmp_path, "no_sop.dcm", meta_instance=uid, delete=["SOPInstanceUID"])
    s = mifas()
    status = store_one_pyn(s, path)
    assert status.Status in (0xC002, 0xA900), f"got 0x{status.Status:04X}"
    assert_nothing_stored(s, uid)


def test_private_sop_class_needs_switch(mifas, tmp_path):
    private = "1.2.826.0.1.3680043.9.7777.99.1"
    ds = F.with_uids(F.load("CT_small.dcm"), SOPClassUID=private)
    path = F.write_part10(ds, tmp_path / "private.dcm")
    s = mifas()
    # with Verification beside it, so the association itself is usable
    assoc = pyn_associate(s, [(private, ["1.2.840.10008.1.2.1"]), ("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])])
    assert assoc.is_established
    assert not [c for c in assoc.accepted_contexts if c.abstract_syntax == private]
    assoc.release()
    s2 = mifas({"dicom": {"accept_unknown_storage": True}})
    status = store_one_pyn(s2, path)
    assert status.Status == 0
    check_stored_object(s2.data_dir, private, str(ds.SOPInstanceUID), "1.2.840.10008.1.2.1",
                        dataset=file_dataset_bytes(path))


# --- duplicates ---------------------------------------------------------------------------


@pytest.fixture
def dup_pair(tmp_path):
    first = F.pydicom_file("CT_small.dcm")
    ds = F.load("CT_small.dcm")
    ds.PatientName = "SECOND^VERSION"
    second = F.write_part10(ds, tmp_path / "second.dcm")
    assert file_dataset_bytes(first) != file_dataset_bytes(second)
    return first, second, str(ds.SOPInstanceUID)


@pytest.mark.parametrize("policy,status2,keeps", [
    (None, 0x0000, "first"),
    ("ignore", 0x0000, "first"),
    ("reject", 0x0111, "first"),
    ("replace", 0x0000, "second"),
])
def test_duplicate_policy(mifas, dup_pair, policy, status2, keeps):
    first, second, uid = dup_pair
    s = mifas({"storage": {"duplicate_policy": policy}} if policy else None)
    assoc = pyn_associate(s, contexts_for_files([first]))
    st1 = assoc.send_c_store(first)
    st2 = assoc.send_c_store(second)
    assoc.release()
    assert st1.Status == 0
    assert st2.Status == status2, f"policy {policy}: second store 0x{st2.Status:04X}, expected 0x{status2:04X}"
    if status2:
        assert st2.get("ErrorComment")
    expected = file_dataset_bytes(first if keeps == "first" else second)
    check_stored_object(s.data_dir, F.CT_IMAGE_STORAGE, uid, "1.2.840.10008.1.2.1", dataset=expected)
    assert len(list_objects(s.data_dir)) == 1
    assert not spool_files(s.data_dir)
    s.stop_ok()
    st = s.stats()
    assert st["instances"] == 1 and st["patients"] == 1
    assert st["bytes"] == object_path(s.data_dir, uid).stat().st_size


def test_same_instance_from_parallel_associations(mifas, tmp_path):
    """4 associations race to store the same SOP instance (policy reject): exactly one wins, the
    others get 0x0111, and the stored object is the winner's. 8 rounds, a new instance each."""
    s = mifas({"storage": {"duplicate_policy": "reject"}})
    base = F.load("CT_small.dcm")
    assocs = [pyn_associate(s, contexts_for_files([F.pydicom_file("CT_small.dcm")])) for _ in range(4)]
    assert all(a.is_established for a in assocs)
    rounds = []
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        for r in range(8):
            uid = f"1.2.826.0.1.3680043.9.7777.8.{r + 1}"
            path = F.write_part10(F.with_uids(base, SOPInstanceUID=uid), tmp_path / f"race{r}.dcm")
            statuses = sorted(ex.map(lambda a: a.send_c_store(path).Status, assocs))
            rounds.append((uid, path, statuses))
    for a in assocs:
        a.release()
    for uid, path, _ in rounds:
        check_stored_object(s.data_dir, F.CT_IMAGE_STORAGE, uid, "1.2.840.10008.1.2.1",
                            dataset=file_dataset_bytes(path))
    s.stop_ok()
    st = s.stats()
    bad = [(uid, [hex(x) for x in st]) for uid, _, st in rounds if st != [0, 0x0111, 0x0111, 0x0111]]
    assert not bad and st["instances"] == 8 and st["series"] == 1, (
        f"concurrent duplicates not resolved to one success + 3 x 0x0111: {bad}; stats {st}")
