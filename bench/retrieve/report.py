#!/usr/bin/env python3
"""Markdown section for bench/RESULTS.md from a run directory of bench/retrieve/run_retrieve.sh.

Reads RUN/env.txt ("key: value"), RUN/results.tsv (one row per retrieve), RUN/notes.txt and, if
present, RUN/perf-{move,get}.top.txt / .threads.txt.

Usage: report.py RUN_DIR
"""
import os
import statistics
import sys

COLS = ["target", "op", "repeat", "count", "seconds", "rate", "files", "final", "completed", "check",
        "server_cpu", "dest_cpu", "client_cpu", "busy", "note", "other"]
OPS = {"move": "C-MOVE (movescu → storescp)", "get": "C-GET (getscu)", "store": "C-STORE → storescp, no archive"}
TARGETS = {"mifas": "MIFAS", "orthanc": "Orthanc 1.10", "storescu": "— (DCMTK storescu)",
           "rawstore": "— (rawstore.py: pre-encoded, in memory)"}
TARGET_RATIO = 2.0
QUIET_LOAD = 0.2  # CPUs used by other processes during a retrieve above which it is counted as disturbed


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f1(v, nd=1):
    return "—" if v is None else f"{v:.{nd}f}"


def main():
    run = sys.argv[1]
    env = {}
    for line in open(os.path.join(run, "env.txt")):
        k, _, v = line.rstrip("\n").partition(": ")
        env[k] = v
    rows = []
    for line in open(os.path.join(run, "results.tsv")):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == len(COLS):
            rows.append(dict(zip(COLS, parts)))
    notes = [n for n in open(os.path.join(run, "notes.txt")).read().splitlines() if n.strip()]
    count = int(env.get("study", "500").split()[0])

    def sel(target, op, timed=True):
        out = []
        for r in rows:
            if r["target"] != target or r["op"] != op:
                continue
            if timed and not r["repeat"].isdigit():
                continue
            if timed and r["repeat"] == "0":
                continue
            out.append(r)
        return out

    print(f"## Retrieve: C-MOVE / C-GET of one {count}-instance study, run of {env.get('date', '?')}")
    print()
    print("Produced by `bench/retrieve/run_retrieve.sh` (method: `bench/retrieve/README.md`).")
    print()
    for k in ["machine", "disk", "dcmtk", "orthanc", "mifas", "study", "load_at_start"]:
        if k in env:
            print(f"- {k.replace('_', ' ')}: {env[k]}")
    print("- destination: one DCMTK `storescp -od DIR PORT` (default options, single process, writes files, no fsync) "
          "for every C-MOVE of both archives; emptied + `sync` before each retrieve. C-GET: `getscu -S -od DIR` is the "
          "storage SCP. `TCP_NODELAY=1` for every DCMTK tool and Orthanc. Time = client start to client exit. "
          "Every retrieve checked: final status Success, the destination holds exactly the study's "
          f"{count} SOP Instance UIDs, 3 sampled files equal to the source element by element.")
    print()
    reps = env.get("repeats", "?")
    print(f"Instances/s, median of {reps} repeats (min–max), after one untimed warm-up retrieve per target "
          "and operation (its rate in its own column); targets interleaved in every repeat. CPU: seconds of "
          "user+system CPU per instance in ms (server: all threads of the archive process; destination: the "
          "storescp process; client: movescu/getscu/storescu). Other load: CPU used by all other processes of "
          "the machine during the retrieve, in CPUs (of 2), median: other people's tests and builds on this "
          "shared machine; the retrieve itself needs server + storescp + client CPU, so a high figure "
          "slows it down.")
    print()
    print("| operation | archive | inst/s | (min–max) | warm-up inst/s | s per study | server CPU ms/inst | "
          "storescp CPU ms/inst | client CPU ms/inst | other load, CPUs | checks |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    medians = {}
    per_rep = {}
    for op in ["move", "get", "store"]:
        for target in ["mifas", "orthanc", "storescu", "rawstore"]:
            rs = sel(target, op)
            if not rs:
                continue
            ok = [r for r in rs if r["check"] == "ok" and r["note"] == "-"]
            bad = len(rs) - len(ok)
            rates = [num(r["rate"]) for r in ok]
            m = med(rates)
            medians[(target, op)] = m
            per_rep[(target, op)] = {r["repeat"]: (num(r["rate"]), num(r["other"])) for r in ok}
            warm = [num(r["rate"]) for r in sel(target, op, timed=False) if r["repeat"] == "0" and r["check"] == "ok"]
            secs = med([num(r["seconds"]) for r in ok])

            def per_inst(col):
                v = med([num(r[col]) for r in ok])
                return None if v is None else v * 1000 / count
            checks = f"{len(ok)}/{len(rs)} ok" + (f", **{bad} FAILED**" if bad else "")
            if any(r["busy"] == "1" for r in rs):
                checks += ", compiler running during some"
            loaded = sum(1 for r in ok if (num(r["other"]) or 0) >= QUIET_LOAD)
            if loaded:
                checks += f", {loaded} with other load ≥ {QUIET_LOAD}"
            rng = f"{min(rates):.1f}–{max(rates):.1f}" if rates else "—"
            # rawstore's process CPU is mostly reading and encoding the files before the timed part
            client = None if target == "rawstore" else per_inst("client_cpu")
            print(f"| {OPS[op]} | {TARGETS[target]} | {f1(m)} | {rng} | {f1(warm[0]) if warm else '—'} | "
                  f"{f1(secs, 2)} | {f1(per_inst('server_cpu'), 2)} | {f1(per_inst('dest_cpu'), 2)} | "
                  f"{f1(client, 2)} | {f1(med([num(r['other']) for r in ok]), 2)} | {checks} |")
    print()
    print(f"| ratio MIFAS / Orthanc | of medians | per repeat | median over quiet repeats (other load < {QUIET_LOAD} "
          "for both) | target | met |")
    print("|---|---:|---:|---:|---:|---|")
    for op in ["move", "get"]:
        a, b = medians.get(("mifas", op)), medians.get(("orthanc", op))
        if a is None or b is None:
            why = "MIFAS" if a is None else "Orthanc"
            print(f"| {OPS[op]} | — | — | — | ≥ {TARGET_RATIO:.0f} | **no figure** ({why} has no verified run) |")
            continue
        pa, pb = per_rep[("mifas", op)], per_rep[("orthanc", op)]
        keys = [k for k in sorted(pa, key=int) if k in pb and pb[k][0]]
        pr = ", ".join(f"{pa[k][0] / pb[k][0]:.2f}" for k in keys)
        quiet = [pa[k][0] / pb[k][0] for k in keys
                 if (pa[k][1] or 0) < QUIET_LOAD and (pb[k][1] or 0) < QUIET_LOAD]
        qs = f"{statistics.median(quiet):.2f} ({len(quiet)} of {len(keys)})" if quiet else f"— (0 of {len(keys)})"
        ratio = a / b
        print(f"| {OPS[op]} | {ratio:.2f} | {pr} | {qs} | ≥ {TARGET_RATIO:.0f} | "
              f"{'yes' if ratio >= TARGET_RATIO else '**NO**'} |")
    raw = medians.get(("rawstore", "store"))
    orth = medians.get(("orthanc", "move"))
    if raw:
        print()
        print(f"Destination bound: `rawstore.py` sends the same {count} instances, pre-encoded in memory, over one "
              f"association to the same storescp at {raw:.1f} inst/s (median; timed from connect to release). "
              "A C-MOVE is exactly such a serial C-STORE stream (one association, each C-STORE-RSP awaited), so "
              "no archive's C-MOVE into this storescp can beat that figure"
              + (f": the C-MOVE ratio cannot exceed {raw / orth:.2f} here (bound / Orthanc's median)." if orth else ".")
              + " The storescp CPU column is the destination's own cost per instance.")
    for op in ["move", "get"]:
        top = os.path.join(run, f"perf-{op}.top.txt")
        if os.path.exists(top) and os.path.getsize(top):
            print()
            print(f"perf profile of the MIFAS process during one extra {OPS[op]} (`perf record --call-graph dwarf`; "
                  "share of MIFAS's samples; frames: inclusive time):")
            print()
            print("```")
            thr = os.path.join(run, f"perf-{op}.threads.txt")
            if os.path.exists(thr):
                print("self time by shared object:")
                print(open(thr).read().rstrip())
                print("inclusive time of selected frames:")
            print(open(top).read().rstrip())
            print("```")
    if notes:
        print()
        print("Notes:")
        for n in notes:
            print(f"- {n}")


if __name__ == "__main__":
    main()
