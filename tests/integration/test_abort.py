"""A-ABORT or a dropped connection in the middle of an object: nothing stored, nothing leaked."""

import pytest

import dicom_fixtures as F
from mifas_helpers import (check_stored_object, file_dataset_bytes, list_objects, spool_files,
                           wait_spool_empty, wait_until)
from raw_dul import (A_ASSOCIATE_AC, EXPLICIT_LE, PeerClosed, RawAssociation, build_release_rq,
                     c_store_rq)

CT = F.CT_IMAGE_STORAGE


@pytest.fixture(scope="module")
def big_ct(tmp_path_factory):
    """A 4 MB CT (1024 x 2048 x 16 bit) so that half of it is certainly spooled before we abort."""
    d = tmp_path_factory.mktemp("bigct")
    ds = F.make_ct(0, 0, 0, 0, "abort", F.ct_pixels(11, 1024, 2048), rows=1024, cols=2048)
    p = F.write_part10(ds, d / "big.dcm")
    return str(ds.SOPInstanceUID), file_dataset_bytes(p)


def start_partial_store(server, uid, data, fraction=0.5) -> RawAssociation:
    a = RawAssociation(server.host, server.port)
    assert a.associate(called=server.aet, contexts=[(1, CT, [EXPLICIT_LE])]).type == A_ASSOCIATE_AC
    a.send_fragments(1, c_store_rq(1, CT, uid), True, a.default_frag())
    a.send_fragments(1, data[: int(len(data) * fraction) & ~1], False, a.default_frag(), last=False)
    return a


def end_connection(a: RawAssociation, how: str):
    if how == "abort":
        a.abort()
    elif how == "rst":
        a.reset()
    elif how == "fin":
        a.close()
    elif how == "release_mid_object":
        try:
            a.send(build_release_rq())
            a.wait_closed(10)  # the server must not release normally with an object half-received
        except (PeerClosed, TimeoutError):
            pass
        finally:
            a.close()


@pytest.mark.parametrize("how", ["abort", "rst", "fin", "release_mid_object"])
def test_connection_lost_mid_object(mifas, big_ct, how):
    s = mifas()
    uid, data = big_ct
    s.echo_ok()
    baseline_fds = s.open_fds()
    a = start_partial_store(s, uid, data)
    # the data PDVs are spooled to disk as they arrive (memory stays bounded)
    wait_until(lambda: spool_files(s.data_dir), 10, what="a spool file for the object in transit")
    end_connection(a, how)
    wait_spool_empty(s.data_dir)
    assert not list_objects(s.data_dir), list_objects(s.data_dir)
    s.echo_ok()
    wait_until(lambda: s.open_fds() <= baseline_fds, 10,
               what=f"file descriptors back to {baseline_fds} (now {s.open_fds()}): leak after {how}")
    s.stop_ok()
    assert not spool_files(s.data_dir)
    st = s.stats()
    assert st["instances"] == 0 and st["bytes"] == 0, st


def test_abort_after_a_complete_store_keeps_the_first(mifas, big_ct, corpus):
    s = mifas()
    uid, data = big_ct
    first = corpus[0]
    a = RawAssociation(s.host, s.port)
    assert a.associate(called=s.aet, contexts=[(1, CT, [EXPLICIT_LE])]).type == A_ASSOCIATE_AC
    rsp = a.store(1, CT, first.sop_instance, file_dataset_bytes(first.path))
    assert rsp.status == 0
    a.send_fragments(1, c_store_rq(2, CT, uid), True, a.default_frag())
    a.send_fragments(1, data[: len(data) // 2], False, a.default_frag(), last=False)
    wait_until(lambda: spool_files(s.data_dir), 10, what="a spool file for the second object")
    a.abort()
    wait_spool_empty(s.data_dir)
    assert len(list_objects(s.data_dir)) == 1
    check_stored_object(s.data_dir, CT, first.sop_instance, EXPLICIT_LE,
                        dataset=file_dataset_bytes(first.path))
    s.echo_ok()
    s.stop_ok()
    assert s.stats()["instances"] == 1


def test_abort_between_command_and_data(mifas, big_ct):
    s = mifas()
    uid, _ = big_ct
    a = RawAssociation(s.host, s.port)
    assert a.associate(called=s.aet, contexts=[(1, CT, [EXPLICIT_LE])]).type == A_ASSOCIATE_AC
    a.send_fragments(1, c_store_rq(1, CT, uid), True, a.default_frag())
    a.abort()
    s.echo_ok()
    wait_spool_empty(s.data_dir)
    assert not list_objects(s.data_dir)


def test_many_aborts_do_not_leak(mifas, big_ct):
    s = mifas()
    uid, data = big_ct
    s.echo_ok()
    baseline_fds = s.open_fds()
    for i in range(10):
        a = start_partial_store(s, uid, data, fraction=0.1 + i * 0.08)
        (a.abort if i % 2 else a.reset)()
    s.echo_ok()
    wait_spool_empty(s.data_dir)
    wait_until(lambda: s.open_fds() <= baseline_fds, 10,
               what=f"file descriptors back to {baseline_fds} (now {s.open_fds()})")
    assert not list_objects(s.data_dir)
