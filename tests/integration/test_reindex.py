"""Disaster recovery (issue 13, item 5): `mifas reindex` rebuilds the whole index from the stored
objects alone — from the local store, or from one HDFS site (MiniDFSCluster) with the local data
directory gone — and the rebuilt index answers the C-FIND battery of test_find.py (study, series,
image and patient levels, wildcards, dates, person names in several character sets) exactly as
the original did. Also: it refuses to run beside `mifas serve`, lists corrupt objects without
failing, and carries the portal users over from a readable old index."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom

import find_corpus as C
import test_find as TF
from conftest import _Servers
from find_clients import identifier, pyn_find
from mifas_helpers import (CHILD_ENV, MIFAS_BIN, list_objects, object_path, parse_kv, run_mifas,
                           storescu, write_config)
from retrieve_peers import getscu
from test_hdfs_sites import config as sites_config

QUERIES = [(c[0], c[1], c[2]) for c in TF.CASES] + [
    (f"charset-{cs}-{name}", TF.SR, {**TF.STUDY_KEYS, "PatientName": name,
                                     **({"SpecificCharacterSet": cs} if cs else {})})
    for cs, name, _ in TF.CHARSET_CASES
]


# ModalitiesInStudy and SOPClassesInStudy: sets whose value order follows the order instances
# were indexed in (find_oracle.SETS); everything else must be identical.
UNORDERED = {0x00080061, 0x00080062}


def _canonical(ds) -> tuple:
    def value(e):
        if e.tag in UNORDERED and e.VM > 1:
            return repr(sorted(e.value))
        return repr(e.value)
    return tuple(sorted((str(e.tag), e.VR, value(e)) for e in ds))


def answers(server) -> dict[str, tuple]:
    """Every query's final status and its set of response identifiers (order-free)."""
    out = {}
    for qid, model, keys in QUERIES:
        res = pyn_find(server, model, identifier(keys))
        out[qid] = (res.final, tuple(sorted(_canonical(ds) for _, ds in res.pending)))
    return out


def assert_same(after: dict, before: dict) -> None:
    """The answers are identical; else name the differing identifiers of each query."""
    problems = []
    for q in before:
        if after.get(q) != before[q]:
            b, a = set(before[q][1]), set(after.get(q, (None, ()))[1])
            problems.append(f"{q}: status {before[q][0]} -> {after.get(q, (None,))[0]}; "
                            f"only before: {sorted(b - a)[:2]}; only after: {sorted(a - b)[:2]}")
    assert not problems, f"{len(problems)} queries answer differently:\n" + "\n".join(problems[:6])


def reindex(*args, expect_rc=0) -> dict[str, str]:
    r = run_mifas("reindex", *args, timeout=600)
    assert r.returncode == expect_rc, f"rc={r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    return parse_kv(r.stdout) | {"_stdout": r.stdout, "_stderr": r.stderr}


def _user_add(data_dir, name="dr-viewer"):
    import subprocess
    r = subprocess.run([str(MIFAS_BIN), "user", "add", name, "--role", "viewer", "--data-dir",
                        str(data_dir)], input="dr-pass-12345\n", capture_output=True, text=True,
                       timeout=60, env=CHILD_ENV)
    assert r.returncode == 0, r.stderr


def test_reindex_from_the_local_store(tmp_path):
    files = C.generate_find_corpus(tmp_path / "files")
    data = tmp_path / "data"
    C.import_files(data, tmp_path / "files")
    _user_add(data)
    servers = _Servers(tmp_path / "srv")
    try:
        server = servers(data_dir=data)
        before = answers(server)
        assert sum(len(a[1]) for a in before.values()) > 300, "the battery must find something"
        assert all(a[0] == 0 for a in before.values()), before

        # Refused while the server holds the index.
        r = run_mifas("reindex", "--data-dir", data, timeout=60)
        assert r.returncode == 2 and "in use" in r.stderr and "mifas serve" in r.stderr, r.stderr
        server.stop_ok()

        # The index is lost entirely: rebuilt from the objects alone.
        shutil.rmtree(data / "index")
        kv = reindex("--data-dir", data)
        assert kv["indexed"] == str(len(files)) and kv["corrupt"] == "0", kv["_stdout"]
        assert kv["users_kept"] == "0"
        assert "cannot be carried over" in kv["_stderr"]
        assert "reindex:" in kv["_stderr"], "plain progress lines when stderr is not a terminal"
        server = servers(data_dir=data)
        assert_same(answers(server), before)
        server.stop_ok()

        # Again over a readable index (its user carried over), with one object truncated: it is
        # listed as corrupt and does not stop the rebuild.
        _user_add(data)
        broken = pydicom.dcmread(files[0]).SOPInstanceUID
        p = object_path(data, broken)
        p.write_bytes(p.read_bytes()[:400])
        kv = reindex("--data-dir", data, "--keep-old-index")
        assert kv["corrupt"] == "1" and kv["indexed"] == str(len(files) - 1), kv["_stdout"]
        assert any(line.startswith("corrupt ") and str(broken) in line
                   for line in kv["_stdout"].splitlines()), kv["_stdout"]
        assert kv["users_kept"] == "1", kv["_stdout"]
        assert Path(kv["old_index"]).is_dir() and (data / "index").is_dir()
        server = servers(data_dir=data)
        after = answers(server)
        res = pyn_find(server, TF.SR, identifier(TF.image(SOPInstanceUID=str(broken))))
        assert res.final == 0 and not res.pending
        # Every answer but those that involve the truncated instance is unchanged.
        assert sum(after[q] != before[q] for q in before) < len(before) / 2
    finally:
        servers.teardown()


def test_reindex_from_an_hdfs_site_with_the_local_data_gone(hdfs_sites, tmp_path):
    site = next(s for s in hdfs_sites if len(s.namenodes) == 1)
    cfg = write_config(tmp_path / "one-site.toml",
                       sites_config([site], "/reindex-test", ack="all", replication=1))
    files = C.generate_find_corpus(tmp_path / "files")
    data = tmp_path / "data"
    servers = _Servers(tmp_path / "srv")
    try:
        server = servers(config=cfg.read_text(), data_dir=data)
        r = storescu(server.host, server.port, files, called=server.aet, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        before = answers(server)
        assert sum(len(a[1]) for a in before.values()) > 300
        server.stop_ok()
        assert not list_objects(data), "objects must be on the HDFS site only"

        # The machine is lost: no index, no data directory; only the site's packs remain.
        shutil.rmtree(data)
        kv = reindex("--config", cfg, "--data-dir", data, "--site", site.name)
        assert kv["site"] == site.name
        assert kv["indexed"] == str(len(files)) and kv["corrupt"] == "0", kv["_stdout"]
        server = servers(config=cfg.read_text(), data_dir=data)
        assert_same(answers(server), before)
        # The objects are retrievable through the rebuilt placements (C-GET by a study).
        study = C.st(0)
        r, _ = getscu(server, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study},
                      tmp_path / "got")
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert len(list((tmp_path / "got").glob("*"))) == 5
    finally:
        servers.teardown()


def test_reindex_needs_a_site_name_when_sites_are_configured(hdfs_sites, tmp_path):
    cfg = write_config(tmp_path / "sites.toml", sites_config(hdfs_sites, "/reindex-none"))
    r = run_mifas("reindex", "--config", cfg, "--data-dir", tmp_path / "d", timeout=60)
    assert r.returncode == 2 and "--site" in r.stderr, r.stderr
    r = run_mifas("reindex", "--config", cfg, "--data-dir", tmp_path / "d", "--site", "nope",
                  timeout=60)
    assert r.returncode == 2 and "not a configured site" in r.stderr, r.stderr
