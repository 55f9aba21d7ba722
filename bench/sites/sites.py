#!/usr/bin/env python3
"""HDFS sites for the site benchmarks: one MiniDFSCluster (tests/minidfs) per WAN namespace.

  sites.py up --base DIR [--sites 3] [--datanodes 1] [--replication 1] [--no-netns]
      starts site i (1..N) inside namespace mifas-wan-{a,b,c} (made by wan.sh up), namenode and
      datanodes bound to 198.18.i.2, so every byte a client on the host exchanges with the site
      (namenode RPC and datanode data) crosses the shaped veth link. Writes DIR/sites.json (name,
      url, namenode HTTP address, client settings per site), prints "SITES READY DIR/sites.json",
      then waits: when stdin closes or on SIGTERM it shuts the sites down and exits.
      --no-netns: the sites on 127.0.0.1 on the host (no link at all), for comparison.
  sites.py config --sites-json F --data-dir D --out CFG [--ack quorum] [--only a,b] [--root /mifas]
               [--pack-max-mb N] [--file-sites DIR]
      a MIFAS TOML configuration with those sites (--file-sites: three file:// sites under DIR
      instead of HDFS, no sites.json needed).
  sites.py count --sites-json F --site a [--path /mifas]
      files, directories and bytes under PATH on one site (WebHDFS LISTSTATUS, recursive), and the
      namenode's own FilesTotal / BlocksTotal (JMX): "files N dirs N bytes N fs_objects N blocks N"

JVM options: MINIDFS_JAVA_OPTS (default here: serial GC, 768 MB heap, full JIT — the datanodes'
data path is what is measured, unlike the tests, which cap the JIT for start-up time).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "integration"))
os.environ.setdefault("MINIDFS_JAVA_OPTS", "-XX:+UseSerialGC -Xms128m -Xmx768m -Xss512k")
import minidfs  # noqa: E402

LETTERS = "abc"


def up(a):
    base = Path(a.base).resolve()
    base.mkdir(parents=True, exist_ok=True)
    prefix = minidfs.ensure_launcher()
    sites = []
    for i in range(1, a.sites + 1):
        x = LETTERS[i - 1]
        bind = "127.0.0.1" if a.no_netns else f"198.18.{i}.2"
        s = minidfs.Site(f"site{x.upper()}", base / f"site-{x}", namenodes=1, datanodes=a.datanodes,
                         bind_address=bind, replication=a.replication)
        cmd = prefix if a.no_netns else ["ip", "netns", "exec", f"mifas-wan-{x}", *prefix]
        sites.append(s)
        s.spawn(cmd)

    def shutdown(*_):
        for s in sites:
            s.close(timeout=60)
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    try:
        for s in sites:
            s.wait_ready()
    except minidfs.MiniDfsError as e:
        print(f"SITES FAILED {str(e).splitlines()[0]}", flush=True)
        print(e, file=sys.stderr)
        shutdown()
    info = []
    for i, s in enumerate(sites, 1):
        info.append({"letter": LETTERS[i - 1], "name": f"site-{LETTERS[i - 1]}", "url": s.url,
                     "http": s.http[0], "conf": s.client_conf(), "started_in": round(s.started_in, 1),
                     "pid": s.proc.pid, "log": str(s.log_path)})
    out = base / "sites.json"
    out.write_text(json.dumps(info, indent=1))
    print(f"SITES READY {out}", flush=True)
    # the sites live until our stdin closes (the benchmark script holds it open)
    while sys.stdin.buffer.read(4096):
        pass
    shutdown()


def toml_str(v: str) -> str:
    return json.dumps(v)  # a JSON string is a valid TOML basic string for our values


def config(a):
    lines = ["[storage]", f"data_dir = {toml_str(a.data_dir)}", f"ack = {toml_str(a.ack)}",
             "repair_interval_secs = 0", ""]
    if a.file_sites:
        only = a.only.split(",") if a.only else list(LETTERS)
        for x in only:
            d = Path(a.file_sites) / x
            d.mkdir(parents=True, exist_ok=True)
            lines += ["[[storage.sites]]", f"name = {toml_str('site-' + x)}", f"url = {toml_str('file://' + str(d))}",
                      f"root = {toml_str(a.root)}"]
            if a.pack_max_mb:
                lines.append(f"pack_max_mb = {a.pack_max_mb}")
            lines.append("")
    else:
        info = json.loads(Path(a.sites_json).read_text())
        only = a.only.split(",") if a.only else [s["letter"] for s in info]
        for s in info:
            if s["letter"] not in only:
                continue
            lines += ["[[storage.sites]]", f"name = {toml_str(s['name'])}", f"url = {toml_str(s['url'])}",
                      f"root = {toml_str(a.root)}"]
            if a.pack_max_mb:
                lines.append(f"pack_max_mb = {a.pack_max_mb}")
            hadoop = ", ".join(f"{toml_str(k)} = {toml_str(v)}" for k, v in s["conf"].items())
            lines += [f"hadoop = {{ {hadoop} }}", ""]
    Path(a.out).write_text("\n".join(lines))


def get_json(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.load(r)


def count(a):
    info = {s["letter"]: s for s in json.loads(Path(a.sites_json).read_text())}[a.site]
    http = info["http"]
    files = dirs = size = 0
    stack = [a.path]
    while stack:
        p = stack.pop()
        st = get_json(f"http://{http}/webhdfs/v1{p}?op=LISTSTATUS&user.name=bench")["FileStatuses"]["FileStatus"]
        for e in st:
            if e["type"] == "DIRECTORY":
                dirs += 1
                stack.append(f"{p.rstrip('/')}/{e['pathSuffix']}")
            else:
                files += 1
                size += e["length"]
    jmx = get_json(f"http://{http}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystem")["beans"][0]
    print(f"files {files} dirs {dirs} bytes {size} fs_objects {jmx['FilesTotal']} blocks {jmx['BlocksTotal']}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up")
    p.add_argument("--base", required=True)
    p.add_argument("--sites", type=int, default=3, choices=[1, 2, 3])
    p.add_argument("--datanodes", type=int, default=1)
    p.add_argument("--replication", type=int, default=1)
    p.add_argument("--no-netns", action="store_true")
    p = sub.add_parser("config")
    p.add_argument("--sites-json")
    p.add_argument("--file-sites")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ack", default="quorum", choices=["1", "quorum", "all"])
    p.add_argument("--only", help="site letters, e.g. a or a,b")
    p.add_argument("--root", default="/mifas")
    p.add_argument("--pack-max-mb", type=int, default=0)
    p = sub.add_parser("count")
    p.add_argument("--sites-json", required=True)
    p.add_argument("--site", default="a")
    p.add_argument("--path", default="/mifas")
    a = ap.parse_args()
    if a.cmd == "up":
        up(a)
    elif a.cmd == "config":
        if not (a.sites_json or a.file_sites):
            ap.error("config needs --sites-json or --file-sites")
        config(a)
    else:
        count(a)


if __name__ == "__main__":
    main()
