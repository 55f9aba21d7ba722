"""Shared by the HA monitor's end-to-end test (test_ha_failover.py) and its benchmark
(bench/ha/run_failover.py): a MIFAS configuration whose only storage site is an HA site of our
MiniDFSCluster launcher and whose `[ha]` table watches it, the launcher control the test VM
driver (launcher_ctl.py) talks to, and readers of `mifas ha status` and of the monitor's events.
"""

from __future__ import annotations

import re
import socket
import socketserver
import sys
import threading
import urllib.request
from pathlib import Path

import minidfs as M
from mifas_helpers import run_mifas, wait_until

HOSTS = ("hostA", "hostB", "hostC")
CTL_SCRIPT = Path(__file__).with_name("launcher_ctl.py")


class LauncherControl:
    """A TCP server the driver script talks to; every launcher command (the test's and the
    driver's) goes through one lock, since the launcher reads one command at a time."""

    def __init__(self, site: M.Site):
        self.site = site
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, str]] = []  # (verb, vm, host)
        self.refuse_power_off = False
        ctl = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline().decode().strip()
                self.wfile.write((ctl.serve(line) + "\n").encode())

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ok(self, cmd: str) -> str:
        with self.lock:
            return self.site.ok(cmd, timeout=120)

    def states(self) -> list[str]:
        with self.lock:
            return self.site.state()["namenodes"]

    def serve(self, line: str) -> str:
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("power-off", "restart"):
            return f"ERR bad request {line!r}"
        verb, vm, host = parts
        m = re.fullmatch(r"nn(\d)", vm)
        if not m:
            return f"ERR unknown VM {vm!r}"
        i = int(m.group(1))
        self.calls.append((verb, vm, host))
        try:
            with self.lock:
                down = self.site.state()["namenodes"][i] == "down"
                if verb == "power-off":
                    if self.refuse_power_off:
                        return f"ERR power-off of {vm} refused (test: fencing made to fail)"
                    return "OK already off" if down else self.site.command(f"kill-namenode {i}", 120)
                if not down:
                    self.site.ok(f"kill-namenode {i}", 120)
                return self.site.command(f"restart-namenode {i}", 180)
        except Exception as e:  # the driver must see a failure, never a hang
            return f"ERR {e}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def archive_config(site: M.Site, ctl_addr: str, cooldown_ms: int = 2000) -> str:
    py = sys.executable
    conf = {k: v for k, v in site.client_conf().items() if k.startswith("dfs.client.")}
    lines = [
        "[storage]", 'ack = "1"', "repair_interval_secs = 0", "",
        "[[storage.sites]]", f'name = "{site.name}"', f'url = "{site.url}"',
        "namenodes = [" + ", ".join(f'"{n}"' for n in site.namenodes) + "]",
        'root = "/mifas-ha"', "replication = 2", "block_size_mb = 8", "pack_max_mb = 64",
        # the write of a group waits out the failover (seconds) instead of failing the C-STOREs
        "timeout_secs = 60", "failover_attempts = 40",
    ]
    if conf:
        lines.append("hadoop = { " + ", ".join(f'"{k}" = "{v}"' for k, v in conf.items()) + " }")
    lines += [
        "", "[ha]", "",
        "[ha.timing]",
        # short cooldown and backoff: the tests fail over several times within a minute
        f"cooldown_ms = {cooldown_ms}", "retry_backoff_ms = 1000",
        "restart_timeout_ms = 150000", "rejoin_timeout_ms = 150000", "",
        "[ha.driver]", 'kind = "command"',
        f'power_off = "{py} {CTL_SCRIPT} {ctl_addr} power-off {{vm}} {{host}}"',
        f'restart = "{py} {CTL_SCRIPT} {ctl_addr} restart {{vm}} {{on_host}}"', "",
    ]
    for h in HOSTS:
        # a closed local port: the connect is refused at once, which a live kernel does
        lines += ["[[ha.host]]", f'name = "{h}"', f'probe = "127.0.0.1:{closed_port()}"', ""]
    lines += ["[[ha.site]]", f'name = "{site.name}"', 'believed_active = "nn0"']
    for i in range(2):
        lines += ["[[ha.site.namenode]]", f'vm = "nn{i}"', f'host = "{HOSTS[i]}"',
                  f'rpc = "{site.namenodes[i]}"', f'http = "{site.http[i]}"']
    return "\n".join(lines) + "\n"


def ha_status(server) -> dict[str, str]:
    r = run_mifas("ha", "status", "--config", str(server.config_path), "--data-dir", str(server.data_dir),
                  timeout=30)
    assert r.returncode == 0, f"mifas ha status exited {r.returncode}: {r.stdout}{r.stderr}"
    out = {}
    for line in r.stdout.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out


def wait_status(server, pred, timeout: float, what: str) -> dict[str, str]:
    seen = {}

    def check():
        nonlocal seen
        seen = ha_status(server)
        return pred(seen)

    try:
        wait_until(check, timeout, interval=0.2, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\nlast `mifas ha status`:\n" +
                             "\n".join(f"{k}: {v}" for k, v in seen.items()) + "\n" + server.log_tail(80))
    return seen




def settled(site: str, active: str):
    standby = "nn1" if active == "nn0" else "nn0"

    def p(s: str) -> str:
        return f"site.{site}.{s}"

    return lambda st: (st.get(p("active")) == active and st.get(p(f"{active}.role")) == "active"
                       and st.get(p(f"{standby}.role")) == "standby" and st.get(p("workflow")) == "idle"
                       and st.get(p(f"{standby}.restart")) == "none")


def events(server) -> list[str]:
    """The monitor's timeline as the event kinds of its log lines (oldest first)."""
    text = server.log_path.read_text(errors="replace")
    return re.findall(r"event=\"?(\w+)", text)


def metrics(server) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10) as r:
        return r.read().decode()
