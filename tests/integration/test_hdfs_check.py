"""HdfsFs (src/storage/hdfs) against real HDFS: every check of src/storage/hdfs/checks.rs, run by
the hdfs_check example (tests/minidfs/hdfs_check.rs) on our MiniDFSCluster launcher — a single
namenode site with a datanode killed in the middle of a write, and an HA pair through a failover.
Built by `cargo build --release --examples`."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

import minidfs as M
from mifas_helpers import MIFAS_BIN

HDFS_CHECK = Path(os.environ.get("HDFS_CHECK", MIFAS_BIN.parent / "examples" / "hdfs_check"))
TIMEOUT_SECS = 10  # the site timeout hdfs_check gives its client

sites = M.sites_fixture("module", specs=(
    {"name": "chkHA", "namenodes": 2, "datanodes": 2},
    {"name": "chkOne", "namenodes": 1, "datanodes": 2},
))

EVERY_CHECK = {"probe", "read_while_open", "read_while_open_across_blocks", "create_exists",
               "rename", "list", "delete", "read_clamped", "recover", "dead_addresses"}


def _site(sites, name) -> M.Site:
    return next(s for s in sites if s.name == name)


class Check:
    """One hdfs_check process: its output lines, read as they come, and its stdin."""

    def __init__(self, args: list[str]):
        if not HDFS_CHECK.is_file():
            pytest.fail(f"{HDFS_CHECK} is not built: run `cargo build --release --examples`",
                        pytrace=False)
        self.proc = subprocess.Popen([str(HDFS_CHECK), *args, "--timeout-secs", str(TIMEOUT_SECS)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self._buf = b""

    def until(self, marker: str | None, timeout: float = 300) -> None:
        """Read lines until one starts with `marker` (None: until the process ends)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                self.lines.append(text)
                if marker is not None and text.startswith(marker):
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                pytest.fail(f"hdfs_check: no {marker or 'exit'} within {timeout} s:\n"
                            + "\n".join(self.lines))
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    if marker is not None:
                        pytest.fail(f"hdfs_check ended before {marker}:\n" + "\n".join(self.lines))
                    self.proc.wait(timeout=30)
                    return
                self._buf += chunk

    def answer(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def results(self) -> dict[str, str]:
        """check name -> "ok ..." / "FAIL ..." line; every check line must be ok."""
        out = {}
        for line in self.lines:
            m = re.match(r"^(ok|FAIL) +(\w+): (.*)$", line)
            if m:
                out[m[2]] = line
        return out


def test_single_namenode_every_check_and_a_datanode_lost_mid_write(sites):
    site = _site(sites, "chkOne")
    check = Check([site.url, "--replication", "2", "--kill-datanode-stdin"])
    check.until("KILL-DATANODE")
    site.kill_datanode(1)
    # The open pipeline still holds the dead datanode (the check is that the write drops it and
    # goes on). The namenode is told now, so the new blocks the measurements write after this
    # do not start at a dead datanode the namenode still believes alive: hdfs-native does not
    # retry such a pipeline on other datanodes (see src/storage/hdfs/mod.rs).
    site.expire_datanode(1)
    check.answer()
    check.until(None)
    try:
        results = check.results()
        output = "\n".join(check.lines)
        assert check.proc.returncode == 0, output
        assert EVERY_CHECK | {"write_survives_datanode_loss"} <= results.keys(), output
        assert all(line.startswith("ok") for line in results.values()), output
        # the measurements ran and printed
        assert any("hsync alone" in line for line in check.lines), output
    finally:
        site.restart_datanode(1)


def test_ha_client_follows_a_failover_within_bounded_calls(sites):
    site = _site(sites, "chkHA")
    assert site.state()["namenodes"] == ["active", "standby"]
    check = Check([site.url, "--namenodes", ",".join(site.namenodes), "--no-measure",
                   "--failover"])
    check.until("WAITING")
    # the active namenode dies; for 3 s no namenode is active (the standby refuses), then the
    # standby is promoted
    site.kill_namenode(0)
    check.answer()
    time.sleep(3)
    site.transition_active(1)
    check.until(None)
    output = "\n".join(check.lines)
    results = check.results()
    assert check.proc.returncode == 0, output
    assert EVERY_CHECK | {"failover_probe", "failover_write_read"} <= results.keys(), output
    assert all(line.startswith("ok") for line in results.values()), output
    m = re.search(r"answered_after_ms=(\d+) failed_calls=(\d+) longest_call_ms=(\d+)",
                  results["failover_probe"])
    assert m, output
    answered, failed, longest = (int(g) for g in m.groups())
    # the outage was seen (calls failed, Unavailable), each failed call was bounded well within
    # the site timeout (failover_attempts=2), and the client followed the new active quickly
    assert failed >= 1, output
    assert longest < TIMEOUT_SECS * 1000, output
    assert 3000 <= answered < 3000 + 5000, output
    # leave the pair as we found it: namenode 0 back (standby), then active again
    site.restart_namenode(0)
    site.transition_standby(1)
    site.transition_active(0)
