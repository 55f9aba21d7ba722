#!/usr/bin/env python3
"""C-FIND latency driver (pynetdicom): same query set against several SCPs, interleaved.

Usage:
  find_driver.py --out OUT.json [--queries 120] [--seed 7] [--warmup 5]
                 --target NAME HOST PORT AET CATALOG_DIR [--target ...]

Targets that share a catalog directory get exactly the same queries. For each query type and
each query, every target is asked in turn (rotating order), each over ONE association per target
that is kept open for the whole run (Study Root Query/Retrieve - FIND). Latency = from
send_c_find() to the final (non-pending) response, as seen by the client, including pynetdicom's
decoding of every pending response. Also recorded: time to first response, number of matches,
final status, and whether the returned set of unique keys equals the set computed from the
catalog (an independent oracle: MIFAS semantics = PN matching over every name component/group,
case-insensitive; Orthanc semantics = the whole name value, case-insensitive, accent-sensitive).

Query types (values differ per query, drawn with a fixed seed from the catalog):
  name      STUDY  PatientName prefix wildcard, e.g. "SMI*", "MÜL*" (ISO_IR 100), "王*" (GB18030 /
                   ISO_IR 192) — the prefix of a randomly drawn patient's family name
  pid       STUDY  PatientID exact
  date      STUDY  StudyDate one calendar month, e.g. "20190301-20190331"
  accession STUDY  AccessionNumber exact
  series    SERIES the series of one study (StudyInstanceUID given)
  image     IMAGE  the instances of one series (StudyInstanceUID + SeriesInstanceUID given)
"""
import argparse
import calendar
import json
import os
import logging
import random
import threading
import socket
import sys
import time
import unicodedata
from io import BytesIO

from pydicom.dataset import Dataset
from pynetdicom import AE, debug_logger, dsutils  # noqa: F401
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import catalog as cat  # noqa: E402
from harness import R  # noqa: E402  (tests/integration/raw_dul.py)

TYPES = ["name", "pid", "date", "accession", "series", "image"]


def fold(s):
    return s.lower()


def strip_accents(s):
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def mifas_name_keys(name):
    """As src/index/record.rs name_index_keys (the contract): whole value, each group, each group
    without '^', each component; case-folded."""
    keys = []

    def add(x):
        x = fold(x.strip(" ^="))
        if x and x not in keys:
            keys.append(x)
    add(name)
    for g in name.split("="):
        add(g)
        add(g.replace("^", ""))
        for c in g.split("^"):
            add(c)
    return keys


def mifas_name_match(name, prefix):
    p = fold(prefix)
    return any(k.startswith(p) for k in mifas_name_keys(name))


def orthanc_name_match(name, prefix):
    """Orthanc 1.10 (observed): wildcard over the whole value, case-insensitive, accent-sensitive."""
    return name.upper().startswith(prefix.upper())


class Catalog:
    def __init__(self, path):
        self.path = path
        self.patients, self.studies, self.series = cat.load(path)
        self.studies_of_patient = {}
        for s in self.studies:
            self.studies_of_patient.setdefault(s["patient_idx"], []).append(s)
        self.series_of_study = {}
        for s in self.series:
            self.series_of_study.setdefault(s["study_uid"], []).append(s)
        self.study_by_uid = {s["study_uid"]: s for s in self.studies}
        self.n_instances = len(self.series) * cat.INSTANCES
        # name forms for the two matching rules, computed once
        self.mifas_keys = [mifas_name_keys(p["name"]) for p in self.patients]
        self.orthanc_norm = [p["name"].upper() for p in self.patients]


def study_keys(ds):
    for kw in ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
               "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
               "ReferringPhysicianName", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
               "NumberOfStudyRelatedInstances"]:
        if kw not in ds:
            setattr(ds, kw, "")
    return ds


def make_queries(c: Catalog, n, seed):
    """dict type -> list of query dicts {ds, level, uid_kw, expect: {semantics: set}, label}"""
    rng = random.Random(seed)
    out = {t: [] for t in TYPES}
    months = sorted({s["date"][:6] for s in c.studies})
    for _ in range(n):
        # name: prefix of a random patient's family name (in the patient's character set)
        p = rng.choice(c.patients)
        name, cs = p["name"], p["charset"]
        groups = name.split("=")
        if len(groups) > 1 and rng.random() < 0.5:
            fam = groups[1].split("^")[0]  # ideographic group, e.g. 王
            prefix = fam[:1] + "*"
        else:
            fam = groups[0].split("^")[0]
            prefix = (fam[:1] + "*") if ord(fam[0]) > 0x2000 else (fam[:3].upper() + "*")
        ds = Dataset()
        if cs:
            ds.SpecificCharacterSet = cs
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientName = prefix
        study_keys(ds)
        pre = prefix[:-1]
        pm, po = fold(pre), pre.upper()
        exp_m = {s["study_uid"] for pp in c.patients
                 if any(k.startswith(pm) for k in c.mifas_keys[pp["idx"]])
                 for s in c.studies_of_patient[pp["idx"]]}
        exp_o = {s["study_uid"] for pp in c.patients if c.orthanc_norm[pp["idx"]].startswith(po)
                 for s in c.studies_of_patient[pp["idx"]]}
        out["name"].append(dict(ds=ds, uid_kw="StudyInstanceUID", label=f"{prefix} [{cs or 'ASCII'}]",
                                expect={"mifas": exp_m, "orthanc": exp_o},
                                whole_value_matches=len(exp_o)))
        # pid
        p = rng.choice(c.patients)
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientID = p["patient_id"]
        study_keys(ds)
        exp = {s["study_uid"] for s in c.studies_of_patient[p["idx"]]}
        out["pid"].append(dict(ds=ds, uid_kw="StudyInstanceUID", label=p["patient_id"],
                               expect={"mifas": exp, "orthanc": exp}))
        # date: one calendar month
        m = rng.choice(months)
        y, mo = int(m[:4]), int(m[4:])
        rng_str = f"{m}01-{m}{calendar.monthrange(y, mo)[1]:02d}"
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyDate = rng_str
        study_keys(ds)
        exp = {s["study_uid"] for s in c.studies if s["date"][:6] == m}
        out["date"].append(dict(ds=ds, uid_kw="StudyInstanceUID", label=rng_str,
                                expect={"mifas": exp, "orthanc": exp}))
        # accession
        st = rng.choice(c.studies)
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.AccessionNumber = st["accession"]
        study_keys(ds)
        exp = {st["study_uid"]}
        out["accession"].append(dict(ds=ds, uid_kw="StudyInstanceUID", label=st["accession"],
                                     expect={"mifas": exp, "orthanc": exp}))
        # series of one study
        st = rng.choice(c.studies)
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = st["study_uid"]
        for kw in ["SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                   "BodyPartExamined", "NumberOfSeriesRelatedInstances"]:
            setattr(ds, kw, "")
        exp = {s["series_uid"] for s in c.series_of_study[st["study_uid"]]}
        out["series"].append(dict(ds=ds, uid_kw="SeriesInstanceUID", label=st["study_uid"],
                                  expect={"mifas": exp, "orthanc": exp}))
        # instances of one series
        se = rng.choice(c.series)
        ds = Dataset()
        ds.QueryRetrieveLevel = "IMAGE"
        ds.StudyInstanceUID = se["study_uid"]
        ds.SeriesInstanceUID = se["series_uid"]
        for kw in ["SOPInstanceUID", "SOPClassUID", "InstanceNumber"]:
            setattr(ds, kw, "")
        exp = {cat.instance_uid(se["series_uid"], k) for k in range(1, cat.INSTANCES + 1)}
        out["image"].append(dict(ds=ds, uid_kw="SOPInstanceUID", label=se["series_uid"],
                                 expect={"mifas": exp, "orthanc": exp}))
    return out


def check_values(c: Catalog, q, ident):
    """Spot-check returned values against the catalog; returns a problem string or None."""
    lvl = q["ds"].QueryRetrieveLevel
    try:
        if lvl == "STUDY":
            st = c.study_by_uid.get(ident.StudyInstanceUID)
            if st is None:
                return f"unknown study {ident.StudyInstanceUID}"
            p = c.patients[st["patient_idx"]]
            got = str(ident.get("PatientName", ""))
            if got != p["name"]:
                return f"PatientName {got!r} != {p['name']!r}"
            if str(ident.get("PatientID", "")) != p["patient_id"]:
                return f"PatientID {ident.get('PatientID')!r} != {p['patient_id']!r}"
            if str(ident.get("StudyDate", "")) != st["date"]:
                return f"StudyDate {ident.get('StudyDate')!r} != {st['date']!r}"
            if str(ident.get("AccessionNumber", "")) != st["accession"]:
                return f"AccessionNumber {ident.get('AccessionNumber')!r}"
            n = ident.get("NumberOfStudyRelatedInstances", None)
            want = len(c.series_of_study[st["study_uid"]]) * cat.INSTANCES
            if n is None or str(n) == "" or int(n) != want:
                return f"NumberOfStudyRelatedInstances {n!r} != {want}"
        elif lvl == "SERIES":
            n = ident.get("NumberOfSeriesRelatedInstances", None)
            if n is None or str(n) == "" or int(n) != cat.INSTANCES:
                return f"NumberOfSeriesRelatedInstances {n!r} != {cat.INSTANCES}"
            if not str(ident.get("Modality", "")):
                return "Modality empty"
        elif lvl == "IMAGE":
            if not str(ident.get("SOPClassUID", "")):
                return "SOPClassUID empty"
            if not str(ident.get("InstanceNumber", "")):
                return "InstanceNumber empty"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return None


class _HeldEvent(threading.Event):
    """Replaces Association._reactor_checkpoint while measuring: set() is ignored while held."""
    hold = True

    def set(self):
        if not self.hold:
            super().set()


def hold_reactor(assoc):
    """Keep pynetdicom's association reactor thread parked for the whole run.

    pynetdicom (3.0.4) pauses its reactor during send_c_find() with a check that races with the
    reactor loop (it reads `_is_paused` while the reactor may already be past its checkpoint);
    the reactor then takes a C-FIND response that arrived quickly off the DIMSE queue, logs
    "Received unexpected C-FIND service message" and drops it. Seen here as 1-3 lost pending
    responses per ~600 queries against a fast SCP. As this SCU never serves requests, the
    reactor is parked on an event that send_c_find() cannot release."""
    ev = _HeldEvent()
    assoc._reactor_checkpoint = ev
    time.sleep(0.05)  # the reactor loop (1 ms sleep) reaches ev.wait() and stays there
    if not assoc._is_paused:
        sys.exit("pynetdicom reactor did not park")


def release_reactor(assoc):
    ev = assoc._reactor_checkpoint
    if isinstance(ev, _HeldEvent):
        ev.hold = False
        ev.set()


class _LogCounter(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.counts = {}

    def emit(self, record):
        msg = record.getMessage()[:120]
        self.counts[msg] = self.counts.get(msg, 0) + 1


LOG_COUNTER = _LogCounter()
logging.getLogger("pynetdicom").addHandler(LOG_COUNTER)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def new_stats():
    return {t: {"ms": [], "ttfr_ms": [], "matches": [], "status": {}, "wrong_set": [],
                "value_errors": [], "labels": []} for t in TYPES}


def run_pynetdicom(assoc, q):
    """-> (t0, t_first, t1, final, [identifier Dataset])"""
    idents, first, final = [], None, None
    t0 = time.perf_counter()
    for status, ident in assoc.send_c_find(q["ds"], StudyRootQueryRetrieveInformationModelFind):
        if first is None:
            first = time.perf_counter()
        if status is None or "Status" not in status:
            final = "no response (timeout/abort)"
            break
        if status.Status in (0xFF00, 0xFF01):
            idents.append(ident)
        else:
            final = f"0x{status.Status:04X}"
    t1 = time.perf_counter()
    return t0, first, t1, final, idents


def open_raw(host, port, aet):
    """Raw client: Study Root FIND in Implicit VR LE, max PDU 64 KiB, TCP_NODELAY (raw_dul)."""
    scu = R.RawAssociation(host, port, timeout=300)
    pdu = scu.associate(called=aet, calling="FINDBENCHRAW", max_pdu=65536,
                        contexts=[(1, StudyRootQueryRetrieveInformationModelFind, [R.IMPLICIT_LE])])
    if pdu.type != R.A_ASSOCIATE_AC or not scu.accepted_context(1):
        sys.exit(f"raw client: Study Root FIND / Implicit VR LE refused by {aet}: {pdu.describe()}")
    return scu


def run_raw(scu, q):
    t0 = time.perf_counter()
    rsps = scu.find(1, StudyRootQueryRetrieveInformationModelFind, dsutils.encode(q["ds"], True, True))
    first, t1 = rsps[0][2], rsps[-1][2]
    final = f"0x{rsps[-1][0]:04X}"
    # identifiers decoded after the clock stopped
    idents = [dsutils.decode(BytesIO(b), True, True) if b is not None else None
              for st, b, _ in rsps if st in R.PENDING]
    return t0, first, t1, final, idents


def record(ty, c, q, semantics, t0, first, t1, final, idents, check):
    uids, no_key, problem = set(), 0, None
    for ident in idents:
        if ident is not None and q["uid_kw"] in ident:
            uids.add(str(ident[q["uid_kw"]].value))
        else:
            no_key += 1
        if check and problem is None:
            problem = check_values(c, q, ident) if ident is not None else "no identifier"
    ty["ms"].append((t1 - t0) * 1000)
    ty["ttfr_ms"].append(((first or t1) - t0) * 1000)
    ty["matches"].append(len(uids))
    ty["status"][final] = ty["status"].get(final, 0) + 1
    ty["labels"].append(q["label"])
    exp = q["expect"][semantics]
    if uids != exp:
        ty["wrong_set"].append({"query": q["label"], "got": len(uids), "pendings": len(idents),
                                "no_key": no_key, "final": final, "expected": len(exp),
                                "missing": sorted(exp - uids)[:3],
                                "extra": sorted(uids - exp)[:3]})
    if problem:
        ty["value_errors"].append({"query": q["label"], "problem": problem})


def summarize(ty):
    ty["p50_ms"] = pct(ty["ms"], 50)
    ty["p99_ms"] = pct(ty["ms"], 99)
    ty["ttfr_p50_ms"] = pct(ty["ttfr_ms"], 50)
    ty["matches_mean"] = sum(ty["matches"]) / max(1, len(ty["matches"]))
    ty["matches_max"] = max(ty["matches"]) if ty["matches"] else 0
    ty["n"] = len(ty["ms"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--queries", type=int, default=120)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=5,
                    help="queries of each type run per target before measuring (not counted)")
    ap.add_argument("--echoes", type=int, default=200)
    ap.add_argument("--loop-delay", type=float, default=None,
                    help="pynetdicom DUL reactor idle sleep in seconds (default: pynetdicom's 0.001)")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw-socket client")
    ap.add_argument("--target", nargs=5, action="append", required=True,
                    metavar=("NAME", "HOST", "PORT", "AET", "CATALOG"))
    a = ap.parse_args()

    catalogs, queries = {}, {}
    for name, host, port, aet, cpath in a.target:
        if cpath not in catalogs:
            t0 = time.time()
            catalogs[cpath] = Catalog(cpath)
            queries[cpath] = make_queries(catalogs[cpath], a.queries + a.warmup, a.seed)
            print(f"[driver] catalog {cpath}: {len(catalogs[cpath].patients)} patients, "
                  f"queries built in {time.time() - t0:.1f}s", file=sys.stderr)

    ae = AE(ae_title="FINDBENCH")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(Verification)
    ae.acse_timeout = 30
    ae.dimse_timeout = 300
    ae.network_timeout = 300
    assocs, raws = {}, {}
    for name, host, port, aet, cpath in a.target:
        assoc = ae.associate(host, int(port), ae_title=aet)
        if not assoc.is_established:
            sys.exit(f"cannot associate with {name} at {host}:{port} ({aet})")
        # pynetdicom does not set TCP_NODELAY: a C-FIND-RQ goes out as two P-DATA PDUs (command,
        # then identifier), and with Nagle the second waits for the peer's delayed ACK (~40 ms)
        # whatever the server does. Real workstations (DCMTK with TCP_NODELAY, ...) do not pay it.
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if a.loop_delay is not None:
            assoc.dul._run_loop_delay = a.loop_delay
        hold_reactor(assoc)
        assocs[name] = assoc
        if not a.no_raw:
            raws[name] = open_raw(host, int(port), aet)

    clients = ["pynetdicom"] + ([] if a.no_raw else ["raw"])
    results = {"targets": {}, "queries": a.queries, "warmup": a.warmup, "seed": a.seed,
               "clients": clients,
               "pynetdicom_run_loop_delay_s": getattr(next(iter(assocs.values())).dul,
                                                      "_run_loop_delay", None)}
    for name, host, port, aet, cpath in a.target:
        sem = "orthanc" if "orthanc" in name.lower() else "mifas"
        results["targets"][name] = {"host": host, "port": int(port), "aet": aet, "catalog": cpath,
                                    "instances": catalogs[cpath].n_instances, "semantics": sem,
                                    "clients": {cl: new_stats() for cl in clients},
                                    "echo_ms": []}

    # C-ECHO round trips (pynetdicom): the floor of any request/response with this client
    names = [t[0] for t in a.target]
    for i in range(a.echoes):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t0 = time.perf_counter()
            st = assocs[name].send_c_echo()
            dt = (time.perf_counter() - t0) * 1000
            if st and st.Status == 0:
                results["targets"][name]["echo_ms"].append(dt)

    rot = 0
    for t in TYPES:
        for i in range(a.queries + a.warmup):
            order = a.target[rot % len(a.target):] + a.target[:rot % len(a.target)]
            cl_order = clients if rot % 2 == 0 else clients[::-1]
            rot += 1
            for name, host, port, aet, cpath in order:
                q = queries[cpath][t][i]
                tr = results["targets"][name]
                for cl in cl_order:
                    if cl == "pynetdicom":
                        r = run_pynetdicom(assocs[name], q)
                        if not assocs[name].is_established:
                            sys.exit(f"association with {name} lost during {t} query {q['label']}")
                    else:
                        r = run_raw(raws[name], q)
                    if i < a.warmup:
                        continue
                    record(tr["clients"][cl][t], catalogs[cpath], q, tr["semantics"], *r,
                           check=True)
        print(f"[driver] {t} done", file=sys.stderr)

    for name, assoc in assocs.items():
        release_reactor(assoc)
        assoc.release()
        if name in raws:
            raws[name].release()
    results["pynetdicom_warnings"] = LOG_COUNTER.counts

    for name, tr in results["targets"].items():
        tr["echo_p50_ms"] = pct(tr["echo_ms"], 50)
        for cl, types in tr["clients"].items():
            for t, ty in types.items():
                summarize(ty)
                print(f"{name:14s} {cl:10s} {t:10s} n={ty['n']} p50={ty['p50_ms']:.2f} ms "
                      f"p99={ty['p99_ms']:.2f} ms matches mean {ty['matches_mean']:.1f} "
                      f"max {ty['matches_max']} status {ty['status']} "
                      f"wrong_sets {len(ty['wrong_set'])} value_errors {len(ty['value_errors'])}",
                      file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
