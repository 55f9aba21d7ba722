#!/usr/bin/env python3
"""Disaster recovery benchmark (issue 13, "Reindex"): `mifas reindex` of 100,000 instances.

  1. catalog (bench/find/catalog.py, seed 3): 1,000 patients x 2 studies x 5 series x 10
     instances; Part-10 files written by the cargo example `gen_part10` (header + 8x8 16-bit
     pixels, ~1.8 KB each);
  2. `mifas import --jobs 16` into a fresh data directory (the ingest path; its rate is reported
     as the ingest bound);
  3. `mifas serve`: a battery of C-FIND queries (pynetdicom; study, series and image levels,
     names with wildcards in three character sets, dates, accession numbers, modalities), the
     answers kept; server stopped;
  4. the index directory deleted, `mifas reindex --jobs J` timed (instances/s);
  5. `mifas serve` again: the same battery, every answer compared (identical sets of response
     identifiers; the value order of ModalitiesInStudy/SOPClassesInStudy is not significant);
  6. bounds in the same run: reading every stored file (`cat` to /dev/null, page cache, and the
     header parse is in neither), and the index code alone (cargo example `bulk_index`: the same
     `InstanceEntry::from_header` + `Index::apply` + flush on generated headers, no files).

  bench/reindex/run.py [--patients 1000] [--jobs 8] [--keep] [--no-results]

MIFAS_BIN (default target/release/mifas) and target/release/examples/{gen_part10,bulk_index}
must be built (`cargo build --release --bin mifas --example gen_part10 --example bulk_index`).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
from find_clients import identifier, pyn_find  # noqa: E402
from find_oracle import PATIENT_ROOT, STUDY_ROOT  # noqa: E402
from mifas_helpers import CHILD_ENV, MifasServer, parse_kv  # noqa: E402

MIFAS_BIN = Path(os.environ.get("MIFAS_BIN", REPO / "target" / "release" / "mifas"))
EXAMPLES = REPO / "target" / "release" / "examples"
UNORDERED = {0x00080061, 0x00080062}
CLAIM_PREFIX = "| reindex of 100,000 instances"

STUDY = dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="", StudyDate="", StudyTime="",
             AccessionNumber="", PatientName="", PatientID="", PatientBirthDate="", PatientSex="",
             StudyDescription="", ModalitiesInStudy="", SOPClassesInStudy="",
             NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="")
SERIES = dict(QueryRetrieveLevel="SERIES", SeriesInstanceUID="", Modality="", SeriesNumber="",
              SeriesDescription="", BodyPartExamined="", NumberOfSeriesRelatedInstances="")
IMAGE = dict(QueryRetrieveLevel="IMAGE", SOPInstanceUID="", SOPClassUID="", InstanceNumber="",
             Rows="", Columns="")


def tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def battery(catalog: Path) -> list[tuple[str, str, dict]]:
    studies = tsv(catalog / "studies.tsv")
    series = tsv(catalog / "series.tsv")
    patients = tsv(catalog / "patients.tsv")
    q = [
        ("study: all", STUDY_ROOT, dict(STUDY)),
        ("patient: all", PATIENT_ROOT, dict(QueryRetrieveLevel="PATIENT", PatientID="", PatientName="",
                                            NumberOfPatientRelatedStudies="",
                                            NumberOfPatientRelatedInstances="")),
        ("study: name SMITH*", STUDY_ROOT, {**STUDY, "PatientName": "SMITH*"}),
        ("study: name mü*", STUDY_ROOT, {**STUDY, "PatientName": "mü*", "SpecificCharacterSet": "ISO_IR 100"}),
        ("study: name 王*", STUDY_ROOT, {**STUDY, "PatientName": "王*", "SpecificCharacterSet": "ISO_IR 192"}),
        ("study: name *^J?HN*", STUDY_ROOT, {**STUDY, "PatientName": "*^J?HN*"}),
        ("study: one month", STUDY_ROOT, {**STUDY, "StudyDate": "20220301-20220331"}),
        ("study: one day range + time", STUDY_ROOT, {**STUDY, "StudyDate": "20190612-20190613",
                                                     "StudyTime": "-120000"}),
        ("study: accession R2*", STUDY_ROOT, {**STUDY, "AccessionNumber": "R20000*"}),
        ("study: modality MR", STUDY_ROOT, {**STUDY, "ModalitiesInStudy": "MR", "StudyDate": "20180101-20181231"}),
        ("series: modality CT", STUDY_ROOT, {**SERIES, "Modality": "CT"}),
    ]
    for i in (0, 7, 500, 999):
        p = patients[i % len(patients)]
        q.append((f"study: patient {p['patient_id']}", STUDY_ROOT, {**STUDY, "PatientID": p["patient_id"]}))
    for i in (0, 333, 1999):
        s = studies[i % len(studies)]
        q.append((f"series of study {i}", STUDY_ROOT, {**SERIES, "StudyInstanceUID": s["study_uid"]}))
        q.append((f"study {i} by accession", STUDY_ROOT, {**STUDY, "AccessionNumber": s["accession"]}))
    for i in (0, 4242, 9999):
        s = series[i % len(series)]
        q.append((f"images of series {i}", STUDY_ROOT, {**IMAGE, "StudyInstanceUID": s["study_uid"],
                                                        "SeriesInstanceUID": s["series_uid"]}))
    # "series: modality CT" without a study is refused by hierarchical rules? keep it level-wide
    # only if the server answers it (the status is compared like everything else).
    return q


def canonical(ds) -> tuple:
    def value(e):
        return repr(sorted(e.value)) if e.tag in UNORDERED and e.VM > 1 else repr(e.value)
    return tuple(sorted((str(e.tag), e.VR, value(e)) for e in ds))


def run_battery(server, queries) -> tuple[dict, float]:
    out = {}
    t = time.perf_counter()
    for qid, model, keys in queries:
        res = pyn_find(server, model, identifier(keys))
        out[qid] = (res.final, tuple(sorted(canonical(ds) for _, ds in res.pending)))
    return out, time.perf_counter() - t


def sh(*args, timeout=3600, env=None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                       env=env or CHILD_ENV)
    if r.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def insert_claim(results_md: Path, row: str) -> None:
    """Put `row` into the claims table (replacing an earlier reindex row)."""
    lines = results_md.read_text(encoding="utf-8").split("\n")
    lines = [line for line in lines if not line.startswith(CLAIM_PREFIX)]
    start = next(i for i, line in enumerate(lines) if line.startswith("## Current claims"))
    table = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    end = next(i for i in range(table, len(lines)) if not lines[i].startswith("|"))
    lines.insert(end, row)
    results_md.write_text("\n".join(lines), encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--workdir", default="/tmp/mifas-reindex-bench")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    for b in (MIFAS_BIN, EXAMPLES / "gen_part10", EXAMPLES / "bulk_index"):
        if not b.exists():
            raise SystemExit(f"{b} is not built (see the usage)")
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    catalog, files, data = work / "catalog", work / "files", work / "data"
    try:
        sh(sys.executable, REPO / "bench" / "find" / "catalog.py", catalog, "--patients", args.patients,
           "--seed", 3)
        sh(EXAMPLES / "gen_part10", catalog, files, "--folder-size", 10_000_000)
        n_files = sum(1 for f in files.rglob("*.dcm"))

        imp = parse_kv(sh(MIFAS_BIN, "import", "--jobs", 16, "--data-dir", data, files).stdout)
        assert imp["imported"] == str(n_files) and imp["rejected"] == "0", imp
        shutil.rmtree(files)  # the archive's own objects are the source from here on

        queries = battery(catalog)
        server = MifasServer(work / "srv", data_dir=data, name="before").start()
        try:
            before, before_s = run_battery(server, queries)
        finally:
            server.stop()
        index_bytes_before = du(data / "index")

        shutil.rmtree(data / "index")
        busy = harness.heavy_procs()
        load = os.getloadavg()[0]
        t = time.perf_counter()
        r = sh(MIFAS_BIN, "reindex", "--data-dir", data, "--jobs", args.jobs)
        wall = time.perf_counter() - t
        rx = parse_kv(r.stdout)
        assert rx["indexed"] == str(n_files) and rx["corrupt"] == "0", r.stdout
        index_bytes_after = du(data / "index")

        server = MifasServer(work / "srv", data_dir=data, name="after").start()
        try:
            after, _ = run_battery(server, queries)
        finally:
            server.stop()
        differing = [q for q in before if before[q] != after.get(q)]
        identifiers = sum(len(a[1]) for a in before.values())

        # Bounds, same run: reading every stored object (page cache), and the index code alone.
        objects = sorted(str(p) for p in (data / "objects").rglob("*.dcm"))
        cat = []
        for _ in range(3):
            t = time.perf_counter()
            for i in range(0, len(objects), 2000):
                subprocess.run(["cat", *objects[i:i + 2000]], stdout=subprocess.DEVNULL, check=True)
            cat.append(time.perf_counter() - t)
        bulk = parse_kv(sh(EXAMPLES / "bulk_index", catalog, work / "bulk", "--batch", 512).stdout)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    rate = n_files / float(rx["seconds"])
    cat_rate = n_files / harness.med(cat)
    bulk_rate = harness.num(bulk.get("overall_rate"))
    import_rate = harness.num(imp.get("files_per_second"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    ok = not differing
    text = (
        f"## {now[:10]} — `mifas reindex` of {n_files:,} instances from the local store "
        f"(bench/reindex/run.py, commit {commit}, {now} UTC)\n\n"
        f"Catalog seed 3, {args.patients:,} patients x 2 studies x 5 series x 10 instances, "
        f"~1.8 KB Part-10 files (gen_part10) imported with `mifas import --jobs 16`; the index "
        f"directory deleted, then `mifas reindex --jobs {args.jobs}` (2 CPUs). "
        f"{len(queries)} C-FIND queries (pynetdicom; {identifiers:,} response identifiers) before "
        f"and after. Machine while reindexing: load average {load:.1f}; other busy processes: "
        f"{busy or 'none'}.\n\n"
        "| | figure |\n|---|---:|\n"
        f"| `mifas reindex`: instances/s (its own `seconds`: {float(rx['seconds']):.1f} s; wall with "
        f"start-up {wall:.1f} s) | **{rate:,.0f}** |\n"
        f"| C-FIND answers identical after the rebuild | {'**yes**' if ok else f'**NO** ({len(differing)} differ: {differing[:3]})'} |\n"
        f"| bound: `cat` of the {len(objects):,} stored files to /dev/null (page cache), files/s | "
        f"{cat_rate:,.0f} (reindex at {rate / cat_rate:.2f}x) |\n"
        f"| bound: the index code alone (`bulk_index`: from_header + apply + flush, no files), "
        f"instances/s | {harness.fmt(bulk_rate, 0, True)} (reindex at "
        f"{(rate / bulk_rate) if bulk_rate else float('nan'):.2f}x) |\n"
        f"| ingest of the same files (`mifas import --jobs 16`: + spool, fsync, group commit), files/s | "
        f"{harness.fmt(import_rate, 0, True)} (reindex {rate / import_rate if import_rate else float('nan'):.1f}x faster) |\n"
        f"| index bytes before / after | {harness.human_bytes(index_bytes_before)} / "
        f"{harness.human_bytes(index_bytes_after)} |\n"
        f"| battery time before the rebuild | {before_s:.1f} s |\n"
    )
    print(text)
    if not args.no_results:
        section = Path("/tmp") / f"reindex-section-{os.getpid()}.md"
        section.write_text(text, encoding="utf-8")
        harness.insert_run(REPO / "bench" / "RESULTS.md", section)
        section.unlink()
        insert_claim(REPO / "bench" / "RESULTS.md",
                     f"{CLAIM_PREFIX} (local store, `--jobs {args.jobs}`), inst/s | {rate:,.0f} | "
                     f"bounds: cat of the files {cat_rate:,.0f}; index code alone "
                     f"{harness.fmt(bulk_rate, 0, True)}; ingest {harness.fmt(import_rate, 0, True)} | "
                     f"{rate / bulk_rate if bulk_rate else float('nan'):.2f}x of the index code | "
                     f"C-FIND answers identical: {'**met**' if ok else '**not met**'} "
                     f"({len(queries)} queries) | {now} | {commit} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
