#!/usr/bin/env python3
"""Portal benchmark over HTTP: the study list of a real `mifas serve` over an index built by the
`portal_study_list` example (100,000 studies), logged in as a real user. For each search: p50/p90
of the server time (the handler's `Server-Timing: portal;dur=` header: parameters → query engine
→ page → HTML, without the session check and the network) and of the client-observed latency.

Usage: http_study_list.py MIFAS_BIN DATA_DIR [--repeats 50]
(DATA_DIR as the example left it; a user `bench` is added to it.)"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

CASES = [
    ("name_prefix_SMITH", {"patient_name": "SMITH*"}),
    ("name_prefix_王", {"patient_name": "王*"}),
    ("date_one_month", {"date_from": "2024-01-01", "date_to": "2024-01-31"}),
    ("all_first_page", {}),
]
PASSWORD = "bench password 123"


def pct(values, p):
    s = sorted(values)
    return s[round((len(s) - 1) * p)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mifas")
    ap.add_argument("data")
    ap.add_argument("--repeats", type=int, default=50)
    a = ap.parse_args()
    r = subprocess.run([a.mifas, "user", "add", "bench", "--role", "viewer", "--data-dir", a.data],
                       input=PASSWORD + "\n", capture_output=True, text=True)
    if r.returncode != 0 and "exists" not in r.stderr:
        print(r.stderr, file=sys.stderr)
        return 1
    proc = subprocess.Popen([a.mifas, "serve", "--data-dir", a.data, "--dicom-port", "0", "--http-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, RUST_LOG="warn"))
    try:
        line = proc.stdout.readline()  # the READY line is the readiness signal
        m = re.search(r"http=(\S+):(\d+)", line)
        if not m:
            print(f"no READY line: {line!r}", file=sys.stderr)
            return 1
        base = f"http://127.0.0.1:{m[2]}"
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(base + "/login").read().decode()
        token = re.search(r'name="login_token" value="([^"]+)"', page)[1]
        form = urllib.parse.urlencode({"username": "bench", "password": PASSWORD,
                                       "login_token": token, "next": "/studies"}).encode()
        opener.open(base + "/login", data=form).read()
        if not any(c.name == "mifas_session" for c in jar):
            print("login failed", file=sys.stderr)
            return 1
        for name, params in CASES:
            url = base + "/studies" + ("?" + urllib.parse.urlencode(params) if params else "")
            opener.open(url).read()  # warm-up (and the exam-type catalog count)
            server, client = [], []
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                with opener.open(url) as resp:
                    body = resp.read()
                    timing = resp.headers.get("Server-Timing", "")
                client.append((time.perf_counter() - t0) * 1000)
                server.append(float(re.search(r"dur=([\d.]+)", timing)[1]))
                assert b'<tr class="study"' in body
            print(f"{name}: server_p50_ms {pct(server, .5):.2f} server_p90_ms {pct(server, .9):.2f} "
                  f"client_p50_ms {pct(client, .5):.2f} client_p90_ms {pct(client, .9):.2f} "
                  f"(n={a.repeats}, mean server {statistics.mean(server):.2f})")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
