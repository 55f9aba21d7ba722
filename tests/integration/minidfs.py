"""Real HDFS sites for the tests: our MiniDFSCluster launcher (tests/minidfs) driven over stdin/stdout.

A `Site` is one launcher JVM: one HDFS cluster with one namenode or an HA pair (nameservice named
after the site) and N datanodes on fixed namenode ports. Start several at once with
`start_sites`, or share them across a module with a fixture made by `sites_fixture`.

The launcher prints `MINIDFS READY name=... url=... namenodes=... http=... datanodes=N conf=FILE`
when the site is up, then answers each command line with one `OK ...` / `ERR ...` line. It shuts
the site down and exits when its stdin closes, so a test that dies leaves no JVM behind.

Missing Java, Maven or the resolved classpath is a failure with the reason, never a skip:
`ensure_launcher()` runs tests/minidfs/build.sh (cached: Maven only resolves once, javac only
recompiles changed sources).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import select
import shutil
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCHER_DIR = REPO / "tests" / "minidfs"
CLASSPATH_FILE = LAUNCHER_DIR / "target" / "classpath.txt"
CLASSES_DIR = LAUNCHER_DIR / "target" / "classes"
MAIN_CLASS = "MiniDfsLauncher"

# Serial GC, a capped heap and the C1 compiler only: three site JVMs share 2 cores with the archive
# under test. Measured here (load 7-11): a site starts in 5-6 s instead of 10-11 s, RSS 180-215 MB
# instead of ~530 MB. MINIDFS_JAVA_OPTS replaces these: benchmarks that push gigabytes through
# the datanodes want C2 back (drop -XX:TieredStopAtLevel=1) and maybe more heap.
DEFAULT_JAVA_OPTS = "-XX:+UseSerialGC -Xms64m -Xmx512m -XX:TieredStopAtLevel=1 -Xss512k"
START_TIMEOUT = 120.0  # seconds; three sites at once take 13-17 s here
COMMAND_TIMEOUT = 120.0  # start/stop of a whole site and datanode restarts are the slow commands

READY_RE = re.compile(
    r"^MINIDFS READY name=(?P<name>\S+) url=(?P<url>\S+) namenodes=(?P<namenodes>\S+) "
    r"http=(?P<http>\S+) datanodes=(?P<datanodes>\d+) conf=(?P<conf>.+)$"
)

# three sites as the issue asks: one HA pair, each with 2 datanodes
THREE_SITES = (
    {"name": "siteA", "namenodes": 2, "datanodes": 2},
    {"name": "siteB", "namenodes": 1, "datanodes": 2},
    {"name": "siteC", "namenodes": 1, "datanodes": 2},
)


class MiniDfsError(AssertionError):
    """The launcher is missing, did not start, or refused a command (tests fail on it)."""


def ensure_launcher() -> list[str]:
    """The java command line prefix (java, options, -cp) for the launcher; builds it if needed."""
    java = shutil.which("java")
    if java is None:
        raise MiniDfsError("java not found: the HDFS tests need Java 17 (bash tests/run.sh installs it)")
    build = LAUNCHER_DIR / "build.sh"
    r = subprocess.run(["bash", str(build)], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise MiniDfsError(
            f"{build} failed (exit {r.returncode}): the HDFS tests need Java 17, Maven and the "
            f"launcher's classpath from Maven Central; bash tests/run.sh provides them\n"
            f"{r.stdout[-2000:]}{r.stderr[-4000:]}"
        )
    if not CLASSPATH_FILE.is_file() or not (CLASSES_DIR / f"{MAIN_CLASS}.class").is_file():
        raise MiniDfsError(f"{build} succeeded but left no {CLASSPATH_FILE} or {CLASSES_DIR}")
    cp = f"{CLASSES_DIR}:{CLASSPATH_FILE.read_text().strip()}"
    opts = os.environ.get("MINIDFS_JAVA_OPTS", DEFAULT_JAVA_OPTS).split()
    return [java, *opts, "-cp", cp, MAIN_CLASS]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()  # ports given to sites of this process (bound later, or down now)


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports below the kernel's ephemeral range, never the same twice in this
    process. Namenode ports are fixed for the life of a site (they must survive restarts), so they
    are taken where no port-0 bind, such as another site's datanodes starting at the same time,
    can be handed them."""
    high = _ephemeral_low()
    low = max(1024, high - 12000)
    ports: list[int] = []
    for p in random.sample(range(low, high), k=min(4 * n + 64, high - low)):
        if p in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", p))
            except OSError:
                continue
        ports.append(p)
        if len(ports) == n:
            _handed_out.update(ports)
            return ports
    raise MiniDfsError(f"no {n} free TCP ports in {low}..{high - 1}")


class Site:
    """One HDFS site: a launcher JVM and its command channel."""

    def __init__(self, name: str, base_dir: Path, namenodes: int = 1, datanodes: int = 2,
                 nn_ports: list[int] | None = None, nn_http_ports: list[int] | None = None,
                 bind_address: str | None = None, replication: int | None = None):
        self.name = name
        self.base_dir = Path(base_dir)
        self.n_namenodes = namenodes
        self.n_datanodes = datanodes
        ports = free_ports(2 * namenodes) if nn_ports is None or nn_http_ports is None else []
        self.nn_ports = list(nn_ports) if nn_ports is not None else ports[:namenodes]
        self.nn_http_ports = list(nn_http_ports) if nn_http_ports is not None else ports[namenodes:]
        self.bind_address = bind_address
        self.replication = replication
        self.proc: subprocess.Popen | None = None
        self.closed = False  # close() was called: the process is expected to be gone
        self.url = ""
        self.namenodes: list[str] = []  # "host:port" RPC addresses, namenode order
        self.http: list[str] = []  # "host:port" HTTP (WebHDFS) addresses, namenode order
        self.conf_path: Path | None = None
        self.ready_line = ""
        self.started_in = 0.0  # seconds from spawn to READY
        self._buf = b""
        self._log = None

    # ---- process ----

    @property
    def log_path(self) -> Path:
        return self.base_dir / "launcher.log"

    def spawn(self, cmd_prefix: list[str] | None = None) -> "Site":
        """Starts the JVM without waiting; wait_ready() completes the start."""
        prefix = cmd_prefix or ensure_launcher()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        args = [
            "--name", self.name,
            "--base-dir", str(self.base_dir / "dfs"),
            "--namenodes", str(self.n_namenodes),
            "--datanodes", str(self.n_datanodes),
            "--nn-ports", ",".join(map(str, self.nn_ports)),
            "--nn-http-ports", ",".join(map(str, self.nn_http_ports)),
        ]
        if self.bind_address:
            args += ["--bind-address", self.bind_address]
        if self.replication:
            args += ["--replication", str(self.replication)]
        self._log = open(self.log_path, "ab")
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(prefix + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, cwd=self.base_dir)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> "Site":
        line = self._read_line(timeout, what="READY line")
        m = READY_RE.match(line)
        if not m:
            raise MiniDfsError(f"{self.name}: expected a READY line, got {line!r}\n{self.log_tail()}")
        if m["name"] != self.name or int(m["datanodes"]) != self.n_datanodes:
            raise MiniDfsError(f"{self.name}: READY line does not match the request: {line!r}")
        self.started_in = time.monotonic() - self._t0
        self.ready_line = line
        self.url = m["url"]
        self.namenodes = m["namenodes"].split(",")
        self.http = m["http"].split(",")
        self.conf_path = Path(m["conf"])
        return self

    def start(self, timeout: float = START_TIMEOUT) -> "Site":
        return self.spawn().wait_ready(timeout)

    def _read_line(self, timeout: float, what: str) -> str:
        """One line from stdout, with a deadline (select, no sleeps)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MiniDfsError(f"{self.name}: no {what} within {timeout:.0f} s\n{self.log_tail()}")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                rc = self.proc.wait()
                raise MiniDfsError(f"{self.name}: launcher exited (rc={rc}) before its {what}; "
                                   f"stdout={self._buf!r}\n{self.log_tail()}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("utf-8", "replace").rstrip("\r")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        """Resident set size of the launcher JVM (ps -o rss)."""
        assert self.proc is not None
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(self.proc.pid)], capture_output=True, text=True)
        return int(out.stdout.strip())

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no launcher log)"
        return f"--- {self.log_path} (last {n} lines) ---\n" + "\n".join(lines[-n:])

    def close(self, timeout: float = 60.0) -> int:
        """Closes stdin (the launcher shuts the site down and exits); kills it if it hangs."""
        self.closed = True
        if self.proc is None:
            return 0
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self._log:
            self._log.close()
        return rc

    # ---- commands ----

    def command(self, cmd: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Sends one command line, returns the reply line ("OK ..." or "ERR ...")."""
        if not self.alive():
            raise MiniDfsError(f"{self.name}: launcher is not running (command {cmd!r})\n{self.log_tail()}")
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        return self._read_line(timeout, what=f"reply to {cmd!r}")

    def ok(self, cmd: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """command() that must succeed; returns the text after "OK "."""
        reply = self.command(cmd, timeout)
        if not reply.startswith("OK"):
            raise MiniDfsError(f"{self.name}: {cmd!r} -> {reply!r}\n{self.log_tail()}")
        return reply[3:]

    def state(self) -> dict:
        """{"site": "up"|"down", "namenodes": ["active", "standby"|"down"...], "datanodes": ["up"|"down"...]}"""
        fields = dict(kv.split("=", 1) for kv in self.ok("state").split())
        return {"site": fields["site"], "namenodes": fields["namenodes"].split(","),
                "datanodes": fields["datanodes"].split(",")}

    def kill_datanode(self, i: int) -> str:
        return self.ok(f"kill-datanode {i}")

    def expire_datanode(self, i: int) -> str:
        """Namenodes treat a killed datanode as dead now rather than after 12 s of missed heartbeats."""
        return self.ok(f"expire-datanode {i}")

    def restart_datanode(self, i: int) -> str:
        return self.ok(f"restart-datanode {i}")

    def kill_namenode(self, i: int) -> str:
        return self.ok(f"kill-namenode {i}")

    def restart_namenode(self, i: int) -> str:
        return self.ok(f"restart-namenode {i}")

    def transition_active(self, i: int) -> str:
        return self.ok(f"transition-active {i}")

    def transition_standby(self, i: int) -> str:
        return self.ok(f"transition-standby {i}")

    def stop_site(self) -> str:
        """The whole site goes down (every namenode and datanode); its data stays."""
        return self.ok("stop")

    def start_site(self) -> str:
        """The whole site comes back on the same ports with its data; an HA pair with namenode 0 active."""
        return self.ok("start")

    def corrupt_block(self, path: str) -> str:
        """Corrupts every replica of the first block of an HDFS file on the datanodes' disks."""
        return self.ok(f"corrupt-block {path}")

    def datanode_addrs(self) -> list[str]:
        """Transfer addresses ("host:port") of the datanodes by index (kill_datanode's I), also of
        one that is down. Block locations name the same ports. New ports after start_site()."""
        return self.ok("datanodes").split(",")

    def client_conf(self) -> dict[str, str]:
        """Settings a client of this site should use (hdfs-native: ClientBuilder::with_config)."""
        assert self.conf_path is not None
        conf = {}
        for line in self.conf_path.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                conf[k] = v
        return conf

    def active_http(self) -> str:
        """HTTP address of the active namenode."""
        nns = self.state()["namenodes"]
        if "active" not in nns:
            raise MiniDfsError(f"{self.name}: no active namenode ({nns})")
        return self.http[nns.index("active")]


def start_sites(base_dir: Path, specs=THREE_SITES, timeout: float = START_TIMEOUT) -> list[Site]:
    """Starts several sites concurrently (all JVMs spawned, then each READY awaited)."""
    prefix = ensure_launcher()
    sites = [Site(base_dir=Path(base_dir) / s["name"], **s) for s in specs]
    try:
        for s in sites:
            s.spawn(prefix)
        for i, s in enumerate(sites):
            # A namenode port found free can be taken by another process before the JVM binds
            # it: such a first start is retried on other ports (a site keeps its ports after).
            for attempt in range(3):
                try:
                    s.wait_ready(timeout)
                    break
                except MiniDfsError as e:
                    if "BindException" not in str(e) or attempt == 2:
                        raise
                    s.close(timeout=30)
                    s = sites[i] = Site(base_dir=Path(base_dir) / f"{specs[i]['name']}-{attempt + 1}",
                                        **specs[i])
                    s.spawn(prefix)
    except BaseException:
        for s in sites:
            s.close(timeout=30)
        raise
    return sites


def sites_fixture(scope: str = "module", specs=THREE_SITES):
    """A pytest fixture (assign it to a module-level name) yielding started sites, shared by the
    tests of its scope. Sites a test closed on purpose are fine; any other launcher that died is a
    failure at teardown. Launcher problems fail the tests (never skip)."""

    @pytest.fixture(scope=scope)
    def _sites(tmp_path_factory):
        try:
            sites = start_sites(tmp_path_factory.mktemp("hdfs"), specs)
        except MiniDfsError as e:
            pytest.fail(f"HDFS sites did not start: {e}", pytrace=False)
        yield sites
        errors = []
        for s in sites:
            if s.closed:
                continue
            if not s.alive():
                errors.append(f"{s.name}: launcher died during the tests (rc={s.proc.returncode})\n{s.log_tail()}")
                s.close()
                continue
            rc = s.close()
            if rc != 0:
                errors.append(f"{s.name}: launcher exited {rc} when its stdin closed (expected 0)\n{s.log_tail()}")
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)

    return _sites


# ---- WebHDFS (the namenodes' HTTP port): a client independent of MIFAS, for the tests ----

class WebHdfsError(AssertionError):
    def __init__(self, status: int, body: str):
        super().__init__(f"WebHDFS HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


def _http(method: str, url: str, body: bytes | None, timeout: float) -> tuple[int, dict[str, str], bytes]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, f"{u.path}?{u.query}", body=body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def webhdfs(method: str, hostport: str, path: str, op: str, data: bytes | None = None,
            timeout: float = 30.0, **params) -> bytes:
    """One WebHDFS operation against a namenode's HTTP address. CREATE and OPEN are redirected
    (307) to a datanode, which receives or sends the data; the namenode request carries no body."""
    query = urllib.parse.urlencode({"op": op, "user.name": "mifas-tests", **params})
    status, headers, content = _http(method, f"http://{hostport}/webhdfs/v1{urllib.parse.quote(path)}?{query}",
                                     None, timeout)
    if status == 307:
        status, headers, content = _http(method, headers["location"], data, timeout)
    if status >= 300:
        raise WebHdfsError(status, content.decode("utf-8", "replace"))
    return content


def webhdfs_put(hostport: str, path: str, data: bytes) -> None:
    webhdfs("PUT", hostport, path, "CREATE", data, overwrite="true")


def webhdfs_get(hostport: str, path: str) -> bytes:
    return webhdfs("GET", hostport, path, "OPEN")


def webhdfs_status(hostport: str, path: str) -> dict:
    return json.loads(webhdfs("GET", hostport, path, "GETFILESTATUS"))["FileStatus"]


def webhdfs_block_hosts(hostport: str, path: str) -> list[list[str]]:
    """Per block, the datanode addresses ("ip:xferport") the namenode hands out for reading."""
    locs = json.loads(webhdfs("GET", hostport, path, "GETFILEBLOCKLOCATIONS"))["BlockLocations"]["BlockLocation"]
    return [loc["names"] for loc in locs]
