#!/usr/bin/env python3
"""DICOMweb QIDO-RS study search at 100,000 instances (issue 12, "Benchmark", second bullet), MIFAS
against Orthanc 1.10 with its DICOMweb plugin (Debian orthanc-dicomweb) holding the same data, in
the same run:

  - `GET /dicom-web/studies?PatientName=SMI*`: the first three letters of a drawn patient's family
    name and `*` (ASCII names only, so that both servers' matching rules agree);
  - `GET /dicom-web/studies?StudyDate=20190301-20190331`: one calendar month.

The data are the C-FIND benchmark's catalog (bench/find/catalog.py, seed 3, 1,000 patients x 2
studies x 5 series x 10 instances = 100,000 instances, 2,000 studies), written as small Part-10
files by the cargo example gen_part10 (8x8 pixels, so the run measures the index, not the disk).
MIFAS gets them through `mifas import`, Orthanc through 4 parallel DCMTK storescu. Every query is
sent to both, interleaved (MIFAS, Orthanc, ...), --repeats times, from one urllib client; MIFAS with
HTTP Basic (a portal user), Orthanc without authentication. Each answer is checked: both servers
return exactly the studies the catalog says match.

  bench/dicomweb/run_search.py [--patients 1000] [--queries 20] [--repeats 5] [--no-results]
      [--workdir /tmp/mifas-dwsearch] [--no-build]
Catalog and files are cached in the work dir; the servers' data are removed after the report.
"""
from __future__ import annotations

import argparse
import base64
import csv
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
from mifas_helpers import MIFAS_BIN, MifasServer  # noqa: E402
from retrieve_peers import Orthanc  # noqa: E402
from test_portal_auth import add_user  # noqa: E402

PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
PASSWORD = "portal-pass-1"  # test_portal_auth.add_user's default
STUDY_UID = "0020000D"


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def prepare(work: Path, patients: int, build: bool) -> tuple[Path, Path]:
    catalog, files = work / "catalog", work / f"files-{patients}"
    if not (catalog / "studies.tsv").exists():
        subprocess.run([sys.executable, str(REPO / "bench/find/catalog.py"), str(catalog),
                        "--patients", str(patients), "--seed", "3"], check=True)
    if build:
        subprocess.run(["cargo", "build", "--release", "--bin", "mifas", "--example", "gen_part10"],
                       cwd=REPO, check=True)
    done = files.with_suffix(".complete")
    if not done.exists():
        shutil.rmtree(files, ignore_errors=True)
        subprocess.run([str(REPO / "target/release/examples/gen_part10"), str(catalog), str(files)],
                       check=True, stdout=subprocess.DEVNULL)
        done.write_text("ok\n")
    return catalog, files


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def draw_queries(catalog: Path, n: int, seed: int = 11) -> list[tuple[str, str, set[str]]]:
    """(kind, query string, expected study UIDs) from the catalog, the oracle of both servers."""
    patients = read_tsv(catalog / "patients.tsv")
    studies = read_tsv(catalog / "studies.tsv")
    rng = random.Random(seed)
    ascii_patients = [p for p in patients if p["name"].isascii() and p["name"][:3].isalpha()]
    out = []
    by_patient: dict[str, list[str]] = {}
    for s in studies:
        by_patient.setdefault(s["patient_idx"], []).append(s["study_uid"])
    for _ in range(n):
        p = rng.choice(ascii_patients)
        prefix = p["name"].split("^")[0][:3].upper()
        want = {uid for q in patients if q["name"].upper().startswith(prefix)
                for uid in by_patient.get(q["idx"], [])}
        # `*` unescaped: Orthanc's plugin does not decode %2A in a query (it then matches nothing)
        out.append(("name", f"PatientName={prefix}*", want))
    for _ in range(n):
        year, month = rng.randint(2017, 2024), rng.randint(1, 12)
        last = (datetime.date(year + month // 12, month % 12 + 1, 1) - datetime.timedelta(days=1)).day
        lo, hi = f"{year}{month:02d}01", f"{year}{month:02d}{last:02d}"
        want = {s["study_uid"] for s in studies if lo <= s["date"] <= hi}
        out.append(("date", f"StudyDate={lo}-{hi}", want))
    return out


def qido(base: str, query: str, auth: str | None) -> tuple[float, set[str]]:
    req = urllib.request.Request(f"{base}/dicom-web/studies?{query}",
                                 headers={"Accept": "application/dicom+json"})
    if auth:
        req.add_header("Authorization", auth)
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        body = r.read()
    dt = time.perf_counter() - t
    found = json.loads(body) if body.strip() else []
    return dt, {s[STUDY_UID]["Value"][0] for s in found}


def load_orthanc(orthanc: Orthanc, files: Path) -> float:
    """4 parallel storescu, the series folders dealt round-robin; returns seconds."""
    folders = sorted(s for f in files.iterdir() if f.is_dir() for s in f.iterdir() if s.is_dir())
    groups = [folders[i::4] for i in range(4)]
    t = time.perf_counter()
    procs = [subprocess.Popen(["/usr/bin/storescu", "-aec", orthanc.aet, "+sd", "+r", "-nh",
                               "127.0.0.1", str(orthanc.dicom_port), *map(str, g)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "TCP_NODELAY": "1"})  # else Nagle: ~40 ms per C-STORE
             for g in groups if g]
    for p in procs:
        _, err = p.communicate(timeout=3600)
        assert p.returncode == 0, err[-2000:]
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=20, help="drawn queries per kind")
    ap.add_argument("--repeats", type=int, default=5, help="times each query is sent to each server")
    ap.add_argument("--workdir", default="/tmp/mifas-dwsearch")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    catalog, files = prepare(work, args.patients, not args.no_build)
    queries = draw_queries(catalog, args.queries)
    n_inst = args.patients * 100
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    log(f"importing {n_inst} instances into MIFAS")
    t = time.perf_counter()
    subprocess.run([str(MIFAS_BIN), "import", "--data-dir", str(run / "mifas" / "data"), str(files)],
                   check=True, stdout=subprocess.DEVNULL)
    mifas_load = time.perf_counter() - t
    mifas = MifasServer(run / "mifas", name="mifas")
    add_user(mifas.data_dir, "bench", "viewer")
    mifas.start()
    orthanc = Orthanc(run / "orthanc", config={
        "Plugins": [PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "SyncStorageArea": False}).start()
    times: dict[tuple[str, str], list[float]] = {}
    try:
        log(f"storing {n_inst} instances into Orthanc (4 x storescu)")
        orthanc_load = load_orthanc(orthanc, files)
        count = orthanc.get("/statistics")["CountInstances"]
        assert count == n_inst, f"Orthanc holds {count} instances, expected {n_inst}"
        auth = "Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
        servers = (("mifas", f"http://127.0.0.1:{mifas.http_port}", auth),
                   ("orthanc", f"http://127.0.0.1:{orthanc.http_port}", None))
        log(f"{len(queries)} queries x {args.repeats} repeats on each server")
        # one unmeasured round warms both servers' caches the same way
        for kind, q, want in queries:
            for who, base, a in servers:
                _, got = qido(base, q, a)
                assert got == want, f"{who} {q}: {len(got)} studies, catalog says {len(want)}"
        for _ in range(args.repeats):
            for kind, q, _ in queries:
                for who, base, a in servers:
                    dt, _ = qido(base, q, a)
                    times.setdefault((kind, who), []).append(dt)
    finally:
        mifas.stop()
        orthanc.stop()
    matches = {k: statistics.median(len(w) for kk, _, w in queries if kk == k) for k in ("name", "date")}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    rows = []
    claims = []
    for kind, label in (("name", "PatientName prefix (3 letters + `*`)"), ("date", "StudyDate one-month range")):
        m = statistics.median(times[(kind, "mifas")])
        o = statistics.median(times[(kind, "orthanc")])
        rows.append(f"| QIDO-RS `/studies`, {label}, p50 (median {matches[kind]:.0f} studies found) | "
                    f"{m * 1000:.2f} ms | {o * 1000:.2f} ms | **{o / m:.1f}×** |")
        claims.append((label, m, o))
    text = (
        f"## {now[:10]} — DICOMweb: QIDO-RS study search at {n_inst:,} instances vs Orthanc "
        f"(bench/dicomweb/run_search.py, commit {commit}, {now} UTC)\n\n"
        f"The C-FIND benchmark's catalog ({args.patients:,} patients, {args.patients * 2:,} studies, "
        f"{n_inst:,} instances of 8×8 pixels) in MIFAS (embedded, `mifas import` {mifas_load:.0f} s) and in "
        f"Orthanc 1.10 + DICOMweb plugin 1.7 (4 × storescu, {orthanc_load:.0f} s, SyncStorageArea off). "
        f"{args.queries} drawn queries per kind, each sent {args.repeats} times to each server, interleaved, "
        f"after one unmeasured round; one urllib client; every answer checked against the catalog.\n\n"
        "| | MIFAS | Orthanc | ratio |\n|---|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        "Claims-table rows:\n\n"
        + "\n".join(f"| DICOMweb QIDO-RS study search at {n_inst // 1000}k instances, {label}, p50 | "
                    f"{m * 1000:.2f} ms | Orthanc {o * 1000:.2f} ms | **{o / m:.1f}×** | ≥ 10×: "
                    f"**{'met' if o / m >= 10 else 'not met'}** | {now} | {commit} |"
                    for label, m, o in claims) + "\n"
    )
    print(text)
    if not args.no_results:
        section = work / "section.md"
        section.write_text(text)
        harness.insert_run(REPO / "bench" / "RESULTS.md", section)
    # last: removing 200,000 small files takes minutes on this disk (discard on unlink)
    shutil.rmtree(run, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
