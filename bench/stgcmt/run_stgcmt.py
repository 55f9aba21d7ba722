#!/usr/bin/env python3
"""Storage Commitment latency (issue 14, "Benchmark"): the time from the last C-STORE-RSP of a
300-instance study to the positive N-EVENT-REPORT, on three real HDFS sites (MiniDFSCluster,
tests/minidfs, on this host):

  - MIFAS ack "1",   commitment.policy "all": the report waits for replication to the two other
    sites and for every copy's SHA-256 read back (the replication lag made visible);
  - MIFAS ack "all", commitment.policy "all": the copies exist at the last C-STORE-RSP, only the
    read-back verification remains;
  - MIFAS embedded (local disk, one site), the same request, for reference;
  - the peer, Orthanc (Debian, its own Storage Commitment SCP: it checks that each instance is in
    its database; the report comes on a new association), same study, same client.

One client for all (pynetdicom): one association carries the 300 C-STOREs and then the N-ACTION;
the report is awaited on that association (MIFAS) or on the client's SCP (Orthanc). Each mode is
repeated STGCMT_REPEATS times (default 3) with a fresh data directory and site root; medians are
reported with the C-STORE time of the same runs.

  bench/stgcmt/run_stgcmt.py [--repeats N] [--count 300] [--no-results]

Writes a dated section into bench/RESULTS.md (unless --no-results) and prints it.
"""
from __future__ import annotations

import argparse
import datetime
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("MINIDFS_JAVA_OPTS", "-XX:+UseSerialGC -Xms128m -Xmx768m -Xss512k")

import minidfs  # noqa: E402
import dicom_fixtures as F  # noqa: E402
from mifas_helpers import MifasServer, free_port  # noqa: E402
from retrieve_peers import Orthanc  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from pynetdicom import AE, evt  # noqa: E402
from pynetdicom.sop_class import CTImageStorage, StorageCommitmentPushModel  # noqa: E402
import harness  # noqa: E402

WELL_KNOWN = "1.2.840.10008.1.20.1.1"


def site_config(sites, root: str, ack: str) -> str:
    lines = ["[storage]", f'ack = "{ack}"', "repair_interval_secs = 0", "",
             "[commitment]", 'policy = "all"', ""]
    for s in sites:
        lines += ["[[storage.sites]]", f'name = "{s.name}"', f'url = "{s.url}"']
        if len(s.namenodes) > 1:
            lines.append("namenodes = [" + ", ".join(f'"{n}"' for n in s.namenodes) + "]")
        lines += [f'root = "{root}"', "replication = 1"]
        conf = {k: v for k, v in s.client_conf().items() if k.startswith("dfs.client.")}
        if conf:
            lines.append("hadoop = { " + ", ".join(f'"{k}" = "{v}"' for k, v in conf.items()) + " }")
        lines.append("")
    return "\n".join(lines)


class Client:
    """pynetdicom: 300 C-STOREs then an N-ACTION on one association; reports on the association
    or on our SCP (for a peer that reports on a new association)."""

    def __init__(self, scp_port: int):
        self.reports: queue.Queue = queue.Queue()
        scp = AE(ae_title="BENCHMOD")
        scp.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        scp.add_supported_context(StorageCommitmentPushModel)
        self.server = scp.start_server(("127.0.0.1", scp_port), block=False,
                                       evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)])

    def _on_report(self, event):
        self.reports.put((time.perf_counter(), event.event_type, event.event_information))
        return 0x0000, None

    def run(self, host, port, aet, files, uids) -> tuple[float, float]:
        """(seconds of the C-STOREs, seconds from the last C-STORE-RSP to the report)"""
        ae = AE(ae_title="BENCHMOD")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
        ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate(host, port, ae_title=aet,
                             evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)])
        assert assoc.is_established, "association refused"
        try:
            t0 = time.perf_counter()
            for f in files:
                st = assoc.send_c_store(str(f))
                assert st and st.Status == 0, f"C-STORE {f}: {st}"
            t_last = time.perf_counter()
            ds = Dataset()
            ds.TransactionUID = generate_uid()
            refs = []
            for u in uids:
                item = Dataset()
                item.ReferencedSOPClassUID = CTImageStorage
                item.ReferencedSOPInstanceUID = u
                refs.append(item)
            ds.ReferencedSOPSequence = refs
            st, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, WELL_KNOWN)
            assert st and st.Status == 0, f"N-ACTION: {st}"
            t_report, event_type, info = self.reports.get(timeout=600)
            assert info.TransactionUID == ds.TransactionUID
            assert event_type == 1, f"event type {event_type}: {info}"
            return t_last - t0, t_report - t_last
        finally:
            assoc.release()

    def close(self):
        self.server.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=int(os.environ.get("STGCMT_REPEATS", 3)))
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--no-results", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mifas-stgcmt-"))
    corpus = F.generate_corpus(work / "corpus", patients=1, studies=1, series=3, instances=a.count // 3,
                               tag="bench-stgcmt")
    files = [c.path for c in corpus]
    uids = [c.sop_instance for c in corpus]
    mb = sum(f.stat().st_size for f in files) / 1e6
    client = Client(free_port())
    results: dict[str, list[tuple[float, float]]] = {}
    sites = minidfs.start_sites(work / "hdfs")
    try:
        for r in range(a.repeats):
            for mode in ("ack 1", "ack all", "embedded", "Orthanc"):
                d = work / f"{mode.replace(' ', '-')}-{r}"
                if mode == "Orthanc":
                    o = Orthanc(d, aet="ORTHANC",
                                modalities={"bench": ["BENCHMOD", "127.0.0.1", client.server.server_address[1]]}).start()
                    try:
                        results.setdefault(mode, []).append(client.run("127.0.0.1", o.dicom_port, "ORTHANC", files, uids))
                    finally:
                        o.stop()
                    continue
                cfg = None
                if mode != "embedded":
                    cfg = site_config(sites, f"/bench-{mode.replace(' ', '-')}-{r}", mode.split()[1])
                s = MifasServer(d, config=cfg).start()
                try:
                    results.setdefault(mode, []).append(client.run(s.host, s.port, s.aet, files, uids))
                finally:
                    s.stop()
                print(f"run {r + 1} {mode}: store {results[mode][-1][0]:.2f} s, report {results[mode][-1][1]:.2f} s",
                      flush=True)
    finally:
        client.close()
        for s in sites:
            s.close(timeout=60)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    today = datetime.date.today().isoformat()
    rows = []
    for mode, runs in results.items():
        store = statistics.median(x[0] for x in runs)
        rep = statistics.median(x[1] for x in runs)
        rows.append([mode, f"{store:.2f}", f"{rep:.2f}", f"{max(x[1] for x in runs):.2f}", str(len(runs))])
    section = (f"## {today} — Storage Commitment: last C-STORE-RSP → positive N-EVENT-REPORT (commit {rev})\n\n"
               f"`bench/stgcmt/run_stgcmt.py --repeats {a.repeats}`: {len(files)} CT instances ({mb:.0f} MB), one pynetdicom "
               "association (C-STOREs, then N-ACTION); three HDFS sites (MiniDFSCluster on this host, "
               "replication 1 each, no WAN shaping); commitment.policy \"all\" = durable and SHA-256 read back on the "
               "three sites. Orthanc (Debian, its own SCP; it checks its database only, report on a new "
               "association) is the peer, same client, same study. Medians over the repeats.\n\n"
               + harness.table(["mode", "C-STOREs (s)", "report after last RSP p50 (s)", "max (s)", "runs"], rows)
               + "\n")
    print(section)
    if not a.no_results:
        f = work / "section.md"
        f.write_text(section)
        harness.insert_run(REPO / "bench" / "RESULTS.md", f)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
