#!/usr/bin/env python3
"""Summarise a run of bench/run_ingest.sh: print the table, check the targets,
and (with --results-md) append a dated section to bench/RESULTS.md.

Usage: report.py RESULTS_TSV RSS_TSV NOTES_TXT [--results-md PATH]
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
from collections import defaultdict

LABELS = {
    "raw-fsync": "raw loop: write + fsync + rename",
    "raw-dirsync": "raw loop: write + fsync + rename + dir fsync",
    "storescp": "DCMTK storescp (no fsync, no index)",
    "storescp-fork": "DCMTK storescp --fork",
    "orthanc": "Orthanc (SQLite, SyncStorageArea)",
    "mifas": "MIFAS",
}
ORDER = ["mifas", "orthanc", "storescp", "storescp-fork", "raw-fsync", "raw-dirsync"]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return "?"


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = sh("free -h | awk '/^Mem:/ {print $2}'")
    wd = os.environ.get("BENCH_WORKDIR_USED", "/tmp")
    df = sh(f"df -hT {wd} | tail -1 | awk '{{print $1\" (\"$2\", \"$3\" total, \"$5\" free)\"}}'")
    return {
        "nproc": sh("nproc"),
        "cpu": cpu,
        "mem": mem,
        "disk": f"{df} for {wd}",
        "kernel": platform.release(),
        "dcmtk": "DCMTK " + sh("/usr/bin/storescp --version 2>&1 | head -1").strip("$ ").replace("dcmtk: ", ""),
        "orthanc": sh("/usr/sbin/Orthanc --version 2>&1 | head -1"),
        "mifas": os.environ.get("BENCH_MIFAS_REV", "?"),
    }


def fmt(v, nd=1):
    return "—" if v is None else f"{v:.{nd}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("rss")
    ap.add_argument("notes")
    ap.add_argument("--results-md")
    args = ap.parse_args()

    rates = defaultdict(list)  # (target, mode) -> [rate]
    per_rep = defaultdict(dict)  # (target, mode) -> {repeat: rate}
    flagged = defaultdict(list)
    busy = defaultdict(int)
    cpu = defaultdict(list)  # (target, mode) -> [server CPU seconds during the send]
    n_meas = n_busy = 0
    for line in open(args.results):
        f = line.rstrip("\n").split("\t")
        if len(f) < 8 or not f[1].isdigit():
            continue
        target, mode, rep, _n, _secs, rate, _stored, note = f[:8]
        b = len(f) > 8 and f[8] == "1"
        key = (target, int(mode))
        rates[key].append(float(rate))
        per_rep[key][rep] = float(rate)
        n_meas += 1
        if b:
            busy[key] += 1
            n_busy += 1
        if note != "-":
            flagged[key].append(note)
        if len(f) > 9:
            try:
                cpu[key].append(float(f[9]))
            except ValueError:
                pass

    def med(t, m):
        v = rates.get((t, m))
        return statistics.median(v) if v else None

    def rng(t, m):
        v = rates.get((t, m))
        if not v:
            return ""
        return f"{min(v):.1f}–{max(v):.1f}" if len(v) > 1 else ""

    reps = os.environ.get("BENCH_REPEATS_USED", "?")
    rows = []
    for t in ORDER:
        if not any((t, m) in rates for m in (1, 4)):
            continue
        r1, r4 = med(t, 1), med(t, 4)
        flag = "; ".join(sorted(set(flagged.get((t, 1), []) + flagged.get((t, 4), []))))
        nb = busy.get((t, 1), 0) + busy.get((t, 4), 0)
        if nb:
            flag = (flag + "; " if flag else "") + f"{nb} run(s) overlapped a compiler"
        c1 = statistics.median(cpu[(t, 1)]) if cpu.get((t, 1)) else None
        c4 = statistics.median(cpu[(t, 4)]) if cpu.get((t, 4)) else None
        cs = "" if c1 is None and c4 is None else f"{fmt(c1, 2)} / {fmt(c4, 2)}"
        rows.append((LABELS.get(t, t), fmt(r1), rng(t, 1), fmt(r4), rng(t, 4), cs, flag))

    lines = []
    lines.append(f"Instances/s (files/s for the raw loops), 1000 CT instances (512×512×16-bit, 525,558 bytes each), "
                 f"median of {reps} interleaved runs (min–max).")
    if n_busy:
        lines.append("")
        lines.append(f"**Warning: {n_busy} of {n_meas} measurements overlapped a running compiler (rustc/cargo/cc, "
                     "e.g. a concurrent `cargo build`): on this machine that slows both CPU and fsync; treat those "
                     "figures as noisy.**")
    lines.append("")
    lines.append("| target | 1 assoc | (min–max) | 4 assocs | (min–max) | server CPU s, 1 / 4 assocs | problems |")
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        lines.append("| " + " | ".join(x if x else "" for x in r) + " |")
    lines.append("")

    m1, m4 = med("mifas", 1), med("mifas", 4)
    o1, o4 = med("orthanc", 1), med("orthanc", 4)
    f1, d1 = med("raw-fsync", 1), med("raw-dirsync", 1)
    s1 = med("storescp", 1)
    # one association is strictly serial (storescu waits for each response): receiving an instance
    # (storescp's time per instance) and making it durable (raw loop's time per file) cannot overlap
    # across instances, so 1 / (1/storescp + 1/raw) is a tighter bound for a durable SCP.
    serial = None if not s1 or not f1 else 1 / (1 / s1 + 1 / f1)

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    def paired(a, b):
        """per-repeat ratios a/b (same repeat = measured minutes apart)"""
        ra, rb = per_rep.get(a, {}), per_rep.get(b, {})
        return [ra[k] / rb[k] for k in sorted(ra, key=int) if k in rb and rb[k]]

    def serial_per_run():
        rm, rs, rf = per_rep.get(("mifas", 1), {}), per_rep.get(("storescp", 1), {}), per_rep.get(("raw-fsync", 1), {})
        return [rm[k] * (1 / rs[k] + 1 / rf[k]) for k in sorted(rm, key=int) if k in rs and k in rf]

    checks = [
        ("1 assoc: MIFAS / Orthanc", ratio(m1, o1), paired(("mifas", 1), ("orthanc", 1)), 1.5),
        ("1 assoc: MIFAS / raw write+fsync+rename", ratio(m1, f1), paired(("mifas", 1), ("raw-fsync", 1)), 0.8),
        ("1 assoc: MIFAS / raw write+fsync+rename+dir fsync (context)", ratio(m1, d1),
         paired(("mifas", 1), ("raw-dirsync", 1)), None),
        ("1 assoc: MIFAS / serial bound 1/(1/storescp + 1/raw) (context; bound = " + fmt(serial) + "/s)",
         ratio(m1, serial), serial_per_run(), None),
        ("4 assocs: MIFAS / Orthanc", ratio(m4, o4), paired(("mifas", 4), ("orthanc", 4)), 2.0),
        ("4 assocs: MIFAS / raw write+fsync+rename (context)", ratio(m4, f1), paired(("mifas", 4), ("raw-fsync", 1)),
         None),
    ]
    lines.append("| ratio | of medians | per run | target | met |")
    lines.append("|---|---:|---:|---:|---|")
    for name, v, pr, tgt in checks:
        met = "—" if tgt is None or v is None else ("yes" if v >= tgt else "**NO**")
        prs = ", ".join(f"{x:.2f}" for x in pr)
        lines.append(f"| {name} | {fmt(v, 2)} | {prs} | {'≥ ' + str(tgt) if tgt else ''} | {met} |")
    lines.append("")

    rss_rows = [l.rstrip("\n").split("\t") for l in open(args.rss) if l.strip()]
    if rss_rows:
        lines.append("Peak RSS (VmHWM of the server process) while receiving one 1000-frame Enhanced CT instance "
                     "(512×512×16-bit, 524,289,082-byte file), sent with one storescu:")
        lines.append("")
        lines.append("| server | VmHWM at start | VmHWM after the store | stored object bytes | target | met | problems |")
        lines.append("|---|---:|---:|---:|---:|---|---|")
        for target, base, hwm, nbytes, note in rss_rows:
            def mb(kb):
                try:
                    return f"{int(kb) / 1024:.1f} MB"
                except ValueError:
                    return kb
            tgt, met = "", "—"
            if target == "mifas":
                tgt = "< 100 MB"
                try:
                    met = "yes" if int(hwm) < 100 * 1024 and note == "-" else "**NO**"
                except ValueError:
                    met = "**NO**"
            lines.append(f"| {LABELS.get(target, target)} | {mb(base)} | {mb(hwm)} | {nbytes} | {tgt} | {met} | "
                         f"{'' if note == '-' else note} |")
        lines.append("")

    notes = [l.strip() for l in open(args.notes) if l.strip()]
    if notes:
        lines.append("Problems seen during the run:")
        lines.append("")
        for n in notes:
            lines.append(f"- {n}")
        lines.append("")

    body = "\n".join(lines)
    print()
    print(body)

    if args.results_md:
        m = machine()
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M %Z").strip()
        head = [
            f"## Run of {stamp}",
            "",
            f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem']} RAM, kernel {m['kernel']}",
            f"- disk: {m['disk']}",
            f"- load average at start: {os.environ.get('BENCH_LOADAVG_START', '?')}",
            f"- peers: {m['dcmtk']}; {m['orthanc']}; MIFAS git {m['mifas']} (binary {os.environ.get('BENCH_MIFAS_BIN_INFO', '?')})",
            "- sender: /usr/bin/storescu, TCP_NODELAY=1, default options, `+sd +r`; 4 assocs = 4 storescu "
            "processes at once, one per quarter of the corpus. Every measurement starts a fresh server on an "
            "empty data dir on the same disk; the time is from the first storescu start to the last storescu exit.",
            "",
        ]
        path = args.results_md
        if not os.path.exists(path):
            with open(path, "w") as fh:
                fh.write("# MIFAS ingest benchmark results\n\n"
                         "Produced by `bench/run_ingest.sh` (see the header of that script). Each run appends a "
                         "section; newest last.\n\n")
        with open(path, "a") as fh:
            fh.write("\n".join(head) + "\n" + body + "\n")
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
