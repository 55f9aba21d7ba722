"""Storage Commitment Push Model SCP (PS3.4 Annex J) with real requesters: pynetdicom (report on
the same association, and on a new one after the requester released), Orthanc as Storage
Commitment SCU, malformed requests, and a restart with open transactions."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, StorageCommitmentPushModel

import dicom_fixtures as F
from mifas_helpers import free_port, run_mifas, storescu, wait_until
from retrieve_peers import Orthanc

WELL_KNOWN = "1.2.840.10008.1.20.1.1"
REPORT_TIMEOUT = 60


def commitment_config(modality_port: int, orthanc_port: int | None = None, **commitment) -> dict:
    remote = [{"aet": "MODALITY", "host": "127.0.0.1", "port": modality_port, "move_destination": False}]
    if orthanc_port:
        remote.append({"aet": "ORTHANC", "host": "127.0.0.1", "port": orthanc_port,
                       "move_destination": False})
    return {
        "commitment": {"retry_initial_secs": 1, "retry_max_secs": 2, "timeout_secs": 10, **commitment},
        "remote_ae": remote,
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return F.generate_corpus(tmp_path_factory.mktemp("stgcmt-corpus"), patients=1, studies=1,
                             series=1, instances=4, tag="stgcmt")


def store(server, items) -> None:
    r = storescu(server.host, server.port, [i.path for i in items])
    assert r.returncode == 0, r.stderr + r.stdout


def request_dataset(refs: list[tuple[str, str]], transaction_uid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid or generate_uid()
    items = []
    for cls, inst in refs:
        item = Dataset()
        item.ReferencedSOPClassUID = cls
        item.ReferencedSOPInstanceUID = inst
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


class Reports:
    """N-EVENT-REPORTs received by a pynetdicom handler; `get` waits for the next one."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue()

    def handler(self, event):
        self.q.put((event.event_type, event.event_information, event.assoc.is_requestor))
        return 0x0000, None

    def get(self, timeout=REPORT_TIMEOUT):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no N-EVENT-REPORT within {timeout} s") from None


def refs_of(items) -> list[tuple[str, str]]:
    return [(CTImageStorage, i.sop_instance) for i in items]


def sop_list(seq) -> set[str]:
    return {item.ReferencedSOPInstanceUID for item in (seq or [])}


def associate(server, reports: Reports | None = None, calling="MODALITY"):
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StorageCommitmentPushModel)
    handlers = [(evt.EVT_N_EVENT_REPORT, reports.handler)] if reports else []
    assoc = ae.associate(server.host, server.port, ae_title=server.aet, evt_handlers=handlers)
    assert assoc.is_established
    return assoc


def modality_scp(port: int, reports: Reports, aet="MODALITY"):
    """pynetdicom as the requester's SCP side: takes reports on new associations, accepting our
    proposal to take the SCP role of the Storage Commitment SOP class."""
    ae = AE(ae_title=aet)
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    return ae.start_server(("127.0.0.1", port), block=False,
                           evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handler)])


@pytest.fixture(scope="module")
def archive(tmp_path_factory, corpus):
    from conftest import _Servers

    servers = _Servers(tmp_path_factory.mktemp("stgcmt"))
    modality_port, orthanc_port = free_port(), free_port()
    server = servers(config=commitment_config(modality_port, orthanc_port))
    store(server, corpus[:3])
    server.modality_port, server.orthanc_port = modality_port, orthanc_port
    yield server
    servers.teardown()


def test_report_on_the_same_association(archive, corpus):
    reports = Reports()
    assoc = associate(archive, reports)
    try:
        stored = corpus[:3]
        unknown = generate_uid()
        refs = refs_of(stored) + [(CTImageStorage, unknown), (MRImageStorage, stored[0].sop_instance)]
        tx = generate_uid()
        status, _ = assoc.send_n_action(request_dataset(refs, tx), 1, StorageCommitmentPushModel, WELL_KNOWN)
        assert status.Status == 0x0000, status
        event_type, ds, on_requestor = reports.get()
        assert on_requestor, "the report came on our own association"
        assert event_type == 2, ds
        assert ds.TransactionUID == tx
        assert sop_list(ds.ReferencedSOPSequence) == {i.sop_instance for i in stored}
        failed = {item.ReferencedSOPInstanceUID + "/" + item.ReferencedSOPClassUID: item.FailureReason
                  for item in ds.FailedSOPSequence}
        assert failed == {f"{unknown}/{CTImageStorage}": 0x0112,
                          f"{stored[0].sop_instance}/{MRImageStorage}": 0x0119}, failed

        # all stored → event type 1, no Failed SOP Sequence
        tx2 = generate_uid()
        status, _ = assoc.send_n_action(request_dataset(refs_of(stored), tx2), 1,
                                        StorageCommitmentPushModel, WELL_KNOWN)
        assert status.Status == 0x0000
        event_type, ds, _ = reports.get()
        assert (event_type, ds.TransactionUID) == (1, tx2)
        assert "FailedSOPSequence" not in ds
        assert ds.RetrieveAETitle == archive.aet
        assert sop_list(ds.ReferencedSOPSequence) == {i.sop_instance for i in stored}
    finally:
        assoc.release()


def test_report_on_a_new_association_after_release(archive, corpus):
    reports = Reports()
    scp = modality_scp(archive.modality_port, reports)
    try:
        assoc = associate(archive)
        tx = generate_uid()
        status, _ = assoc.send_n_action(request_dataset(refs_of(corpus[:2]), tx), 1,
                                        StorageCommitmentPushModel, WELL_KNOWN)
        assoc.release()
        assert status.Status == 0x0000
        event_type, ds, on_requestor = reports.get()
        assert not on_requestor, "the report came on an association MIFAS opened"
        assert (event_type, ds.TransactionUID) == (1, tx)
        assert sop_list(ds.ReferencedSOPSequence) == {i.sop_instance for i in corpus[:2]}
    finally:
        scp.shutdown()


@pytest.mark.parametrize("case", ["no-transaction-uid", "empty-sequence", "bad-uid", "action-type",
                                  "instance", "no-dataset"])
def test_malformed_requests_are_refused(archive, corpus, case):
    assoc = associate(archive)
    try:
        ds = request_dataset(refs_of(corpus[:1]))
        action, instance = 1, WELL_KNOWN
        expected = 0x0120
        if case == "no-transaction-uid":
            del ds.TransactionUID
        elif case == "empty-sequence":
            ds.ReferencedSOPSequence = []
            expected = {0x0115, 0x0120}
        elif case == "bad-uid":
            ds.ReferencedSOPSequence[0].ReferencedSOPInstanceUID = "1.2.abc"
            expected = 0x0115
        elif case == "action-type":
            action, expected = 2, 0x0123
        elif case == "instance":
            instance, expected = "1.2.3.4", 0x0112
        elif case == "no-dataset":
            ds = None
        status, _ = assoc.send_n_action(ds, action, StorageCommitmentPushModel, instance)
        got = status.Status if status else None
        assert got in (expected if isinstance(expected, set) else {expected}), (case, status)
        assert assoc.is_established, "a refusal does not end the association"
    finally:
        assoc.release()
    archive.assert_alive(case)


def test_orthanc_as_storage_commitment_scu(archive, corpus, tmp_path):
    orthanc = Orthanc(tmp_path / "orthanc", dicom_port=archive.orthanc_port, aet="ORTHANC",
                      modalities={"mifas": [archive.aet, archive.host, archive.port]}).start()
    try:
        stored = corpus[:3]
        never_sent = corpus[3]
        body = {"DicomInstances": [{"SOPClassUID": CTImageStorage, "SOPInstanceUID": i.sop_instance}
                                   for i in stored + [never_sent]], "Timeout": 30}
        job = orthanc.request("POST", "/modalities/mifas/storage-commitment", body)
        path = job["Path"]

        def done():
            return orthanc.get(path).get("Status") != "Pending"

        wait_until(done, REPORT_TIMEOUT, interval=0.1, what="Orthanc's storage commitment report")
        report = orthanc.get(path)
        assert report["Status"] == "Failure", report
        assert {f["SOPInstanceUID"] for f in report["Failures"]} == {never_sent.sop_instance}, report
        assert [f.get("FailureReason") for f in report["Failures"]] == [0x0112], report
        assert {s["SOPInstanceUID"] for s in report["Success"]} == {i.sop_instance for i in stored}

        body = {"DicomInstances": [{"SOPClassUID": CTImageStorage, "SOPInstanceUID": i.sop_instance}
                                   for i in stored], "Timeout": 30}
        path = orthanc.request("POST", "/modalities/mifas/storage-commitment", body)["Path"]
        wait_until(done, REPORT_TIMEOUT, interval=0.1, what="Orthanc's second report")
        assert orthanc.get(path)["Status"] == "Success", orthanc.get(path)
    finally:
        orthanc.stop()


def test_restart_with_open_transactions(mifas, corpus):
    """Requests accepted, the requester unreachable, the archive killed: after the restart every
    report still arrives."""
    modality_port = free_port()
    server = mifas(config=commitment_config(modality_port))
    store(server, corpus[:2])
    txs = []
    assoc = associate(server)
    for i in range(3):
        tx = generate_uid()
        status, _ = assoc.send_n_action(request_dataset(refs_of(corpus[:2]), tx), 1,
                                        StorageCommitmentPushModel, WELL_KNOWN)
        assert status.Status == 0x0000
        txs.append(tx)
    assoc.release()
    # the reporter has tried (nobody listens) and logged it
    wait_until(lambda: "storage commitment report not delivered" in server.log_path.read_text(),
               30, what="a failed delivery attempt in the log")
    # the status view asks the running server (admin socket) ...
    out = run_mifas("stgcmt", "status", "--data-dir", str(server.data_dir), "--config",
                    str(server.config_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("open: 3\n"), out.stdout
    server.kill9()
    # ... and reads the index when the server is stopped: the three, waiting for a retry
    out = run_mifas("stgcmt", "status", "--data-dir", str(server.data_dir), "--config",
                    str(server.config_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("open: 3\n"), out.stdout
    for tx in txs:
        assert f"transaction: {tx}\n" in out.stdout, out.stdout
    assert out.stdout.count("state: report retrying\n") == 3, out.stdout
    assert out.stdout.count("requester: MODALITY\n") == 3, out.stdout
    assert "last_error: " in out.stdout
    reports = Reports()
    scp = modality_scp(modality_port, reports)
    try:
        server.restart()
        got = {}
        for _ in txs:
            event_type, ds, _ = reports.get()
            got[ds.TransactionUID] = event_type
        assert got == {tx: 1 for tx in txs}
    finally:
        scp.shutdown()
