"""C-MOVE SCP (issue 4) with real peers: DCMTK movescu and pynetdicom as requestors; DCMTK
storescp (uncompressed only, or +xa), Orthanc and pynetdicom storage SCPs (scripted to fail,
abort, warn or block) as Move Destinations, configured as [[remote_ae]].

What a destination received is compared with the files imported: data set bytes identical when
the transfer syntax is the stored one, pixels equal after decoding when MIFAS converted.

One archive for the module (`mifas import` of a small corpus: 2 patients x 2 studies x 2 series x
3 instances of 64x64 CT, plus one study of compressed / implicit / big endian pydicom files); its
destinations get reserved free ports and are started by each test on those ports."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

import retrieve_peers as P
from retrieve_peers import (CANCEL, IDENT_ERROR, NO_SUBOPS, PR_MOVE, SR_MOVE, SUCCESS, UNABLE,
                            UNKNOWN_DEST, WARNING_SUBOPS)

DESTS = ("STORESCP", "STORESCP_XA", "ORTHANC", "PYNSCP", "FAILER", "ABORTER", "WARNER", "SLOW", "DOWN",
         "REJECTER", "MRONLY")
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


class Archive:
    def __init__(self, server, ports, corpus):
        self.server, self.ports, self.corpus = server, ports, corpus


@pytest.fixture(scope="module")
def rcorpus(tmp_path_factory):
    return P.make_corpus(tmp_path_factory.mktemp("retrieve_corpus"))


@pytest.fixture(scope="module")
def archive(tmp_path_factory, rcorpus):
    ports = dict(zip(DESTS, P.distinct_free_ports(len(DESTS))))  # DOWN: nothing ever listens there
    cfg = {
        "remote_ae": [P.remote_ae(aet, port) for aet, port in ports.items()]
        # a known AE that must not be used as a Move Destination; a storescp listens there in
        # the test, so anything sent to it would show
        + [P.remote_ae("REFUSED", ports["STORESCP"], move_destination=False)],
        "retrieve": {"connect_timeout_secs": 5, "response_timeout_secs": 30},
    }
    server = P.served_archive(tmp_path_factory.mktemp("move_archive"), rcorpus, cfg, "move")
    yield Archive(server, ports, rcorpus)
    P.close_archive(server)


class Peers:
    """Destinations a test starts; all stopped at teardown."""

    def __init__(self, base, archive):
        self.base, self.archive, self.started = base, archive, []

    def storescp(self, aet="STORESCP", accept_all=False, port=None, fork=False, extra=()):
        port = port or self.archive.ports[aet]
        p = P.StoreSCP(self.base / f"{aet}{len(self.started)}", port, aet=aet, accept_all=accept_all,
                       fork=fork, extra=extra).start()
        self.started.append(p)
        return p

    def pyn(self, dest, port=None, aet=None, require_called_aet=True, **script):
        """A pynetdicom storage SCP on the port of remote AE `dest` (its own AE title `aet`); by
        default it rejects associations not called by its AE title (MIFAS must call the
        destination by its remote_ae.aet)."""
        p = P.PynStoreSCP(port or self.archive.ports[dest], aet=aet or dest,
                          require_called_aet=require_called_aet, **script).start()
        self.started.append(p)
        return p

    def orthanc(self, **kw):
        p = P.Orthanc(self.base / f"orthanc{len(self.started)}", **kw).start()
        self.started.append(p)
        return p

    def close(self):
        for p in reversed(self.started):
            p.stop()


@pytest.fixture
def peers(tmp_path, archive):
    p = Peers(tmp_path, archive)
    yield p
    p.close()
    archive.server.assert_alive("after the test")


def study_keys(study):
    return {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}


def assert_healthy(archive, peers, what):
    """The archive still answers C-ECHO and a move to a good destination completes."""
    s = archive.server
    s.assert_alive(what)
    s.echo_ok()
    c = archive.corpus
    items = c.where(series=c.ct[0].series)
    good = peers.pyn("PYNSCP")
    res = P.pyn_move(s, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": items[0].study,
                         "SeriesInstanceUID": items[0].series}, "PYNSCP")
    res.assert_final(SUCCESS, completed=len(items), failed=0)
    P.assert_received_exactly(good.rec.received(), items, what=f"move after {what}: ")


# --- DCMTK movescu: levels, information models, UID lists ---------------------------------------


def _case(corpus, case):
    ct = corpus.ct
    p0 = corpus.ct_patients[0]
    st0, st1 = sorted({i.study for i in ct if i.patient == p0})
    se = sorted({i.series for i in ct if i.study == st0})[1]
    in_series = sorted((i for i in ct if i.series == se), key=lambda i: i.sop)
    if case == "sr_study":
        return "S", study_keys(st0), corpus.where(study=st0)
    if case == "sr_study_list":
        return "S", study_keys(f"{st0}\\{st1}"), corpus.where(study=st0) + corpus.where(study=st1)
    if case == "sr_series":
        return "S", {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": st0, "SeriesInstanceUID": se}, \
            corpus.where(series=se)
    if case == "sr_image_list":
        two = in_series[:2]
        return "S", {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": st0, "SeriesInstanceUID": se,
                     "SOPInstanceUID": "\\".join(i.sop for i in two)}, two
    if case == "pr_patient":
        return "P", {"QueryRetrieveLevel": "PATIENT", "PatientID": p0}, corpus.where(patient=p0)
    if case == "pr_study":
        return "P", {"QueryRetrieveLevel": "STUDY", "PatientID": p0, "StudyInstanceUID": st1}, \
            corpus.where(study=st1)
    if case == "pr_series":
        return "P", {"QueryRetrieveLevel": "SERIES", "PatientID": p0, "StudyInstanceUID": st0,
                     "SeriesInstanceUID": se}, corpus.where(series=se)
    if case == "pr_image":
        one = in_series[2]
        return "P", {"QueryRetrieveLevel": "IMAGE", "PatientID": p0, "StudyInstanceUID": st0,
                     "SeriesInstanceUID": se, "SOPInstanceUID": one.sop}, [one]
    if case == "pr_image_list":
        two = in_series[1:]
        return "P", {"QueryRetrieveLevel": "IMAGE", "PatientID": p0, "StudyInstanceUID": st0,
                     "SeriesInstanceUID": se, "SOPInstanceUID": "\\".join(i.sop for i in two)}, two
    raise KeyError(case)


LEVEL_CASES = ["sr_study", "sr_study_list", "sr_series", "sr_image_list", "pr_patient", "pr_study",
               "pr_series", "pr_image", "pr_image_list"]


@pytest.mark.parametrize("case", LEVEL_CASES)
def test_movescu_levels_to_storescp(archive, peers, case):
    """movescu -S/-P at every level into DCMTK storescp: exactly the matching instances arrive,
    byte-identical data sets (stored explicit VR LE, storescp accepts it); final 0x0000 with
    Completed = number of instances."""
    model, keys, expected = _case(archive.corpus, case)
    assert expected
    scp = peers.storescp()
    r, res = P.movescu(archive.server, keys, "STORESCP", model=model)
    res.assert_final(SUCCESS, completed=len(expected), failed=0, warning=0)
    assert r.returncode == 0, f"movescu rc={r.returncode}\n{res.describe()}"
    res.assert_pending_progress(len(expected))
    tss = P.assert_received_exactly(scp.received(), expected)
    assert set(tss.values()) == {"1.2.840.10008.1.2.1"}


OTHER_IDS = [fid for fid in P.OTHER_FIXTURES]


def _other(corpus, fid):
    for i in corpus.other:
        if i.path.stem == fid:
            return i
    pytest.fail(f"fixture {fid} not in the installed pydicom")


def image_keys(item):
    return {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": item.study, "SeriesInstanceUID": item.series,
            "SOPInstanceUID": item.sop}


@pytest.mark.parametrize("fid", OTHER_IDS)
def test_move_converts_for_uncompressed_storescp(archive, peers, fid):
    """A destination accepting only uncompressed syntaxes (default storescp) gets compressed
    objects decompressed (pixels equal; lossy JPEG / JPEG 2000 within 2) and implicit / big
    endian ones either unchanged (bytes) or converted (pixels equal)."""
    item = _other(archive.corpus, fid)
    scp = peers.storescp()
    r, res = P.movescu(archive.server, image_keys(item), "STORESCP")
    res.assert_final(SUCCESS, completed=1, failed=0, warning=0)
    tss = P.assert_received_exactly(scp.received(), [item])
    assert tss[item.sop] in P.UNCOMPRESSED


@pytest.mark.parametrize("fid", OTHER_IDS)
def test_move_unchanged_for_accept_all_storescp(archive, peers, fid):
    """storescp +xa accepts every syntax: the stored syntax is used (MIFAS proposes a context of
    its own for every stored syntax but Explicit VR LE), data set bytes unchanged."""
    item = _other(archive.corpus, fid)
    scp = peers.storescp("STORESCP_XA", accept_all=True)
    r, res = P.movescu(archive.server, image_keys(item), "STORESCP_XA")
    res.assert_final(SUCCESS, completed=1, failed=0, warning=0)
    tss = P.assert_received_exactly(scp.received(), [item])
    assert tss[item.sop] == item.ts, f"sent as {tss[item.sop]}, stored as {item.ts}"


def test_move_mixed_study_one_association(archive, peers):
    """The whole compressed/other study (several SOP classes and syntaxes) in one C-MOVE to the
    uncompressed-only storescp: every instance arrives, none encapsulated."""
    c = archive.corpus
    scp = peers.storescp()
    r, res = P.movescu(archive.server, study_keys(c.other_study), "STORESCP")
    res.assert_final(SUCCESS, completed=len(c.other), failed=0, warning=0)
    res.assert_pending_progress(len(c.other))
    tss = P.assert_received_exactly(scp.received(), c.other)
    assert set(tss.values()) <= P.UNCOMPRESSED


def test_move_to_small_pdu_destination(archive, peers):
    """storescp with a 4 KiB max PDU: MIFAS splits each data set (the decompressed JPEG 2000 one
    is 512 KiB) into PDUs the destination accepts; everything arrives intact."""
    c = archive.corpus
    scp = peers.storescp(extra=["-pdu", "4096"])
    expected = c.other + c.where(study=c.ct_studies[0])
    for st in (c.other_study, c.ct_studies[0]):
        r, res = P.movescu(archive.server, study_keys(st), "STORESCP")
        res.assert_final(SUCCESS, completed=len(c.where(study=st)), failed=0, warning=0)
    P.assert_received_exactly(scp.received(), expected)


# --- Orthanc -------------------------------------------------------------------------------------


def test_move_into_orthanc(archive, peers):
    """movescu moves a CT study and the compressed study into Orthanc; Orthanc's REST API then
    lists exactly those instances, in their stored syntaxes (Orthanc accepts every syntax, so
    nothing is converted): the CT data sets byte-identical, the others equal element by element
    (Orthanc itself re-encodes sequences and encapsulated pixel data of some files)."""
    c = archive.corpus
    orthanc = peers.orthanc(dicom_port=archive.ports["ORTHANC"])
    st = c.ct_studies[2]
    expected = c.where(study=st) + c.other
    for study in (st, c.other_study):
        r, res = P.movescu(archive.server, study_keys(study), "ORTHANC")
        res.assert_final(SUCCESS, completed=len(c.where(study=study)), failed=0, warning=0)
    inst = orthanc.instances()
    assert set(inst) == {i.sop for i in expected}, f"Orthanc holds {sorted(inst)}\n{orthanc.log_tail()}"
    studies = orthanc.get("/studies?expand")
    assert {s["MainDicomTags"]["StudyInstanceUID"] for s in studies} == {st, c.other_study}
    files = {uid: orthanc.file(oid) for uid, oid in inst.items()}
    ct = c.where(study=st)
    P.assert_received_exactly({i.sop: files[i.sop] for i in ct}, ct, what="Orthanc: ")
    tss = P.assert_received_exactly({i.sop: files[i.sop] for i in c.other}, c.other, what="Orthanc: ",
                                    content_only=True)
    stored_as = {i.sop: i.ts for i in c.other}
    assert {u: tss[u] for u in stored_as} == stored_as, "converted although Orthanc accepts every syntax"


def test_orthanc_retrieves_from_mifas(archive, peers):
    """Orthanc as the C-MOVE requestor (REST /modalities/MIFAS/move, target itself): the study
    arrives in Orthanc."""
    c = archive.corpus
    s = archive.server
    orthanc = peers.orthanc(dicom_port=archive.ports["ORTHANC"])
    orthanc.request("PUT", "/modalities/MIFAS", {"AET": s.aet, "Host": s.host, "Port": s.port})
    st = c.ct_studies[3]
    orthanc.request("POST", "/modalities/MIFAS/move",
                    {"Level": "Study", "Resources": [{"StudyInstanceUID": st}], "TargetAet": "ORTHANC",
                     "Synchronous": True, "Timeout": 60})
    inst = orthanc.instances()
    expected = c.where(study=st)
    assert set(inst) == {i.sop for i in expected}, f"Orthanc holds {sorted(inst)}\n{s.log_tail()}"
    P.assert_received_exactly({uid: orthanc.file(oid) for uid, oid in inst.items()}, expected)


# --- pynetdicom requestor: pending responses, Move Originator --------------------------------------


def test_pending_counts_and_move_originator(archive, peers):
    """Patient-level move (12 instances) to a pynetdicom SCP: pending responses with Remaining
    decreasing and Completed increasing, final counts = 12; each C-STORE-RQ carries Move
    Originator AE Title / Message ID, calling AE = MIFAS's AE title."""
    c = archive.corpus
    p = c.ct_patients[1]
    expected = c.where(patient=p)
    dest = peers.pyn("PYNSCP")
    res = P.pyn_move(archive.server, {"QueryRetrieveLevel": "PATIENT", "PatientID": p}, "PYNSCP",
                     model=PR_MOVE, calling="ORIGINATOR", msg_id=4242)
    res.assert_final(SUCCESS, completed=len(expected), failed=0, warning=0)
    assert len(res.pending) >= len(expected) - 1, f"too few pending responses\n{res.describe()}"
    res.assert_pending_progress(len(expected))
    assert res.pending[0].completed in (0, 1) and res.pending[-1].completed >= len(expected) - 1
    P.assert_received_exactly(dest.rec.received(), expected)
    for st in dest.rec.stored:
        assert st.originator_aet == "ORIGINATOR", f"Move Originator AE Title {st.originator_aet!r}"
        assert st.originator_msg_id == 4242, f"Move Originator Message ID {st.originator_msg_id!r}"
    assert dest.rec.calling == {archive.server.aet}, f"calling AE titles {dest.rec.calling}"
    assert dest.rec.associations == 1, "one association per move expected"


def test_move_nothing_matches(archive, peers):
    """A move asking for nothing that exists: 0x0000, no sub-operations, nothing sent."""
    dest = peers.pyn("PYNSCP")
    res = P.pyn_move(archive.server, study_keys("1.2.3.4.5.6.7.8.9.404"), "PYNSCP")
    res.assert_final(SUCCESS)
    f = res.final
    assert [x or 0 for x in (f.remaining, f.completed, f.failed, f.warning)] == [0, 0, 0, 0], res.describe()
    assert not res.pending, res.describe()
    assert dest.rec.calls == 0
    r, res2 = P.movescu(archive.server, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": archive.corpus.ct[0].study,
                                         "SeriesInstanceUID": "1.2.3.404"}, "PYNSCP")
    res2.assert_final(SUCCESS)
    assert r.returncode == 0 and dest.rec.calls == 0
    # the keys above the level are matched too: a study of patient 0 asked under patient 1
    c = archive.corpus
    st = c.where(patient=c.ct_patients[0])[0].study
    res3 = P.pyn_move(archive.server, {"QueryRetrieveLevel": "STUDY", "PatientID": c.ct_patients[1],
                                       "StudyInstanceUID": st}, "PYNSCP", model=PR_MOVE)
    res3.assert_final(SUCCESS)
    assert (res3.final.completed or 0) == 0 and dest.rec.calls == 0, res3.describe()


# --- refused destinations ----------------------------------------------------------------------


def test_unknown_move_destination(archive, peers):
    """A destination not in [[remote_ae]] → 0xA801, no sub-operations."""
    scp = peers.storescp()
    c = archive.corpus
    r, res = P.movescu(archive.server, study_keys(c.ct_studies[0]), "NOSUCHAE")
    res.assert_final(UNKNOWN_DEST)
    assert r.returncode != 0
    assert not res.pending
    res = P.pyn_move(archive.server, study_keys(c.ct_studies[0]), "NOSUCHAE")
    res.assert_final(UNKNOWN_DEST)
    assert not scp.files()
    archive.server.echo_ok()


def test_refused_move_destination(archive, peers):
    """remote_ae with move_destination = false → 0xA801 and nothing is sent to it (a storescp
    listens on its port)."""
    scp = peers.storescp()
    res = P.pyn_move(archive.server, study_keys(archive.corpus.ct_studies[0]), "REFUSED")
    res.assert_final(UNKNOWN_DEST)
    assert not res.pending
    assert not scp.files(), "objects sent to a remote AE with move_destination = false"


# --- destinations that fail ---------------------------------------------------------------------


def test_destination_down(archive, peers):
    """Nothing listens on the destination's port: no sub-operation can be performed → 0xA702,
    every instance failed and listed, completed 0; the archive stays healthy."""
    items = archive.corpus.where(study=archive.corpus.ct_studies[0])
    res = P.pyn_move(archive.server, study_keys(items[0].study), "DOWN")
    res.assert_final(NO_SUBOPS, completed=0, failed=len(items), warning=0)
    assert res.final.failed_uids is not None, f"no Failed SOP Instance UID List\n{res.describe()}"
    assert sorted(res.final.failed_uids) == sorted(i.sop for i in items)
    r, res2 = P.movescu(archive.server, study_keys(items[0].study), "DOWN")
    res2.assert_final(NO_SUBOPS, completed=0, failed=len(items))
    assert_healthy(archive, peers, "a move to a destination that is down")


def test_destination_rejects_association(archive, peers):
    """The destination rejects the association (A-ASSOCIATE-RJ: called AE title not its own):
    0xA702, every instance failed and listed."""
    items = archive.corpus.where(study=archive.corpus.ct_studies[3])
    dest = peers.pyn("REJECTER", aet="NOTREJECTER", require_called_aet=True)
    res = P.pyn_move(archive.server, study_keys(items[0].study), "REJECTER")
    res.assert_final(NO_SUBOPS, completed=0, failed=len(items), warning=0)
    assert sorted(res.final.failed_uids or []) == sorted(i.sop for i in items), res.describe()
    assert dest.rec.calls == 0
    assert_healthy(archive, peers, "a rejected association")


def test_destination_without_context_for_a_class(archive, peers):
    """The destination accepts MR Image Storage only: the study's MR instances are completed,
    the Secondary Capture ones fail (no accepted context) and are listed; final 0xB000."""
    c = archive.corpus
    mr = [i for i in c.other if i.sop_class == MR_STORAGE]
    sc = [i for i in c.other if i.sop_class != MR_STORAGE]
    assert mr and sc
    dest = peers.pyn("MRONLY", sop_classes={MR_STORAGE})
    res = P.pyn_move(archive.server, study_keys(c.other_study), "MRONLY")
    res.assert_final(WARNING_SUBOPS, completed=len(mr), failed=len(sc), warning=0)
    assert sorted(res.final.failed_uids or []) == sorted(i.sop for i in sc), res.describe()
    P.assert_received_exactly(dest.rec.received(), mr)


def test_undecodable_instance(archive, peers):
    """A stored JPEG whose data cannot be decoded: to an uncompressed-only destination that
    sub-operation fails (listed), the other instance is completed, final 0xB000, the server
    lives; to a destination accepting JPEG both go unchanged, 0x0000."""
    c = archive.corpus
    good = [i for i in c.broken if i.sop != c.undecodable]
    scp = peers.storescp()
    r, res = P.movescu(archive.server, study_keys(c.broken_study), "STORESCP")
    res.assert_final(WARNING_SUBOPS, completed=len(good), failed=1, warning=0)
    P.assert_received_exactly(scp.received(), good)
    res = P.pyn_move(archive.server, study_keys(c.broken_study), "STORESCP")
    assert res.final.failed_uids == [c.undecodable], res.describe()
    archive.server.echo_ok()
    xa = peers.storescp("STORESCP_XA", accept_all=True)
    r, res = P.movescu(archive.server, study_keys(c.broken_study), "STORESCP_XA")
    res.assert_final(SUCCESS, completed=len(c.broken), failed=0, warning=0)
    tss = P.assert_received_exactly(xa.received(), c.broken)
    assert all(tss[i.sop] == i.ts for i in c.broken)


def test_destination_aborts_midway(archive, peers):
    """The destination aborts the association on the 3rd C-STORE: completed 2, the in-flight
    instance and all remaining failed and listed, final 0xB000; the archive stays healthy."""
    items = archive.corpus.where(study=archive.corpus.ct_studies[1])
    dest = peers.pyn("ABORTER", abort_after=2)
    res = P.pyn_move(archive.server, study_keys(items[0].study), "ABORTER")
    res.assert_final(WARNING_SUBOPS, completed=2, failed=len(items) - 2, warning=0)
    stored = {s.sop for s in dest.rec.stored}
    assert len(stored) == 2 and dest.rec.aborted_on is not None
    assert res.final.failed_uids is not None, f"no Failed SOP Instance UID List\n{res.describe()}"
    assert sorted(res.final.failed_uids) == sorted({i.sop for i in items} - stored), res.describe()
    assert dest.rec.aborted_on in res.final.failed_uids
    assert_healthy(archive, peers, "a destination abort")


def test_destination_refuses_stores(archive, peers):
    """The destination answers 0xA700 from the 3rd C-STORE on: completed 2, failed the rest
    (each tried and listed), final 0xB000."""
    items = archive.corpus.where(study=archive.corpus.ct_studies[1])
    dest = peers.pyn("FAILER", fail_after=2, fail_status=0xA700)
    res = P.pyn_move(archive.server, study_keys(items[0].study), "FAILER")
    res.assert_final(WARNING_SUBOPS, completed=2, failed=len(items) - 2, warning=0)
    res.assert_pending_progress(len(items))
    assert sorted(res.final.failed_uids or []) == sorted(dest.rec.refused), res.describe()
    assert len(dest.rec.refused) == len(items) - 2
    P.assert_received_exactly(dest.rec.received(), [i for i in items if i.sop not in dest.rec.refused])
    assert_healthy(archive, peers, "refused stores")


def test_destination_warning(archive, peers):
    """A C-STORE answered with a warning (0xB000) is counted as a warning: final 0xB000."""
    items = archive.corpus.where(study=archive.corpus.ct_studies[2])
    peers.pyn("WARNER", warn_on={2})
    res = P.pyn_move(archive.server, study_keys(items[0].study), "WARNER")
    res.assert_final(WARNING_SUBOPS, failed=0, warning=1)
    assert res.final.completed == len(items) - 1, res.describe()


# --- C-CANCEL ----------------------------------------------------------------------------------


def test_cancel_move(archive, peers):
    """C-CANCEL while the 2nd sub-operation is in flight (the destination holds it until the
    cancel is sent): final 0xFE00, completed < total, Remaining = instances not sent."""
    c = archive.corpus
    p = c.ct_patients[0]
    items = c.where(patient=p)
    dest = peers.pyn("SLOW", gate_on={2})
    holder = {}

    def canceller():
        assert dest.rec.entered.wait(30), "2nd C-STORE never arrived"
        a = holder["assoc"]
        a.send_c_cancel(77, P.context_id(a, PR_MOVE))
        dest.rec.gate.set()

    t = threading.Thread(target=canceller, daemon=True)
    res = P.pyn_move(archive.server, {"QueryRetrieveLevel": "PATIENT", "PatientID": p}, "SLOW", model=PR_MOVE,
                     msg_id=77, assoc_hook=lambda a: (holder.__setitem__("assoc", a), t.start()))
    t.join(5)
    res.assert_final(CANCEL)
    f = res.final
    done = (f.completed or 0) + (f.failed or 0) + (f.warning or 0)
    assert 1 <= (f.completed or 0) < len(items), res.describe()
    assert f.remaining == len(items) - done, f"Remaining {f.remaining}, expected {len(items) - done}\n{res.describe()}"
    # the store in flight when the cancel came may have been counted failed although it landed
    assert len(dest.rec.stored) in (f.completed, f.completed + 1), (len(dest.rec.stored), res.describe())
    assert len(dest.rec.stored) < len(items), "every instance was sent despite the C-CANCEL"
    archive.server.echo_ok()


def test_cancel_movescu(archive, peers):
    """DCMTK movescu --cancel 1 (C-CANCEL after the first pending response) while the 2nd
    sub-operation is held by the destination until movescu says it sent the cancel: final
    0xFE00 before all 12 instances, Remaining = the instances not sent."""
    c = archive.corpus
    p = c.ct_patients[1]
    items = c.where(patient=p)
    dest = peers.pyn("SLOW", gate_on={2})

    def on_line(line):
        if "Sending Cancel Request" in line:
            dest.rec.gate.set()

    r, res = P.movescu(archive.server, {"QueryRetrieveLevel": "PATIENT", "PatientID": p}, "SLOW", model="P",
                       extra=["--cancel", "1"], on_line=on_line)
    assert dest.rec.gate.is_set(), f"movescu never sent its C-CANCEL\n{res.describe()}"
    res.assert_final(CANCEL)
    f = res.final
    done = (f.completed or 0) + (f.failed or 0) + (f.warning or 0)
    assert 1 <= (f.completed or 0) < len(items), res.describe()
    assert f.remaining == len(items) - done, res.describe()
    assert len(dest.rec.stored) < len(items)
    archive.server.echo_ok()


def test_requestor_aborts_midway(archive, peers):
    """The requestor aborts its association while the 2nd sub-operation is in flight: MIFAS
    stays healthy (C-ECHO, a following move completes) and stops sending on behalf of it."""
    c = archive.corpus
    p = c.ct_patients[0]
    items = c.where(patient=p)
    dest = peers.pyn("SLOW", gate_on={2})
    seen = []

    def on_response(assoc, rsp):
        # first pending: store 1 done, store 2 held by the destination
        seen.append(rsp)
        if len(seen) == 1:
            assoc.abort()
            dest.rec.gate.set()
            return P.STOP  # (pynetdicom would wait for its DIMSE timeout on the dead association)

    P.pyn_move(archive.server, {"QueryRetrieveLevel": "PATIENT", "PatientID": p}, "SLOW", model=PR_MOVE,
               on_response=on_response)
    assert len(seen) == 1 and seen[0].status == 0xFF00, [str(r) for r in seen]
    assert_healthy(archive, peers, "a requestor abort")
    assert len(dest.rec.stored) < len(items), "all sub-operations sent for an aborted requestor"


# --- identifier errors ----------------------------------------------------------------------------


def _ident_cases(c):
    st, ct0 = c.ct_studies[0], c.ct[0]
    return {
        "no_level": (SR_MOVE, {"StudyInstanceUID": st}),
        "bad_level": (SR_MOVE, {"QueryRetrieveLevel": "FOO", "StudyInstanceUID": st}),
        "study_no_uid": (SR_MOVE, {"QueryRetrieveLevel": "STUDY", "PatientID": ct0.patient}),
        "study_empty_uid": (SR_MOVE, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}),
        "series_no_uid": (SR_MOVE, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": st}),
        "image_empty_uid": (SR_MOVE, {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": st,
                                      "SeriesInstanceUID": ct0.series, "SOPInstanceUID": ""}),
        "patient_no_id": (PR_MOVE, {"QueryRetrieveLevel": "PATIENT"}),
        "patient_level_study_root": (SR_MOVE, {"QueryRetrieveLevel": "PATIENT", "PatientID": ct0.patient}),
        # the unique key of the level takes exact values only (a wildcard would move everything)
        "study_wildcard_uid": (SR_MOVE, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "*"}),
        "patient_wildcard_id": (PR_MOVE, {"QueryRetrieveLevel": "PATIENT", "PatientID": ct0.patient[:-1] + "*"}),
    }


IDENT_CASES = ["no_level", "bad_level", "study_no_uid", "study_empty_uid", "series_no_uid", "image_empty_uid",
               "patient_no_id", "patient_level_study_root", "study_wildcard_uid", "patient_wildcard_id"]


@pytest.mark.parametrize("case", IDENT_CASES)
def test_identifier_errors(archive, peers, case):
    """Missing/invalid Query/Retrieve Level or a missing unique key of the level → failure
    (0xA900, or 0xC000), no sub-operations, the server answers C-ECHO after."""
    model, keys = _ident_cases(archive.corpus)[case]
    dest = peers.pyn("PYNSCP")
    res = P.pyn_move(archive.server, keys, "PYNSCP", model=model)
    res.assert_final({IDENT_ERROR, UNABLE})
    assert not res.pending and dest.rec.calls == 0, res.describe()
    if res.final.status == IDENT_ERROR:
        assert res.final.error_comment, f"0xA900 without ErrorComment\n{res.describe()}"
    archive.server.echo_ok()


# --- parallel moves ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pynetdicom", "storescp_fork"])
def test_parallel_moves_queued(tmp_path, rcorpus, kind):
    """4 concurrent movescu (one per CT study) with max_outgoing_associations = 1: all complete
    (queued, not refused); with a pynetdicom destination the stores of different associations
    never interleave (the cap holds) and there is one association per move."""
    port = P.free_port()
    cfg = {"remote_ae": [P.remote_ae("DEST", port)],
           "retrieve": {"max_outgoing_associations": 1, "connect_timeout_secs": 5, "response_timeout_secs": 30}}
    server = P.served_archive(tmp_path / "mifas", rcorpus, cfg, "parallel")
    dest = None
    try:
        if kind == "pynetdicom":
            dest = P.PynStoreSCP(port, aet="DEST", require_called_aet=True).start()
        else:
            dest = P.StoreSCP(tmp_path / "scp", port, aet="DEST", fork=True).start()
        studies = rcorpus.ct_studies
        with concurrent.futures.ThreadPoolExecutor(len(studies)) as ex:
            runs = list(ex.map(lambda st: P.movescu(server, study_keys(st), "DEST", calling="PARALLEL"), studies))
        for st, (r, res) in zip(studies, runs):
            n = len(rcorpus.where(study=st))
            res.assert_final(SUCCESS, completed=n, failed=0, warning=0)
            assert r.returncode == 0
        received = dest.rec.received() if kind == "pynetdicom" else dest.received()
        P.assert_received_exactly(received, rcorpus.ct)
        if kind == "pynetdicom":
            order = dest.rec.order
            runs_of = [a for k, a in enumerate(order) if k == 0 or order[k - 1] != a]
            assert len(runs_of) == len(set(runs_of)) == len(studies), (
                f"stores of {len(set(order))} associations interleaved ({len(runs_of)} runs) although "
                f"max_outgoing_associations = 1")
        server.echo_ok()
    finally:
        if dest is not None:
            dest.stop()
        P.close_archive(server)


def test_destination_never_answers(tmp_path, rcorpus):
    """The destination holds the 2nd C-STORE-RSP; with response_timeout_secs = 1 MIFAS gives up
    on it: completed 1, the rest failed, final 0xB000 well before the destination would have
    answered; the archive stays healthy."""
    port = P.free_port()
    cfg = {"remote_ae": [P.remote_ae("HUNG", port)],
           "retrieve": {"connect_timeout_secs": 5, "response_timeout_secs": 1}}
    server = P.served_archive(tmp_path / "mifas", rcorpus, cfg, "timeout")
    dest = P.PynStoreSCP(port, aet="HUNG", gate_on={2}, gate_timeout=60).start()
    try:
        st = rcorpus.ct_studies[0]
        items = rcorpus.where(study=st)
        t0 = time.monotonic()
        res = P.pyn_move(server, study_keys(st), "HUNG")
        took = time.monotonic() - t0
        res.assert_final(WARNING_SUBOPS, completed=1, failed=len(items) - 1, warning=0)
        assert took < 30, f"the move took {took:.1f}s with response_timeout_secs = 1"
        assert len(res.final.failed_uids or []) == len(items) - 1, res.describe()
        assert dest.rec.entered.is_set()
        server.echo_ok()
    finally:
        dest.stop()
        P.close_archive(server)
