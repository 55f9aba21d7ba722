#!/usr/bin/env python3
"""Soak (issue 13, "Tests and measurements"): 50 concurrent associations doing a mix of C-STORE,
C-FIND and C-MOVE against one `mifas serve` for 10 minutes; every operation must succeed, and
MIFAS's resident memory must stay bounded. Reports the operations done, the errors (must be 0),
and MIFAS's RSS and open file descriptors every 30 s (the curve), into bench/RESULTS.md.

Each of the --workers threads (pynetdicom) loops until the end: it opens an association, does one
operation, releases:
  - store (50 %): 5 small CT instances (64×64 16-bit) of a study of its own, sent by DCMTK storescu
    (its own association), each C-STORE 0x0000. Not pynetdicom: as a C-STORE SCU in 50 threads it
    misses about 1 in 700 C-STORE-RSPs (MIFAS's log shows the object stored and the response
    written; the client aborts at its DIMSE timeout; pynetdicom issues #842/#850 report the same
    with multithreaded send_c_store), which would be counted as MIFAS's errors;
  - find  (30 %): a STUDY-level C-FIND by PatientID of a study stored earlier, which must answer;
  - move  (20 %): C-MOVE of a stored study to a DCMTK storescp (Move Destination SOAKDEST), final
    status 0x0000 with no failed sub-operation.
Sampling: /proc/<pid>/status VmRSS and /proc/<pid>/fd every second; the report lists every 30 s
and the maximum of the first and of the last 2 minutes.

  bench/soak/run_soak.py [--minutes 10] [--workers 50] [--index-cache-mb 1024] [--no-results]
      [--workdir /tmp/mifas-soak]
"""
from __future__ import annotations

import argparse
import datetime
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import (StudyRootQueryRetrieveInformationModelFind,  # noqa: E402
                                  StudyRootQueryRetrieveInformationModelMove)

import harness  # noqa: E402
from mifas_helpers import MifasServer, free_port, wait_until  # noqa: E402

DEST = "SOAKDEST"
ROOT = "1.2.826.0.1.3680043.8.498."


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def ct(patient: str, study: str, series: str, n: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid(prefix=ROOT)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName, ds.PatientID = f"SOAK^{patient}", patient
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyDate, ds.StudyTime, ds.Modality = "20261205", "120000", "CT"
    ds.AccessionNumber, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = patient[-8:], "1", 1, n
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(64 * 64, dtype=np.uint16) * (n + 1) % 4096).tobytes()
    return ds


class Worker(threading.Thread):
    def __init__(self, idx: int, host: str, port: int, aet: str, until: float, stored: list, lock,
                 tmp: Path):
        super().__init__(daemon=True)
        self.idx, self.host, self.port, self.aet, self.until = idx, host, port, aet, until
        self.stored, self.lock = stored, lock
        self.ops = {"store": 0, "find": 0, "move": 0}
        self.errors: list[str] = []
        self.rng = random.Random(idx)
        self.tmp = tmp / f"w{idx:02d}"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.ae = AE(ae_title=f"SOAK{idx:02d}")
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = 60
        self.ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        self.ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)

    def store_with_storescu(self, patient: str) -> None:
        study, series = generate_uid(prefix=ROOT), generate_uid(prefix=ROOT)
        files = []
        for n in range(5):
            path = self.tmp / f"{n}.dcm"
            ds = ct(patient, study, series, n)
            ds.save_as(path, enforce_file_format=True)
            files.append(str(path))
        r = subprocess.run(["/usr/bin/storescu", "-v", "-aet", self.ae.ae_title, "-aec", self.aet,
                            self.host, str(self.port), *files],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "TCP_NODELAY": "1"})
        ok = r.stdout.count("Received Store Response (Success)") + r.stderr.count(
            "Received Store Response (Success)")
        if r.returncode != 0 or ok != 5:
            raise RuntimeError(f"storescu rc={r.returncode}, {ok} of 5 Success: {r.stderr[-300:]}")
        with self.lock:
            self.stored.append((patient, study))

    def run(self):
        seq = 0
        while time.monotonic() < self.until:
            with self.lock:
                have = list(self.stored[-200:])
            r = self.rng.random()
            op = "store" if r < 0.5 or not have else ("find" if r < 0.8 else "move")
            try:
                if op == "store":
                    # C-STORE through DCMTK storescu (its own association): see the docstring
                    seq += 1
                    self.store_with_storescu(f"P{self.idx:02d}{seq:06d}")
                    self.ops[op] += 1
                    continue
                assoc = self.ae.associate(self.host, self.port, ae_title=self.aet)
                if not assoc.is_established:
                    self.errors.append(f"{op}: association not established")
                    continue
                try:
                    if op == "find":
                        patient, study = self.rng.choice(have)
                        q = Dataset()
                        q.QueryRetrieveLevel, q.PatientID, q.StudyInstanceUID = "STUDY", patient, ""
                        found, final = [], None
                        for status, ident in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind):
                            if status and status.Status in (0xFF00, 0xFF01):
                                found.append(str(ident.StudyInstanceUID))
                            else:
                                final = status.Status if status else None
                        if final != 0 or found != [study]:
                            raise RuntimeError(f"C-FIND final {final}, found {found}")
                    else:
                        _, study = self.rng.choice(have)
                        q = Dataset()
                        q.QueryRetrieveLevel, q.StudyInstanceUID = "STUDY", study
                        final = None
                        for status, _ in assoc.send_c_move(q, DEST, StudyRootQueryRetrieveInformationModelMove):
                            if status and status.Status not in (0xFF00,):
                                final = status
                        if final is None or final.Status != 0 or final.get("NumberOfFailedSuboperations", 0):
                            raise RuntimeError(f"C-MOVE final {final}")
                    self.ops[op] += 1
                finally:
                    assoc.release()
            except Exception as e:  # every failure is counted and reported, the soak goes on
                self.errors.append(f"{op}: {e}")


def sample(pid: int) -> tuple[int, int]:
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--index-cache-mb", type=int, default=1024, help="storage.index_cache_mb")
    ap.add_argument("--workdir", default="/tmp/mifas-soak")
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    dest_port = free_port()
    (work / "dest").mkdir()
    storescp = subprocess.Popen(["/usr/bin/storescp", "--ignore", "-aet", DEST, str(dest_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "TCP_NODELAY": "1"})
    mifas = MifasServer(work / "mifas", name="mifas", config={
        "dicom": {"max_associations": max(64, args.workers + 8)},
        "storage": {"index_cache_mb": args.index_cache_mb},
        "remote_ae": [{"aet": DEST, "host": "127.0.0.1", "port": dest_port}]}).start()
    wait_until(lambda: subprocess.run(["/usr/bin/echoscu", "-aec", DEST, "127.0.0.1", str(dest_port)],
                                      capture_output=True).returncode == 0, 30, what="storescp")
    pid = mifas.proc.pid
    samples: list[tuple[float, int, int]] = []
    stored: list = []
    lock = threading.Lock()
    t0 = time.monotonic()
    until = t0 + args.minutes * 60
    workers = [Worker(i, mifas.host, mifas.port, mifas.aet, until, stored, lock, work / "sent")
               for i in range(args.workers)]
    log(f"{args.workers} workers for {args.minutes} min")
    try:
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            samples.append((time.monotonic() - t0, *sample(pid)))
            time.sleep(1)  # the sampling period, not a synchronisation
        for w in workers:
            w.join()
        alive = mifas.alive()
    finally:
        mifas.stop()
        storescp.terminate()
        storescp.wait(10)
    ops = {k: sum(w.ops[k] for w in workers) for k in ("store", "find", "move")}
    errors = [e for w in workers for e in w.errors]
    elapsed = samples[-1][0] if samples else 0
    first = [s for s in samples if s[0] <= 120]
    last = [s for s in samples if s[0] >= elapsed - 120]
    rss_first, rss_last = max(s[1] for s in first), max(s[1] for s in last)
    curve = [s for i, s in enumerate(samples) if i % 30 == 0] + [samples[-1]]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    mib = 1024 * 1024
    text = (
        f"## {now[:10]} — Soak: {args.workers} concurrent associations (store/find/move) for "
        f"{args.minutes:g} min (bench/soak/run_soak.py, commit {commit}, {now} UTC)\n\n"
        f"One embedded `mifas serve`; {args.workers} pynetdicom workers each looping associate → one "
        "operation → release (50 % C-STORE of 5 × 64×64 CT, 30 % C-FIND of a stored study, 20 % C-MOVE "
        "of a stored study to DCMTK storescp); C-STORE by DCMTK storescu, C-FIND and C-MOVE by pynetdicom; "
        f"storage.index_cache_mb = {args.index_cache_mb}; RSS and open descriptors of MIFAS sampled every second.\n\n"
        "| | value |\n|---|---:|\n"
        f"| operations: C-STORE associations (×5 instances) / C-FIND / C-MOVE | {ops['store']:,} / "
        f"{ops['find']:,} / {ops['move']:,} |\n"
        f"| errors (any non-success status, refused association, exception) | **{len(errors)}** |\n"
        f"| MIFAS alive at the end | {alive} |\n"
        f"| peak RSS, first 2 min / last 2 min | {rss_first / mib:.1f} MiB / {rss_last / mib:.1f} MiB |\n"
        f"| open descriptors, median / max | {statistics.median(s[2] for s in samples):.0f} / "
        f"{max(s[2] for s in samples)} |\n\n"
        "RSS curve (every 30 s): " + ", ".join(f"{s[0] / 60:.1f} min {s[1] / mib:.0f} MiB" for s in curve) + "\n\n"
        + (("First errors: " + "; ".join(errors[:5]) + "\n\n") if errors else "")
        + "Claims-table row:\n\n"
        f"| soak: {args.workers} concurrent associations (store/find/move) for {args.minutes:g} min | "
        f"{len(errors)} errors; peak RSS {rss_first / mib:.0f} MiB (first 2 min) → {rss_last / mib:.0f} MiB "
        f"(last 2 min) | — | — | 0 errors, RSS bounded: **{'met' if not errors and rss_last < 1.5 * rss_first + 16 * mib else 'not met'}** | {now} | {commit} |\n"
    )
    print(text)
    (work / "errors.txt").write_text("\n".join(errors) + "\n")
    section = work / "section.md"
    section.write_text(text)
    if not args.no_results:
        harness.insert_run(REPO / "bench" / "RESULTS.md", section)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
