#!/usr/bin/env python3
"""Python half of the bench harness (bench/lib.sh is the shell half).

As a module: helpers shared by the report writer (bench/report.py) and the C-FIND driver:
key/value files, medians, number formats, markdown tables, and the raw DICOM client of the
tests (tests/integration/raw_dul.py).

As a command:
  harness.py heavy-procs                 processes above 20 % CPU over the next second
  harness.py human-count N               1000000 -> 1M, 10000 -> 10k
  harness.py insert-run RESULTS.md FILE  put FILE's section into RESULTS.md, newest run first
  harness.py rawstore HOST PORT AET DIR [--calling AET]
        the destination bound: every instance of DIR pre-encoded in memory, then (timed) one
        association, each C-STORE-RSP awaited, release; prints "<count> <seconds> <rate>"
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import raw_dul as R  # noqa: E402

RUNS_MARKER = "<!-- bench scripts insert new runs below this line -->"


def kv(path, sep=": "):
    """{key: value} of a "key: value" (or tab-separated) file; {} when it does not exist."""
    out = {}
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            if sep in line:
                k, v = line.rstrip("\n").split(sep, 1)
                out[k.strip()] = v.strip()
    return out


def lines(path):
    return [l.strip() for l in open(path, encoding="utf-8")] if os.path.exists(path) else []


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, nd=1, sep=False):
    v = num(v)
    return "—" if v is None else (f"{v:,.{nd}f}" if sep else f"{v:.{nd}f}")


def human_bytes(n):
    n = num(n)
    if n is None:
        return "—"
    for u in ["B", "KiB", "MiB", "GiB"]:
        if n < 1024 or u == "GiB":
            return f"{n:.0f} B" if u == "B" else f"{n:,.1f} {u}"
        n /= 1024


def human_count(n):
    """1000000 -> 1M, 10000 -> 10k, 2500 -> 2.5k"""
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1e6:g}M"
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1e3:g}k"
    return str(n)


def table(header, rows, align=None):
    """Markdown table; align: one of "l"/"r" per column (default: first left, others right)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def met(ok):
    return "yes" if ok else "**NO**"


def insert_run(results_md, section_file):
    text = open(results_md, encoding="utf-8").read()
    section = open(section_file, encoding="utf-8").read().strip("\n")
    if RUNS_MARKER in text:
        head, tail = text.split(RUNS_MARKER, 1)
        text = f"{head}{RUNS_MARKER}\n\n{section}\n\n{tail.lstrip(chr(10))}"
    else:
        text = text.rstrip("\n") + f"\n\n{section}\n"
    open(results_md, "w", encoding="utf-8").write(text)


def heavy_procs():
    def snap():
        d = {}
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    f = open(f"/proc/{p}/stat").read()
                    rest = f[f.rindex(")") + 2:].split()
                    d[p] = (f[f.index("(") + 1:f.rindex(")")], int(rest[11]) + int(rest[12]))
                except (OSError, ValueError, IndexError):
                    pass
        return d
    a = snap()
    time.sleep(1)
    b = snap()
    hz = os.sysconf("SC_CLK_TCK")
    out = sorted(((b[p][1] - a[p][1]) * 100 / hz, b[p][0]) for p in b if p in a)
    return " ".join(f"{n}({c:.0f}%)" for c, n in reversed(out) if c > 20)[:200]


def rawstore(host, port, called, folder, calling):
    insts = [R.read_part10(os.path.join(root, n)) for root, _, names in os.walk(folder) for n in sorted(names)]
    if any(i[2] != R.EXPLICIT_LE for i in insts):
        sys.exit("rawstore: every file must be Explicit VR Little Endian")
    classes = sorted({i[0] for i in insts})
    t0 = time.perf_counter()
    a = R.RawAssociation(host, port, timeout=120)
    pdu = a.associate(called=called, calling=calling, max_pdu=0,
                      contexts=[(2 * k + 1, c, [R.EXPLICIT_LE]) for k, c in enumerate(classes)])
    cid = {c: 2 * k + 1 for k, c in enumerate(classes)}
    if pdu.type != R.A_ASSOCIATE_AC or not all(a.accepted_context(i) for i in cid.values()):
        sys.exit(f"rawstore: association or contexts refused: {pdu.describe()}")
    t_enc = time.perf_counter()  # pre-encoding needs the peer's max PDU; not timed
    wire = [R.pdata_stream(cid[c], R.c_store_rq(k + 1, c, u), True, a.peer_max_pdu)
            + R.pdata_stream(cid[c], ds, False, a.peer_max_pdu) for k, (c, u, _, ds) in enumerate(insts)]
    t_enc = time.perf_counter() - t_enc
    failed = 0
    for w in wire:
        a.send(w)
        failed += a.read_response().status != 0
    rp = a.release()
    secs = time.perf_counter() - t0 - t_enc
    print(f"{len(insts)} {secs:.3f} {len(insts) / secs:.1f}")
    if failed or rp.type != R.A_RELEASE_RP:
        sys.exit(f"rawstore: {failed} C-STORE failures; release answered by {rp.describe()}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("heavy-procs")
    sub.add_parser("human-count").add_argument("n", type=int)
    p = sub.add_parser("insert-run")
    p.add_argument("results_md")
    p.add_argument("section")
    p = sub.add_parser("rawstore")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("called")
    p.add_argument("dir")
    p.add_argument("--calling", default="RAWSTORE")
    a = ap.parse_args()
    if a.cmd == "heavy-procs":
        print(heavy_procs())
    elif a.cmd == "human-count":
        print(human_count(a.n))
    elif a.cmd == "insert-run":
        insert_run(a.results_md, a.section)
    else:
        rawstore(a.host, a.port, a.called, a.dir, a.calling)


if __name__ == "__main__":
    main()
