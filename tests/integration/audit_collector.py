"""A real syslog collector for the audit-trail tests: Debian's rsyslogd (imtcp, imudp, and imtcp
with the GnuTLS stream driver for RFC 5425, mutual TLS), started as the test's own process on free
ports, writing every received message to one file per transport with a template that keeps the
RFC 5424 header fields and the raw MSG. Certificates are made with the openssl CLI."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mifas_helpers import free_port, wait_until

RSYSLOGD = "/usr/sbin/rsyslogd"
OPENSSL = "/usr/bin/openssl"

# One line per message: fields tab-separated (audit XML escapes tabs and line breaks).
TEMPLATE = ("%pri%\\t%protocol-version%\\t%timereported:::date-rfc3339%\\t%hostname%\\t%app-name%"
            "\\t%procid%\\t%msgid%\\t%msg%\\n")
FIELDS = ("pri", "version", "timestamp", "hostname", "app_name", "procid", "msgid", "msg")


def _openssl(*args, cwd: Path) -> None:
    r = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: a collector checked against it must fail


def make_pki(d: Path) -> Pki:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate, another CA."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=MIFAS Audit Test CA", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out",
             "other-ca.pem", "-days", "2", "-subj", "/CN=Unrelated CA", cwd=d)
    for name, cn, ext in (("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                                  "extendedKeyUsage=serverAuth\n"),
                          ("client", "mifas-node", "subjectAltName=DNS:mifas-node\n"
                                                   "extendedKeyUsage=clientAuth\n")):
        (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + ext)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
                 cwd=d)
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
               d / "other-ca.pem")


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Rsyslog:
    """rsyslogd -n with imtcp (plain), imudp and imtcp+gtls (x509/certvalid: clients must present a
    certificate of the CA), each writing to its own file."""

    def __init__(self, workdir: Path, pki: Pki, tcp_port: int | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tcp_port, self.udp_port, self.tls_port = tcp_port or free_port(), free_port(), free_port()
        while len({self.tcp_port, self.udp_port, self.tls_port}) < 3:
            self.tls_port = free_port()
        self.files = {t: self.dir / f"{t}.log" for t in ("tcp", "udp", "tls")}
        self.conf = self.dir / "rsyslog.conf"
        self.pidfile = self.dir / "rsyslogd.pid"
        self.log = self.dir / "rsyslogd.out"
        rulesets = "\n".join(
            f'ruleset(name="{t}") {{ action(type="omfile" file="{f}" template="raw") }}'
            for t, f in self.files.items())
        self.conf.write_text(f"""
global(workDirectory="{self.dir}" maxMessageSize="64k"
       DefaultNetstreamDriverCAFile="{pki.ca}"
       DefaultNetstreamDriverCertFile="{pki.server_cert}"
       DefaultNetstreamDriverKeyFile="{pki.server_key}")
module(load="imtcp")
module(load="imudp")
template(name="raw" type="string" string="{TEMPLATE}")
{rulesets}
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" ruleset="tcp")
input(type="imudp" address="127.0.0.1" port="{self.udp_port}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Rsyslog":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def ready():
            assert self.proc.poll() is None, f"rsyslogd exited rc={self.proc.returncode}\n{self.tail()}"
            return _port_accepts(self.tcp_port) and _port_accepts(self.tls_port)

        wait_until(ready, 20, what="rsyslogd to accept TCP and TLS connections")
        self._wait_udp()
        return self

    def _wait_udp(self) -> None:
        """imudp has no connection to wait for: send probes until one reaches the file."""
        probe = f"<13>1 - - probe - - - udp-ready-{time.time_ns()}".encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            def arrived():
                s.sendto(probe, ("127.0.0.1", self.udp_port))
                return probe.split(b" ")[-1].decode() in self._text("udp")
            wait_until(arrived, 20, interval=0.1, what="rsyslogd's UDP input")

    def _text(self, transport: str) -> str:
        try:
            return self.files[transport].read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def records(self, transport: str) -> list[dict]:
        """Every message received on `transport` with MSGID IHE+RFC-3881, as dicts of FIELDS."""
        out = []
        for line in self._text(transport).splitlines():
            parts = line.split("\t", len(FIELDS) - 1)
            if len(parts) == len(FIELDS) and parts[6] == "IHE+RFC-3881":
                out.append(dict(zip(FIELDS, parts)))
        return out

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except FileNotFoundError:
            return "(no rsyslogd output)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
