"""Deadlines on writes and on the wait for an outgoing association (issue 15, defect 3).

A peer that stops reading fills the TCP window; before the fix the send (and then the A-ABORT)
could block for `idle_timeout_secs` or forever while the association held its slot, so
`max_associations` such peers locked everyone out. Now every write has `dicom.write_timeout_secs`
and a C-MOVE waits for a free outgoing association at most `retrieve.queue_timeout_secs`."""

import socket
import struct
import threading
import time

import pytest
from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

import dicom_fixtures as F
from mifas_helpers import echoscu, pyn_associate, storescu
from raw_dul import (A_ASSOCIATE_AC, EXPLICIT_LE, RawAssociation, _pad_uid, _us, build_pdata,
                     encode_command)

STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
WRITE_TIMEOUT = 2


def qr_identifier(study_uid: str) -> bytes:
    def el(group, elem, vr, value):
        if len(value) % 2:
            value += b"\0" if vr == b"UI" else b" "
        return struct.pack("<HH2sH", group, elem, vr, len(value)) + value
    return el(0x0008, 0x0052, b"CS", b"STUDY") + el(0x0020, 0x000D, b"UI", study_uid.encode())


def qr_command(field: int, sop_class: str, msg_id: int, destination: str | None = None) -> bytes:
    elements = [(0x0002, _pad_uid(sop_class)), (0x0100, _us(field)), (0x0110, _us(msg_id)),
                (0x0700, _us(0)), (0x0800, _us(0))]
    if destination:
        elements.append((0x0600, destination.ljust(16).encode()))
    return encode_command(elements)


@pytest.fixture
def big_study(tmp_path):
    """One 24 MB CT instance: far more than loopback socket buffers hold."""
    rows, cols = 2048, 6144
    ds = F.make_ct(0, 0, 0, 0, "deadline", b"\x01\x02" * (rows * cols), rows=rows, cols=cols)
    path = F.write_part10(ds, tmp_path / "big.dcm")
    return path, ds


def test_peer_that_stops_reading_loses_its_association_and_slot(mifas, big_study):
    path, ds = big_study
    s = mifas({"dicom": {"max_associations": 1, "write_timeout_secs": WRITE_TIMEOUT,
                         "idle_timeout_secs": 300}})
    r = storescu(s.host, s.port, [path])
    assert r.returncode == 0, r.stderr
    # C-GET with the SCP role for CT, then never read again
    a = RawAssociation(s.host, s.port, timeout=30, rcvbuf=4096)
    pdu = a.associate(called=s.aet, contexts=[(1, STUDY_GET, [EXPLICIT_LE]),
                                              (3, F.CT_IMAGE_STORAGE, [EXPLICIT_LE])],
                      scp_roles=(F.CT_IMAGE_STORAGE,))
    assert pdu.type == A_ASSOCIATE_AC and a.accepted_context(3), pdu.describe()
    a.send(build_pdata([(1, 0x03, qr_command(0x0010, STUDY_GET, 1))]))
    a.send(build_pdata([(1, 0x02, qr_identifier(str(ds.StudyInstanceUID)))]))
    started = time.monotonic()
    # the slot is taken: with max_associations = 1 a second association is refused meanwhile
    refused = echoscu(s.host, s.port, called=s.aet)
    assert refused.returncode != 0, "a second association was accepted beside the stuck one"
    # within the write deadline (plus slack) the stuck association is dropped and the slot free
    deadline = started + WRITE_TIMEOUT + 15
    while True:
        if echoscu(s.host, s.port, called=s.aet).returncode == 0:
            break
        assert time.monotonic() < deadline, (
            f"the association of a peer that stopped reading still holds the only slot after "
            f"{time.monotonic() - started:.0f} s (write_timeout_secs = {WRITE_TIMEOUT})")
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    assert elapsed >= WRITE_TIMEOUT - 0.5, f"dropped after {elapsed:.1f} s, before the deadline"
    a.close()
    s.assert_alive("after a peer that stopped reading")


class SilentDestination:
    """A Move Destination that accepts TCP connections and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.connected = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.connected.set()

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_c_move_gives_up_waiting_for_an_outgoing_association(mifas):
    dest = SilentDestination()
    try:
        s = mifas({
            "retrieve": {"max_outgoing_associations": 1, "queue_timeout_secs": 2,
                         "connect_timeout_secs": 60},
            "remote_ae": [{"aet": "SILENT", "host": "127.0.0.1", "port": dest.port}],
        })
        ct = F.pydicom_file("CT_small.dcm")
        assert storescu(s.host, s.port, [ct]).returncode == 0
        study = str(F.load("CT_small.dcm").StudyInstanceUID)
        # the first C-MOVE takes the only outgoing association and waits on the silent peer
        first = RawAssociation(s.host, s.port, timeout=30)
        assert first.associate(called=s.aet, contexts=[(1, STUDY_MOVE, [EXPLICIT_LE])]).type == A_ASSOCIATE_AC
        first.send(build_pdata([(1, 0x03, qr_command(0x0021, STUDY_MOVE, 1, "SILENT"))]))
        first.send(build_pdata([(1, 0x02, qr_identifier(study))]))
        assert dest.connected.wait(15), "the first C-MOVE never connected to its destination"
        # the second waits for it, then fails with 0xA702 saying why
        assoc = pyn_associate(s, [(StudyRootQueryRetrieveInformationModelMove, [EXPLICIT_LE])])
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = study
        started = time.monotonic()
        responses = list(assoc.send_c_move(ident, "SILENT", StudyRootQueryRetrieveInformationModelMove))
        elapsed = time.monotonic() - started
        assoc.release()
        final = responses[-1][0] if responses else None
        assert final is not None and "Status" in final, (
            f"no final C-MOVE response within {elapsed:.0f} s: MIFAS kept waiting for an outgoing "
            "association")
        assert final.Status == 0xA702, hex(final.Status)
        assert "no outgoing association free within 2 s" in final.ErrorComment, final.ErrorComment
        assert final.NumberOfFailedSuboperations == 1
        assert 1.5 <= elapsed < 20, f"gave up after {elapsed:.1f} s (queue_timeout_secs = 2)"
        first.close()
    finally:
        dest.close()
