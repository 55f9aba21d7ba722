#!/usr/bin/env python3
"""Generate the retrieve benchmark study: ONE CT study of N instances.

Same instances as the ingest corpus (bench/gen_corpus.py's make_instance: CT Image Storage,
512x512x16-bit, Explicit VR Little Endian, ~0.5 MB each), but all in one patient / one study,
split into SERIES series. Files go to OUT/ (flat). When done, writes two siblings of OUT (so
storescu +sd never sees them):
  OUT.study     the Study Instance UID (one line)
  OUT.complete  "<count> <study uid>" — the runner regenerates the study if it is missing.

Usage: gen_study.py OUT [--count 500] [--series 2]
"""
import argparse
import os
import sys

import numpy as np
from pydicom.uid import generate_uid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from gen_corpus import ROOT, make_instance  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--series", type=int, default=2)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20261126)
    study = generate_uid(prefix=ROOT)
    series = [generate_uid(prefix=ROOT) for _ in range(args.series)]
    per_series = -(-args.count // args.series)
    for i in range(args.count):
        s = i // per_series
        ds = make_instance(rng, 900, study, series[s], s + 1, i % per_series + 1)
        ds.PatientID = "RETRIEVE0001"
        ds.PatientName = "Bench^Retrieve"
        ds.AccessionNumber = "RETR0001"
        ds.StudyDescription = "Retrieve bench study"
        ds.save_as(os.path.join(args.out, f"ct{i:05d}.dcm"), enforce_file_format=True)
    base = args.out.rstrip("/")
    with open(base + ".study", "w") as f:
        f.write(study + "\n")
    with open(base + ".complete", "w") as f:
        f.write(f"{args.count} {study}\n")
    print(f"study {study}: {args.count} instances in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
