"""pytest fixtures: real `mifas serve` processes on free ports, a generated corpus, pynetdicom AEs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pynetdicom import _config as pyn_config

import dicom_fixtures as F
import minidfs
from mifas_helpers import MIFAS_BIN, MifasServer

# Three HDFS sites (our MiniDFSCluster launcher) shared by every test module that stores on
# sites: starting them costs tens of seconds; each test uses its own root directory on them.
hdfs_sites = minidfs.sites_fixture("session")

# Send data sets from files byte for byte (pynetdicom reads the file after its meta group
# instead of decoding and re-encoding it), so stored bytes can be compared with the source.
pyn_config.STORE_SEND_CHUNKED_DATASET = True
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


@pytest.fixture(scope="session", autouse=True)
def _binary_built():
    if not MIFAS_BIN.exists():
        pytest.exit(f"{MIFAS_BIN} does not exist: run `cargo build --release` (tests/run.sh does)", 2)


class _Servers:
    """Factory; on teardown every server a test did not stop on purpose must still be alive
    and must exit 0 on SIGTERM."""

    def __init__(self, base: Path):
        self.base = base
        self.servers: list[MifasServer] = []

    def __call__(self, config=None, extra_args=(), data_dir=None, start=True, name=None) -> MifasServer:
        name = name or f"mifas{len(self.servers)}"
        s = MifasServer(self.base / name, config=config, extra_args=extra_args, data_dir=data_dir,
                        name=name)
        self.servers.append(s)
        return s.start() if start else s

    def teardown(self):
        errors = []
        for s in self.servers:
            if s.proc is None or s.expected_dead:
                if s.proc is not None and s.proc.poll() is None:
                    s.kill9()
                continue
            if s.proc.poll() is not None:
                errors.append(f"{s.name}: server died during the test (exit code {s.proc.returncode})\n"
                              f"{s.log_tail()}")
                continue
            try:
                rc = s.stop()
            except AssertionError as e:
                errors.append(f"{s.name}: {e}")
                continue
            if rc != 0:
                errors.append(f"{s.name}: exit code {rc} after SIGTERM (expected 0)\n{s.log_tail()}")
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def mifas(tmp_path):
    """mifas(config=dict|str|None, extra_args=(), data_dir=None, start=True) -> MifasServer"""
    f = _Servers(tmp_path)
    yield f
    f.teardown()


@pytest.fixture(scope="module")
def shared_mifas(tmp_path_factory):
    """One default-config server for a whole module (tests that do not depend on archive state)."""
    f = _Servers(tmp_path_factory.mktemp("shared"))
    server = f()
    yield server
    f.teardown()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """2 patients x 2 studies x 2 series x 3 instances of 512x512 16-bit CT, non-ASCII names."""
    d = tmp_path_factory.mktemp("corpus")
    return F.generate_corpus(d, patients=2, studies=2, series=2, instances=3, tag="corpus")
