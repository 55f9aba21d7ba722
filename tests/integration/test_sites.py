"""Replicated storage on several sites (`[[storage.sites]]`, `[storage] ack`), with sites that are
local directories (`file:///dir`): the ack policy, the replication queue (across a kill -9),
repair of missing and corrupt copies, and retrieval when a site's copies are gone. What each
site holds is read from the pack files on disk (tests/integration/pack_files.py), not asked of
MIFAS. The same behaviour on real HDFS sites is in test_hdfs_sites.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import dicom_fixtures as F
from mifas_helpers import (contexts_for_files, file_dataset_bytes, pyn_associate, run_mifas, storescu,
                           wait_until)
from pack_files import intact_uids, local_site_packs, parse_pack
from retrieve_peers import getscu, received_by_sop

SITES = ("a", "b", "c")


def site_config(base: Path, ack: str, **storage) -> dict:
    for n in SITES:  # a file:// site's directory must exist (a missing mount is an outage)
        (base / n).mkdir(parents=True, exist_ok=True)
    cfg = {"storage": {"ack": ack, "repair_interval_secs": 0, **storage,
                       "sites": [{"name": f"site-{n}", "url": f"file://{base / n}"} for n in SITES]}}
    return cfg


def holders(base: Path, uid: str) -> list[str]:
    return [n for n in SITES if uid in intact_uids(local_site_packs(base / n))]


def store_all(server, files):
    r = storescu(server.host, server.port, files)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert out.count("Received Store Response (Success)") == len(files), out[-3000:]


def test_quorum_acks_on_two_sites_and_the_queue_fills_the_third(mifas, corpus, tmp_path):
    base = tmp_path / "sites"
    s = mifas(site_config(base, "quorum"))
    files = [c.path for c in corpus]
    store_all(s, files)
    # When storescu has its last success, every object is durable on at least two sites.
    for c in corpus:
        assert len(holders(base, c.sop_instance)) >= 2, (c.sop_instance, holders(base, c.sop_instance))
    # The queue then fills the third site.
    wait_until(lambda: all(len(holders(base, c.sop_instance)) == 3 for c in corpus), 30,
               what="every object on all three sites")
    # Reads come back byte for byte (C-GET, bit-preserving).
    study = corpus[0].study
    r, res = getscu(s, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}, tmp_path / "got")
    assert r.returncode == 0, r.stdout + r.stderr
    got = received_by_sop((tmp_path / "got").iterdir())
    want = [c for c in corpus if c.study == study]
    assert set(got) == {c.sop_instance for c in want}
    for c in want:
        assert file_dataset_bytes_from(got[c.sop_instance]) == file_dataset_bytes(c.path)


def file_dataset_bytes_from(raw: bytes) -> bytes:
    from mifas_helpers import split_part10
    _, dataset, _ = split_part10(raw)
    return dataset


def break_site(base: Path, name: str) -> None:
    """A site that cannot store anything: its root is a regular file."""
    (base / name).mkdir(parents=True, exist_ok=True)
    (base / name / "mifas").write_bytes(b"not a directory")


def fix_site(base: Path, name: str) -> None:
    (base / name / "mifas").unlink()


def test_ack_all_refuses_with_a_comment_naming_the_site(mifas, corpus, tmp_path):
    base = tmp_path / "sites"
    break_site(base, "c")
    s = mifas(site_config(base, "all"))
    p = corpus[0].path
    assoc = pyn_associate(s, contexts_for_files([p]))
    st = assoc.send_c_store(p)
    assoc.release()
    assert st.Status == 0xA700, hex(st.Status)
    comment = str(st.get("ErrorComment"))
    assert "site-c" in comment, comment
    # Nothing acknowledged, nothing indexed: the other sites' copies are unreferenced.
    s.stop_ok()
    assert s.stats()["instances"] == 0


def test_a_broken_site_never_fails_quorum_and_the_queue_survives_kill9(mifas, corpus, tmp_path):
    base = tmp_path / "sites"
    break_site(base, "c")
    s = mifas(site_config(base, "quorum"))
    files = [c.path for c in corpus[:8]]
    store_all(s, files)
    for c in corpus[:8]:
        assert sorted(holders(base, c.sop_instance)) == ["a", "b"]
    # kill -9 with copies still owed to site-c, repair the site, restart: the queue resumes.
    s.kill9()
    fix_site(base, "c")
    s.restart()
    wait_until(lambda: all("c" in holders(base, c.sop_instance) for c in corpus[:8]), 60,
               what="the queue to fill site-c after the restart")
    s.stop_ok()
    out = run_mifas("repair", "--data-dir", str(s.data_dir), "--config", str(s.config_path),
                    "--sha256-sample", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    for n in SITES:
        assert f"site site-{n}: checked 8 missing 0 corrupt 0 repaired 0" in out.stdout, out.stdout


def repair_line(stdout: str, site: str) -> dict[str, int]:
    m = re.search(rf"^site {site}: (.*)$", stdout, re.M)
    assert m, stdout
    words = m[1].split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}


def test_repair_replaces_missing_and_corrupt_copies(mifas, corpus, tmp_path):
    base = tmp_path / "sites"
    s = mifas(site_config(base, "all"))
    items = corpus[:6]
    store_all(s, [c.path for c in items])
    s.stop_ok()
    # site-b: flip one byte inside one object's bytes; site-c: lose every pack.
    victim = items[2].sop_instance
    packs_b = base / "b" / "mifas" / "packs"
    for pack in sorted(packs_b.glob("*.pack")):
        data = bytearray(pack.read_bytes())
        for rec in parse_pack(pack.name, bytes(data)):
            if rec.uid == victim:
                data[rec.offset + rec.size // 2] ^= 0xFF
                pack.write_bytes(bytes(data))
    assert victim not in intact_uids(local_site_packs(base / "b"))
    shutil.rmtree(base / "c" / "mifas" / "packs")
    out = run_mifas("repair", "--data-dir", str(s.data_dir), "--config", str(s.config_path),
                    "--sha256-sample", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert repair_line(out.stdout, "site-a")["missing"] == 0
    b = repair_line(out.stdout, "site-b")
    assert (b["corrupt"], b["repaired"], b["missing"]) == (1, 1, 0), out.stdout
    c = repair_line(out.stdout, "site-c")
    assert (c["missing"], c["repaired"]) == (6, 6), out.stdout
    for n in SITES:
        assert {c.sop_instance for c in items} <= intact_uids(local_site_packs(base / n)), n
    again = run_mifas("repair", "--data-dir", str(s.data_dir), "--config", str(s.config_path),
                      "--sha256-sample", "1")
    for n in SITES:
        line = repair_line(again.stdout, f"site-{n}")
        assert (line["missing"], line["corrupt"]) == (0, 0), again.stdout


def test_retrieval_goes_on_when_a_sites_copies_are_gone(mifas, corpus, tmp_path):
    base = tmp_path / "sites"
    s = mifas(site_config(base, "all"))
    items = [c for c in corpus if c.study == corpus[0].study]
    store_all(s, [c.path for c in items])
    # Every pack of the first site loses its bytes (as a failed disk would).
    for n in ("a",):
        for pack in (base / n / "mifas" / "packs").glob("*.pack"):
            pack.write_bytes(b"")
    r, res = getscu(s, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": items[0].study},
                    tmp_path / "got")
    assert r.returncode == 0, r.stdout + r.stderr
    got = received_by_sop((tmp_path / "got").iterdir())
    assert set(got) == {c.sop_instance for c in items}
    for c in items:
        assert file_dataset_bytes_from(got[c.sop_instance]) == file_dataset_bytes(c.path)


def test_metrics_show_each_site_and_the_queue(mifas, corpus, tmp_path):
    import urllib.request
    base = tmp_path / "sites"
    break_site(base, "c")
    cfg = site_config(base, "quorum")
    cfg["storage"]["health"] = {"probe_interval_secs": 1}
    s = mifas(cfg)
    store_all(s, [c.path for c in corpus[:3]])

    def metrics() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.http_port}/metrics", timeout=10) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            return r.read().decode()

    text = metrics()
    for n in ("a", "b"):
        assert f'mifas_site_up{{site="site-{n}"}} 1' in text, text
        assert re.search(rf'mifas_site_bytes_written_total{{site="site-{n}"}} [1-9]', text), text
    # site-c cannot take the copies: they wait in the queue, and its probes mark it down
    assert re.search(r"^mifas_replication_queue [1-9]", text, re.M), text
    # the site's directory goes away (an unmounted disk): its probes fail, it is marked down
    shutil.rmtree(base / "c")
    wait_until(lambda: 'mifas_site_up{site="site-c"} 0' in metrics(), 30, interval=0.2,
               what="site-c reported down")


def test_repair_compacts_packs_left_mostly_garbage_by_replacements(mifas, corpus, tmp_path):
    base = tmp_path / "sites"
    s = mifas(site_config(base, "all", duplicate_policy="replace"))
    items = [c for c in corpus if c.study == corpus[0].study]
    for _ in range(3):  # the first copy and two replacements: two thirds of each pack is garbage
        store_all(s, [c.path for c in items])
    s.stop_ok()
    size = lambda n: sum(len(d) for d in local_site_packs(base / n).values())
    before = {n: size(n) for n in SITES}
    out = run_mifas("repair", "--data-dir", str(s.data_dir), "--config", str(s.config_path),
                    "--sha256-sample", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    for n in SITES:
        m = re.search(rf"^compaction site-{n}: packs (\d+) removed (\d+) objects_moved (\d+) "
                      rf"bytes_freed (\d+)$", out.stdout, re.M)
        assert m and int(m[2]) >= 1 and int(m[3]) == len(items), out.stdout
        recs = [r for name, data in local_site_packs(base / n).items() for r in parse_pack(name, data)]
        # only the live generation of each object is left, intact
        assert sorted(r.uid for r in recs) == sorted(c.sop_instance for c in items), n
        assert {c.sop_instance for c in items} <= intact_uids(local_site_packs(base / n))
        assert size(n) < before[n] / 2, (n, size(n), before[n])
    # the archive reads the moved copies
    s.restart()
    r, _ = getscu(s, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": items[0].study}, tmp_path / "got")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    got = received_by_sop((tmp_path / "got").iterdir())
    assert set(got) == {c.sop_instance for c in items}
    for c in items:
        assert file_dataset_bytes_from(got[c.sop_instance]) == file_dataset_bytes(c.path)
