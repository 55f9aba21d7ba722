"""CLI: `mifas import`, `mifas stats`, config errors, flags, signals."""

import os
import shutil
import signal
import socket
import subprocess

import pytest

import dicom_fixtures as F
from mifas_helpers import (CHILD_ENV, MIFAS_BIN, READY_RE, check_stored_object, contexts_for_files,
                           file_dataset_bytes, free_port, list_objects, mifas_stats, parse_kv,
                           pyn_associate, run_mifas, spool_files)


@pytest.fixture
def import_dir(tmp_path, corpus):
    """Fixtures + corpus in nested folders, a text file and a DICOM file without StudyInstanceUID."""
    d = tmp_path / "to_import"
    (d / "fixtures" / "nested").mkdir(parents=True)
    (d / "corpus").mkdir()
    files = []
    for i, fx in enumerate(F.available_fixtures()):
        dst = d / "fixtures" / ("nested" if i % 2 else "") / f"{fx.id}.dcm"
        shutil.copy(fx.path, dst)
        files.append(dst)
    for c in corpus:
        dst = d / "corpus" / c.path.name
        shutil.copy(c.path, dst)
        files.append(dst)
    text = d / "fixtures" / "notes.txt"
    text.write_text("this is not DICOM\n")
    ds = F.load("CT_small.dcm")
    ds = F.with_uids(ds, SOPInstanceUID="1.2.826.0.1.3680043.9.7777.7.1")
    del ds.StudyInstanceUID
    nostudy = F.write_part10(ds, d / "fixtures" / "nested" / "no_study.dcm")
    return d, files, [text, nostudy]


def run_import(data_dir, *paths):
    r = run_mifas("import", "--data-dir", data_dir, *paths, timeout=300)
    kv = parse_kv(r.stdout)
    for key in ("imported", "duplicates", "rejected"):
        assert key in kv, f"import summary lacks `{key}: N`:\n{r.stdout}\n{r.stderr}"
    return r, {k: int(kv[k]) for k in ("imported", "duplicates", "rejected")}


def test_import_tree_then_stats(tmp_path, import_dir):
    d, files, bad = import_dir
    data_dir = tmp_path / "data"
    infos = [F.file_info(p) for p in files]
    unique = {i.sop_instance for i in infos}
    r, summary = run_import(data_dir, d)
    assert summary == {"imported": len(unique), "duplicates": len(files) - len(unique), "rejected": 2}, r.stdout
    assert r.returncode == 1, f"exit code {r.returncode} with rejected files (expected 1)"
    rejected_lines = [line for line in r.stdout.splitlines() if line.startswith("rejected ")]
    assert len(rejected_lines) == 2, r.stdout
    for b in bad:
        line = next((x for x in rejected_lines if x.startswith(f"rejected {b}:")), None)
        assert line is not None, f"no `rejected {b}: <reason>` line in:\n{r.stdout}"
        assert line.split(": ", 1)[1].strip(), f"empty reason: {line!r}"

    # objects: Part-10 with the file's data set byte for byte (UIDs imported only once)
    counts = {}
    for i in infos:
        counts[i.sop_instance] = counts.get(i.sop_instance, 0) + 1
    for i in infos:
        if counts[i.sop_instance] == 1:
            check_stored_object(data_dir, i.sop_class, i.sop_instance, i.ts, dataset=file_dataset_bytes(i.path))
    assert not spool_files(data_dir)

    st = mifas_stats(data_dir)
    first = {}
    for i in infos:
        first.setdefault(i.sop_instance, i)
    exp = F.expected_counts(list(first.values()))
    exp["bytes"] = sum(p.stat().st_size for p in list_objects(data_dir))
    assert st == exp

    # importing again: everything is a duplicate
    r2, summary2 = run_import(data_dir, d)
    assert summary2 == {"imported": 0, "duplicates": len(files), "rejected": 2}, r2.stdout
    assert mifas_stats(data_dir) == st


def test_import_single_file_exit_0(tmp_path):
    data_dir = tmp_path / "data"
    p = F.pydicom_file("CT_small.dcm")
    r, summary = run_import(data_dir, p)
    assert r.returncode == 0, r.stderr
    assert summary == {"imported": 1, "duplicates": 0, "rejected": 0}
    st = mifas_stats(data_dir)
    assert (st["patients"], st["studies"], st["series"], st["instances"]) == (1, 1, 1, 1)


def test_import_shares_index_with_server(mifas, tmp_path, corpus):
    data_dir = tmp_path / "shared-data"
    r, summary = run_import(data_dir, *[c.path for c in corpus[:5]])
    assert r.returncode == 0 and summary["imported"] == 5, r.stdout + r.stderr
    s = mifas({"storage": {"duplicate_policy": "reject"}}, data_dir=data_dir)
    assoc = pyn_associate(s, contexts_for_files([corpus[0].path]))
    statuses = [assoc.send_c_store(c.path).Status for c in corpus[:7]]
    assoc.release()
    assert statuses == [0x0111] * 5 + [0, 0], [hex(x) for x in statuses]
    s.stop_ok()
    assert s.stats()["instances"] == 7


def test_import_refused_while_server_runs(mifas, tmp_path):
    s = mifas()
    r = run_mifas("import", "--data-dir", s.data_dir, F.pydicom_file("CT_small.dcm"))
    assert r.returncode == 2, f"import next to a running server: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stderr.strip(), "no error message"
    s.echo_ok()
    r = run_mifas("stats", "--data-dir", s.data_dir)
    assert r.returncode == 2, f"stats next to a running server: rc={r.returncode}"


def test_stats_of_empty_archive(tmp_path):
    st = mifas_stats(tmp_path / "empty")
    assert st == {"patients": 0, "studies": 0, "series": 0, "instances": 0, "bytes": 0}


def test_stats_output_is_exactly_five_lines(tmp_path):
    r = run_mifas("stats", "--data-dir", tmp_path / "empty")
    assert r.returncode == 0
    keys = [line.split(":")[0] for line in r.stdout.strip().splitlines()]
    assert keys == ["patients", "studies", "series", "instances", "bytes"], r.stdout


# --- config errors ------------------------------------------------------------------------

BAD_CONFIGS = {
    "bad_type": ('[dicom]\nmax_associations = "x"\n', "max_associations"),
    "unknown_key": ("[dicom]\nbogus_key = 1\n", "bogus_key"),
    "unknown_table": ("[dicomm]\naet = \"X\"\n", "dicomm"),
    "bad_enum": ('[storage]\nduplicate_policy = "sometimes"\n', "duplicate_policy"),
    "negative": ("[dicom]\nmax_pdu = -5\n", "max_pdu"),
    "bad_bool": ('[dicom]\ncheck_called_aet = "yes"\n', "check_called_aet"),
    "allow_list_type": ('[[dicom.allowed_calling]]\naet = "CT1"\nhosts = "127.0.0.1"\n', "hosts"),
    # Fuzzer finds: tracing-subscriber's filter parser panicked on the first and spent seconds
    # compiling the second's field regex; both must be one clear error line.
    "log_level_non_ascii": ('[log]\nlevel = "va? vpz,,0Kt,-,,,,G[kmw],k,, -[v{zG =qcb_[\\\\[]]`_aԟ}~("\n',
                            "log.level"),
    "log_level_field_filter": ('[log]\nlevel = "[assoc{peer=.*.*.*.*}]=debug"\n', "log.level"),
    "log_level_typo": ('[log]\nlevel = "verbose"\n', "log.level"),
}


def env_without_rust_log():
    env = dict(CHILD_ENV)
    env.pop("RUST_LOG", None)
    return env


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
@pytest.mark.parametrize("command", ["serve", "stats"])
def test_bad_config_exit_2(tmp_path, case, command):
    text, key = BAD_CONFIGS[case]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    args = [str(MIFAS_BIN), command, "--config", str(cfg), "--data-dir", str(tmp_path / "d")]
    if command == "serve":
        args += ["--dicom-port", "0"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env_without_rust_log())
    assert r.returncode == 2, f"rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr}"
    assert "MIFAS READY" not in r.stdout
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one clear error line, got:\n{r.stderr}"
    assert key in lines[0], f"error line does not name `{key}`: {lines[0]!r}"


def test_unreadable_config_exit_2(tmp_path):
    r = subprocess.run([str(MIFAS_BIN), "serve", "--config", str(tmp_path / "missing.toml"),
                        "--dicom-port", "0", "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=30, env=env_without_rust_log())
    assert r.returncode == 2, r.stderr
    assert "missing.toml" in r.stderr


def test_invalid_toml_exit_2(tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[dicom\naet = \n")
    r = subprocess.run([str(MIFAS_BIN), "serve", "--config", str(cfg), "--dicom-port", "0",
                        "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=30, env=env_without_rust_log())
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip()


def test_example_config_is_valid(mifas):
    """mifas.example.toml documents every key: it must load as is."""
    from mifas_helpers import REPO
    example = REPO / "mifas.example.toml"
    assert example.is_file(), "mifas.example.toml missing"
    text = example.read_text()
    for key in ("aet", "port", "max_associations", "max_pdu", "artim_timeout_secs", "idle_timeout_secs",
                "check_called_aet", "accept_unknown_storage", "shutdown_grace_secs", "allowed_calling",
                "data_dir", "quota_bytes", "duplicate_policy", "level"):
        assert key in text, f"mifas.example.toml does not document `{key}`"
    s = mifas(text)  # --data-dir and --dicom-port 0 override the file
    s.echo_ok()


# --- flags, defaults, signals -------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exit_0(mifas, corpus, sig):
    s = mifas()
    assoc = pyn_associate(s, contexts_for_files([corpus[0].path]))
    assert assoc.send_c_store(corpus[0].path).Status == 0
    assoc.release()
    rc = s.stop(sig)
    assert rc == 0, f"exit code {rc} after {sig!r}\n{s.log_tail()}"
    assert s.stats()["instances"] == 1


def test_ready_line(mifas):
    s = mifas()
    m = READY_RE.match(s.ready_line)
    assert m and m["aet"] == "MIFAS"
    assert os.path.realpath(m["data"]) == os.path.realpath(s.data_dir), s.ready_line
    assert s.port > 0
    s.echo_ok()


def test_explicit_ports_and_http_port_flag(mifas):
    port, http = free_port(), free_port()
    s = mifas(start=False)
    s.argv_override = ["serve", "--data-dir", s.data_dir, "--dicom-port", port, "--http-port", http]
    s.start()
    assert s.port == port and s.http_port == http, s.ready_line
    s.echo_ok()


def test_data_dir_from_config(mifas, tmp_path, corpus):
    cfg_dir = tmp_path / "from-config"
    s = mifas({"storage": {"data_dir": str(cfg_dir)}}, start=False)
    s.argv_override = ["serve", "--config", s.config_path, "--dicom-port", 0, "--http-port", 0]
    s.data_dir = cfg_dir
    s.start()
    assoc = pyn_associate(s, contexts_for_files([corpus[0].path]))
    assert assoc.send_c_store(corpus[0].path).Status == 0
    assoc.release()
    assert len(list_objects(cfg_dir)) == 1


def test_embedded_defaults(mifas, tmp_path):
    """No config, no flags: AE MIFAS, port 11112, data under ./mifas-data."""
    for default in (11112, 8080):
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", default))
            except OSError:
                pytest.fail(f"port {default} (a default port this test checks) is in use on this "
                            "machine: stop whatever listens there and run again")
    s = mifas(start=False)
    s.argv_override = ["serve"]
    s.data_dir = s.workdir / "mifas-data"
    s.start()
    assert s.port == 11112 and s.aet == "MIFAS" and s.http_port == 8080, s.ready_line
    s.echo_ok()
    assert (s.workdir / "mifas-data").is_dir()


def test_port_in_use_fails_cleanly(tmp_path):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([str(MIFAS_BIN), "serve", "--data-dir", str(tmp_path / "d"), "--dicom-port",
                            str(port)], capture_output=True, text=True, timeout=30, env=CHILD_ENV)
    assert r.returncode != 0 and "MIFAS READY" not in r.stdout
    assert r.stderr.strip()


def test_second_server_on_same_data_dir_fails(mifas, tmp_path):
    s = mifas()
    r = subprocess.run([str(MIFAS_BIN), "serve", "--data-dir", str(s.data_dir), "--dicom-port", "0"],
                       capture_output=True, text=True, timeout=30, env=CHILD_ENV)
    assert r.returncode != 0, "two servers on one data dir"
    assert "MIFAS READY" not in r.stdout
    s.echo_ok()
