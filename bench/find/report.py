#!/usr/bin/env python3
"""Markdown section of a C-FIND benchmark run (called by run_find.sh).

Usage: report.py RUN_DIR  -> markdown on stdout

Reads RUN_DIR/env.txt, bulk.txt, bulk_rates.tsv, import.txt, sizes.txt, orthanc.txt, driver.json,
notes.txt (each optional except env.txt / driver.json when the query part ran).
"""
import json
import os
import sys

TYPES = [
    ("name", "PatientName prefix wildcard (STUDY)"),
    ("pid", "PatientID exact (STUDY)"),
    ("date", "StudyDate one-month range (STUDY)"),
    ("accession", "AccessionNumber exact (STUDY)"),
    ("series", "SERIES of one study"),
    ("image", "IMAGE of one series"),
]


def kv(path):
    out = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if ": " in line:
                    k, v = line.rstrip("\n").split(": ", 1)
                    out[k.strip()] = v.strip()
    return out


def f1(x, nd=1):
    try:
        return f"{float(x):,.{nd}f}"
    except (TypeError, ValueError):
        return "—"


def human(n):
    try:
        n = float(n)
    except (TypeError, ValueError):
        return "—"
    for u in ["B", "KiB", "MiB", "GiB"]:
        if n < 1024 or u == "GiB":
            return f"{n:,.1f} {u}" if u != "B" else f"{n:.0f} B"
        n /= 1024


def yes(b):
    return "yes" if b else "**NO**"


def main():
    run = sys.argv[1]
    env = kv(os.path.join(run, "env.txt"))
    bulk = kv(os.path.join(run, "bulk.txt"))
    imp = kv(os.path.join(run, "import.txt"))
    sizes = kv(os.path.join(run, "sizes.txt"))
    orth = kv(os.path.join(run, "orthanc.txt"))
    notes = []
    if os.path.exists(os.path.join(run, "notes.txt")):
        notes = [l.rstrip("\n") for l in open(os.path.join(run, "notes.txt"), encoding="utf-8") if l.strip()]
    drv = None
    if os.path.exists(os.path.join(run, "driver.json")):
        drv = json.load(open(os.path.join(run, "driver.json"), encoding="utf-8"))

    big = env.get("big_name", "mifas-1M")
    small = env.get("small_name", "mifas-100k")
    orthn = env.get("orthanc_name", "orthanc-100k")
    big_n = int(env.get("big_instances", "0") or 0)
    small_n = int(env.get("small_instances", "0") or 0)
    o = []
    p = o.append
    p(f"## C-FIND — run of {env.get('date', '?')}")
    p("")
    p(f"Produced by `bench/find/run_find.sh` (knobs in its header). Same run: every figure below comes "
      f"from this one invocation.")
    p("")
    p(f"- machine: {env.get('machine', '?')}; disk: {env.get('disk', '?')}")
    p(f"- load before measuring: {env.get('load_start', '?')}; other heavy processes: "
      f"{env.get('other_procs', 'none seen')}")
    p(f"- MIFAS: git {env.get('git', '?')}; server binary {env.get('mifas_bin', '?')}; bulk loader "
      f"{env.get('bulk_bin', '?')}")
    p(f"- peers: {env.get('orthanc_version', '?')} (Debian), pynetdicom {env.get('pynetdicom', '?')}, "
      f"pydicom {env.get('pydicom', '?')}, DCMTK {env.get('dcmtk', '?')}")
    p(f"- data: catalog seed {env.get('seed', '?')}; {big_n:,} instances = {env.get('big_patients', '?')} "
      f"patients × 2 studies × 5 series × 10 instances (names ~70 % US/ASCII with census-like "
      f"surname frequencies + long tail, ~15 % European ISO_IR 100 such as MÜLLER^JÜRGEN, ~15 % CJK "
      f"in ISO_IR 192 / GB18030 such as Wang^Xiaoming=王^小明 or 王^小明; study dates 2017–2024; "
      f"CT/MR/US/CR/DX/MG/PT(+CT)/XA/NM; random 2.25 UIDs). The {small_n:,}-instance set is the first "
      f"{env.get('small_patients', '?')} patients of the same catalog.")
    p("")

    # ---- ingest ----------------------------------------------------------------------------
    if bulk:
        p(f"### Indexing {big_n:,} instances — bulk path through the same index code "
          f"(`InstanceEntry::from_header` + `Index::apply` + `Index::flush_blocking`), not the network "
          f"ingest path")
        p("")
        p(f"`bench/find/bulk_index.rs` (cargo example `bulk_index`) builds a realistic header per instance "
          f"(~{bulk.get('mean_header_bytes', '?')} bytes in Explicit VR LE, no pixel data, "
          f"RequestAttributesSequence item, text in the patient's character set) and applies them series by "
          f"series in batches of {bulk.get('batch', '?')}, flushing the index after every batch (a durable "
          f"group commit, as the ingest path does after each group). No object files. The wall rate includes "
          f"building the headers; the index rate counts only `apply` + `flush`.")
        p("")
        fr, lr = float(bulk.get("first_window_rate", 0) or 0), float(bulk.get("last_window_rate", 0) or 0)
        fi, li = float(bulk.get("first_window_index_rate", 0) or 0), float(bulk.get("last_window_index_rate", 0) or 0)
        per = sizes.get("big_index_du_bytes")
        p("| measure | value | target | met |")
        p("|---|---:|---:|---|")
        p(f"| wall rate, first 10k instances | {f1(fr, 0)} /s | | |")
        p(f"| wall rate, last 10k instances (at {big_n:,}) | {f1(lr, 0)} /s | | |")
        if fr:
            p(f"| ratio last / first (wall) | {lr / fr:.2f} | ≥ 0.8 | {yes(lr / fr >= 0.8)} |")
        p(f"| index rate (apply + flush), first 10k | {f1(fi, 0)} /s | | |")
        p(f"| index rate (apply + flush), last 10k | {f1(li, 0)} /s | | |")
        if fi:
            p(f"| ratio last / first (index only) | {li / fi:.2f} | ≥ 0.8 | {yes(li / fi >= 0.8)} |")
        rates = os.path.join(run, "bulk_rates.tsv")
        rows = [l.rstrip("\n").split("\t") for l in open(rates)][1:] if os.path.exists(rates) else []
        if len(rows) >= 10:
            # single 10k windows last 1-5 s and are noisy on a shared machine: also 50k at each end
            def agg(rs, col_s):
                n = (int(rs[-1][0]) - (int(rs[0][0]) - 10000))
                return n / sum(float(r[col_s]) for r in rs)
            a_w, b_w = agg(rows[:5], 1), agg(rows[-5:], 1)
            a_i, b_i = agg(rows[:5], 3), agg(rows[-5:], 3)
            p(f"| wall rate, first 50k / last 50k | {f1(a_w, 0)} / {f1(b_w, 0)} /s = {b_w / a_w:.2f} | ≥ 0.8 | {yes(b_w / a_w >= 0.8)} |")
            p(f"| index rate, first 50k / last 50k | {f1(a_i, 0)} / {f1(b_i, 0)} /s = {b_i / a_i:.2f} | ≥ 0.8 | {yes(b_i / a_i >= 0.8)} |")
        p(f"| whole load | {f1(bulk.get('seconds'), 1)} s, {f1(bulk.get('overall_rate'), 0)} /s | | |")
        if per:
            p(f"| index on disk (`du -sb <data>/index`) | {human(per)} = "
              f"**{float(per) / big_n:,.0f} bytes/instance** | | |")
        if bulk.get("sled_size_on_disk"):
            p(f"| `Index::size_on_disk()` after the load | {human(bulk['sled_size_on_disk'])} | | |")
        p("")
        rates = os.path.join(run, "bulk_rates.tsv")
        if os.path.exists(rates):
            rows = [l.rstrip("\n").split("\t") for l in open(rates)][1:]
            if rows:
                pick = [r for r in rows if int(r[0]) in {10000, 50000, 100000, 200000, 300000, 400000, 500000,
                                                          600000, 700000, 800000, 900000, big_n}]
                p("Rate per 10k window (wall / index-only), instances/s: " + ", ".join(
                    f"{int(r[0]) // 1000}k: {float(r[2]):,.0f} / {float(r[4]):,.0f}" for r in pick) + ".")
                p("")
    if imp or orth:
        p(f"### The {small_n:,}-instance set in MIFAS (real ingest: `mifas import`) and in Orthanc")
        p("")
        p("| | MIFAS `mifas import` | Orthanc 1.10 (4 × storescu) |")
        p("|---|---:|---:|")
        p(f"| load time | {f1(imp.get('seconds'), 1)} s ({f1(imp.get('rate'), 0)} /s) | "
          f"{f1(orth.get('load_seconds'), 1)} s ({f1(orth.get('load_rate'), 0)} /s) |")
        p(f"| stored instances | {imp.get('imported', '?')} imported, {imp.get('rejected', '?')} rejected | "
          f"{orth.get('count_instances', '?')} |")
        si = sizes.get("small_index_du_bytes")
        oi = sizes.get("orthanc_index_du_bytes")
        p(f"| index on disk | {human(si)} = {f1(float(si) / small_n if si else None, 0)} bytes/instance | "
          f"{human(oi)} = {f1(float(oi) / small_n if oi else None, 0)} bytes/instance (SQLite) |")
        p(f"| object files on disk | {human(sizes.get('small_objects_du_bytes'))} | "
          f"{human(sizes.get('orthanc_storage_du_bytes'))} |")
        p("")
        p(f"Files: {small_n:,} Part-10 files written with pydicom (`bench/find/gen_files.py`, same attributes "
          f"as the bulk headers, 8×8 16-bit pixel data, {env.get('file_size', '?')} bytes each). Orthanc: "
          f"own storage/index dirs, `SyncStorageArea: false` (loading only; not measured against MIFAS), "
          f"`DicomCheckCalledAet: false`, `DicomAlwaysAllowFind: true`, no plugins, `TCP_NODELAY=1` in its "
          f"environment (DCMTK-based: without it its responses wait for delayed ACKs); storescu "
          f"`+sd +r`, 4 processes, TCP_NODELAY=1.")
        p("")

    # ---- queries ------------------------------------------------------------------------------
    if drv:
        T = drv["targets"]
        nq = drv["queries"]
        p(f"### C-FIND latency (end to end, {nq} queries per type and server, different values per query)")
        p("")
        p(f"Servers queried in the same run, interleaved query by query (rotating order): **{big}** "
          f"(MIFAS serving the bulk-loaded {big_n:,}-instance index), **{small}** (MIFAS, {small_n:,} "
          f"instances via `mifas import`) and **{orthn}** (Orthanc 1.10.1, same {small_n:,} files). "
          f"Study Root Q/R FIND, one association per server and client kept for the whole run, "
          f"{drv['warmup']} warm-up queries per type not counted. Latency = from sending the C-FIND-RQ to "
          f"receiving the final response. Two clients, each query run with both:")
        extra = []
        for tr in T.values():
            c = tr["clients"]
            if "raw" not in c:
                continue
            for t, _ in TYPES:
                for a, b, m in zip(c["pynetdicom"][t]["ms"], c["raw"][t]["ms"], c["pynetdicom"][t]["matches"]):
                    if m >= 5:
                        extra.append((a - b) / m)
        extra.sort()
        ex = f"{extra[len(extra) // 2]:.1f} ms" if extra else "?"
        p("- **pynetdicom** 3.0.4 (`send_c_find`, identifiers decoded as they arrive) — the Python client the "
          "issue's tests name (its benchmark names no client). Its DUL thread polls the socket (idle sleep set to "
          f"{drv.get('pynetdicom_run_loop_delay_s')} s instead of 1 ms) and it spends about {ex} of Python "
          "per pending response (median over all queries with ≥ 5 matches of (pynetdicom − raw) / matches, "
          "the same for every server), so it dominates whenever MIFAS returns more than a few matches. "
          "TCP_NODELAY is set on its socket (pynetdicom leaves Nagle on: the identifier PDU would wait "
          "~40 ms for a delayed ACK whatever the server), and its association reactor is parked (its "
          "pause check races with `send_c_find()` and swallowed 1–3 fast C-FIND-RSPs per ~600 queries in "
          "trials: \"Received unexpected C-FIND service message\").")
        p("- **raw**: `bench/find/rawfind.py`, a blocking socket client that only reads PDUs while timing "
          "and decodes the identifiers after the clock stops — closer to what the server costs.")
        p("")
        p("Query keys: STUDY level asks PatientName, PatientID, PatientBirthDate, PatientSex, "
          "StudyInstanceUID, StudyDate, StudyTime, AccessionNumber, StudyID, StudyDescription, "
          "ReferringPhysicianName, ModalitiesInStudy, NumberOfStudyRelatedSeries/Instances; SERIES: "
          "SeriesInstanceUID, Modality, SeriesNumber, SeriesDescription, BodyPartExamined, "
          "NumberOfSeriesRelatedInstances; IMAGE: SOPInstanceUID, SOPClassUID, InstanceNumber. "
          "Name prefixes are the first 3 letters of a random patient's family name (\"SMI*\", \"MÜL*\" sent "
          "in ISO_IR 100, \"WAN*\") or its first ideographic character (\"王*\" in GB18030 / ISO_IR 192), "
          "so frequent names are drawn as often as they occur. Date ranges are whole calendar months.")
        p("")
        for cl in drv.get("clients", ["pynetdicom"]):
            p(f"**Client: {cl}** — p50 / p99 in ms; \"matches\" = mean (max) responses per query "
              f"at {big} · {small} · {orthn}")
            p("")
            p(f"| query | matches | {big} p50 | {big} p99 | {small} p50 | {small} p99 | {orthn} p50 | "
              f"{orthn} p99 | Orthanc / MIFAS at {small_n // 1000}k (p50) | {big} p50 < 20 ms |")
            p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            for t, label in TYPES:
                def g(name, key):
                    try:
                        return T[name]["clients"][cl][t][key]
                    except KeyError:
                        return None
                b50, b99 = g(big, "p50_ms"), g(big, "p99_ms")
                s50, s99 = g(small, "p50_ms"), g(small, "p99_ms")
                o50, o99 = g(orthn, "p50_ms"), g(orthn, "p99_ms")
                mb = g(big, "matches_mean"), g(big, "matches_max")
                ms = g(small, "matches_mean"), g(small, "matches_max")
                mo = g(orthn, "matches_mean"), g(orthn, "matches_max")
                ratio = (o50 / s50) if (o50 and s50) else None
                p(f"| {label} | {f1(mb[0])} ({mb[1]}) · {f1(ms[0])} ({ms[1]}) · {f1(mo[0])} ({mo[1]}) | {f1(b50, 2)} | {f1(b99, 2)} | "
                  f"{f1(s50, 2)} | {f1(s99, 2)} | {f1(o50, 2)} | {f1(o99, 2)} | "
                  f"{(f'{ratio:.1f}×' + ('' if ratio >= 10 else ' (**< 10×**)')) if ratio else '—'} | "
                  f"{yes(b50 is not None and b50 < 20) if b50 is not None else '—'} |")
            p("")
        echo = ", ".join(f"{n} {f1(tr.get('echo_p50_ms'), 2)} ms" for n, tr in T.items())
        p(f"C-ECHO round trip with pynetdicom (p50, the client's floor): {echo}.")
        p("")
        # MIFAS 1M vs 100k
        p(f"MIFAS at {big_n // 1000}k vs {small_n // 1000}k instances (p50 ratio {big} / {small}; the result "
          f"sets of name and date queries grow with the archive, the others do not):")
        p("")
        p("| query | pynetdicom p50 ratio | raw p50 ratio | raw p99 ratio |")
        p("|---|---:|---:|---:|")
        for t, label in TYPES:
            cells = []
            for cl, key in (("pynetdicom", "p50_ms"), ("raw", "p50_ms"), ("raw", "p99_ms")):
                try:
                    a = T[big]["clients"][cl][t][key]
                    b = T[small]["clients"][cl][t][key]
                    cells.append(f"{a / b:.2f}")
                except (KeyError, TypeError, ZeroDivisionError):
                    cells.append("—")
            p(f"| {label} | " + " | ".join(cells) + " |")
        p("")
        # correctness
        p("Answers checked against the catalog (an independent oracle: the expected set of "
          "Study/Series/SOP Instance UIDs per query, and returned PatientName/PatientID/StudyDate/"
          "AccessionNumber/NumberOf…Instances against the generated values; for Orthanc the expected "
          "name matches follow its own rule — the whole value, case-insensitive but accent-sensitive — "
          "instead of MIFAS's any-component rule, so the two return different sets for name queries: "
          "\"MAR*\" also finds SMITH^MARY in MIFAS):")
        p("")
        p("| server | client | queries | final statuses | wrong result sets | value mismatches |")
        p("|---|---|---:|---|---:|---:|")
        examples = []
        for n, tr in T.items():
            for cl, types in tr["clients"].items():
                nq_all = sum(ty["n"] for ty in types.values())
                st = {}
                ws = vs = 0
                for t, ty in types.items():
                    for k, v in ty["status"].items():
                        st[k] = st.get(k, 0) + v
                    ws += len(ty["wrong_set"])
                    vs += len(ty["value_errors"])
                    for w in ty["wrong_set"][:2]:
                        examples.append(f"{n}/{cl}/{t}: query {w['query']}: got {w['got']} "
                                        f"(pendings {w['pendings']}), expected {w['expected']}, final {w['final']}")
                    for v in ty["value_errors"][:1]:
                        examples.append(f"{n}/{cl}/{t}: query {v['query']}: {v['problem']}")
                p(f"| {n} | {cl} | {nq_all} | {', '.join(f'{k}: {v}' for k, v in st.items())} | {ws} | {vs} |")
        p("")
        if examples:
            p("Examples of mismatches:")
            p("")
            for e in examples[:12]:
                p(f"- {e}")
            p("")
        warn = drv.get("pynetdicom_warnings") or {}
        if warn:
            p("pynetdicom warnings: " + "; ".join(f"{k} ×{v}" for k, v in warn.items()))
            p("")
    if notes:
        p("Notes from the run:")
        p("")
        for n in notes:
            p(f"- {n}")
        p("")
    print("\n".join(o))


if __name__ == "__main__":
    main()
