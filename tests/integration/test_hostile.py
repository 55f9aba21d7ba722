"""Hostile input on raw sockets: the server answers with a reject/abort/failure status, stays up,
stores nothing and does not blow up its memory."""

import random
import struct

import pydicom
import pytest
from pydicom.dataset import Dataset

import dicom_fixtures as F
from mifas_helpers import file_dataset_bytes, list_objects, object_path, wait_spool_empty
from raw_dul import (A_ABORT, A_ASSOCIATE_AC, A_ASSOCIATE_RJ, EXPLICIT_LE, IMPLICIT_LE, P_DATA_TF,
                     VERIFICATION, PeerClosed, RawAssociation, UnexpectedPDU, build_associate_rq,
                     build_pdata, c_store_rq)

CT = F.CT_IMAGE_STORAGE
CLOSE_WITHIN = 10.0  # seconds; well below the default 30 s ARTIM, so the server must act itself


def assert_closed_with(a: RawAssociation, allowed=(A_ABORT,), timeout=CLOSE_WITHIN):
    try:
        pdus = a.wait_closed(timeout)
    except TimeoutError:
        pytest.fail(f"server kept the connection open for {timeout}s after hostile input")
    bad = [p.describe() for p in pdus if p.type not in allowed]
    assert not bad, f"server answered hostile input with {bad}"
    return pdus


def assert_unharmed(server, baseline_hwm_kb=None):
    server.assert_alive("after hostile input")
    server.echo_ok()
    wait_spool_empty(server.data_dir)
    assert not list_objects(server.data_dir), list_objects(server.data_dir)
    if baseline_hwm_kb is not None:
        grown = server.vm_hwm_kb() - baseline_hwm_kb
        assert grown < 256 * 1024, f"peak RSS grew by {grown} kB after hostile input"


@pytest.fixture
def server(mifas):
    return mifas()


def associate_ct(server, **kw) -> RawAssociation:
    a = RawAssociation(server.host, server.port, timeout=15)
    pdu = a.associate(called=server.aet, contexts=[(1, CT, [EXPLICIT_LE]), (3, VERIFICATION, [IMPLICIT_LE])], **kw)
    assert pdu.type == A_ASSOCIATE_AC, pdu.describe()
    assert a.accepted_context(1) and a.accepted_context(3)
    return a


def store_expect_failure(server, sop_instance, data, allowed_statuses, sop_class=CT, **frag):
    """Send one C-STORE; return ('status', code, comment) or ('abort', pdus)."""
    a = associate_ct(server)
    with a:
        try:
            rsp = a.store(1, sop_class, sop_instance, data, **frag)
        except (UnexpectedPDU, PeerClosed) as e:
            pdu = getattr(e, "pdu", None)
            assert pdu is None or pdu.type == A_ABORT, f"unexpected answer {pdu.describe()}"
            return ("abort", None)
        assert rsp.status in allowed_statuses, (
            f"C-STORE status 0x{rsp.status:04X} ({rsp.error_comment}), expected one of "
            f"{[hex(s) for s in allowed_statuses]}")
        assert rsp.error_comment, f"status 0x{rsp.status:04X} without ErrorComment"
        # the association must still work after a failed store
        assert a.echo(3).status == 0
        a.release()
        return ("status", rsp.status)


# --- garbage on the wire ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_bytes(shared_mifas, seed):
    rng = random.Random(seed)
    junk = bytes(rng.getrandbits(8) for _ in range(8192))
    junk = bytes([rng.choice([0x00, 0x08, 0x10, 0x42, 0xFF])]) + junk[1:]  # not a valid PDU type
    hwm = shared_mifas.vm_hwm_kb()
    a = RawAssociation(shared_mifas.host, shared_mifas.port)
    with a:
        try:
            a.send(junk)
        except PeerClosed:
            pass
        assert_closed_with(a, allowed=(A_ABORT,))
    assert_unharmed(shared_mifas, hwm)


@pytest.mark.parametrize("seed", [4, 5])
def test_random_associate_rq_body(shared_mifas, seed):
    """A PDU that claims to be an A-ASSOCIATE-RQ with a consistent length but a random body."""
    rng = random.Random(seed)
    body = bytes(rng.getrandbits(8) for _ in range(300))
    a = RawAssociation(shared_mifas.host, shared_mifas.port)
    with a:
        a.send(struct.pack(">BBI", 0x01, 0, len(body)) + body)
        assert_closed_with(a, allowed=(A_ABORT, A_ASSOCIATE_RJ))
    assert_unharmed(shared_mifas)


def test_pdu_announcing_4gb_before_association(shared_mifas):
    hwm = shared_mifas.vm_hwm_kb()
    a = RawAssociation(shared_mifas.host, shared_mifas.port)
    with a:
        try:
            a.send(struct.pack(">BBI", 0x01, 0, 0xFFFFFFFF) + b"\x00\x01" + b"A" * 65536)
        except PeerClosed:
            pass
        assert_closed_with(a, allowed=(A_ABORT, A_ASSOCIATE_RJ))
    assert_unharmed(shared_mifas, hwm)


def test_pdata_announcing_4gb_in_association(server):
    hwm = server.vm_hwm_kb()
    a = associate_ct(server)
    with a:
        try:
            a.send(struct.pack(">BBI", P_DATA_TF, 0, 0xFFFFFFFF) + b"\x00" * 65536)
        except PeerClosed:
            pass
        assert_closed_with(a)
    assert_unharmed(server, hwm)


def test_pdu_larger_than_max_pdu(mifas):
    """Server max_pdu 4096; the peer sends a 20000-byte P-DATA-TF anyway."""
    s = mifas({"dicom": {"max_pdu": 4096}})
    a = associate_ct(s)
    data = file_dataset_bytes(F.pydicom_file("CT_small.dcm"))
    with a:
        a.send(build_pdata([(1, 0x03, c_store_rq(1, CT, "1.2.3.4"))]))
        try:
            a.send(build_pdata([(1, 0x02, data[:19994])]))
        except PeerClosed:
            pass
        assert_closed_with(a)
    assert_unharmed(s)


def test_pdv_length_beyond_pdu(server):
    """A PDV item that claims more bytes than its PDU holds."""
    a = associate_ct(server)
    with a:
        body = struct.pack(">IBB", 5000, 1, 0x03) + b"\x00" * 100
        a.send(struct.pack(">BBI", P_DATA_TF, 0, len(body)) + body)
        assert_closed_with(a)
    assert_unharmed(server)


def test_second_associate_rq_inside_association(server):
    a = associate_ct(server)
    with a:
        a.send(build_associate_rq(server.aet, "RAWSCU", [(1, CT, [EXPLICIT_LE])]))
        assert_closed_with(a)
    assert_unharmed(server)


def test_silent_client_closed_by_artim(mifas):
    s = mifas({"dicom": {"artim_timeout_secs": 2}})
    a = RawAssociation(s.host, s.port)
    with a:
        assert_closed_with(a, allowed=(A_ABORT,), timeout=10)
    s.echo_ok()


# --- presentation context abuse -----------------------------------------------------------


def test_store_on_rejected_context(server):
    a = RawAssociation(server.host, server.port)
    with a:
        pdu = a.associate(called=server.aet, contexts=[(1, "1.2.3.4.5.6.7.8.9", [EXPLICIT_LE])])
        assert pdu.type == A_ASSOCIATE_AC and not a.accepted_context(1)
        data = file_dataset_bytes(F.pydicom_file("CT_small.dcm"))
        info = F.file_info(F.pydicom_file("CT_small.dcm"))
        try:
            rsp = a.store(1, CT, info.sop_instance, data)
            assert rsp.status != 0, "C-STORE on a rejected presentation context succeeded"
        except (UnexpectedPDU, PeerClosed) as e:
            pdu = getattr(e, "pdu", None)
            assert pdu is None or pdu.type == A_ABORT
    assert_unharmed(server)


def test_store_on_unknown_context_id(server):
    a = associate_ct(server)
    data = file_dataset_bytes(F.pydicom_file("CT_small.dcm"))
    info = F.file_info(F.pydicom_file("CT_small.dcm"))
    with a:
        try:
            rsp = a.store(99, CT, info.sop_instance, data)
            assert rsp.status != 0, "C-STORE on a presentation context id never proposed succeeded"
        except (UnexpectedPDU, PeerClosed) as e:
            pdu = getattr(e, "pdu", None)
            assert pdu is None or pdu.type == A_ABORT
    assert_unharmed(server)


# --- broken data sets ---------------------------------------------------------------------


def ct_header_until(tag_limit: int) -> tuple[Dataset, bytes]:
    ds = pydicom.dcmread(F.pydicom_file("CT_small.dcm"))
    part = Dataset()
    for elem in ds:
        if elem.tag <= tag_limit:
            part.add(elem)
    return part, F.encode_dataset(part)


def test_truncated_mid_element_in_header(server):
    """All required UIDs present, then an LT element declaring 1000 bytes with only 20 sent."""
    part, data = ct_header_until(0x0020000E)
    data += struct.pack("<HH", 0x0020, 0x4000) + b"LT" + struct.pack("<H", 1000) + b"x" * 20
    kind, _ = store_expect_failure(server, str(part.SOPInstanceUID), data, (0xC000,))
    assert_unharmed(server)
    server.stop_ok()
    assert server.stats()["instances"] == 0


def test_truncated_inside_element_header(server):
    part, data = ct_header_until(0x0020000E)
    data += struct.pack("<HH", 0x0020, 0x4000)[:3]
    store_expect_failure(server, str(part.SOPInstanceUID), data, (0xC000,))
    assert_unharmed(server)


def test_truncated_pixel_data(server, corpus):
    """A 512x512 CT whose pixel data element declares 524288 bytes but the PDV stream ends early."""
    data = file_dataset_bytes(corpus[0].path)
    truncated = data[: len(data) - 400_000]
    store_expect_failure(server, corpus[0].sop_instance, truncated, (0xC000,))
    assert_unharmed(server)
    assert not object_path(server.data_dir, corpus[0].sop_instance).exists()
    server.stop_ok()
    assert server.stats()["instances"] == 0


def test_unterminated_sequence(server):
    part, data = ct_header_until(0x0020000E)
    # (0040,0275) RequestAttributesSequence, undefined length, one item, no delimiters
    data += struct.pack("<HH", 0x0040, 0x0275) + b"SQ\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
    data += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    data += struct.pack("<HH", 0x0010, 0x0010) + b"PN" + struct.pack("<H", 4) + b"AB^C"
    store_expect_failure(server, str(part.SOPInstanceUID), data, (0xC000,))
    assert_unharmed(server)


def test_random_dataset_bytes(server):
    rng = random.Random(7)
    junk = bytes(rng.getrandbits(8) for _ in range(20000))
    store_expect_failure(server, "1.2.826.0.1.3680043.9.7777.4.1", junk,
                         tuple(range(0xC000, 0xD000)) + (0xA900,))
    assert_unharmed(server)


def test_empty_dataset(server):
    store_expect_failure(server, "1.2.826.0.1.3680043.9.7777.4.2", b"",
                         tuple(range(0xC000, 0xD000)) + (0xA900,))
    assert_unharmed(server)


# --- UIDs that must never become paths or keys --------------------------------------------

UID65 = "1.2.826.0.1.3680043.9.7777." + "1" * 38  # 65 characters, digits and dots
assert len(UID65) == 65
UID64 = UID65[:-1]
BAD_UIDS = {
    "dotdot": "../../x",
    "len65": UID65,
    "empty_component": "1.2..3",
    "letters": "1.2.3a",
    "trailing_dot": "1.2.3.",
    "slash": "1.2/3.4",
    "absolute": "/etc/passwd",
    "space_inside": "1.2 3",
}


def uid_case(**uids):
    ds = pydicom.dcmread(F.pydicom_file("CT_small.dcm"))
    ds = F.with_uids(ds, **uids)
    return str(ds.SOPInstanceUID), F.encode_dataset(ds)


def assert_no_file_escaped(server):
    for p in (server.data_dir / "x.dcm", server.data_dir / "x", server.data_dir.parent / "x.dcm",
              server.data_dir.parent / "x", server.data_dir / "objects" / "x.dcm"):
        assert not p.exists(), f"{p} was created"


@pytest.mark.parametrize("bad", list(BAD_UIDS), ids=list(BAD_UIDS))
def test_invalid_sop_instance_uid(server, bad):
    uid, data = uid_case(SOPInstanceUID=BAD_UIDS[bad])
    store_expect_failure(server, uid, data, (0xC001, 0xA900))
    assert_no_file_escaped(server)
    assert_unharmed(server)


@pytest.mark.parametrize("field", ["StudyInstanceUID", "SeriesInstanceUID"])
@pytest.mark.parametrize("bad", ["dotdot", "len65", "empty_component", "letters"])
def test_invalid_study_series_uid(server, field, bad):
    uid, data = uid_case(**{field: BAD_UIDS[bad], "SOPInstanceUID": "1.2.826.0.1.3680043.9.7777.5.1"})
    store_expect_failure(server, uid, data, (0xC001,))
    assert_no_file_escaped(server)
    assert_unharmed(server)
    server.stop_ok()
    assert server.stats()["instances"] == 0


def test_uid_64_chars_is_valid(server):
    uid, data = uid_case(SOPInstanceUID=UID64, StudyInstanceUID=UID64[:-1] + "2")
    a = associate_ct(server)
    with a:
        rsp = a.store(1, CT, uid, data)
        assert rsp.status == 0, f"a valid 64-char UID was refused: 0x{rsp.status:04X} {rsp.error_comment}"
        a.release()
    assert object_path(server.data_dir, UID64).is_file()


def test_odd_length_uid_padded_with_nul_is_valid(server):
    """UIDs are padded to even length with one NUL on the wire: that is not part of the UID."""
    uid = "1.2.826.0.1.3680043.9.7777.6.123"  # 32 chars -> make it odd
    uid = uid + "1"
    assert len(uid) % 2 == 1
    uid, data = uid_case(SOPInstanceUID=uid)
    a = associate_ct(server)
    with a:
        rsp = a.store(1, CT, uid, data)
        assert rsp.status == 0, f"0x{rsp.status:04X} {rsp.error_comment}"
        a.release()
    p = object_path(server.data_dir, uid)
    assert p.is_file(), f"expected {p}; got {list_objects(server.data_dir)}"
