"""Our HAServiceProtocol client and namenode probes (src/ha/ipc, src/ha/probe) against a real HA
namenode pair from our MiniDFSCluster launcher, through the ha_probe example
(tests/minidfs/ha_probe.rs, built by `cargo build --release --examples`).

Checked: getServiceStatus agrees with the launcher, JMX, /isActive and WebHDFS; our transitions
really switch the pair; the request source reaches the namenode; monitorHealth; a killed
namenode and a silent host fail within the timeout; a paused process times out; a peer that
is not Hadoop RPC is a protocol error.

The launcher runs both namenodes and the datanode in one JVM, so a SIGSTOP pauses the whole
site, not one namenode: the pause test stops the JVM and probes one namenode of it, which is the
case that matters (the kernel still accepts the connection, the process never answers).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import minidfs as M
from mifas_helpers import MIFAS_BIN

HA_PROBE = Path(os.environ.get("HA_PROBE", MIFAS_BIN.parent / "examples" / "ha_probe"))
# the call and whole-probe timeout ha_probe is given: more than the 400 ms default for the
# functional checks (a first HA call into a fresh C1-only JVM on a loaded machine is slow); the
# pause test uses the default itself
TIMEOUT_MS = 1000
DEFAULT_TIMEOUT_MS = 400  # ProbeConfig::namenode_timeout and IpcConfig::call_timeout defaults
CONNECT_TIMEOUT_MS = 300
SLACK_MS = 400  # process start-up and scheduling on a loaded 2-core machine

# one HA site, one datanode: the least that starts an HA pair (about 6 s here)
site_fixture = M.sites_fixture("module", specs=({"name": "haProbe", "namenodes": 2, "datanodes": 1},))


@pytest.fixture(scope="module")
def site(site_fixture) -> M.Site:
    s = site_fixture[0]
    assert s.state()["namenodes"] == ["active", "standby"]
    return s


def _args(rpc: str, actions, http: str | None, timeout_ms: int = TIMEOUT_MS) -> list[str]:
    if not HA_PROBE.is_file():
        pytest.fail(f"{HA_PROBE} is not built: run `cargo build --release --examples`", pytrace=False)
    args = [str(HA_PROBE), "--rpc", rpc, "--timeout-ms", str(timeout_ms),
            "--connect-timeout-ms", str(CONNECT_TIMEOUT_MS)]
    if http:
        args += ["--http", http]
    return args + list(actions)


def _parse(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        k, sep, v = line.partition(": ")
        if sep:
            out[k] = v
    return out


def ha_probe(rpc: str, *actions: str, http: str | None = None, timeout_ms: int = TIMEOUT_MS,
             timeout: float = 60) -> dict[str, str]:
    """Runs ha_probe to the end; `action.key` -> value (the last one when repeated)."""
    r = subprocess.run(_args(rpc, actions, http, timeout_ms), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"ha_probe {actions} exited {r.returncode}: {r.stdout}{r.stderr}"
    return _parse(r.stdout.splitlines())


class Watch:
    """A running `ha_probe watch:MS`, its lines read as they come (select, no sleeps)."""

    def __init__(self, rpc: str, http: str | None, every_ms: int):
        # then recover: the same prober (kept connection) must see the namenode again
        self.proc = subprocess.Popen(_args(rpc, [f"watch:{every_ms}", f"recover:{every_ms}"], http),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self._buf = b""

    def until(self, prefix: str, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if line.startswith(prefix):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                pytest.fail(f"ha_probe watch: no {prefix!r} within {timeout} s:\n" + "\n".join(self.lines))
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    self.proc.wait(timeout=10)
                    pytest.fail(f"ha_probe watch ended before {prefix!r}:\n" + "\n".join(self.lines))
                self._buf += chunk

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()


def _webhdfs_root_ok(http: str) -> bool:
    """True when the namenode serves WebHDFS reads (active), False when it refuses as standby."""
    try:
        M.webhdfs_status(http, "/")
        return True
    except M.WebHdfsError as e:
        assert "StandbyException" in e.body, e.body
        return False


def _port(hostport: str) -> str:
    return hostport.rsplit(":", 1)[1]


def _jmx_agrees(out: dict, site: M.Site, states: list[str]) -> int:
    """The JMX bean's State matches the launcher's state of the namenode the bean describes
    (HostAndPort). Returns that namenode's index: MBeans are per JVM and both namenodes of a
    MiniDFSCluster share one, so every HTTP port of the site shows the first namenode's bean."""
    described = [_port(a) for a in site.namenodes].index(_port(out["jmx.host_and_port"]))
    assert out["jmx.result"] == states[described], (out, states)
    return described


def test_status_agrees_with_launcher_jmx_is_active_and_webhdfs(site):
    states = site.state()["namenodes"]
    for i, expected in enumerate(states):
        out = ha_probe(site.namenodes[i], "status", "health", "jmx", "is-active", "probe",
                       http=site.http[i])
        assert out["status.state"] == expected, out
        assert out["health.result"] == "ok", out
        assert out["is_active.result"] == str(expected == "active").lower(), out
        described = _jmx_agrees(out, site, states)
        assert out["jmx.describes_rpc"] == str(described == i).lower(), out
        # the probe uses the bean only when it describes the probed namenode
        assert out["probe.jmx_state"] == (expected if described == i else "-"), out
        assert out["probe.http_active"] == str(expected == "active").lower(), out
        assert out["probe.state"] == expected, out
        assert out["probe.reachable"] == "true" and out["probe.healthy"] == "true", out
        assert out["probe.consistent"] == "true" and out["probe.failure"] == "-", out
        if expected == "standby":
            # the standby is up to date with the shared edits and could take over
            assert out["status.ready_to_become_active"] == "true", out
        assert _webhdfs_root_ok(site.http[i]) == (expected == "active")
        print(f"nn{i} {expected}: getServiceStatus {out['status.latency_ms']} ms (first call, "
              f"with connect), monitorHealth {out['health.latency_ms']} ms, "
              f"whole probe {out['probe.latency_ms']} ms")
    # latency on a kept connection
    out = ha_probe(site.namenodes[0], "bench:200")
    assert out["bench.errors"] == "0", out
    assert out["bench.calls"] == "400", out
    assert float(out["bench.status_p50_ms"]) < TIMEOUT_MS / 10, out
    print({k: v for k, v in out.items() if k.startswith("bench.")})


def test_request_source_reaches_the_namenode_and_the_connection_survives_a_refusal(site):
    # without automatic failover the namenode refuses a request that says it comes from a ZKFC:
    # proof that HAStateChangeRequestInfoProto.reqSource is encoded where the namenode reads it
    # (a default REQUEST_BY_USER would have been obeyed)
    out = ha_probe(site.namenodes[1], "standby:zkfc", "status")
    assert out["standby.result"] == "error", out
    assert out["standby.error_kind"] == "remote", out
    assert out["standby.class"] == "org.apache.hadoop.security.AccessControlException", out
    assert "automatic" in out["standby.error"].lower(), out
    assert out["status.state"] == "standby", out
    assert site.state()["namenodes"] == ["active", "standby"]


def test_our_transitions_switch_the_pair(site):
    nn0, nn1 = site.namenodes
    out = ha_probe(nn0, "standby", "status")
    assert out["standby.result"] == "ok" and out["status.state"] == "standby", out
    assert site.state()["namenodes"] == ["standby", "standby"]
    t_standby = out["standby.latency_ms"]

    out = ha_probe(nn1, "active", "status", "health", "is-active", "jmx", http=site.http[1])
    assert out["active.result"] == "ok" and out["status.state"] == "active", out
    assert out["is_active.result"] == "true" and out["health.result"] == "ok", out
    assert site.state()["namenodes"] == ["standby", "active"]
    _jmx_agrees(out, site, ["standby", "active"])
    assert _webhdfs_root_ok(site.http[1]) and not _webhdfs_root_ok(site.http[0])
    t_active = out["active.latency_ms"]

    # and back, forced this time (the other accepted source)
    out = ha_probe(nn1, "standby:forced")
    assert out["standby.result"] == "ok", out
    out = ha_probe(nn0, "active:forced", "status")
    assert out["active.result"] == "ok" and out["status.state"] == "active", out
    assert site.state()["namenodes"] == ["active", "standby"]
    print(f"transitionToStandby {t_standby} ms, transitionToActive {t_active} ms")


def test_killed_namenode_fails_fast_and_rejoins_as_standby(site):
    nn1, http1 = site.namenodes[1], site.http[1]
    watch = Watch(nn1, http1, every_ms=100)
    try:
        first = watch.until("watch.probe:", timeout=30)
        assert "ok=true state=standby" in first, first
        t0 = time.monotonic()
        site.kill_namenode(1)
        killed_in = time.monotonic() - t0
        watch.until("watch.error:", timeout=30)
        detected_in = time.monotonic() - t0
        failed = _parse(watch.lines)

        # a fresh client: refused at once, well within the connect timeout
        out = ha_probe(nn1, "status", "host")
        assert out["status.error_kind"] == "connect", out
        assert out["status.unreachable"] == "true", out
        assert float(out["status.elapsed_ms"]) < CONNECT_TIMEOUT_MS, out
        # the host itself is alive: its kernel refused the connection
        assert out["host.reachable"] == "true", out

        t1 = time.monotonic()
        site.restart_namenode(1)
        restarted_in = time.monotonic() - t1
        watch.until("recover.error:", timeout=60)
        recovered = _parse(watch.lines)
    finally:
        watch.close()
    assert failed["watch.failure"] in ("refused", "timeout"), watch.lines
    assert failed["watch.reachable"] == "false", watch.lines
    assert float(failed["watch.latency_ms"]) < TIMEOUT_MS + SLACK_MS, watch.lines
    assert detected_in < killed_in + 0.1 + (TIMEOUT_MS + SLACK_MS) / 1000, (killed_in, detected_in)
    # the watching prober, same process and client, sees it back as a healthy standby
    assert recovered["recover.state"] == "standby", watch.lines
    assert recovered["recover.healthy"] == "true", watch.lines
    assert recovered["recover.failure"] == "-", watch.lines
    assert site.state()["namenodes"] == ["active", "standby"]
    print(f"kill-namenode took {killed_in * 1000:.0f} ms; the failed probe was read "
          f"{detected_in * 1000:.0f} ms after the kill began (failure {failed['watch.failure']}, "
          f"probe {failed['watch.latency_ms']} ms); restart-namenode took {restarted_in * 1000:.0f} ms, "
          f"the prober saw it standby again {recovered['recover.after_ms']} ms after it began polling")


class SilentHost:
    """A TCP port whose SYNs go unanswered, as a dead host's do: a listener with a full accept
    queue (the kernel drops new SYNs). No firewall rules needed, and no routable address: in
    this sandbox outbound connections to unused addresses are answered by a proxy."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.fillers = []
        # backlog 0 admits one queued connection; the second fills nothing but proves it full
        for _ in range(2):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(self.listener.getsockname())
            self.fillers.append(c)

    def close(self):
        for c in self.fillers:
            c.close()
        self.listener.close()


def test_silent_host_fails_within_the_connect_timeout():
    host = SilentHost()
    try:
        out = ha_probe(host.addr, "status", "host", "probe")
    finally:
        host.close()
    assert out["status.error_kind"] == "timeout", out
    assert "connect" in out["status.error"], out
    elapsed = float(out["status.elapsed_ms"])
    assert CONNECT_TIMEOUT_MS * 0.9 <= elapsed < CONNECT_TIMEOUT_MS + SLACK_MS, out
    assert out["host.reachable"] == "false", out
    assert out["probe.failure"] == "timeout" and out["probe.reachable"] == "false", out
    print(f"silent host: connect timed out after {elapsed:.0f} ms; "
          f"host probe {out['host.latency_ms']} ms")


def test_a_peer_that_is_not_hadoop_rpc_is_a_protocol_error(site):
    # the namenode's HTTP port answers our preamble with an HTTP error page: its first four
    # bytes ("HTTP") read as a 1.2 GB frame length, refused before any allocation
    out = ha_probe(site.http[0], "status")
    assert out["status.error_kind"] == "protocol", out
    assert "exceeds" in out["status.error"], out
    assert out["status.unreachable"] == "false", out
    assert float(out["status.elapsed_ms"]) < TIMEOUT_MS, out


def test_paused_process_times_out_within_the_default_timeout(site):
    pid = site.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        out = ha_probe(site.namenodes[0], "status", "probe", "host", http=site.http[0],
                       timeout_ms=DEFAULT_TIMEOUT_MS)
    finally:
        os.kill(pid, signal.SIGCONT)
    # the kernel completes the handshake for the stopped JVM; only the answer never comes
    assert out["status.error_kind"] == "timeout", out
    assert "getServiceStatus" in out["status.error"], out
    elapsed = float(out["status.elapsed_ms"])
    assert DEFAULT_TIMEOUT_MS * 0.9 <= elapsed < DEFAULT_TIMEOUT_MS + SLACK_MS, out
    assert out["probe.failure"] == "timeout" and out["probe.reachable"] == "false", out
    assert float(out["probe.latency_ms"]) < DEFAULT_TIMEOUT_MS + SLACK_MS, out
    # host liveness cannot see a paused process: that is why the RPC probe exists
    assert out["host.reachable"] == "true", out
    print(f"paused: getServiceStatus timed out after {elapsed:.0f} ms, "
          f"whole probe {out['probe.latency_ms']} ms")

    # resumed: it answers again, still active
    out = ha_probe(site.namenodes[0], "status", "health")
    assert out["status.state"] == "active" and out["health.result"] == "ok", out
    assert site.state()["namenodes"] == ["active", "standby"]
