#!/usr/bin/env python3
"""Check what a retrieve delivered: DEST holds exactly the study's instances.

- the number of files in DEST equals the study's instance count;
- the SOP Instance UIDs (from the file names storescp/getscu write, "<modality>.<uid>", or from the
  file's header when a name does not parse) are exactly the study's set;
- for SAMPLE files (chosen by --seed), every data element outside group 0002 equals the source's
  (values compared through pydicom; pixel data byte for byte).
The study's UID list is cached next to the study as STUDY.uids (built once from the headers).

Usage: verify_dest.py STUDY_DIR DEST_DIR [--sample 3] [--seed 0]
Prints "ok <files>" or the problems (exit 1).
"""
import argparse
import os
import random
import sys

import pydicom


def study_uids(study):
    cache = study.rstrip("/") + ".uids"
    if os.path.exists(cache):
        out = {}
        for line in open(cache):
            uid, name = line.split()
            out[uid] = os.path.join(study, name)
        return out
    out = {}
    for name in sorted(os.listdir(study)):
        ds = pydicom.dcmread(os.path.join(study, name), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        out[str(ds.SOPInstanceUID)] = os.path.join(study, name)
    tmp = cache + ".tmp"
    with open(tmp, "w") as f:
        for uid, path in out.items():
            f.write(f"{uid} {os.path.basename(path)}\n")
    os.replace(tmp, cache)
    return out


def uid_of(path):
    name = os.path.basename(path)
    head, _, rest = name.partition(".")
    if rest and head.isalpha() and all(c.isdigit() or c == "." for c in rest):
        return rest
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(ds.SOPInstanceUID)


def compare(src, got):
    a = pydicom.dcmread(src)
    b = pydicom.dcmread(got)
    diffs = []
    tags = {e.tag for e in a} | {e.tag for e in b}
    for tag in sorted(tags):
        if tag.group == 0x0002:
            continue
        ea, eb = a.get(tag), b.get(tag)
        if ea is None or eb is None:
            diffs.append(f"{tag} only in {'source' if eb is None else 'received'}")
        elif ea.value != eb.value:
            diffs.append(f"{tag} differs")
    return diffs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("study")
    ap.add_argument("dest")
    ap.add_argument("--sample", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    want = study_uids(args.study)
    files = []
    for root, _, names in os.walk(args.dest):
        files += [os.path.join(root, n) for n in names]
    problems = []
    if len(files) != len(want):
        problems.append(f"{len(files)} files, expected {len(want)}")
    got = {}
    for f in files:
        try:
            got[uid_of(f)] = f
        except Exception as e:  # unreadable file
            problems.append(f"{os.path.basename(f)}: unreadable ({e})")
    missing = set(want) - set(got)
    extra = set(got) - set(want)
    if missing:
        problems.append(f"{len(missing)} instances missing")
    if extra:
        problems.append(f"{len(extra)} unexpected instances")
    common = sorted(set(want) & set(got))
    rng = random.Random(args.seed)
    for uid in rng.sample(common, min(args.sample, len(common))):
        d = compare(want[uid], got[uid])
        if d:
            problems.append(f"{uid}: {len(d)} elements differ ({', '.join(d[:4])})")
    if problems:
        print("; ".join(problems))
        sys.exit(1)
    print(f"ok {len(files)}")


if __name__ == "__main__":
    main()
