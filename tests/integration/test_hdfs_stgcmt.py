"""Storage Commitment over three real HDFS sites (the session's MiniDFSCluster sites): a
commitment is a promise about every site, so it is withheld while one is down and given once it
is back and its queue drained; a replica that fails verification is a failure reason, never a
promise."""

from __future__ import annotations

import re
import urllib.request

import pytest
from pydicom.uid import generate_uid
from pynetdicom.sop_class import StorageCommitmentPushModel

from mifas_helpers import wait_until
from test_hdfs_sites import config, site, store, webhdfs_list
from test_stgcmt import WELL_KNOWN, Reports, associate, refs_of, request_dataset, sop_list


@pytest.fixture
def sites(hdfs_sites):
    return hdfs_sites


def open_commitments(server) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10) as r:
        m = re.search(r"^mifas_stgcmt_open (\d+)$", r.read().decode(), re.M)
    assert m, "mifas_stgcmt_open missing from /metrics"
    return int(m[1])


def request(assoc, items) -> str:
    tx = generate_uid()
    status, _ = assoc.send_n_action(request_dataset(refs_of(items), tx), 1, StorageCommitmentPushModel,
                                    WELL_KNOWN)
    assert status.Status == 0x0000, status
    return tx


def test_commitment_waits_for_a_stopped_site(mifas, sites, corpus):
    root = "/t-stgcmt-outage"
    c_site = site(sites, "siteC")
    s = mifas(config(sites, root, ack="quorum", timeout_secs=5))
    items = corpus[:4]
    c_site.stop_site()
    back = False
    try:
        store(s, [c.path for c in items])
        reports = Reports()
        assoc = associate(s, reports)
        try:
            tx = request(assoc, items)
            # Stored on two sites of three: the request stays open, no report goes out.
            wait_until(lambda: "storage commitment requested" in s.log_path.read_text(), 30,
                       what="the request in the log")
            assert open_commitments(s) == 1
            assert reports.q.empty(), "a report was sent while siteC was down"
            c_site.start_site()
            back = True
            event_type, ds, _ = reports.get(timeout=180)
            assert (event_type, ds.TransactionUID) == (1, tx), ds
            assert sop_list(ds.ReferencedSOPSequence) == {c.sop_instance for c in items}
            wait_until(lambda: open_commitments(s) == 0, 30, what="the transaction closed")
        finally:
            assoc.release()
    finally:
        if not back:
            c_site.start_site()


def test_a_corrupt_replica_is_a_failure_reason(mifas, sites, corpus):
    root = "/t-stgcmt-corrupt"
    s = mifas(config(sites, root, ack="all"))
    items = corpus[:6]
    store(s, [c.path for c in items])
    s.stop_ok()  # seals the packs
    b = site(sites, "siteB")
    packs = sorted(webhdfs_list(b.active_http(), f"{root}/packs"))
    assert packs
    b.corrupt_block(f"{root}/packs/{packs[0]}")
    s.restart()
    reports = Reports()
    assoc = associate(s, reports)
    try:
        request(assoc, items)
        event_type, ds, _ = reports.get(timeout=120)
        assert event_type == 2, ds
        failed = {i.ReferencedSOPInstanceUID: i.FailureReason for i in ds.FailedSOPSequence}
        assert failed and set(failed.values()) == {0x0110}, failed
        assert set(failed) <= {c.sop_instance for c in items}
        # The bad copies were queued for repair: once rewritten from the good sites, the same
        # instances are committed.
        wait_until(lambda: "copy failed verification" in s.log_path.read_text(), 10,
                   what="the verification failure in the log")
        again = [c for c in items if c.sop_instance in failed]

        def committed():
            tx = request(assoc, again)
            event_type, ds, _ = reports.get(timeout=120)
            assert ds.TransactionUID == tx
            return event_type == 1

        wait_until(committed, 180, interval=1, what="the repaired instances committed")
    finally:
        assoc.release()
