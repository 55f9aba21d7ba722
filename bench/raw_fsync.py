#!/usr/bin/env python3
"""Raw durable-write loop: the physical limit for a durable single association.

For every file of the corpus (same sizes, same count) write a file of that size
into DIR/spool/, fsync it, close it, rename it to DIR/objects/<2 hex>/<name>
(the same two-level layout MIFAS uses); with --dirsync also fsync the
destination directory after the rename. One file at a time, no parallelism.

Prints one line: `<count> <seconds> <files/s>`.

Usage: raw_fsync.py CORPUS_DIR DIR [--dirsync]
"""
import argparse
import hashlib
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("dir")
    ap.add_argument("--dirsync", action="store_true")
    args = ap.parse_args()

    sizes = []
    for root, _, files in os.walk(args.corpus):
        for name in sorted(files):
            sizes.append((name, os.path.getsize(os.path.join(root, name))))
    buf = os.urandom(max(s for _, s in sizes))
    spool = os.path.join(args.dir, "spool")
    objects = os.path.join(args.dir, "objects")
    os.makedirs(spool, exist_ok=True)
    shards = {}
    for i in range(256):
        d = os.path.join(objects, f"{i:02x}")
        os.makedirs(d, exist_ok=True)
    # destinations computed up front so hashing is not timed
    plan = []
    for name, size in sizes:
        shard = hashlib.sha256(name.encode()).hexdigest()[:2]
        plan.append((os.path.join(spool, name + ".tmp"), os.path.join(objects, shard, name), size))
    if args.dirsync:
        for i in range(256):
            shards[f"{i:02x}"] = os.path.join(objects, f"{i:02x}")
    mv = memoryview(buf)

    t0 = time.perf_counter()
    for tmp, dst, size in plan:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        off = 0
        while off < size:
            off += os.write(fd, mv[off:size])
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, dst)
        if args.dirsync:
            dfd = os.open(os.path.dirname(dst), os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dfd)
            os.close(dfd)
    dt = time.perf_counter() - t0
    print(f"{len(plan)} {dt:.3f} {len(plan) / dt:.1f}")


if __name__ == "__main__":
    main()
