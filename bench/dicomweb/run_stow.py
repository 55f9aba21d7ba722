#!/usr/bin/env python3
"""DICOMweb STOW-RS of 1,000 CT instances from 4 parallel clients (issue 12, "Benchmark", third
bullet), MIFAS against Orthanc 1.10 with its DICOMweb plugin (Debian orthanc-dicomweb), same run.

The instances are bench/generate.py's ingest corpus (512×512 16-bit CT, ~0.5 MB each, 10 patients),
dealt into 4 parts. Each client is a curl process that POSTs its part to `/dicom-web/studies` as
`multipart/related; type="application/dicom"` bodies of --batch instances each, one request after
the other (bodies built before the clock starts, so the clients cost almost nothing). A trial
starts both servers empty; the clock runs from the first request to the last response. Trials
alternate MIFAS, Orthanc, MIFAS, ... Both servers make every object durable before answering
(MIFAS always; Orthanc with SyncStorageArea true, as in the C-STORE ingest benchmark). Every
response must be 200 and the server must then hold all instances (MIFAS: QIDO-RS count; Orthanc:
/statistics).

The bound: the same bytes written by one Python loop as 1,000 files with fsync + rename in 4
threads (the work a durable store cannot skip), measured in the same run.

  bench/dicomweb/run_stow.py [--count 1000] [--batch 10] [--trials 3] [--no-results]
      [--workdir /tmp/mifas-dwstow]
"""
from __future__ import annotations

import argparse
import base64
import concurrent.futures
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
from mifas_helpers import MifasServer  # noqa: E402
from retrieve_peers import Orthanc  # noqa: E402
from test_portal_auth import add_user  # noqa: E402

PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
PASSWORD = "portal-pass-1"  # test_portal_auth.add_user's default
CLIENTS = 4


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def corpus(work: Path, count: int) -> list[list[Path]]:
    out = work / f"ct-{count}"
    if not out.with_suffix(".complete").exists():
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([sys.executable, str(REPO / "bench/generate.py"), "ct", str(out), "--count",
                        str(count), "--parts", str(CLIENTS)], check=True)
    return [sorted((out / f"part{p}").glob("*.dcm")) for p in range(CLIENTS)]


def bodies(work: Path, parts: list[list[Path]], batch: int) -> list[list[tuple[Path, str]]]:
    """Per client: (body file, boundary) of each request, built once."""
    out_dir = work / f"bodies-{batch}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    clients = []
    for c, files in enumerate(parts):
        reqs = []
        for i in range(0, len(files), batch):
            boundary = uuid.uuid4().hex
            path = out_dir / f"c{c}-{i:05d}.body"
            with open(path, "wb") as f:
                for p in files[i:i + batch]:
                    f.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
                    f.write(p.read_bytes())
                    f.write(b"\r\n")
                f.write(f"--{boundary}--\r\n".encode())
            reqs.append((path, boundary))
        clients.append(reqs)
    return clients


def client(url: str, auth: str | None, reqs: list[tuple[Path, str]]) -> None:
    for path, boundary in reqs:
        cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
               "-H", f'Content-Type: multipart/related; type="application/dicom"; boundary={boundary}',
               "-H", "Accept: application/dicom+json", "--data-binary", f"@{path}", url]
        if auth:
            cmd[1:1] = ["-H", f"Authorization: {auth}"]
        code = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
        if code != "200":
            raise AssertionError(f"STOW {url} {path.name}: HTTP {code}")


def trial(who: str, work: Path, reqs: list[list[tuple[Path, str]]], count: int) -> float:
    d = work / f"run-{who}"
    shutil.rmtree(d, ignore_errors=True)
    if who == "mifas":
        server = MifasServer(d, name="mifas")
        add_user(server.data_dir, "bench", "uploader")
        server.start()
        base, auth = f"http://127.0.0.1:{server.http_port}", \
            "Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    else:
        server = Orthanc(d, config={"Plugins": [PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
                                    "SyncStorageArea": True}).start()
        base, auth = f"http://127.0.0.1:{server.http_port}", None
    try:
        url = f"{base}/dicom-web/studies"
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            for f in [pool.submit(client, url, auth, r) for r in reqs]:
                f.result()
        dt = time.perf_counter() - t
        if who == "mifas":
            # count through the studies' NumberOfStudyRelatedInstances (0020,1208)
            req = urllib.request.Request(f"{base}/dicom-web/studies?includefield=00201208",
                                         headers={"Authorization": auth, "Accept": "application/dicom+json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                held = sum(int(s["00201208"]["Value"][0]) for s in json.loads(r.read()))
        else:
            held = server.get("/statistics")["CountInstances"]
        assert held == count, f"{who} holds {held} instances after STOW, expected {count}"
        return dt
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


def raw_bound(work: Path, parts: list[list[Path]]) -> float:
    """Write + fsync + rename of every file, CLIENTS threads: seconds."""
    d = work / "raw"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()

    def write(files):
        for p in files:
            data = p.read_bytes()
            tmp = d / (p.name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, d / p.name)
        fd = os.open(d, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(write, parts))
    dt = time.perf_counter() - t
    shutil.rmtree(d, ignore_errors=True)
    return dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=10, help="instances per STOW request")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/mifas-dwstow")
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    parts = corpus(work, args.count)
    n = sum(len(p) for p in parts)
    reqs = bodies(work, parts, args.batch)
    mb = sum(p.stat().st_size for part in parts for p in part) / 1e6
    times: dict[str, list[float]] = {"mifas": [], "orthanc": [], "raw": []}
    for i in range(args.trials):
        for who in ("mifas", "orthanc"):
            log(f"trial {i + 1}/{args.trials}: {who}")
            times[who].append(trial(who, work, reqs, n))
        times["raw"].append(raw_bound(work, parts))
    shutil.rmtree(work / f"bodies-{args.batch}", ignore_errors=True)
    m, o, r = (statistics.median(times[k]) for k in ("mifas", "orthanc", "raw"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    text = (
        f"## {now[:10]} — DICOMweb: STOW-RS of {n:,} CT instances from {CLIENTS} clients vs Orthanc "
        f"(bench/dicomweb/run_stow.py, commit {commit}, {now} UTC)\n\n"
        f"{n:,} × 512×512 16-bit CT ({mb:.0f} MB), {CLIENTS} curl clients each POSTing its quarter as "
        f"`multipart/related` bodies of {args.batch} instances, one after the other; {args.trials} trials "
        f"per server, alternating, each on an empty server; MIFAS embedded (local disk), Orthanc 1.10 + "
        f"DICOMweb plugin 1.7 with SyncStorageArea true. All responses 200, all instances held after "
        f"each trial.\n\n"
        "| | MIFAS | Orthanc | ratio |\n|---|---:|---:|---:|\n"
        f"| STOW-RS, instances/s (median of {args.trials}) | {n / m:.0f} ({m:.2f} s) | {n / o:.0f} ({o:.2f} s) | "
        f"**{o / m:.2f}×** |\n"
        f"| all trials, s | {', '.join(f'{t:.2f}' for t in times['mifas'])} | "
        f"{', '.join(f'{t:.2f}' for t in times['orthanc'])} | |\n"
        f"| bound: the same files written + fsync + rename by {CLIENTS} threads, instances/s | {n / r:.0f} ({r:.2f} s) "
        f"| — | MIFAS at {r / m:.2f}× of it |\n\n"
        "Claims-table row:\n\n"
        f"| DICOMweb STOW-RS of {n:,} CT instances (0.5 MB), {CLIENTS} parallel clients, inst/s | {n / m:.0f} | "
        f"Orthanc {n / o:.0f} | **{o / m:.2f}×** | ≥ 2×: **{'met' if o / m >= 2 else 'not met'}**; bound "
        f"(write + fsync + rename, {CLIENTS} threads) {n / r:.0f} inst/s, MIFAS at {r / m:.2f}× of it | {now} | {commit} |\n"
    )
    print(text)
    section = work / "section.md"
    section.write_text(text)
    if not args.no_results:
        harness.insert_run(REPO / "bench" / "RESULTS.md", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
