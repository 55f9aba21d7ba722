"""C-GET SCP (issue 4) with real peers: DCMTK getscu and pynetdicom (SCP role selection through
build_role / ext_neg). Received data sets are compared with the files imported: bytes identical
when the stored syntax was used, pixels equal after decoding when MIFAS converted. Requestors
without the SCP role, or without a context for the SOP class, get failed sub-operations.

One archive for the module (`mifas import` of the corpus of retrieve_peers.make_corpus)."""

from __future__ import annotations

import threading

import pytest

import retrieve_peers as P
from retrieve_peers import (CANCEL, IDENT_ERROR, NO_SUBOPS, PR_GET, SUCCESS, UNABLE, WARNING_SUBOPS)

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def rcorpus(tmp_path_factory):
    return P.make_corpus(tmp_path_factory.mktemp("get_corpus"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, rcorpus):
    s = P.served_archive(tmp_path_factory.mktemp("get_archive"), rcorpus, None, "get")
    yield s
    P.close_archive(s)


@pytest.fixture
def archive(server):
    yield server
    server.assert_alive("after the test")


def study_keys(study):
    return {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}


def image_keys(item):
    return {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": item.study, "SeriesInstanceUID": item.series,
            "SOPInstanceUID": item.sop}


def _other(corpus, fid):
    for i in corpus.other:
        if i.path.stem == fid:
            return i
    pytest.fail(f"fixture {fid} not in the installed pydicom")


# --- DCMTK getscu ------------------------------------------------------------------------------


def test_getscu_study(archive, rcorpus, tmp_path):
    """getscu -S at STUDY level: the study's instances arrive byte-identical; final 0x0000."""
    st = rcorpus.ct_studies[0]
    expected = rcorpus.where(study=st)
    r, res = P.getscu(archive, study_keys(st), tmp_path / "got")
    res.assert_final(SUCCESS, completed=len(expected), failed=0, warning=0)
    assert r.returncode == 0, res.describe()
    res.assert_pending_progress(len(expected))
    tss = P.assert_received_exactly(P.received_by_sop((tmp_path / "got").iterdir()), expected)
    assert set(tss.values()) == {"1.2.840.10008.1.2.1"}


def test_getscu_patient_root(archive, rcorpus, tmp_path):
    """getscu -P at PATIENT level: all 12 instances of the patient."""
    p = rcorpus.ct_patients[1]
    expected = rcorpus.where(patient=p)
    r, res = P.getscu(archive, {"QueryRetrieveLevel": "PATIENT", "PatientID": p}, tmp_path / "got", model="P")
    res.assert_final(SUCCESS, completed=len(expected), failed=0, warning=0)
    P.assert_received_exactly(P.received_by_sop((tmp_path / "got").iterdir()), expected)


def test_getscu_other_study_decompressed(archive, rcorpus, tmp_path):
    """getscu proposes only uncompressed syntaxes: the compressed/other study arrives
    decompressed/converted with equal pixels."""
    r, res = P.getscu(archive, study_keys(rcorpus.other_study), tmp_path / "got")
    res.assert_final(SUCCESS, completed=len(rcorpus.other), failed=0, warning=0)
    tss = P.assert_received_exactly(P.received_by_sop((tmp_path / "got").iterdir()), rcorpus.other)
    assert set(tss.values()) <= P.UNCOMPRESSED


def test_getscu_small_pdu(archive, rcorpus, tmp_path):
    """getscu with a 4 KiB max PDU: the C-STOREs on the C-GET association are split into PDUs
    it accepts (the decompressed JPEG 2000 data set is 512 KiB)."""
    r, res = P.getscu(archive, study_keys(rcorpus.other_study), tmp_path / "got", extra=["-pdu", "4096"])
    res.assert_final(SUCCESS, completed=len(rcorpus.other), failed=0, warning=0)
    P.assert_received_exactly(P.received_by_sop((tmp_path / "got").iterdir()), rcorpus.other)


# --- pynetdicom C-GET ------------------------------------------------------------------------------


@pytest.mark.parametrize("fid", P.OTHER_FIXTURES)
def test_pyn_get_stored_syntax(archive, rcorpus, fid):
    """The requestor accepts the stored syntax (role selection, SCP role): sent unchanged."""
    item = _other(rcorpus, fid)
    res, rec = P.pyn_get(archive, image_keys(item), [(item.sop_class, [item.ts])])
    res.assert_final(SUCCESS, completed=1, failed=0, warning=0)
    tss = P.assert_received_exactly(rec.received(), [item])
    assert tss[item.sop] == item.ts


@pytest.mark.parametrize("fid", P.OTHER_FIXTURES)
def test_pyn_get_uncompressed_only(archive, rcorpus, fid):
    """The requestor accepts only Explicit/Implicit VR LE: converted (decompressed) on the way."""
    item = _other(rcorpus, fid)
    res, rec = P.pyn_get(archive, image_keys(item), P.storage_contexts([item], uncompressed=True))
    res.assert_final(SUCCESS, completed=1, failed=0, warning=0)
    tss = P.assert_received_exactly(rec.received(), [item])
    assert tss[item.sop] in (P.ExplicitVRLittleEndian, P.ImplicitVRLittleEndian)


def test_pyn_get_pending_progress(archive, rcorpus):
    """Patient-root PATIENT-level C-GET of 12 instances: pendings with Remaining decreasing,
    Completed increasing; final counts = 12; data sets byte-identical."""
    p = rcorpus.ct_patients[0]
    expected = rcorpus.where(patient=p)
    res, rec = P.pyn_get(archive, {"QueryRetrieveLevel": "PATIENT", "PatientID": p},
                         P.storage_contexts(expected), model=PR_GET)
    res.assert_final(SUCCESS, completed=len(expected), failed=0, warning=0)
    assert len(res.pending) >= len(expected) - 1, res.describe()
    res.assert_pending_progress(len(expected))
    P.assert_received_exactly(rec.received(), expected)


def test_pyn_get_mixed_study(archive, rcorpus):
    """The compressed/other study in one C-GET, the requestor proposing each stored syntax
    and the uncompressed ones: every instance arrives, equal to its original."""
    items = rcorpus.other
    storage = P.storage_contexts(items, uncompressed=True, stored=True)
    res, rec = P.pyn_get(archive, study_keys(rcorpus.other_study), storage)
    res.assert_final(SUCCESS, completed=len(items), failed=0, warning=0)
    P.assert_received_exactly(rec.received(), items)


def test_get_without_scp_role(archive, rcorpus):
    """The requestor proposes the storage context but not the SCP role: MIFAS may not send
    C-STOREs on it → every sub-operation failed, listed; final 0xA702 (or 0xB000)."""
    st = rcorpus.ct_studies[1]
    items = rcorpus.where(study=st)
    res, rec = P.pyn_get(archive, study_keys(st), P.storage_contexts(items), roles=False)
    res.assert_final({NO_SUBOPS, WARNING_SUBOPS}, completed=0, failed=len(items), warning=0)
    assert rec.calls == 0, "C-STORE sent although the SCP role was not negotiated"
    assert sorted(res.final.failed_uids or []) == sorted(i.sop for i in items), res.describe()
    archive.echo_ok()


def test_get_without_storage_context(archive, rcorpus):
    """No context for the instances' SOP class (only MR proposed, the study is CT) → every
    sub-operation failed, listed."""
    st = rcorpus.ct_studies[1]
    items = rcorpus.where(study=st)
    res, rec = P.pyn_get(archive, study_keys(st), [(MR_STORAGE, [P.ExplicitVRLittleEndian])])
    res.assert_final({NO_SUBOPS, WARNING_SUBOPS}, completed=0, failed=len(items), warning=0)
    assert rec.calls == 0
    assert sorted(res.final.failed_uids or []) == sorted(i.sop for i in items), res.describe()
    archive.echo_ok()


def test_get_partial_contexts(archive, rcorpus):
    """Contexts only for MR Image Storage: the MR instances of the study arrive, the Secondary
    Capture ones fail and are listed; final 0xB000."""
    items = rcorpus.other
    mr = [i for i in items if i.sop_class == MR_STORAGE]
    sc = [i for i in items if i.sop_class == SC_STORAGE]
    assert mr and sc and len(mr) + len(sc) == len(items)
    storage = P.storage_contexts(mr, uncompressed=True, stored=True)
    res, rec = P.pyn_get(archive, study_keys(rcorpus.other_study), storage)
    res.assert_final(WARNING_SUBOPS, completed=len(mr), failed=len(sc), warning=0)
    assert sorted(res.final.failed_uids or []) == sorted(i.sop for i in sc), res.describe()
    P.assert_received_exactly(rec.received(), mr)


def test_get_requestor_refuses_stores(archive, rcorpus):
    """The requestor answers 0xA700 to the C-STOREs from the 3rd on: completed 2, failed the
    rest (listed), final 0xB000."""
    st = rcorpus.ct_studies[2]
    items = rcorpus.where(study=st)
    rec = P.StoreRecorder(fail_after=2)
    res, rec = P.pyn_get(archive, study_keys(st), P.storage_contexts(items), rec=rec)
    res.assert_final(WARNING_SUBOPS, completed=2, failed=len(items) - 2, warning=0)
    assert sorted(res.final.failed_uids or []) == sorted(rec.refused), res.describe()
    archive.echo_ok()


def test_get_undecodable_instance(archive, rcorpus):
    """A stored JPEG that cannot be decoded, requestor accepting only uncompressed syntaxes: that
    sub-operation fails (listed), the other one completes; final 0xB000. With the JPEG syntax
    proposed both arrive unchanged."""
    c = rcorpus
    good = [i for i in c.broken if i.sop != c.undecodable]
    res, rec = P.pyn_get(archive, study_keys(c.broken_study), P.storage_contexts(c.broken, uncompressed=True))
    res.assert_final(WARNING_SUBOPS, completed=len(good), failed=1, warning=0)
    assert res.final.failed_uids == [c.undecodable], res.describe()
    P.assert_received_exactly(rec.received(), good)
    archive.echo_ok()
    res, rec = P.pyn_get(archive, study_keys(c.broken_study), P.storage_contexts(c.broken))
    res.assert_final(SUCCESS, completed=len(c.broken), failed=0, warning=0)
    tss = P.assert_received_exactly(rec.received(), c.broken)
    assert all(tss[i.sop] == i.ts for i in c.broken)


def test_get_nothing_matches(archive, rcorpus):
    res, rec = P.pyn_get(archive, study_keys("1.2.3.4.5.6.7.8.9.404"),
                         [(rcorpus.ct[0].sop_class, [P.ExplicitVRLittleEndian])])
    res.assert_final(SUCCESS)
    f = res.final
    assert [x or 0 for x in (f.remaining, f.completed, f.failed, f.warning)] == [0, 0, 0, 0], res.describe()
    assert rec.calls == 0 and not res.pending


def test_cancel_get(archive, rcorpus):
    """C-CANCEL while the 2nd C-STORE sub-operation is held by the requestor: final 0xFE00,
    completed < total, Remaining = the instances not sent."""
    p = rcorpus.ct_patients[1]
    items = rcorpus.where(patient=p)
    rec = P.StoreRecorder(gate_on={2})
    holder = {}

    def canceller():
        assert rec.entered.wait(30), "2nd C-STORE never arrived"
        a = holder["assoc"]
        a.send_c_cancel(33, P.context_id(a, PR_GET))
        rec.gate.set()

    t = threading.Thread(target=canceller, daemon=True)
    res, rec = P.pyn_get(archive, {"QueryRetrieveLevel": "PATIENT", "PatientID": p}, P.storage_contexts(items),
                         model=PR_GET, rec=rec, msg_id=33,
                         assoc_hook=lambda a: (holder.__setitem__("assoc", a), t.start()))
    t.join(5)
    res.assert_final(CANCEL)
    f = res.final
    done = (f.completed or 0) + (f.failed or 0) + (f.warning or 0)
    assert 1 <= (f.completed or 0) < len(items), res.describe()
    assert f.remaining == len(items) - done, f"Remaining {f.remaining}, expected {len(items) - done}\n{res.describe()}"
    assert len(rec.stored) < len(items)
    archive.echo_ok()


@pytest.mark.parametrize("case", ["no_level", "study_no_uid", "series_empty_uid", "image_no_uid"])
def test_get_identifier_errors(archive, rcorpus, case):
    st, ct0 = rcorpus.ct_studies[0], rcorpus.ct[0]
    keys = {
        "no_level": {"StudyInstanceUID": st},
        "study_no_uid": {"QueryRetrieveLevel": "STUDY", "PatientID": ct0.patient},
        "series_empty_uid": {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": st, "SeriesInstanceUID": ""},
        "image_no_uid": {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": st, "SeriesInstanceUID": ct0.series},
    }[case]
    res, rec = P.pyn_get(archive, keys, [(ct0.sop_class, [P.ExplicitVRLittleEndian])])
    res.assert_final({IDENT_ERROR, UNABLE})
    assert rec.calls == 0 and not res.pending, res.describe()
    if res.final.status == IDENT_ERROR:
        assert res.final.error_comment, f"0xA900 without ErrorComment\n{res.describe()}"
    archive.echo_ok()
