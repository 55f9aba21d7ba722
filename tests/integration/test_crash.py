"""Crash test: kill -9 right after success responses; every acknowledged instance survives."""

import threading

import pytest

import dicom_fixtures as F
from mifas_helpers import (file_dataset_bytes, list_objects, object_path, pyn_associate, sha256,
                           spool_files, split_part10, wait_until)
from raw_dul import A_ASSOCIATE_AC, EXPLICIT_LE, PeerClosed, RawAssociation

CT = F.CT_IMAGE_STORAGE
N = 30


@pytest.fixture(scope="module")
def crash_corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    items = F.generate_corpus(d, patients=3, studies=1, series=2, instances=5, tag="crash")
    assert len(items) == N
    return items


def verify_acknowledged(server, acked, sent_sha):
    """After restart: each acknowledged instance has its object with the sent data set bytes."""
    for c in acked:
        p = object_path(server.data_dir, c.sop_instance)
        assert p.is_file(), f"acknowledged instance {c.sop_instance} lost after kill -9"
        _, ds, _ = split_part10(p.read_bytes())
        assert sha256(ds) == sent_sha[c.sop_instance], f"{p}: data set SHA-256 differs from what was sent"


def test_kill9_after_last_success(mifas, crash_corpus):
    s = mifas({"storage": {"duplicate_policy": "reject"}})
    sent_sha = {c.sop_instance: sha256(file_dataset_bytes(c.path)) for c in crash_corpus}
    assoc = pyn_associate(s, [(CT, [EXPLICIT_LE])])
    assert assoc.is_established
    acked = []
    for c in crash_corpus:
        st = assoc.send_c_store(c.path)
        assert st.Status == 0, f"0x{st.Status:04X}"
        acked.append(c)
    s.kill9()  # right after the last success response, no release, no flush opportunity
    assoc.abort()

    s.restart()  # start-up reconciliation runs here
    assert not spool_files(s.data_dir), "spool not emptied on start"
    verify_acknowledged(s, acked, sent_sha)
    # every acknowledged instance is in the index: storing it again is a duplicate (policy reject)
    assoc = pyn_associate(s, [(CT, [EXPLICIT_LE])])
    dup = [assoc.send_c_store(c.path).Status for c in acked]
    assoc.release()
    assert dup == [0x0111] * N, f"re-sent instances not all known to the index: {[hex(x) for x in dup]}"
    s.stop_ok()
    st = s.stats()
    assert st["instances"] == N and st["patients"] == 3 and st["studies"] == 3 and st["series"] == 6, st
    assert st["bytes"] == sum(p.stat().st_size for p in list_objects(s.data_dir))


def test_kill9_while_storing(mifas, crash_corpus):
    """kill -9 from another thread right after the 12th success while the SCU keeps sending."""
    s = mifas()
    sent_sha = {c.sop_instance: sha256(file_dataset_bytes(c.path)) for c in crash_corpus}
    killed = threading.Event()
    acked = []
    a = RawAssociation(s.host, s.port)
    assert a.associate(called=s.aet, contexts=[(1, CT, [EXPLICIT_LE])]).type == A_ASSOCIATE_AC
    try:
        for c in crash_corpus:
            data = file_dataset_bytes(c.path)
            if len(acked) == 12:
                # send the next object and kill while it is being received/stored
                threading.Thread(target=lambda: (s.kill9(), killed.set())).start()
            rsp = a.store(1, CT, c.sop_instance, data)
            if rsp.status == 0:
                acked.append(c)
    except (PeerClosed, OSError):
        pass
    finally:
        a.close()
    killed.wait(30)
    assert killed.is_set()
    assert len(acked) >= 12

    s.restart()
    assert not spool_files(s.data_dir), "spool not emptied on start"
    verify_acknowledged(s, acked, sent_sha)
    # anything else that made it to objects/ must be complete (never a torn file)
    for p in list_objects(s.data_dir):
        uid = p.name[:-4]
        _, ds, _ = split_part10(p.read_bytes())
        assert sha256(ds) == sent_sha[uid], f"torn object {p}"
    n_objects = len(list_objects(s.data_dir))
    s.stop_ok()
    st = s.stats()
    assert st["instances"] == n_objects
    assert len(acked) <= st["instances"] <= len(acked) + 1, (len(acked), st)


def test_restart_cleans_spool_leftovers(mifas, crash_corpus):
    """A spool file left by a crash mid-object is removed on the next start."""
    s = mifas()
    data = file_dataset_bytes(crash_corpus[0].path)
    a = RawAssociation(s.host, s.port)
    assert a.associate(called=s.aet, contexts=[(1, CT, [EXPLICIT_LE])]).type == A_ASSOCIATE_AC
    from raw_dul import c_store_rq
    a.send_fragments(1, c_store_rq(1, CT, crash_corpus[0].sop_instance), True, a.default_frag())
    a.send_fragments(1, data[: len(data) // 2], False, a.default_frag(), last=False)
    wait_until(lambda: spool_files(s.data_dir), 10, what="a spool file")
    s.kill9()
    a.close()
    assert spool_files(s.data_dir), "kill -9 should leave the half-received spool file behind"
    s.restart()
    assert not spool_files(s.data_dir), f"spool leftovers after restart: {spool_files(s.data_dir)}"
    assert not list_objects(s.data_dir)
    s.stop_ok()
    assert s.stats()["instances"] == 0


def test_reconcile_indexes_objects_missing_from_index(mifas, tmp_path, crash_corpus):
    """Objects on disk without index entries (index lost) are indexed again on start."""
    s = mifas()
    files = [c.path for c in crash_corpus[:10]]
    assoc = pyn_associate(s, [(CT, [EXPLICIT_LE])])
    assert [assoc.send_c_store(p).Status for p in files] == [0] * 10
    assoc.release()
    s.stop_ok()
    before = s.stats()
    # a copy of objects/ only, plus a file that is not DICOM: the start must not choke on it
    other = tmp_path / "index-lost"
    import shutil
    shutil.copytree(s.data_dir / "objects", other / "objects")
    (other / "objects" / "zz").mkdir(exist_ok=True)
    (other / "objects" / "zz" / "garbage.dcm").write_bytes(b"not dicom at all" * 10)
    from mifas_helpers import mifas_stats
    after = mifas_stats(other)
    assert {k: after[k] for k in ("patients", "studies", "series", "instances")} == \
        {k: before[k] for k in ("patients", "studies", "series", "instances")}, (before, after)
    s2 = mifas({"storage": {"duplicate_policy": "reject"}}, data_dir=other)
    assoc = pyn_associate(s2, [(CT, [EXPLICIT_LE])])
    assert [assoc.send_c_store(p).Status for p in files] == [0x0111] * 10
    assoc.release()
