#!/usr/bin/env python3
"""DICOMweb series benchmarks (issue 12, "Benchmark"), MIFAS against Orthanc 1.10 with its
DICOMweb plugin (Debian orthanc-dicomweb) holding the same data, in the same run:

  - WADO-RS series `/metadata` of a 500-instance CT series (512×512 16-bit): p50 over N requests
    (Orthanc's plugin reads every file for it with its default "Full" metadata mode; MIFAS
    answers from its index), and the first request of each;
  - WADO-RS retrieve of that series (`multipart/related; type="application/dicom"`, as stored):
    instances/s, p50 over N.

Requests are interleaved (MIFAS, Orthanc, MIFAS, ...) from one client — urllib for metadata,
curl to /dev/null for retrieve (urllib's reads, ~675 MB/s, were the bound of the first run) —
with HTTP Basic for MIFAS (a portal user) and none for Orthanc.

  bench/dicomweb/run_series.py [--instances 500] [--repeats 10] [--no-results]
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
from series_fixture import SeriesArchives  # noqa: E402


def fetch(url: str, auth: str | None, accept: str) -> tuple[float, int]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    if auth:
        req.add_header("Authorization", auth)
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        n = len(r.read())
    return time.perf_counter() - t, n


def curl(url: str, auth: str | None, accept: str) -> tuple[float, int]:
    """The same request through curl (C, writes to /dev/null): a client far faster than the
    servers, so a retrieve measures the server, not urllib's reads."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{size_download} %{http_code}",
           "-H", f"Accept: {accept}", url]
    if auth:
        cmd[1:1] = ["-H", f"Authorization: {auth}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout.split()
    assert out[2] == "200", out
    return float(out[0]), int(out[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mifas-dw-bench-"))
    archives = SeriesArchives(work, instances=args.instances).start()
    items, study, series, mifas = archives.items, archives.study, archives.series, archives.mifas
    try:
        auth = archives.mifas_auth
        path_meta = f"/dicom-web/studies/{study}/series/{series}/metadata"
        path_series = f"/dicom-web/studies/{study}/series/{series}"
        ours, theirs = archives.mifas_url, archives.orthanc_url
        meta = {"mifas": [], "orthanc": []}
        sizes = {}
        for i in range(args.repeats):
            for who, base, a in (("mifas", ours, auth), ("orthanc", theirs, None)):
                dt, n = fetch(base + path_meta, a, "application/dicom+json")
                meta[who].append(dt)
                sizes[who] = n
        wado = {"mifas": [], "orthanc": []}
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        for i in range(max(3, args.repeats // 2)):
            for who, base, a in (("mifas", ours, auth), ("orthanc", theirs, None)):
                dt, n = curl(base + path_series, a, accept)
                wado[who].append(dt)
                sizes[f"{who}-series"] = n
        # the bound of a retrieve on this machine: reading the stored files (page cache) to
        # /dev/null with cat, no HTTP, no multipart
        files = sorted(str(f) for f in (mifas.data_dir / "objects").rglob("*") if f.is_file())
        raw = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)
            raw.append(time.perf_counter() - t)
    finally:
        archives.stop()
    m50, o50 = statistics.median(meta["mifas"]), statistics.median(meta["orthanc"])
    w50, ow50 = statistics.median(wado["mifas"]), statistics.median(wado["orthanc"])
    n = len(items)
    r50 = statistics.median(raw)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    text = (
        f"## {now[:10]} — DICOMweb: series metadata and retrieve of a {n}-instance CT series vs Orthanc "
        f"(bench/dicomweb/run_series.py, commit {commit}, {now} UTC)\n\n"
        f"One {n}-instance series of 512×512 16-bit CT in MIFAS (embedded, local disk) and in Orthanc "
        f"1.10 + DICOMweb plugin 1.7 (default \"Full\" metadata), one client (urllib for metadata, curl for retrieve), requests interleaved, "
        f"{args.repeats} metadata and {len(wado['mifas'])} retrieve repeats.\n\n"
        "| | MIFAS | Orthanc | ratio |\n|---|---:|---:|---:|\n"
        f"| series `/metadata` p50 | {m50 * 1000:.1f} ms ({sizes['mifas'] / 1e6:.2f} MB) | "
        f"{o50 * 1000:.1f} ms ({sizes['orthanc'] / 1e6:.2f} MB) | **{o50 / m50:.1f}×** |\n"
        f"| series `/metadata`, first request | {meta['mifas'][0] * 1000:.1f} ms | {meta['orthanc'][0] * 1000:.1f} ms | "
        f"{meta['orthanc'][0] / meta['mifas'][0]:.1f}× |\n"
        f"| WADO-RS series retrieve p50, instances/s | {n / w50:.0f} ({w50:.2f} s, {sizes['mifas-series'] / 1e6:.0f} MB) | "
        f"{n / ow50:.0f} ({ow50:.2f} s) | **{ow50 / w50:.2f}×** |\n"
        f"| bound: `cat` of MIFAS's {len(files)} stored files to /dev/null (page cache), instances/s | "
        f"{n / r50:.0f} ({r50:.2f} s) | — | MIFAS at {r50 / w50:.2f}× of it |\n"
    )
    print(text)
    if not args.no_results:
        section = work / "section.md"
        section.write_text(text)
        harness.insert_run(REPO / "bench" / "RESULTS.md", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
