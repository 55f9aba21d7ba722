#!/usr/bin/env python3
"""Reports of the site benchmarks (bench/sites/run_*.sh) from their run directories.

  report_sites.py ingest RUN    C-STORE ingest, three HDFS sites (quorum) vs local-only
  report_sites.py move RUN      C-MOVE of a study from sites linked 4:2:1 vs the best single site
  report_sites.py repair RUN    repair passes over many objects
  report_sites.py coalloc RUN   read of one large object: best single site vs co-allocation
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from harness import fmt, kv, lines, med, met, num, table  # noqa: E402


def env_block(run):
    env = kv(os.path.join(run, "env.txt"))
    skip = {"date", "git", "sites_json"}
    return "\n".join(f"- {k}: {v}" for k, v in env.items() if k not in skip), env


def notes_block(run):
    ns = lines(os.path.join(run, "notes.txt"))
    return ("\nNotes of this run:\n" + "\n".join(f"- {n}" for n in ns if n)) if any(ns) else ""


def link_rows(run, direction):
    d = kv(os.path.join(run, f"link-{direction}.txt"), sep=" ")
    return d


def tsv(path):
    return [l.split("\t") for l in lines(path) if l]


def ingest(run):
    env_text, env = env_block(run)
    rows = tsv(os.path.join(run, "results.tsv"))
    out = [f"## Sites — C-STORE ingest, three HDFS sites (ack quorum) vs local-only, run of {env.get('date', '?')} "
           f"(git {env.get('git', '?')})", "",
           "Produced by `bench/sites/run_site_ingest.sh` (method: `bench/sites/README.md`).", "", env_text, ""]
    link = link_rows(run, "write")
    if link:
        out.append("Raw TCP host → site through each link (python sockets, 3 s after 0.5 s warm-up), MB/s: "
                   + ", ".join(f"{k} {v}" for k, v in link.items()) + ".")
        out.append("")
    body = []
    ratios = {}
    for mode in sorted({r[1] for r in rows}, key=int):
        rl = [num(r[5]) for r in rows if r[0] == "local" and r[1] == mode and r[7] == "-"]
        rs = [num(r[5]) for r in rows if r[0] == "sites" and r[1] == mode and r[7] == "-"]
        cl = [num(r[6]) for r in rows if r[0] == "local" and r[1] == mode]
        cs = [num(r[6]) for r in rows if r[0] == "sites" and r[1] == mode]
        pl = [num(r[9]) for r in rows if r[0] == "local" and r[1] == mode and len(r) > 9]
        ps = [num(r[9]) for r in rows if r[0] == "sites" and r[1] == mode and len(r) > 9]
        js = [num(r[10]) for r in rows if r[0] == "sites" and r[1] == mode and len(r) > 10]
        ws = [num(r[4]) for r in rows if r[0] == "sites" and r[1] == mode]
        n = num(rows[0][3]) if rows else None
        ratio = med(rs) / med(rl) if med(rs) and med(rl) else None
        ratios[mode] = ratio
        body.append([f"{mode} association{'s' if mode != '1' else ''}", fmt(med(rl)),
                     " / ".join(fmt(x) for x in rl) or "—", fmt(med(rs)), " / ".join(fmt(x) for x in rs) or "—",
                     fmt(ratio, 2), met(ratio is not None and ratio >= 0.5),
                     fmt(med(cl) / n * 1000 if med(cl) and n else None, 2),
                     fmt(med(cs) / n * 1000 if med(cs) and n else None, 2),
                     fmt(max(pl), 0) if any(x is not None for x in pl) else "—",
                     fmt(max(ps), 0) if any(x is not None for x in ps) else "—",
                     fmt(med(js) / n * 1000 if med(js) and n else None, 2),
                     fmt((med(cs) + med(js)) / med(ws) if med(js) and med(cs) and med(ws) else None, 2)])
    out.append("Instances/s (median of the repeats; each repeat's value listed; only runs whose checks passed):")
    out.append("")
    out.append(table(["mode", "local-only inst/s", "(repeats)", "3 HDFS sites, quorum, inst/s", "(repeats)",
                      "ratio sites / local", "≥ 0.5", "local MIFAS CPU ms/inst", "sites MIFAS CPU ms/inst",
                      "local peak RSS MiB", "sites peak RSS MiB", "site JVMs CPU ms/inst",
                      "sites: MIFAS + JVMs CPUs busy (of 2)"], body))
    out.append("")
    checks = [f"{r[0]} {r[1]}assoc r{r[2]}: {r[7]}" for r in rows if r[7] != "-"]
    out.append("Checks: " + ("every run passed (no storescu error; `mifas stats` = count; with sites, "
                             "`mifas repair --sha256-sample 0` found every object on all three sites)."
                             if not checks else "FAILED: " + "; ".join(checks)))
    rep = [f"{r[1]}assoc r{r[2]}: {r[8]}" for r in rows if r[0] == "sites"]
    if rep:
        out.append("")
        out.append("Repair after each sites run (server stopped; queue_copied = copies the queue had not made "
                   "by SIGTERM, which right after the last C-STORE-RSP is normal):")
        out.append("")
        out += [f"- {x}" for x in rep]
    counts = tsv(os.path.join(run, "counts.tsv"))
    if counts:
        out.append("")
        out.append("NameNode objects per site after each sites run (WebHDFS LISTSTATUS under the run's root; "
                   "blocks from the namenode's JMX BlocksTotal, all roots of the site):")
        out.append("")
        crow = []
        n = num(rows[0][3]) if rows else None
        for mode, r, site, text in counts:
            f = dict(zip(text.split()[0::2], text.split()[1::2]))
            files = num(f.get("files"))
            crow.append([f"{mode}assoc r{r}", site, f.get("files", text), f.get("dirs", "?"),
                         f"{num(f.get('bytes', 0)) / 1e6:,.1f}" if f.get("bytes") else "?",
                         f.get("fs_objects", "?"), f.get("blocks", "?"),
                         fmt(files / n * 10000 if files is not None and n else None, 0)])
        out.append(table(["run", "site", "files", "dirs", "MB", "namenode FilesTotal", "namenode BlocksTotal",
                          "naive: files × 10,000 / count"], crow))
        per = num(env.get("bytes_per_instance"))
        pack = num(env.get("pack_max_mb")) or 1024
        if per:
            packs = -(-10000 * per // (pack * 2**20))
            out.append("")
            out.append(f"Projection for 10,000 instances of this size ({per:,.0f} B each, pack_max_mb {pack:.0f}): "
                       f"{packs:.0f} pack files + 1 directory per site ({10000 * per / 1e9:.2f} GB); the naive "
                       f"column scales a pack that is not full yet, so it overstates small runs. One file per "
                       f"instance would be 10,000 files (and 10,000 blocks).")
    out.append(notes_block(run))
    return "\n".join(out)


def move(run):
    env_text, env = env_block(run)
    rows = tsv(os.path.join(run, "results.tsv"))  # target repeat count secs rate mbps check
    out = [f"## Sites — C-MOVE of a {env.get('count', '?')}-instance CT study, sites linked {env.get('ratio', '?')}, "
           f"run of {env.get('date', '?')} (git {env.get('git', '?')})", "",
           "Produced by `bench/sites/run_site_move.sh` (method: `bench/sites/README.md`).", "", env_text, ""]
    link = link_rows(run, "read")
    if link:
        out.append("Raw TCP site → host (reads) through each link, MB/s (10^6 B): "
                   + ", ".join(f"{k} {v}" for k, v in link.items()) + ".")
        out.append("")
    body = []
    by = {}
    for t in ["three", "best"]:
        sel = [r for r in rows if r[0] == t]
        if not sel:
            continue
        secs = [num(r[3]) for r in sel]
        mbps = [num(r[5]) for r in sel]
        by[t] = med(mbps)
        ok = sum(r[6] == "ok" for r in sel)
        label = {"three": "MIFAS, three sites (a, b, c)", "best": "MIFAS, best single site (a only)"}[t]
        body.append([label, fmt(med(secs), 2), " / ".join(fmt(x, 2) for x in secs), fmt(med(mbps)),
                     fmt(med([num(r[4]) for r in sel])), f"{ok}/{len(sel)} ok"])
    out.append(table(["archive", "wall s (median)", "(repeats)", "MB/s", "inst/s", "checks"], body))
    out.append("")
    if "three" in by and "best" in by and by["best"]:
        sum_alone = num(link.get("all-at-once")) if link else None
        best_link = num(link.get("site-a")) if link else None
        out.append(f"Ratio three sites / best single site: **{by['three'] / by['best']:.2f}×** "
                   f"(MB/s of medians). Link bound: best single link {fmt(best_link)} MB/s, all three at once "
                   f"{fmt(sum_alone)} MB/s = {fmt(sum_alone / best_link if sum_alone and best_link else None, 2)}× "
                   f"the best link; three sites reached {fmt(by['three'] / sum_alone * 100 if sum_alone else None, 0)} % "
                   f"of the sum, the single site {fmt(by['best'] / best_link * 100 if best_link else None, 0)} % of its link.")
    out.append(notes_block(run))
    return "\n".join(out)


def repair(run):
    env_text, env = env_block(run)
    rows = tsv(os.path.join(run, "results.tsv"))  # label sample secs objects rate summary
    out = [f"## Sites — repair pass over {env.get('objects', '?')} objects, run of {env.get('date', '?')} "
           f"(git {env.get('git', '?')})", "",
           "Produced by `bench/sites/run_site_repair.sh` (method: `bench/sites/README.md`).", "", env_text, ""]
    objects = num(env.get("objects"))
    body = [[r[0], r[1], fmt(r[2], 2), fmt(objects / num(r[2]) if objects and num(r[2]) else None, 0, True),
             f"{int(num(r[3])):,}" if num(r[3]) is not None else r[3], fmt(r[4], 0, True), r[5]] for r in rows]
    out.append(table(["pass", "--sha256-sample", "wall s", "objects/s", "copies checked (all sites)", "copies/s",
                      "mifas repair says"], body, align=["l", "r", "r", "r", "r", "r", "l"]))
    out.append(notes_block(run))
    return "\n".join(out)


def coalloc(run):
    env_text, env = env_block(run)
    rows = tsv(os.path.join(run, "results.tsv"))  # case mode "key: value ..."
    out = [f"## Sites — read of one large object from three HDFS sites, run of {env.get('date', '?')} "
           f"(git {env.get('git', '?')})", "",
           "Produced by `bench/sites/run_coalloc.sh` (method: `bench/sites/README.md`).", "", env_text, ""]
    body = []
    for case in dict.fromkeys(r[0] for r in rows):
        link = kv(os.path.join(run, f"link-{case}.txt"), sep=" ")
        best_link, all_links = num(link.get("site-a")), num(link.get("all-at-once"))
        res = {}
        for r in rows:
            if r[0] == case:
                w = r[2].split()
                res[r[1]] = {k.rstrip(":"): v for k, v in zip(w[0::2], w[1::2])}
        single = num(res.get("single", {}).get("mb_per_s"))
        for mode, d in res.items():
            mb = num(d.get("mb_per_s"))
            target = ("≥ 2.7× best single site" if case == "equal" else "≥ 0.9× sum of the links") if mode == "coalloc" else ""
            ok = ""
            if mode == "coalloc" and mb:
                ok = met(mb >= 2.7 * single) if case == "equal" and single else met(mb >= 0.9 * all_links) if all_links else "?"
            body.append([case, mode, d.get("sites", "?"), fmt(d.get("seconds"), 2), fmt(mb),
                         fmt(d.get("cold_mb_per_s")) if "cold_mb_per_s" in d else "—",
                         fmt(mb / single if mb and single else None, 2), fmt(mb / all_links if mb and all_links else None, 2),
                         f"{num(d.get('vmhwm_kb', 0)) / 1024:.1f}" if num(d.get("vmhwm_kb")) else "?",
                         d.get("sha256_ok", "?") + ("" if d.get("cold_sha256_ok", "true") == "true" else " (cold: false)"),
                         target, ok])
        out.append(f"Links {case}: raw TCP site → host, MB/s: " + ", ".join(f"{k} {v}" for k, v in link.items()) + ".")
        out.append("")
    out.append(table(["links", "mode", "sites", "seconds", "MB/s", "cold MB/s (first read)", "× single", "× all links at once", "peak RSS MiB",
                      "SHA-256 ok", "target", "met"], body))
    out.append(notes_block(run))
    return "\n".join(out)


def main():
    kind, run = sys.argv[1], sys.argv[2]
    print({"ingest": ingest, "move": move, "repair": repair, "coalloc": coalloc}[kind](run))


if __name__ == "__main__":
    main()
