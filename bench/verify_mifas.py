#!/usr/bin/env python3
"""Sanity check after a MIFAS run: for a sample of corpus files, the stored
object objects/<sha256(uid)[:2]>/<uid>.dcm exists and holds the data set byte
for byte (everything after the file meta group) — so the benchmark measured
real ingest work. Prints nothing and exits 0 when all is well, else one line
per problem and exit 1.

Usage: verify_mifas.py CORPUS_DIR OBJECTS_DIR [--sample 20]
"""
import argparse
import hashlib
import os
import random
import sys

from harness import R  # the tests' raw DICOM helpers (tests/integration/raw_dul.py)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("objects")
    ap.add_argument("--sample", type=int, default=20)
    args = ap.parse_args()
    files = sorted(os.path.join(r, n) for r, _, fs in os.walk(args.corpus) for n in fs)
    random.seed(1)
    bad = 0
    for src in random.sample(files, min(args.sample, len(files))):
        _, uid, _, sent = R.read_part10(src)
        dst = os.path.join(args.objects, hashlib.sha256(uid.encode()).hexdigest()[:2], uid + ".dcm")
        try:
            if R.read_part10(dst)[3] != sent:
                print(f"{dst}: data set differs from {src}")
                bad += 1
        except (OSError, ValueError, KeyError) as e:
            print(f"{dst}: {e}")
            bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
