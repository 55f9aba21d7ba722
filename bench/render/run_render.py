#!/usr/bin/env python3
"""Thumbnail render latency (issue 10 benchmark): MIFAS against DCMTK dcmj2pnm, same run.

One command (from the repository root, release binary built):
  bench/render/run_render.py [--iterations 100] [--size 128] [--http] [--workdir DIR]

For each object of tests/integration/render_objects.py (CT 512² 16-bit, MR 256², RGB US
640x480, the CT in JPEG 2000 lossless, a 20-frame JPEG baseline US):
  - in-process (always): cargo example `render_bench` (bench/render/render_bench.rs) calls
    Renderer::render with the file in memory: uncached (a new UID each call) and cached;
  - over HTTP (--http): `mifas serve` with the objects stored by storescu and a logged-in
    viewer; one keep-alive connection from this script; uncached = GET thumbnail.jpg with a
    new quality value each time (1..100, a new cache key), cached = the same URL again; client
    wall time, so it includes HTTP, the login check, the index lookup and the local store read;
  - DCMTK: `dcmj2pnm +oj +Jq 85 +Sxv SIZE <VOI> in out.jpg`, one process per image (the way a
    portal without its own renderer would run it), wall time. DCMTK has no JPEG 2000 decoder:
    that row has no DCMTK figure.
Prints a markdown table (p50 / p99 in ms) for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from render_objects import OBJECTS, make_objects  # noqa: E402

MIFAS = REPO / "target" / "release" / "mifas"
EXAMPLE = REPO / "target" / "release" / "examples" / "render_bench"
PASSWORD = "bench-pass-1"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = max(1, min(len(s), int(-(-p * len(s) // 100))))
    return s[k - 1]


def in_process(paths: dict[str, Path], iterations: int, size: int) -> dict[tuple[str, str], tuple[float, float]]:
    args = [str(EXAMPLE), "--iterations", str(iterations), "--size", str(size)]
    args += [f"{label}={path}" for label, path in paths.items()]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=600).stdout
    rows = {}
    for line in out.splitlines()[1:]:
        label, mode, _n, p50, p99, *_ = line.split("\t")
        rows[(label, mode)] = (float(p50) / 1000, float(p99) / 1000)
    return rows


def dcmtk(paths: dict[str, Path], iterations: int, size: int, work: Path) -> dict[str, tuple[float, float]]:
    rows = {}
    for label, path in paths.items():
        if label == "ct_j2k":
            continue
        times = []
        for _ in range(iterations):
            started = time.perf_counter()
            subprocess.run(["dcmj2pnm", "+oj", "+Jq", "85", "+Sxv", str(size), *OBJECTS[label][1],
                            str(path), str(work / f"{label}.jpg")], check=True, capture_output=True)
            times.append((time.perf_counter() - started) * 1000)
        rows[label] = (pct(times, 50), pct(times, 99))
    return rows


class Session:
    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body=None, headers=None):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        for value in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return r.status, data


def over_http(paths: dict[str, Path], iterations: int, size: int, work: Path) -> dict[tuple[str, str], tuple[float, float]]:
    import pydicom

    data = work / "data"
    subprocess.run([str(MIFAS), "user", "add", "bench", "--role", "viewer", "--data-dir", str(data)],
                   input=PASSWORD + "\n", check=True, capture_output=True, text=True)
    log = open(work / "serve.log", "w")
    proc = subprocess.Popen([str(MIFAS), "serve", "--data-dir", str(data), "--dicom-port", "0",
                             "--http-port", "0"], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        ready = proc.stdout.readline()  # the ready line names both ports
        fields = dict(f.split("=", 1) for f in ready.split() if "=" in f)
        dicom_port = int(fields["dicom"].rsplit(":", 1)[1])
        http_port = int(fields["http"].rsplit(":", 1)[1])
        for label, path in paths.items():
            ts = {"ct_j2k": ["-xv"], "us_jpeg_mf": ["-xy"]}.get(label, [])
            subprocess.run(["storescu", *ts, "-aec", fields["aet"], "127.0.0.1", str(dicom_port), str(path)],
                           check=True, capture_output=True, env=dict(os.environ, TCP_NODELAY="1"))
        s = Session(http_port)
        s.request("GET", "/login")
        status, _ = s.request("POST", "/login", body=urlencode({
            "username": "bench", "password": PASSWORD, "login_token": s.cookies["mifas_login"], "next": ""}),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303, status
        rows = {}
        for label, path in paths.items():
            uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
            url = f"/instances/{uid}/thumbnail.jpg?size={size}"
            s.request("GET", url)  # warm: the object's pages in the OS cache
            for mode in ("uncached", "cached"):
                times = []
                for i in range(min(iterations, 99)):
                    q = url + (f"&quality={i + 1}" if mode == "uncached" and i + 1 != 85 else "")
                    started = time.perf_counter()
                    status, body = s.request("GET", q)
                    times.append((time.perf_counter() - started) * 1000)
                    assert status == 200 and body[:2] == b"\xff\xd8", (status, body[:100])
                rows[(label, mode)] = (pct(times, 50), pct(times, 99))
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--http", action="store_true")
    ap.add_argument("--workdir")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="mifas-render-bench."))
    paths = make_objects(work / "objects", tag="bench")
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    inproc = in_process(paths, a.iterations, a.size)
    http_rows = over_http(paths, a.iterations, a.size, work) if a.http else {}
    dc = dcmtk(paths, max(10, a.iterations // 5), a.size, work)
    print(f"## Render — {a.size} px JPEG thumbnails, run of {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC (git {git})\n")
    cols = ["object", "in-process uncached p50 / p99", "in-process cached p50 / p99"]
    if http_rows:
        cols += ["HTTP uncached p50 / p99", "HTTP cached p50 / p99"]
    cols += ["dcmj2pnm per process p50 / p99", "dcmj2pnm / MIFAS uncached p50"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for label, (desc, _) in OBJECTS.items():
        f = lambda r: f"{r[0]:.2f} / {r[1]:.2f} ms" if r[0] >= 0.1 else f"{r[0] * 1000:.1f} / {r[1] * 1000:.1f} µs"  # noqa: E731
        row = [desc, f(inproc[(label, "uncached")]), f(inproc[(label, "cached")])]
        if http_rows:
            row += [f(http_rows[(label, "uncached")]), f(http_rows[(label, "cached")])]
        base = (http_rows or inproc)[(label, "uncached")][0]
        row += [f(dc[label]), f"{dc[label][0] / base:.0f}x"] if label in dc else ["n/a (no J2K in DCMTK)", "—"]
        print("| " + " | ".join(row) + " |")
    print(f"\n{a.iterations} in-process renders per row and mode; HTTP: 99 requests per row and mode; "
          f"dcmj2pnm: {max(10, a.iterations // 5)} processes per row. Ratio against "
          f"{'HTTP' if http_rows else 'in-process'} uncached.")


if __name__ == "__main__":
    main()
