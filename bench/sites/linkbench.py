#!/usr/bin/env python3
"""Raw TCP throughput through the emulated WAN links (the physical bound of the site benchmarks).

  linkbench.py measure [--seconds 3] [--direction read|write] N1 [N2 ...]
      for each site number Ni (1 = a, 2 = b, 3 = c): a sink or source inside its namespace on
      198.18.Ni.2, the other end on the host; first each link alone, then all at once.
      read = site -> host (what a retrieve crosses), write = host -> site (what ingest crosses).
      Prints one line per measurement: "<label> <MB/s>" (MB = 10^6 bytes), label "site-a",
      ..., "sum-alone" (sum of the links measured alone) and "all-at-once".
  linkbench.py serve PORT MODE   (run inside a namespace by `measure`) MODE sink|source:
      accept one connection, drain it or fill it until the peer closes; prints READY first.
"""
import argparse
import socket
import subprocess
import sys
import threading
import time

CHUNK = 1 << 20
LETTERS = "abc"
PORT = 5201


def serve(port, mode):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1)
    print("READY", flush=True)
    c, _ = ls.accept()
    buf = bytes(CHUNK)
    try:
        if mode == "sink":
            while c.recv(CHUNK):
                pass
        else:
            while True:
                c.sendall(buf)
    except (BrokenPipeError, ConnectionResetError):
        pass


def start_server(n, mode):
    ns = f"mifas-wan-{LETTERS[n - 1]}"
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, "serve", str(PORT), mode],
                         stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "READY":
        p.kill()
        sys.exit(f"linkbench: server in {ns} did not start")
    return p


def transfer(n, direction, seconds, out, key):
    """One connection to site n for `seconds` (after a 0.5 s warm-up); bytes/s into out[key]."""
    s = socket.create_connection((f"198.18.{n}.2", PORT), timeout=30)
    buf = bytes(CHUNK)
    moved = 0
    t_start = time.perf_counter()
    t0 = None
    while True:
        now = time.perf_counter()
        if t0 is None and now - t_start >= 0.5:  # slow start and the bucket's burst are not the rate
            t0, moved = now, 0
        if t0 is not None and now - t0 >= seconds:
            break
        if direction == "read":
            got = s.recv(CHUNK)
            if not got:
                raise RuntimeError(f"site {n} closed the connection")
            moved += len(got)
        else:
            s.sendall(buf)
            moved += CHUNK
    out[key] = moved / (time.perf_counter() - t0)
    s.close()


def measure(sites, direction, seconds):
    mode = "source" if direction == "read" else "sink"
    results = {}
    for n in sites:
        p = start_server(n, mode)
        try:
            transfer(n, direction, seconds, results, f"site-{LETTERS[n - 1]}")
        finally:
            p.kill()
            p.wait()
    procs = [start_server(n, mode) for n in sites]
    together = {}
    try:
        threads = [threading.Thread(target=transfer, args=(n, direction, seconds, together, n)) for n in sites]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    if len(together) != len(sites):
        sys.exit("linkbench: a concurrent transfer failed")
    for k, v in results.items():
        print(f"{k} {v / 1e6:.2f}")
    print(f"sum-alone {sum(results.values()) / 1e6:.2f}")
    for n in sites:
        print(f"together-{LETTERS[n - 1]} {together[n] / 1e6:.2f}")
    print(f"all-at-once {sum(together.values()) / 1e6:.2f}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("measure")
    p.add_argument("sites", type=int, nargs="+")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--direction", choices=["read", "write"], default="read")
    p = sub.add_parser("serve")
    p.add_argument("port", type=int)
    p.add_argument("mode", choices=["sink", "source"])
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.port, a.mode)
    else:
        measure(a.sites, a.direction, a.seconds)


if __name__ == "__main__":
    main()
