"""Fragmentation: commands over several PDVs, several PDVs per PDU, small and odd max PDU sizes."""

import pytest

import dicom_fixtures as F
from mifas_helpers import (check_stored_object, contexts_for_files, file_dataset_bytes, list_objects,
                           pyn_associate, spool_files)
from raw_dul import A_ASSOCIATE_AC, IMPLICIT_LE, VERIFICATION, RawAssociation

CT = F.CT_IMAGE_STORAGE
ELE = "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def ct_small():
    p = F.pydicom_file("CT_small.dcm")
    return p, F.file_info(p), file_dataset_bytes(p)


@pytest.mark.parametrize("max_pdu", [1024, 4097])
def test_pynetdicom_small_server_max_pdu(mifas, corpus, ct_small, max_pdu):
    """The server advertises a small/odd max PDU: pynetdicom splits every data set into many PDUs.
    (With 4097 pynetdicom sends odd 4091-byte fragments, against PS3.8 E.1; the issue asks that odd
    max PDU sizes work with it all the same.)"""
    s = mifas({"dicom": {"max_pdu": max_pdu}})
    files = [ct_small[0], corpus[0].path]
    assoc = pyn_associate(s, contexts_for_files(files))
    assert assoc.is_established
    assert assoc.acceptor.maximum_length == max_pdu
    statuses = [assoc.send_c_store(p).Status for p in files]
    assoc.release()
    assert statuses == [0, 0]
    for p in files:
        i = F.file_info(p)
        check_stored_object(s.data_dir, i.sop_class, i.sop_instance, i.ts, dataset=file_dataset_bytes(p))


def test_pynetdicom_fragmented_command(mifas, ct_small, monkeypatch):
    """pynetdicom sending 64-byte PDUs: the ~180-byte C-STORE command arrives in 4 PDVs and the
    39 KB data set in ~670 PDUs. (A smaller PDU than the acceptor's maximum is always legal.)"""
    from pynetdicom.dimse import DIMSEServiceProvider
    monkeypatch.setattr(DIMSEServiceProvider, "maximum_pdu_size", property(lambda self: 64))
    s = mifas()
    path, info, data = ct_small
    assoc = pyn_associate(s, contexts_for_files([path]) + [(VERIFICATION, [IMPLICIT_LE])])
    assert assoc.is_established
    st = assoc.send_c_store(path)
    echo = assoc.send_c_echo() if any(c.abstract_syntax == VERIFICATION for c in assoc.accepted_contexts) else None
    assoc.release()
    assert st.Status == 0, f"0x{st.Status:04X} {st.get('ErrorComment')}"
    check_stored_object(s.data_dir, info.sop_class, info.sop_instance, info.ts, dataset=data)
    assert echo is None or echo.Status == 0


def raw_store_ok(server, info, data, **frag):
    a = RawAssociation(server.host, server.port)
    with a:
        pdu = a.associate(called=server.aet, contexts=[(1, info.sop_class, [info.ts]),
                                                       (3, VERIFICATION, [IMPLICIT_LE])])
        assert pdu.type == A_ASSOCIATE_AC
        assert a.accepted_context(1)
        rsp = a.store(1, info.sop_class, info.sop_instance, data, **frag)
        assert rsp.status == 0, f"0x{rsp.status:04X} {rsp.error_comment}"
        assert rsp.command_field == 0x8001
        assert rsp.message_id_responded == 1
        assert rsp.uid(0x1000) == info.sop_instance
        assert rsp.uid(0x0002) == info.sop_class
        assert a.echo(3).status == 0  # the association is still in a sane state
        assert a.release().type == 0x06
    check_stored_object(server.data_dir, info.sop_class, info.sop_instance, info.ts, dataset=data)
    assert not spool_files(server.data_dir)


# PS3.8 Annex E.1: every fragment has an even number of bytes, so a group number, element
# number or value length may be split between two PDVs: the 2-byte fragments do exactly that.


def test_command_in_two_byte_pdvs(mifas, ct_small):
    """Command split into ~90 PDVs of 2 bytes, one PDU each."""
    s = mifas()
    _, info, data = ct_small
    raw_store_ok(s, info, data, cmd_frag=2, data_frag=1000)


def test_several_pdvs_per_pdu(mifas, ct_small):
    """Command in 3 PDVs of one PDU; data in 998-byte PDVs, 7 per PDU."""
    s = mifas()
    _, info, data = ct_small
    raw_store_ok(s, info, data, cmd_frag=64, cmd_per_pdu=10, data_frag=998, data_per_pdu=7)


def test_whole_object_in_one_pdu_of_many_pdvs(mifas, ct_small):
    """The command in 10 PDVs of one PDU, then all data (39 KB, 39 PDVs) in a single P-DATA-TF."""
    s = mifas()
    _, info, data = ct_small
    raw_store_ok(s, info, data, cmd_frag=18, cmd_per_pdu=100, data_frag=1000, data_per_pdu=1000)


def test_exactly_max_pdu_sized_pdus(mifas, ct_small):
    """Server max_pdu 4096: P-DATA-TF PDUs of exactly 4096 bytes are legal."""
    s = mifas({"dicom": {"max_pdu": 4096}})
    _, info, data = ct_small
    raw_store_ok(s, info, data, cmd_frag=4090, data_frag=4090)


def test_odd_server_max_pdu_raw(mifas, ct_small):
    """Server max_pdu 4097 (odd): a careful peer sends 4096-byte PDUs with even fragments."""
    s = mifas({"dicom": {"max_pdu": 4097}})
    _, info, data = ct_small
    raw_store_ok(s, info, data, cmd_frag=4090, data_frag=4090, data_per_pdu=1)


def test_many_stores_one_association_mixed_fragmentation(mifas, corpus):
    s = mifas()
    a = RawAssociation(s.host, s.port)
    with a:
        assert a.associate(called=s.aet, contexts=[(1, CT, [ELE])]).type == A_ASSOCIATE_AC
        for n, c in enumerate(corpus[:6]):
            data = file_dataset_bytes(c.path)
            rsp = a.store(1, CT, c.sop_instance, data, cmd_frag=[2, 8, 64, 1000][n % 4],
                          data_frag=[65530, 4002, 16384, 778][n % 4], data_per_pdu=[1, 3, 1, 5][n % 4])
            assert rsp.status == 0, f"store {n}: 0x{rsp.status:04X} {rsp.error_comment}"
            assert rsp.message_id_responded == n + 1
        a.release()
    for c in corpus[:6]:
        check_stored_object(s.data_dir, CT, c.sop_instance, ELE, dataset=file_dataset_bytes(c.path))
    assert len(list_objects(s.data_dir)) == 6
