"""MIFAS on three real HDFS sites (our MiniDFSCluster launcher: siteA an HA pair, siteB and siteC
one namenode each, 2 datanodes everywhere, shared by the module). Ingest with DCMTK storescu under
ack "quorum"; what each site holds is read from the pack files through WebHDFS (the namenodes'
HTTP API), independently of MIFAS. Each test uses its own MIFAS data directory and its own root
directory on the sites."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

import dicom_fixtures as F
import minidfs as M
from mifas_helpers import run_mifas, split_part10, storescu, wait_until, file_dataset_bytes
from pack_files import parse_pack
from mifas_helpers import free_port
from retrieve_peers import StoreSCP, getscu, movescu, received_by_sop



@pytest.fixture
def sites(hdfs_sites):
    return hdfs_sites


NAMES = ("siteA", "siteB", "siteC")


def config(sites, root: str, ack: str = "quorum", timeout_secs: int = 10, replication: int = 2) -> str:
    lines = ["[storage]", f'ack = "{ack}"', "repair_interval_secs = 0", ""]
    for s in sites:
        lines += ["[[storage.sites]]", f'name = "{s.name}"', f'url = "{s.url}"']
        if len(s.namenodes) > 1:
            lines.append("namenodes = [" + ", ".join(f'"{n}"' for n in s.namenodes) + "]")
        lines += [f'root = "{root}"', f"replication = {replication}", "block_size_mb = 8", "pack_max_mb = 64",
                  f"timeout_secs = {timeout_secs}"]
        conf = {k: v for k, v in s.client_conf().items() if k.startswith("dfs.client.")}
        if conf:
            lines.append("hadoop = { " + ", ".join(f'"{k}" = "{v}"' for k, v in conf.items()) + " }")
        lines.append("")
    return "\n".join(lines)


def webhdfs_list(hostport: str, path: str) -> list[str]:
    import json
    body = json.loads(M.webhdfs("GET", hostport, path, "LISTSTATUS"))
    return [f["pathSuffix"] for f in body["FileStatuses"]["FileStatus"] if f["type"] == "FILE"]


def site_records(site: M.Site, root: str):
    """(uid -> intact?) for every record in the site's packs, read through WebHDFS."""
    h = site.active_http()
    try:
        listing = webhdfs_list(h, f"{root}/packs")
    except M.WebHdfsError as e:
        if e.status == 404:
            return {}
        raise
    held: dict[str, bool] = {}
    for name in sorted(listing):
        data = M.webhdfs_get(h, f"{root}/packs/{name}")
        for rec in parse_pack(name, data):
            held[rec.uid] = held.get(rec.uid, False) or rec.intact(data)
    return held


def holders(sites, root: str, uids) -> dict[str, list[str]]:
    recs = {s.name: site_records(s, root) for s in sites}
    return {u: [n for n in NAMES if recs[n].get(u)] for u in uids}


def store(server, files):
    r = storescu(server.host, server.port, files)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert out.count("Received Store Response (Success)") == len(files), out[-3000:]


def site(sites, name) -> M.Site:
    return next(s for s in sites if s.name == name)


def repair(server) -> dict[str, dict[str, int]]:
    out = run_mifas("repair", "--data-dir", str(server.data_dir), "--config", str(server.config_path),
                    "--sha256-sample", "1", timeout=300)
    lines = {}
    for m in re.finditer(r"^site (\S+): (.*)$", out.stdout, re.M):
        w = m[2].split()
        lines[m[1]] = {w[i]: int(w[i + 1]) for i in range(0, len(w), 2)}
    assert set(lines) == set(NAMES), out.stdout + out.stderr[-3000:]
    return lines | {"_rc": out.returncode, "_out": out.stdout}


def test_quorum_ingest_is_on_two_sites_at_success_and_three_after_the_queue(mifas, sites, corpus, tmp_path):
    root = "/t-quorum"
    s = mifas(config(sites, root))
    uids = [c.sop_instance for c in corpus]
    store(s, [c.path for c in corpus])
    at_success = holders(sites, root, uids)
    assert all(len(h) >= 2 for h in at_success.values()), at_success
    wait_until(lambda: all(len(h) == 3 for h in holders(sites, root, uids).values()), 60,
               interval=0.5, what="every object on the three sites")
    study = corpus[0].study
    r, _ = getscu(s, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}, tmp_path / "got")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    got = received_by_sop((tmp_path / "got").iterdir())
    want = [c for c in corpus if c.study == study]
    assert set(got) == {c.sop_instance for c in want}
    for c in want:
        assert split_part10(got[c.sop_instance])[1] == file_dataset_bytes(c.path)


def test_a_datanode_killed_during_ingest_fails_no_store(mifas, sites, tmp_path):
    root = "/t-datanode"
    s = mifas(config(sites, root))
    b = site(sites, "siteB")
    corpus = F.generate_corpus(tmp_path / "many", patients=1, studies=1, series=2, instances=100,
                               tag="dnkill")
    files = [c.path for c in corpus]
    done = threading.Event()
    result = {}

    def ingest():
        r = storescu(s.host, s.port, files)
        result["out"] = r.stdout + r.stderr
        result["rc"] = r.returncode
        done.set()

    t = threading.Thread(target=ingest)
    t.start()
    # kill as soon as the first objects are acknowledged (storescu prints each response)
    wait_until(lambda: site_counter(s, "bytes_written").get("siteB", 0) > 0 or done.is_set(), 60,
               interval=0.02, what="the first objects written to siteB")
    assert not done.is_set(), "ingest finished before the datanode could be killed"
    b.kill_datanode(0)
    try:
        t.join(180)
        assert done.is_set()
        assert result["rc"] == 0, result["out"][-3000:]
        assert result["out"].count("Received Store Response (Success)") == len(files), result["out"][-3000:]
    finally:
        b.restart_datanode(0)
    # Every acknowledged object reaches the three sites once the queue has filled in what
    # siteB could not take. (Read back with the datanode restarted: a pack left open on the
    # dead datanode has no block length for WebHDFS before that.)
    uids = [c.sop_instance for c in corpus]
    wait_until(lambda: all(len(h) == 3 for h in holders(sites, root, uids).values()), 120,
               interval=0.5, what="every object on the three sites")


def test_a_stopped_site_never_fails_ingest_and_the_queue_drains_when_it_returns(mifas, sites, corpus, tmp_path):
    root = "/t-outage"
    c_site = site(sites, "siteC")
    s = mifas(config(sites, root, timeout_secs=5))
    first, second = corpus[:8], corpus[8:16]
    store(s, [c.path for c in first])
    c_site.stop_site()
    try:
        store(s, [c.path for c in second])
        # retrieval goes on from the other sites
        study = second[0].study
        r, _ = getscu(s, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}, tmp_path / "got")
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        got = received_by_sop((tmp_path / "got").iterdir())
        want = [c for c in corpus if c.study == study]
        assert set(got) == {c.sop_instance for c in want}
        for c in want:
            assert split_part10(got[c.sop_instance])[1] == file_dataset_bytes(c.path)
        # kill -9 with copies still owed to siteC: nothing acknowledged is lost
        s.kill9()
    finally:
        c_site.start_site()
    s.restart()
    uids = [c.sop_instance for c in corpus[:16]]
    wait_until(lambda: all(len(h) == 3 for h in holders(sites, root, uids).values()), 120,
               interval=0.5, what="the queue to fill siteC after it returned and MIFAS restarted")
    s.stop_ok()
    rep = repair(s)
    for n in NAMES:
        assert (rep[n]["missing"], rep[n]["corrupt"]) == (0, 0), rep["_out"]
        assert rep[n]["checked"] == 16, rep["_out"]


def test_repair_replaces_a_corrupt_replica(mifas, sites, corpus):
    root = "/t-corrupt"
    s = mifas(config(sites, root, ack="all"))
    items = corpus[:6]
    store(s, [c.path for c in items])
    s.stop_ok()
    b = site(sites, "siteB")
    packs = sorted(webhdfs_list(b.active_http(), f"{root}/packs"))
    assert packs
    # every replica of the pack's first block, on the datanodes' disks
    b.corrupt_block(f"{root}/packs/{packs[0]}")
    rep = repair(s)
    assert rep["siteB"]["corrupt"] + rep["siteB"]["missing"] >= 1, rep["_out"]
    assert rep["siteB"]["repaired"] == rep["siteB"]["corrupt"] + rep["siteB"]["missing"], rep["_out"]
    assert rep["_rc"] == 0, rep["_out"]
    again = repair(s)
    assert (again["siteB"]["corrupt"], again["siteB"]["missing"]) == (0, 0), again["_out"]


def site_counter(server, name: str) -> dict[str, int]:
    """mifas_site_<name>_total per site, from the server's /metrics."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m[1]: int(float(m[2])) for m in
            re.finditer(rf'^mifas_site_{name}_total\{{site="([^"]+)"\}} (\S+)$', text, re.M)}


def bytes_read(server) -> dict[str, int]:
    return site_counter(server, "bytes_read")


def stop_a_site_once_reading(server, sites, at_least: int, done: threading.Event) -> M.Site:
    """Stop the whole site that has delivered the most bytes, once every site together has
    delivered `at_least` bytes of the retrieve in progress (the /metrics counters)."""
    wait_until(lambda: sum(bytes_read(server).values()) >= at_least or done.is_set(), 300,
               interval=0.05, what=f"{at_least} bytes read from the sites")
    assert not done.is_set(), "the retrieve ended before a site could be stopped"
    counts = bytes_read(server)
    victim = site(sites, max(counts, key=counts.get))
    assert sum(1 for v in counts.values() if v > 0) >= 2, counts  # co-allocated: several sites
    victim.stop_site()
    return victim


def test_a_site_stopped_mid_read_loses_no_byte(mifas, sites, tmp_path):
    """A 200 MB object (C-GET) and a 300-instance C-MOVE read from the three sites at once; the
    site delivering most is stopped halfway; every byte still arrives identical."""
    import subprocess
    import sys
    root = "/t-coalloc"
    big = tmp_path / "big.dcm"
    subprocess.run([sys.executable, str(M.REPO / "bench" / "generate.py"), "multiframe", str(big),
                    "--frames", "400"], check=True, capture_output=True)
    many = F.generate_corpus(tmp_path / "many", patients=1, studies=1, series=3, instances=100,
                             rows=256, cols=256, tag="coalloc")
    scp = StoreSCP(tmp_path / "scp", free_port(), accept_all=True).start()
    cfg = config(sites, root, ack="all", replication=1) + (
        f'\n[[remote_ae]]\naet = "STORESCP"\nhost = "127.0.0.1"\nport = {scp.port}\n')
    s = mifas(cfg)
    try:
        store(s, [big] + [c.path for c in many])
        import pydicom
        big_uid = str(pydicom.dcmread(big, stop_before_pixels=True).SOPInstanceUID)
        # 1. the large object, as byte ranges from every site
        done, out = threading.Event(), {}

        def get_big():
            out["r"] = getscu(s, {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID":
                                  str(pydicom.dcmread(big, stop_before_pixels=True).StudyInstanceUID),
                                  "SeriesInstanceUID": str(pydicom.dcmread(big, stop_before_pixels=True).SeriesInstanceUID),
                                  "SOPInstanceUID": big_uid}, tmp_path / "got-big", timeout=600)
            done.set()

        t = threading.Thread(target=get_big)
        t.start()
        victim = stop_a_site_once_reading(s, sites, 60 << 20, done)
        t.join(600)
        victim.start_site()
        r, _ = out["r"]
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        got = received_by_sop((tmp_path / "got-big").iterdir())
        assert split_part10(got[big_uid])[1] == file_dataset_bytes(big)
        # 2. a 300-instance C-MOVE, whole objects from different sites at once
        before = sum(bytes_read(s).values())
        total = sum(c.path.stat().st_size for c in many)
        done2, out2 = threading.Event(), {}

        def move():
            out2["r"] = movescu(s, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": many[0].study},
                                "STORESCP", timeout=600)
            done2.set()

        t2 = threading.Thread(target=move)
        t2.start()
        victim = stop_a_site_once_reading(s, sites, before + total // 3, done2)
        t2.join(600)
        victim.start_site()
        r, res = out2["r"]
        assert r.returncode == 0, r.stdout[-3000:]
        received = scp.received()
        assert set(received) == {c.sop_instance for c in many}, len(received)
        for c in many:
            assert split_part10(received[c.sop_instance])[1] == file_dataset_bytes(c.path)
    finally:
        scp.stop()
