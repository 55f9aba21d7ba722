"""Power loss, not just kill -9: the data directory lives on powercut_fs (tests/powercut/), a FUSE
file system of ours that keeps writes in memory and, on a simulated power cut, throws away
everything that was not fsynced (file data: fsync of the file; names: fsync of the directory).
kill -9 alone leaves the page cache intact, so it cannot tell a missing fsync from a present one.

Every acknowledged instance must come back present, byte-identical and indexed; nothing torn
may be indexed. Built by `cargo build --release --examples`; needs /dev/fuse and root (or
fusermount3) to mount. A missing piece is a failure with its reason, never a skip."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

import dicom_fixtures as F
from mifas_helpers import (MIFAS_BIN, file_dataset_bytes, list_objects, object_path,
                           pyn_associate, sha256, spool_files, split_part10)
from raw_dul import A_ASSOCIATE_AC, EXPLICIT_LE, PeerClosed, RawAssociation

CT = F.CT_IMAGE_STORAGE
POWERCUT_FS = Path(os.environ.get("POWERCUT_FS", MIFAS_BIN.parent / "examples" / "powercut_fs"))
READY_TIMEOUT = 30


class PowercutFs:
    """One powercut_fs process: mounted at `mountpoint` until `close`."""

    def __init__(self, mountpoint: Path, log: Path):
        self.mountpoint = mountpoint
        self.log = log
        self.lines: queue.Queue[str | None] = queue.Queue()
        err = open(log, "ab")
        self.proc = subprocess.Popen([str(POWERCUT_FS), str(mountpoint)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=err, text=True)
        err.close()
        threading.Thread(target=self._read, daemon=True).start()
        self._expect("READY", "mount")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _expect(self, prefix: str, what: str) -> str:
        try:
            line = self.lines.get(timeout=READY_TIMEOUT)
        except queue.Empty:
            line = None
        if line is None or not line.startswith(prefix):
            self.proc.poll()
            pytest.fail(f"powercut_fs: no {prefix} after {what} (exit code {self.proc.returncode}, "
                        f"line {line!r}); FUSE cannot be used here?\n{self.log.read_text(errors='replace')}",
                        pytrace=False)
        return line

    def _command(self, cmd: str):
        assert self.proc.poll() is None, f"powercut_fs died:\n{self.log.read_text(errors='replace')}"
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def cut(self):
        """Power cut: unsynced data and names are lost; the durable state is mounted again."""
        self._command("cut")
        self._expect("READY", "the power cut")

    def enospc(self, what: str | int):
        """File fsyncs fail with ENOSPC: "all", one inode number (`st_ino`), or "off"."""
        self._command(f"enospc {what}")
        self._expect("OK", f"enospc {what}")

    def stats(self) -> dict[str, int]:
        self._command("stats")
        line = self._expect("STATS", "stats")
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()
        # a crashed file system leaves a dead mount behind: detach it
        if os.path.ismount(self.mountpoint):
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)


@pytest.fixture
def powercut_fs(tmp_path):
    """Request it before `mifas`: fixtures are torn down in reverse order, and the servers must
    be gone before the file system under them unmounts."""
    if not POWERCUT_FS.exists():
        pytest.fail(f"{POWERCUT_FS} is not built: run `cargo build --release --examples`", pytrace=False)
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse does not exist: FUSE is needed for the power-cut test", pytrace=False)
    mnt = tmp_path / "powercut"
    mnt.mkdir()
    fs = PowercutFs(mnt, tmp_path / "powercut_fs.log")
    yield fs
    fs.close()


@pytest.fixture(scope="module")
def cut_corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("powercut")
    return F.generate_corpus(d, patients=1, studies=1, series=1, instances=24, tag="powercut")


def indexed_uids(server, item) -> set[str]:
    """SOP Instance UIDs the archive answers for the corpus' series (C-FIND, IMAGE level)."""
    assoc = pyn_associate(server, [(StudyRootQueryRetrieveInformationModelFind, [EXPLICIT_LE])])
    assert assoc.is_established
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = item.study
    q.SeriesInstanceUID = item.series
    q.SOPInstanceUID = ""
    found, final = set(), None
    for status, ident in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind):
        if status is not None and status.Status in (0xFF00, 0xFF01):
            found.add(str(ident.SOPInstanceUID))
        elif status is not None:
            final = status.Status
    assoc.release()
    assert final == 0, f"C-FIND ended with {final!r}"
    return found


def objects_indexed_at_start(server) -> int:
    """`objects_indexed` of the last start's reconciliation: objects found without an index entry."""
    starts = server.log_path.read_text(errors="replace").split("===== start #")
    m = re.findall(r"reconciliation done.*?objects_indexed=(\d+)", starts[-1])
    assert m, f"no reconciliation line in the last start's log:\n{server.log_tail()}"
    return int(m[-1])


def check_complete(data_dir: Path, uid: str, sent: dict[str, str]):
    p = object_path(data_dir, uid)
    assert p.is_file(), f"object of {uid} missing after the power cut"
    _, ds, _ = split_part10(p.read_bytes())
    assert sha256(ds) == sent[uid], f"{p}: data set differs from what was sent (torn by the power cut)"


def test_power_cut_after_last_success(powercut_fs, mifas, cut_corpus):
    data_dir = powercut_fs.mountpoint / "data"
    s = mifas({"storage": {"duplicate_policy": "reject"}}, data_dir=data_dir)
    sent = {c.sop_instance: sha256(file_dataset_bytes(c.path)) for c in cut_corpus}
    assoc = pyn_associate(s, [(CT, [EXPLICIT_LE])])
    assert assoc.is_established
    statuses = [assoc.send_c_store(c.path).Status for c in cut_corpus]
    assert statuses == [0] * len(cut_corpus), [hex(x) for x in statuses]
    s.kill9()  # right after the last C-STORE-RSP
    assoc.abort()
    powercut_fs.cut()

    s.restart()
    # The index itself survived: reconciliation found nothing to re-index (sled's flush and the
    # fsync of its directory held), so the archive did not need to heal itself.
    assert objects_indexed_at_start(s) == 0, "acknowledged entries were lost from the index"
    assert not spool_files(data_dir)
    for c in cut_corpus:
        check_complete(data_dir, c.sop_instance, sent)
    assert indexed_uids(s, cut_corpus[0]) == set(sent), "acknowledged instances not all indexed"
    # storing them again is a duplicate for each one (policy reject): the index knows them all
    assoc = pyn_associate(s, [(CT, [EXPLICIT_LE])])
    dup = [assoc.send_c_store(c.path).Status for c in cut_corpus]
    assoc.release()
    assert dup == [0x0111] * len(cut_corpus), [hex(x) for x in dup]
    s.stop_ok()
    st = s.stats()
    assert st["instances"] == len(cut_corpus) and st["series"] == 1, st
    assert st["bytes"] == sum(p.stat().st_size for p in list_objects(data_dir))


def test_power_cut_while_storing(powercut_fs, mifas, cut_corpus):
    """kill -9 and the power cut land while the SCU keeps sending: the acknowledged instances
    survive, the one in flight is either complete and indexed or absent, never torn."""
    data_dir = powercut_fs.mountpoint / "data"
    s = mifas(data_dir=data_dir)
    sent = {c.sop_instance: sha256(file_dataset_bytes(c.path)) for c in cut_corpus}
    killed = threading.Event()
    acked: list[str] = []
    a = RawAssociation(s.host, s.port)
    assert a.associate(called=s.aet, contexts=[(1, CT, [EXPLICIT_LE])]).type == A_ASSOCIATE_AC
    try:
        for c in cut_corpus:
            if len(acked) == 10:
                threading.Thread(target=lambda: (s.kill9(), killed.set())).start()
            rsp = a.store(1, CT, c.sop_instance, file_dataset_bytes(c.path))
            if rsp.status == 0:
                acked.append(c.sop_instance)
    except (PeerClosed, OSError):
        pass
    finally:
        a.close()
    assert killed.wait(30)
    assert len(acked) >= 10
    powercut_fs.cut()

    s.restart()
    assert not spool_files(data_dir)
    for uid in acked:
        check_complete(data_dir, uid, sent)
    indexed = indexed_uids(s, cut_corpus[0])
    assert set(acked) <= indexed, f"acknowledged but not indexed: {set(acked) - indexed}"
    extra = indexed - set(acked)
    # at most the one object in flight when the process died, and only complete
    assert len(extra) <= 1, f"indexed without acknowledgement: {extra}"
    for uid in extra:
        check_complete(data_dir, uid, sent)
    s.stop_ok()
    st = s.stats()
    assert st["instances"] == len(indexed) == len(list_objects(data_dir)), (st, len(indexed))


def test_power_cut_during_replace(powercut_fs, mifas, cut_corpus, tmp_path):
    """duplicate_policy = replace: after a cut right after the replacements were acknowledged,
    each instance is its replacement, complete and indexed once; no old generation is left."""
    data_dir = powercut_fs.mountpoint / "data"
    s = mifas({"storage": {"duplicate_policy": "replace"}}, data_dir=data_dir)
    items = cut_corpus[:6]
    second = []
    for i, c in enumerate(items):
        ds = dcmread(c.path)
        ds.PatientComments = f"second version {i}"
        second.append(F.write_part10(ds, tmp_path / f"second{i}.dcm"))
    assoc = pyn_associate(s, [(CT, [EXPLICIT_LE])])
    assert [assoc.send_c_store(c.path).Status for c in items] == [0] * len(items)
    assert [assoc.send_c_store(p).Status for p in second] == [0] * len(items)
    s.kill9()
    assoc.abort()
    powercut_fs.cut()

    s.restart()
    assert objects_indexed_at_start(s) == 0
    want = {c.sop_instance: sha256(file_dataset_bytes(p)) for c, p in zip(items, second)}
    for uid in want:
        check_complete(data_dir, uid, want)
    assert indexed_uids(s, items[0]) == set(want)
    s.stop_ok()
    st = s.stats()
    assert st["instances"] == len(items), st
    assert len(list_objects(data_dir)) == len(items), list_objects(data_dir)
    assert st["bytes"] == sum(p.stat().st_size for p in list_objects(data_dir))


def test_failed_replace_keeps_the_old_copy(powercut_fs, mifas, cut_corpus, tmp_path):
    """duplicate_policy = replace and the replacement's fsync fails (ENOSPC): the peer gets
    0xA700, and the stored copy, its index entry and its bytes are the old ones — also after a
    power cut and a restart."""
    data_dir = powercut_fs.mountpoint / "data"
    s = mifas({"storage": {"duplicate_policy": "replace"}}, data_dir=data_dir)
    item = cut_corpus[0]
    ds = dcmread(item.path)
    ds.PatientComments = "second version"
    second = F.write_part10(ds, tmp_path / "second.dcm")
    old = {item.sop_instance: sha256(file_dataset_bytes(item.path))}
    assoc = pyn_associate(s, [(CT, [EXPLICIT_LE])])
    assert assoc.send_c_store(item.path).Status == 0
    powercut_fs.enospc("all")
    st = assoc.send_c_store(second)
    powercut_fs.enospc("off")
    assert st.Status == 0xA700, f"0x{st.Status:04X} {st.get('ErrorComment')}"
    check_complete(data_dir, item.sop_instance, old)
    assert len(list_objects(data_dir)) == 1
    assert indexed_uids(s, item) == {item.sop_instance}
    s.kill9()
    assoc.abort()
    powercut_fs.cut()

    s.restart()
    assert objects_indexed_at_start(s) == 0
    check_complete(data_dir, item.sop_instance, old)
    assert len(list_objects(data_dir)) == 1
    s.stop_ok()
    st = s.stats()
    assert st["instances"] == 1 and st["bytes"] == object_path(data_dir, item.sop_instance).stat().st_size
