"""C-FIND with many matches: C-CANCEL mid-stream (0xFE00), `[query] max_results` (pendings, then
0xA700 with ErrorComment), and unlimited streaming (max_results = 0).

Two servers for the module: `bulk` (max_results = 0) holds one series of BULK_N instances;
`limited` (max_results = LIMIT, case_insensitive_names = false) holds one series of LIMIT instances
and one of LIMIT + 1 (patients BULK^PATIENT)."""

from __future__ import annotations

import pytest

import find_corpus as C
import find_oracle as O
import raw_dul as R
from find_clients import (RawFind, c_cancel_rq, c_find_rq, encode_explicit, findscu, identifier,
                          pyn_associate, pyn_echo_on, pyn_find, pyn_find_on)
from find_oracle import PATIENT_ROOT as PR, STUDY_ROOT as SR

BULK_N = 1000
LIMIT = 7


@pytest.fixture(scope="module")
def bulk(tmp_path_factory):
    d = tmp_path_factory.mktemp("find_bulk")
    files = C.generate_bulk_series(d / "files", BULK_N, tag=1, patient_id="BULK-P1")
    served = C.ServedArchive(d / "server", files, config={"query": {"max_results": 0}}, name="bulk")
    yield served.server, O.Archive(files, server_aet=served.server.aet)
    served.close()


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    d = tmp_path_factory.mktemp("find_limited")
    files = (C.generate_bulk_series(d / "files", LIMIT, tag=2, patient_id="LIM-P2")
             + C.generate_bulk_series(d / "files", LIMIT + 1, tag=3, patient_id="LIM-P3"))
    served = C.ServedArchive(d / "server", files, name="limited",
                             config={"query": {"max_results": LIMIT, "case_insensitive_names": False}})
    yield served.server, O.Archive(files, server_aet=served.server.aet)
    served.close()


def all_images():
    return identifier(dict(QueryRetrieveLevel="IMAGE", SOPInstanceUID="", InstanceNumber=""))


def assert_cancelled(res, oracle, ds, total):
    """Final 0xFE00, fewer pendings than matches, and every pending a true match."""
    assert res.final == O.CANCELLED, f"MIFAS: {res.describe()} (expected final 0xFE00 after C-CANCEL)"
    assert len(res.pending) < total, f"all {total} matches sent despite the C-CANCEL"
    ans = oracle.find(SR, ds)
    got = [str(i.SOPInstanceUID) for _, i in res.pending]
    assert len(set(got)) == len(got), "a match sent twice"
    assert set(got) <= ans.uids, f"non-matches returned: {sorted(set(got) - ans.uids)[:5]}"


# --- unlimited streaming -----------------------------------------------------------------------


def test_unlimited_stream(bulk):
    """max_results = 0: every one of BULK_N matches, then success."""
    server, oracle = bulk
    ds = all_images()
    res = pyn_find(server, SR, ds)
    ans = oracle.find(SR, ds)
    assert len(ans.expected) == BULK_N
    problems = O.compare(ans, res.pending, res.final)
    assert not problems, f"MIFAS: {res.describe()}\n" + "\n".join(problems[:20])


# --- C-CANCEL ----------------------------------------------------------------------------------


def test_cancel_pynetdicom(bulk):
    """C-CANCEL after the first pending response: final 0xFE00 before all matches; the same
    association then answers another C-FIND and a C-ECHO."""
    server, oracle = bulk
    ds = all_images()
    assoc = pyn_associate(server)
    try:
        # pynetdicom sends the C-CANCEL only after decoding the first pending response; on a busy
        # machine MIFAS may have answered every match by then (a C-CANCEL after the final response
        # is ignored, PS3.7 C.4.1.3). That race is tried again; a MIFAS that ignored C-CANCEL would
        # complete every attempt.
        for attempt in range(3):
            res = pyn_find_on(assoc, SR, ds, msg_id=7 + attempt, cancel_after=1)
            if not (res.final == 0 and len(res.pending) == BULK_N):
                break
        assert_cancelled(res, oracle, ds, BULK_N)
        q = identifier(dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="", NumberOfStudyRelatedInstances=""))
        after = pyn_find_on(assoc, SR, q, msg_id=20)
        assert not O.compare(oracle.find(SR, q), after.pending, after.final), after.describe()
        assert pyn_echo_on(assoc) == 0
    finally:
        if assoc.is_established:
            assoc.release()
    server.echo_ok()


def test_cancel_with_the_request(bulk):
    """C-CANCEL sent right behind the C-FIND (same TCP write, before any response is read)."""
    server, oracle = bulk
    ds = all_images()
    a = RawFind(server.host, server.port, timeout=30).open(server.aet)
    try:
        find = c_find_rq(5, SR)
        data = encode_explicit(ds)
        a.send(R.build_pdata([(1, 0x03, find)]) + R.build_pdata([(1, 0x02, data)])
               + R.build_pdata([(1, 0x03, c_cancel_rq(5))]))
        res = a.find_responses()
        assert_cancelled(res, oracle, ds, BULK_N)
        assert a.echo(cid=5).status == 0
        assert a.release().type == R.A_RELEASE_RP
    finally:
        a.close()


def test_cancel_in_two_byte_pdvs(bulk):
    """A C-CANCEL whose command set arrives as two-byte PDVs, one P-DATA-TF PDU each (each its own
    TCP segment), while MIFAS streams matches: it must be reassembled and honoured (no byte of
    the peer's stream may be lost while responses are being sent)."""
    server, oracle = bulk
    ds = all_images()
    a = RawFind(server.host, server.port, timeout=30).open(server.aet)
    try:
        a.send_message(1, c_find_rq(9, SR), encode_explicit(ds))
        cancel = c_cancel_rq(9)

        def on_pending(n):
            if n == 1:
                a.send_fragments(1, cancel, True, frag_size=2, per_pdu=1)

        res = a.find_responses(on_pending=on_pending)
        assert_cancelled(res, oracle, ds, BULK_N)
        assert a.echo(cid=5).status == 0, "association unusable after the fragmented C-CANCEL"
        assert a.release().type == R.A_RELEASE_RP
    finally:
        a.close()
    server.echo_ok()


def test_cancel_other_message_id_is_ignored(bulk):
    """A C-CANCEL for another Message ID does not stop this C-FIND: all matches, success."""
    server, oracle = bulk
    ds = all_images()
    a = RawFind(server.host, server.port, timeout=30).open(server.aet)
    try:
        a.send_message(1, c_find_rq(11, SR), encode_explicit(ds))

        def on_pending(n):
            if n == 1:
                a.send_message(1, c_cancel_rq(12))

        res = a.find_responses(on_pending=on_pending)
        assert res.final == 0x0000 and len(res.pending) == BULK_N, f"MIFAS: {res.describe()}"
        assert a.release().type == R.A_RELEASE_RP
    finally:
        a.close()


def test_cancel_findscu(bulk, tmp_path):
    """DCMTK findscu --cancel 3: final 0xFE00 after at least 3 pending responses."""
    server, oracle = bulk
    ds = all_images()
    res = findscu(server, SR, ds, tmp_path, extra=["--cancel", "3"])
    assert len(res.pending) >= 3
    assert_cancelled(res, oracle, ds, BULK_N)
    server.echo_ok()


# --- max_results --------------------------------------------------------------------------------


def _series_query(oracle, patient_id):
    series = next(iter({str(d.SeriesInstanceUID) for d in oracle.patients[patient_id]}))
    return identifier(dict(QueryRetrieveLevel="IMAGE", SeriesInstanceUID=series, SOPInstanceUID="",
                           InstanceNumber=""))


def test_max_results_exactly_reached(limited):
    """LIMIT matches with max_results = LIMIT: all of them, success."""
    server, oracle = limited
    ds = _series_query(oracle, "LIM-P2")
    res = pyn_find(server, SR, ds)
    ans = oracle.find(SR, ds)
    assert len(ans.expected) == LIMIT
    assert not O.compare(ans, res.pending, res.final), res.describe()


@pytest.mark.parametrize("client", ["pynetdicom", "findscu"])
def test_max_results_exceeded(limited, tmp_path, client):
    """LIMIT + 1 matches: LIMIT pending responses, then 0xA700 with the documented ErrorComment."""
    server, oracle = limited
    ds = _series_query(oracle, "LIM-P3")
    res = pyn_find(server, SR, ds) if client == "pynetdicom" else findscu(server, SR, ds, tmp_path)
    ans = oracle.find(SR, ds)
    assert len(ans.expected) == LIMIT + 1
    assert res.final == O.OUT_OF_RESOURCES, f"MIFAS: {res.describe()} (expected 0xA700)"
    assert len(res.pending) == LIMIT, f"{len(res.pending)} pendings before 0xA700, expected {LIMIT}"
    got = {str(i.SOPInstanceUID) for _, i in res.pending}
    assert len(got) == LIMIT and got <= ans.uids
    assert res.comment == f"more than {LIMIT} matches; narrow the query", repr(res.comment)
    server.echo_ok()


def test_max_results_other_levels(limited):
    """The limit counts matches of the query level: 2 patients, 2 studies are fine."""
    server, oracle = limited
    for model, keys in [(PR, dict(QueryRetrieveLevel="PATIENT", PatientID="", NumberOfPatientRelatedInstances="")),
                        (SR, dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="", NumberOfStudyRelatedInstances=""))]:
        ds = identifier(keys)
        res = pyn_find(server, model, ds)
        ans = oracle.find(model, ds)
        assert len(ans.expected) == 2
        assert not O.compare(ans, res.pending, res.final), res.describe()


# --- [query] case_insensitive_names = false ---------------------------------------------------------


@pytest.mark.parametrize("name,n", [("BULK*", 2), ("bulk*", 0), ("*PATIENT", 2), ("*patient", 0),
                                    ("BULK^PATIENT", 2), ("Bulk^Patient", 0)])
def test_case_sensitive_names(limited, name, n):
    """With case-insensitive PN matching switched off, names match case-sensitively (still over
    the whole value and each component group)."""
    server, oracle = limited
    ds = identifier(dict(QueryRetrieveLevel="PATIENT", PatientID="", PatientName=name))
    res = pyn_find(server, PR, ds)
    ans = oracle.find(PR, ds, case_insensitive_names=False)
    assert len(ans.expected) == n, "oracle self-check"
    problems = O.compare(ans, res.pending, res.final)
    assert not problems, f"MIFAS: {res.describe()}\n" + "\n".join(problems)
