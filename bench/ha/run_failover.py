#!/usr/bin/env python3
"""HA failover time (issue 11, "Benchmark"): from killing the active namenode to the first
successful write through the new one, over N trials (default 20), with the longest gap a
C-STORE sender saw and the number of failed C-STOREs.

Set-up (all on this host): one HA site of our MiniDFSCluster launcher (2 namenodes, 2 datanodes)
as MIFAS's only storage site (ack "1": every C-STORE waits for that site), and MIFAS's HA monitor
watching it with its default timings (probe every 500 ms, 400 ms timeout, down after 3 failed
probes) except the cooldown, lowered from 30 s to 2 s so trials can follow each other (the
cooldown only holds a *second* failover of a site; it adds nothing to the first). The VM driver
is the tests' launcher control (power-off = kill the namenode, restart = start it again).

A pynetdicom sender stores small CT instances back to back on one association during the whole
run. Per trial: wait until the site is settled (one active, one standby, nothing restarting),
kill the active namenode through the launcher, and measure
  - write recovery: kill -> the first C-STORE-RSP whose write went through the new active (the
    first response later than 100 ms after the kill: a write that had reached HDFS before the
    kill answers within milliseconds);
  - the monitor's own view: kill -> `namenode_down` event (detection), -> `promoted`;
  - the gap: the longest time between two consecutive C-STORE-RSPs in the trial.

  bench/ha/run_failover.py [--trials 20] [--no-results]

Anchors (not run here; see RESULTS.md): Hadoop's ZKFC needs its ZooKeeper session timeout
(ha.zookeeper.session-timeout.ms, 10 s by default) to notice a dead host and up to its health
check RPC timeout (ha.health-monitor.rpc-timeout.ms, 45 s) for a hung namenode; the thesis
probed every 5 minutes.
"""
from __future__ import annotations

import argparse
import datetime
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

import dicom_fixtures as F  # noqa: E402
import harness  # noqa: E402
import minidfs as M  # noqa: E402
from ha_rig import LauncherControl, archive_config, settled, wait_status  # noqa: E402
from mifas_helpers import MifasServer  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import CTImageStorage  # noqa: E402

SITE = "haBench"


class Sender(threading.Thread):
    """C-STOREs back to back on one association; records (sent, answered, status) per store."""

    def __init__(self, server: MifasServer, template):
        super().__init__(daemon=True)
        self.server = server
        self.template = template
        self.records: list[tuple[float, float, int]] = []
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self):
        ae = AE(ae_title="HABENCH")
        ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
        ae.dimse_timeout = 300
        ae.network_timeout = 300
        assoc = ae.associate(self.server.host, self.server.port, ae_title=self.server.aet)
        if not assoc.is_established:
            self.error = "association refused"
            return
        try:
            while not self.stop.is_set():
                ds = self.template.copy()
                ds.SOPInstanceUID = generate_uid()
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                sent = time.monotonic()
                status = assoc.send_c_store(ds)
                done = time.monotonic()
                code = int(getattr(status, "Status", 0xFFFF)) if status else 0xFFFF
                self.records.append((sent, done, code))
                if code != 0:
                    self.error = f"C-STORE status 0x{code:04X}"
        finally:
            assoc.release()


def event_times(log: Path, kind: str, after_wall: float) -> list[float]:
    """Wall-clock times of the monitor's `kind` events logged after `after_wall`."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if f'event="{kind}"' not in line:
            continue
        stamp = line.split(" ", 1)[0]
        try:
            t = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        if t >= after_wall:
            out.append(t)
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mifas-ha-bench-"))
    sites = M.start_sites(work / "hdfs", ({"name": SITE, "namenodes": 2, "datanodes": 2},))
    site = sites[0]
    ctl = LauncherControl(site)
    server = MifasServer(work / "mifas", config=archive_config(site, ctl.addr, cooldown_ms=2000),
                         name="mifas").start()
    item = F.generate_corpus(work / "tpl", patients=1, studies=1, series=1, instances=1, tag="habench",
                             rows=64, cols=64)[0]
    import pydicom
    template = pydicom.dcmread(str(item.path))
    sender = Sender(server, template)
    rows = []
    try:
        active = "nn0"
        wait_status(server, settled(SITE, active), 120, "settled before the first trial")
        sender.start()
        for trial in range(args.trials):
            wait_status(server, settled(SITE, active), 180, f"settled before trial {trial + 1}")
            # a few stores in the settled state first
            n0 = len(sender.records)
            deadline = time.monotonic() + 30
            while len(sender.records) < n0 + 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            idx = int(active[-1])
            wall = time.time()
            t0 = time.monotonic()
            ctl.ok(f"kill-namenode {idx}")
            new_active = "nn1" if active == "nn0" else "nn0"
            # wait for the first store answered well after the kill
            deadline = time.monotonic() + 120
            first = None
            while time.monotonic() < deadline and first is None:
                for sent, done, code in list(sender.records[n0:]):
                    if done > t0 + 0.1 and code == 0:
                        first = done
                        break
                time.sleep(0.01)
            if first is None:
                raise SystemExit(f"trial {trial + 1}: no C-STORE completed within 120 s of the kill")
            wait_status(server, settled(SITE, new_active), 180, f"trial {trial + 1}: rejoined")
            log = server.log_path
            down = event_times(log, "namenode_down", wall)
            promoted = event_times(log, "promoted", wall)
            recs = [r for r in sender.records[n0:]]
            dones = [r[1] for r in recs]
            gap = max((b - a for a, b in zip(dones, dones[1:])), default=0.0)
            rows.append({
                "recovery": first - t0,
                "detect": (down[0] - wall) if down else float("nan"),
                "promoted": (promoted[0] - wall) if promoted else float("nan"),
                "gap": gap,
                "failed": sum(1 for r in recs if r[2] != 0),
            })
            print(f"trial {trial + 1:2d}: kill {active} -> write through {new_active} "
                  f"{rows[-1]['recovery']:.2f} s (detected {rows[-1]['detect']:.2f} s, promoted "
                  f"{rows[-1]['promoted']:.2f} s), longest C-STORE gap {gap:.2f} s", flush=True)
            active = new_active
    finally:
        sender.stop.set()
        sender.join(timeout=60)
        server.stop()
        ctl.close()
        for s in sites:
            s.close()
    failed = sum(r["failed"] for r in rows) + (1 if sender.error else 0)
    rec = [r["recovery"] for r in rows]
    det = [r["detect"] for r in rows]
    pro = [r["promoted"] for r in rows]
    gaps = [r["gap"] for r in rows]
    stores = len(sender.records)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    today = datetime.date.today().isoformat()
    text = (
        f"## {today} — HA failover: kill the active namenode → first write through the new one "
        f"(bench/ha/run_failover.py, commit {commit})\n\n"
        f"{len(rows)} trials on one MiniDFSCluster HA site (2 namenodes, 2 datanodes) that is MIFAS's "
        f"only storage site (ack \"1\"); monitor defaults (500 ms probes, 400 ms timeout, k = 3), "
        f"cooldown 2 s; one pynetdicom sender storing 64×64 CT instances back to back "
        f"({stores} C-STOREs in all, {failed} failed{', sender error: ' + sender.error if sender.error else ''}).\n\n"
        "| | p50 | p95 | max |\n|---|---|---|---|\n"
        f"| kill → first C-STORE written through the new active | {statistics.median(rec):.2f} s | {pct(rec, .95):.2f} s | {max(rec):.2f} s |\n"
        f"| kill → `namenode_down` (detection) | {statistics.median(det):.2f} s | {pct(det, .95):.2f} s | {max(det):.2f} s |\n"
        f"| kill → `promoted` (fenced, standby made active) | {statistics.median(pro):.2f} s | {pct(pro, .95):.2f} s | {max(pro):.2f} s |\n"
        f"| longest gap between two C-STORE-RSPs | {statistics.median(gaps):.2f} s | {pct(gaps, .95):.2f} s | {max(gaps):.2f} s |\n\n"
        "Anchors (not measured here): ZKFC ≥ 10 s for a dead host (ZooKeeper session timeout), up to "
        "45 s for a hung namenode (health-monitor RPC timeout); Pacemaker/DRBD set-ups 20–40 s; the "
        "thesis probed every 5 minutes.\n"
    )
    print(text)
    if not args.no_results:
        section = work / "section.md"
        section.write_text(text)
        harness.insert_run(REPO / "bench" / "RESULTS.md", section)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
