#!/usr/bin/env python3
"""The markdown section of a benchmark run, from its run directory (bench/RESULTS.md gets it).

Usage: report.py {ingest|scale|find|retrieve} RUN_DIR  -> markdown on stdout

Every run directory holds env.txt ("key: value", written by lib.sh's envset) and notes.txt;
the rest is per benchmark (see each function). The method of each benchmark is described once, in
bench/RESULTS.md ("Method"); the sections below give what changes from run to run.
"""
import csv
import json
import os
import statistics
import sys
from collections import defaultdict

from harness import fmt, human_bytes, human_count, kv, lines, med, met, num, table

OUT = []
p = OUT.append


def header(title, env, keys):
    p(f"## {title}, run of {env.get('date', '?')} (git {env.get('git', '?')})")
    p("")
    for k in keys:
        if k in env:
            p(f"- {k.replace('_', ' ')}: {env[k]}")
    p("")


def notes_block(run, title="Notes from the run:"):
    notes = [n for n in lines(os.path.join(run, "notes.txt")) if n]
    if notes:
        p(title)
        p("")
        p("\n".join(f"- {n}" for n in notes))
        p("")


# ---- ingest (bench/run_ingest.sh) ----------------------------------------------------------------
# results.tsv: target mode repeat count seconds rate stored note busy server_cpu_s
# rss.tsv: server baseline_kb hwm_kb stored_bytes note
LABELS = {"raw-fsync": "raw loop: write + fsync + rename", "raw-dirsync": "raw loop: write + fsync + rename + dir fsync",
          "storescp": "DCMTK storescp (no fsync, no index)", "storescp-fork": "DCMTK storescp --fork",
          "orthanc": "Orthanc (SQLite, SyncStorageArea)", "mifas": "MIFAS"}


def ingest(run):
    env = kv(os.path.join(run, "env.txt"))
    rates, per_rep, flagged, busy, cpu = (defaultdict(list), defaultdict(dict), defaultdict(list),
                                          defaultdict(int), defaultdict(list))
    n_meas = n_busy = 0
    for f in (l.split("\t") for l in lines(os.path.join(run, "results.tsv"))):
        if len(f) < 10 or not f[1].isdigit():
            continue
        key = (f[0], int(f[1]))
        rates[key].append(float(f[5]))
        per_rep[key][f[2]] = float(f[5])
        n_meas += 1
        if f[8] == "1":
            busy[key] += 1
            n_busy += 1
        if f[7] != "-":
            flagged[key].append(f[7])
        cpu[key].append(num(f[9]))

    def m(t, mode):
        return med(rates.get((t, mode), []))

    def span(t, mode):
        v = rates.get((t, mode))
        return f"{min(v):.1f}–{max(v):.1f}" if v and len(v) > 1 else ""

    header("Ingest", env, ["machine", "disk", "load_start", "peers", "mifas_bin", "corpus"])
    p(f"Instances/s (files/s for the raw loops), median of {env.get('repeats', '?')} interleaved runs (min–max).")
    p("")
    if n_busy:
        p(f"**Warning: {n_busy} of {n_meas} measurements overlapped a compiler: treat those figures as noisy.**")
        p("")
    rows = []
    for t in ["mifas", "orthanc", "storescp", "storescp-fork", "raw-fsync", "raw-dirsync"]:
        if not any((t, mode) in rates for mode in (1, 4)):
            continue
        flag = sorted(set(flagged[(t, 1)] + flagged[(t, 4)]))
        if busy[(t, 1)] + busy[(t, 4)]:
            flag.append(f"{busy[(t, 1)] + busy[(t, 4)]} run(s) overlapped a compiler")
        c1, c4 = med(cpu[(t, 1)]), med(cpu[(t, 4)])
        cs = "" if c1 is None and c4 is None else f"{fmt(c1, 2)} / {fmt(c4, 2)}"
        rows.append((LABELS[t], fmt(m(t, 1)), span(t, 1), fmt(m(t, 4)), span(t, 4), cs, "; ".join(flag)))
    p(table(["target", "1 assoc", "(min–max)", "4 assocs", "(min–max)", "server CPU s, 1 / 4 assocs", "problems"],
            rows, ["l", "r", "r", "r", "r", "r", "l"]))
    p("")
    s1, f1 = m("storescp", 1), m("raw-fsync", 1)
    # one association is strictly serial: receiving (storescp's time per instance) and making durable
    # (the raw loop's time per file) add up; 1 / (1/storescp + 1/raw) bounds a durable SCP
    serial = 1 / (1 / s1 + 1 / f1) if s1 and f1 else None

    def paired(a, b):
        ra, rb = per_rep.get(a, {}), per_rep.get(b, {})
        return [ra[k] / rb[k] for k in sorted(ra, key=int) if k in rb and rb[k]]

    rm, rs, rf = per_rep.get(("mifas", 1), {}), per_rep.get(("storescp", 1), {}), per_rep.get(("raw-fsync", 1), {})
    checks = [
        ("1 assoc: MIFAS / Orthanc", ("mifas", 1), ("orthanc", 1), 1.5),
        ("1 assoc: MIFAS / raw write+fsync+rename", ("mifas", 1), ("raw-fsync", 1), 0.8),
        ("1 assoc: MIFAS / raw write+fsync+rename+dir fsync (context)", ("mifas", 1), ("raw-dirsync", 1), None),
        (f"1 assoc: MIFAS / serial bound 1/(1/storescp + 1/raw) (context; bound = {fmt(serial)}/s)",
         ("mifas", 1), None, None),
        ("4 assocs: MIFAS / Orthanc", ("mifas", 4), ("orthanc", 4), 2.0),
        ("4 assocs: MIFAS / raw write+fsync+rename (context)", ("mifas", 4), ("raw-fsync", 1), None),
    ]
    rows = []
    for name, a, b, tgt in checks:
        if b is None:
            v = m(*a) / serial if serial and m(*a) else None
            pr = [rm[k] * (1 / rs[k] + 1 / rf[k]) for k in sorted(rm, key=int) if k in rs and k in rf]
        else:
            v = m(*a) / m(*b) if m(*a) and m(*b) else None
            pr = paired(a, b)
        rows.append((name, fmt(v, 2), ", ".join(f"{x:.2f}" for x in pr), f"≥ {tgt}" if tgt else "",
                     "—" if tgt is None or v is None else met(v >= tgt)))
    p(table(["ratio", "of medians", "per run", "target", "met"], rows, ["l", "r", "r", "r", "l"]))
    p("")
    rss = [l.split("\t") for l in lines(os.path.join(run, "rss.tsv")) if l]
    if rss:
        p(f"Peak RSS (VmHWM of the server process) while receiving one multi-frame instance ({env.get('big', '?')}), "
          "sent with one storescu:")
        p("")
        rows = []
        for target, base, hwm, nbytes, note in rss:
            ok = target == "mifas" and note == "-" and (num(hwm) or 1e12) < 100 * 1024
            rows.append((LABELS[target], f"{fmt(num(base) / 1024 if num(base) else None)} MB",
                         f"{fmt(num(hwm) / 1024 if num(hwm) else None)} MB", nbytes,
                         "< 100 MB" if target == "mifas" else "", met(ok) if target == "mifas" else "—",
                         "" if note == "-" else note))
        p(table(["server", "VmHWM at start", "VmHWM after the store", "stored object bytes", "target", "met",
                 "problems"], rows, ["l", "r", "r", "r", "r", "l", "l"]))
        p("")
    notes_block(run, "Problems seen during the run:")


# ---- ingest at scale (bench/find/run_ingest_scale.sh) ----------------------------------------------
# chunks.tsv (header line): first last role files imported duplicates rejected seconds files_per_second
#                           wall user sys maxrss_kb compiler; sizes.tsv: key<TAB>bytes; stats.txt
def scale(run):
    env = kv(os.path.join(run, "env.txt"))
    sizes = kv(os.path.join(run, "sizes.tsv"), "\t")
    stats = kv(os.path.join(run, "stats.txt"))
    chunks = list(csv.DictReader(open(os.path.join(run, "chunks.tsv")), delimiter="\t"))
    n, fs = int(env["instances"]), int(env["folder_size"])
    header(f"Ingest at scale — real ingest path (`mifas import --jobs {env.get('jobs')}`), {n:,} instances", env,
           ["machine", "disk", "mifas_bin", "files", "file_bytes", "total_minutes"])
    p(f"{len(chunks)} invocations over folders of {fs:,} files. **seconds** and **files/s**: the import phase "
      "as `mifas import` reports it; **open s** = process wall − import phase (start-up); CPU and max RSS: "
      "the whole process (`/usr/bin/time`).")
    p("")

    def span(c):
        a = int(c["first"]) * fs
        return a, a + int(c["files"])

    rows = []
    for c in chunks:
        a, b = span(c)
        f = int(c["files"])
        role = {"first": f"**rate at {human_count(b)}**", "middle": f"**rate at {human_count(a)}**",
                "last": f"**rate at {human_count(b)}**"}.get(c["role"], "context")
        if c["compiler"]:
            role += f"; compiler ran: {c['compiler']}"
        first, last = int(c["first"]), int(c["last"])
        rows.append((f"f{first:03d}" + ("" if first == last else f"–f{last:03d}"),
                     f"{human_count(a)} → {human_count(b)}", f"{f:,}", fmt(c["seconds"]),
                     fmt(c["files_per_second"], 0, True), fmt(max(float(c["wall"]) - float(c["seconds"]), 0)),
                     f"{float(c['user']) / f * 1e6:,.0f}", f"{float(c['sys']) / f * 1e6:,.0f}",
                     f"{int(c['maxrss_kb']) / 1024:,.0f} MiB", role))
    p(table(["chunk (folders)", "instances", "files", "seconds", "files/s", "open s", "CPU user µs/file",
             "CPU sys µs/file", "max RSS", ""], rows, ["l", "l"] + ["r"] * 7 + ["l"]))
    p("")
    by = {c["role"]: c for c in chunks}
    first, mid, last = by.get("first"), by.get("middle"), by.get("last")
    rows = []
    for c, at in ((first, 1), (mid, 0), (last, 1)):
        if c:
            rows.append((f"rate at {human_count(span(c)[at])} (folder {int(c['first'])})",
                         f"{fmt(c['files_per_second'], 0, True)} files/s", "", ""))
    if first and last:
        r = float(last["files_per_second"]) / float(first["files_per_second"])
        rows.append((f"ratio {human_count(span(last)[1])} / {human_count(span(first)[1])}", f"{r:.2f}", "≥ 0.8",
                     met(r >= 0.8)))
    p(table(["headline", "value", "target", "met"], rows, ["l", "l", "l", "l"]))
    p("")
    inst = int(stats.get("instances", 0) or 0)
    p(f"After the import: `mifas stats` → instances: {stats.get('instances', '?')} (expected {n:,}). Index on disk "
      f"(`du -sb data/index`): {human_bytes(sizes['index_bytes'])} = "
      f"{int(sizes['index_bytes']) / max(inst, 1):,.0f} bytes/instance; objects: "
      f"{human_bytes(sizes['objects_bytes'])} apparent, {human_bytes(sizes['objects_disk_bytes'])} on disk.")
    p("")
    notes_block(run)


# ---- C-FIND (bench/find/run_find.sh) -----------------------------------------------------------------
# bulk.txt, bulk_rates.tsv (bulk_index), import.txt, sizes.txt, orthanc.txt, driver.json (find_driver.py)
TYPES = [("name", "PatientName prefix wildcard (STUDY)"), ("pid", "PatientID exact (STUDY)"),
         ("date", "StudyDate one-month range (STUDY)"), ("accession", "AccessionNumber exact (STUDY)"),
         ("series", "SERIES of one study"), ("image", "IMAGE of one series")]


def find(run):
    env = kv(os.path.join(run, "env.txt"))
    bulk, imp = kv(os.path.join(run, "bulk.txt")), kv(os.path.join(run, "import.txt"))
    sizes, orth = kv(os.path.join(run, "sizes.txt")), kv(os.path.join(run, "orthanc.txt"))
    drv_path = os.path.join(run, "driver.json")
    drv = json.load(open(drv_path, encoding="utf-8")) if os.path.exists(drv_path) else None
    big, small, orthn = env.get("big_name"), env.get("small_name"), env.get("orthanc_name")
    big_n, small_n = int(env.get("big_instances") or 0), int(env.get("small_instances") or 0)
    header("C-FIND", env, ["machine", "disk", "load_start", "other_procs", "mifas_bin", "bulk_bin", "peers"])
    p(f"Data: catalog seed {env.get('seed')}; {big_n:,} instances ({env.get('big_patients')} patients) bulk-indexed "
      f"for **{big}**; the first {env.get('small_patients')} patients ({small_n:,} instances, Part-10 files from "
      f"`gen_part10`, {env.get('file_size', '?')} bytes) imported for **{small}** and stored into **{orthn}**.")
    p("")
    if bulk:
        p(f"### Indexing {big_n:,} instances — bulk path (`bulk_index`: the ingest path's index code, no files)")
        p("")
        fr, lr = num(bulk.get("first_window_rate")) or 0, num(bulk.get("last_window_rate")) or 0
        fi, li = num(bulk.get("first_window_index_rate")) or 0, num(bulk.get("last_window_index_rate")) or 0
        rows = [("wall rate, first / last 10k", f"{fmt(fr, 0, True)} / {fmt(lr, 0, True)} /s",
                 f"{lr / fr:.2f}" if fr else "—", met(fr and lr / fr >= 0.8)),
                ("index rate (apply + flush), first / last 10k", f"{fmt(fi, 0, True)} / {fmt(li, 0, True)} /s",
                 f"{li / fi:.2f}" if fi else "—", met(fi and li / fi >= 0.8)),
                ("whole load", f"{fmt(bulk.get('seconds'))} s, {fmt(bulk.get('overall_rate'), 0, True)} /s", "", "")]
        per = sizes.get("big_index_du_bytes")
        if per:
            rows.append(("index on disk (`du -sb`)", f"{human_bytes(per)} = **{float(per) / big_n:,.0f} bytes/instance**",
                         "", ""))
        p(table(["measure", "value", "ratio (target ≥ 0.8)", "met"], rows, ["l", "r", "r", "l"]))
        p("")
        rates = [l.split("\t") for l in lines(os.path.join(run, "bulk_rates.tsv"))][1:]
        if rates:
            p("Rate per 10k window (wall / index-only), instances/s: " + ", ".join(
                f"{int(r[0]) // 1000}k: {float(r[2]):,.0f} / {float(r[4]):,.0f}" for r in rates
                if int(r[0]) % 100000 == 0 or r is rates[0] or r is rates[-1]) + ".")
            p("")
    if imp or orth:
        si, oi = sizes.get("small_index_du_bytes"), sizes.get("orthanc_index_du_bytes")
        p(f"### The {small_n:,}-instance set in MIFAS (`mifas import`) and in Orthanc (4 × storescu)")
        p("")
        p(table(["", "MIFAS", "Orthanc"], [
            ("load time", f"{fmt(imp.get('seconds'))} s ({fmt(imp.get('rate'), 0)} /s)",
             f"{fmt(orth.get('load_seconds'))} s ({fmt(orth.get('load_rate'), 0)} /s)"),
            ("stored instances", f"{imp.get('imported', '?')} imported, {imp.get('rejected', '?')} rejected",
             orth.get("count_instances", "—")),
            ("index on disk", f"{human_bytes(si)} = {fmt(float(si) / small_n if si else None, 0, True)} B/instance",
             f"{human_bytes(oi)} = {fmt(float(oi) / small_n if oi else None, 0, True)} B/instance"),
            ("object files on disk", human_bytes(sizes.get("small_objects_du_bytes")),
             human_bytes(sizes.get("orthanc_storage_du_bytes")))]))
        p("")
    if drv:
        T = drv["targets"]
        p(f"### C-FIND latency ({drv['queries']} queries per type and server, {drv['warmup']} warm-up, "
          f"servers interleaved; clients: {', '.join(drv.get('clients', []))})")
        p("")
        extra = sorted((a - b) / mm for tr in T.values() if "raw" in tr["clients"] for t, _ in TYPES
                       for a, b, mm in zip(tr["clients"]["pynetdicom"][t]["ms"], tr["clients"]["raw"][t]["ms"],
                                           tr["clients"]["pynetdicom"][t]["matches"]) if mm >= 5)
        if extra:
            p(f"pynetdicom spends about {extra[len(extra) // 2]:.1f} ms of Python per pending response (median "
              "(pynetdicom − raw) / matches over queries with ≥ 5 matches).")
            p("")
        for cl in drv.get("clients", ["pynetdicom"]):
            p(f"**Client: {cl}** — p50 / p99 in ms; matches = mean (max) at {big} · {small} · {orthn}")
            p("")
            rows = []
            for t, label in TYPES:
                def g(name, key):
                    return T.get(name, {}).get("clients", {}).get(cl, {}).get(t, {}).get(key)
                b50, s50, o50 = g(big, "p50_ms"), g(small, "p50_ms"), g(orthn, "p50_ms")
                ratio = o50 / s50 if o50 and s50 else None
                rows.append((label, " · ".join(f"{fmt(g(n, 'matches_mean'))} ({g(n, 'matches_max')})"
                                               for n in (big, small, orthn)),
                             fmt(b50, 2), fmt(g(big, "p99_ms"), 2), fmt(s50, 2), fmt(g(small, "p99_ms"), 2),
                             fmt(o50, 2), fmt(g(orthn, "p99_ms"), 2),
                             f"{ratio:.1f}×" + ("" if ratio >= 10 else " (**< 10×**)") if ratio else "—",
                             met(b50 < 20) if b50 is not None else "—"))
            p(table(["query", "matches", f"{big} p50", f"{big} p99", f"{small} p50", f"{small} p99", f"{orthn} p50",
                     f"{orthn} p99", "Orthanc / MIFAS (p50)", f"{big} p50 < 20 ms"], rows,
                    ["l", "r", "r", "r", "r", "r", "r", "r", "r", "l"]))
            p("")
        p("C-ECHO round trip with pynetdicom (p50): " +
          ", ".join(f"{n} {fmt(tr.get('echo_p50_ms'), 2)} ms" for n, tr in T.items()) + ".")
        p("")
        p("Answers checked against the catalog (expected UID sets and returned values; Orthanc's expected name "
          "matches follow its own rule, the whole value, case-insensitive):")
        p("")
        rows, examples = [], []
        for n, tr in T.items():
            for cl, types in tr["clients"].items():
                st = defaultdict(int)
                for t, ty in types.items():
                    for k, v in ty["status"].items():
                        st[k] += v
                    examples += [f"{n}/{cl}/{t}: query {w['query']}: got {w['got']}, expected {w['expected']}, "
                                 f"final {w['final']}" for w in ty["wrong_set"][:2]]
                    examples += [f"{n}/{cl}/{t}: query {v['query']}: {v['problem']}" for v in ty["value_errors"][:1]]
                rows.append((n, cl, sum(ty["n"] for ty in types.values()), ", ".join(f"{k}: {v}" for k, v in st.items()),
                             sum(len(ty["wrong_set"]) for ty in types.values()),
                             sum(len(ty["value_errors"]) for ty in types.values())))
        p(table(["server", "client", "queries", "final statuses", "wrong result sets", "value mismatches"], rows,
                ["l", "l", "r", "l", "r", "r"]))
        p("")
        if examples:
            p("Examples of mismatches:\n\n" + "\n".join(f"- {e}" for e in examples[:12]))
            p("")
        warn = drv.get("pynetdicom_warnings") or {}
        if warn:
            p("pynetdicom warnings: " + "; ".join(f"{k} ×{v}" for k, v in warn.items()))
            p("")
    notes_block(run)


# ---- retrieve (bench/retrieve/run_retrieve.sh) -------------------------------------------------------
COLS = ["target", "op", "repeat", "count", "seconds", "rate", "files", "final", "completed", "check",
        "server_cpu", "dest_cpu", "client_cpu", "busy", "note", "other"]
OPS = {"move": "C-MOVE (movescu → storescp)", "get": "C-GET (getscu)", "store": "C-STORE → storescp, no archive"}
TARGETS = {"mifas": "MIFAS", "orthanc": "Orthanc 1.10", "storescu": "— (DCMTK storescu)",
           "rawstore": "— (raw sender: pre-encoded, in memory)"}
QUIET_LOAD = 0.2  # CPUs used by other processes during a retrieve above which it counts as disturbed


def retrieve(run):
    env = kv(os.path.join(run, "env.txt"))
    rows = [dict(zip(COLS, f)) for f in (l.split("\t") for l in lines(os.path.join(run, "results.tsv")))
            if len(f) == len(COLS)]
    count = int(env.get("study", "500").split()[0])
    header(f"Retrieve — C-MOVE / C-GET of one {count}-instance study", env,
           ["machine", "disk", "peers", "mifas_bin", "study", "load_at_start"])
    p(f"Instances/s, median of {env.get('repeats', '?')} repeats (min–max) after one warm-up (own column). CPU in ms "
      "per instance; other load: CPUs used by all other processes during the retrieve (median).")
    p("")
    medians, per_rep, out = {}, {}, []
    for op in OPS:
        for target in TARGETS:
            rs = [r for r in rows if r["target"] == target and r["op"] == op and r["repeat"].isdigit()
                  and r["repeat"] != "0"]
            if not rs:
                continue
            ok = [r for r in rs if r["check"] == "ok" and r["note"] == "-"]
            rates = [num(r["rate"]) for r in ok]
            medians[(target, op)] = med(rates)
            per_rep[(target, op)] = {r["repeat"]: (num(r["rate"]), num(r["other"])) for r in ok}
            warm = [num(r["rate"]) for r in rows if r["target"] == target and r["op"] == op
                    and r["repeat"] == "0" and r["check"] == "ok"]

            def per_inst(col):
                v = med([num(r[col]) for r in ok])
                return None if v is None else v * 1000 / count
            checks = f"{len(ok)}/{len(rs)} ok" + (f", **{len(rs) - len(ok)} FAILED**" if len(rs) > len(ok) else "")
            if any(r["busy"] == "1" for r in rs):
                checks += ", compiler running during some"
            loaded = sum(1 for r in ok if (num(r["other"]) or 0) >= QUIET_LOAD)
            if loaded:
                checks += f", {loaded} with other load ≥ {QUIET_LOAD}"
            out.append((OPS[op], TARGETS[target], fmt(medians[(target, op)]),
                        f"{min(rates):.1f}–{max(rates):.1f}" if rates else "—", fmt(warm[0]) if warm else "—",
                        fmt(med([num(r["seconds"]) for r in ok]), 2), fmt(per_inst("server_cpu"), 2),
                        fmt(per_inst("dest_cpu"), 2),
                        # the raw sender's process CPU is mostly reading and encoding before the timed part
                        "—" if target == "rawstore" else fmt(per_inst("client_cpu"), 2),
                        fmt(med([num(r["other"]) for r in ok]), 2), checks))
    p(table(["operation", "archive", "inst/s", "(min–max)", "warm-up inst/s", "s per study", "server CPU ms/inst",
             "storescp CPU ms/inst", "client CPU ms/inst", "other load, CPUs", "checks"], out,
            ["l", "l"] + ["r"] * 8 + ["l"]))
    p("")
    out = []
    for op in ["move", "get"]:
        a, b = medians.get(("mifas", op)), medians.get(("orthanc", op))
        if a is None or b is None:
            out.append((OPS[op], "—", "—", "—", "≥ 2", f"**no figure** ({'MIFAS' if a is None else 'Orthanc'})"))
            continue
        pa, pb = per_rep[("mifas", op)], per_rep[("orthanc", op)]
        keys = [k for k in sorted(pa, key=int) if k in pb and pb[k][0]]
        quiet = [pa[k][0] / pb[k][0] for k in keys if (pa[k][1] or 0) < QUIET_LOAD and (pb[k][1] or 0) < QUIET_LOAD]
        out.append((OPS[op], f"{a / b:.2f}", ", ".join(f"{pa[k][0] / pb[k][0]:.2f}" for k in keys),
                    f"{statistics.median(quiet):.2f} ({len(quiet)} of {len(keys)})" if quiet else f"— (0 of {len(keys)})",
                    "≥ 2", met(a / b >= 2)))
    p(table(["ratio MIFAS / Orthanc", "of medians", "per repeat", f"median over quiet repeats (other load < {QUIET_LOAD})",
             "target", "met"], out, ["l", "r", "r", "r", "r", "l"]))
    p("")
    raw, orth = medians.get(("rawstore", "store")), medians.get(("orthanc", "move"))
    if raw:
        p(f"Destination bound: the raw sender pushes the same {count} instances, pre-encoded, over one association "
          f"into the same storescp at {raw:.1f} inst/s; no C-MOVE into it can be faster"
          + (f": the C-MOVE ratio cannot exceed {raw / orth:.2f} here." if orth else "."))
        p("")
    for op in ["move", "get"]:
        top = os.path.join(run, f"perf-{op}.top.txt")
        if os.path.exists(top) and os.path.getsize(top):
            thr = os.path.join(run, f"perf-{op}.threads.txt")
            p(f"perf profile of MIFAS during one extra {OPS[op]}:\n\n```")
            if os.path.exists(thr):
                p("self time by shared object:\n" + open(thr).read().rstrip() + "\ninclusive time of selected frames:")
            p(open(top).read().rstrip() + "\n```\n")
    notes_block(run)


if __name__ == "__main__":
    {"ingest": ingest, "scale": scale, "find": find, "retrieve": retrieve}[sys.argv[1]](sys.argv[2])
    print("\n".join(OUT))
