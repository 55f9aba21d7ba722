"""Certificates for the TLS tests (issue 13), made with the `openssl` CLI: a CA, a server
certificate (CN mifas-server, SAN localhost + 127.0.0.1; also used by the TLS move destination),
and two client certificates (CN modality1 with SAN modality1.example, and CN intruder), all RSA
2048 and signed by the CA. Plus the client side of TLS in Python (ssl.SSLContext) for
pynetdicom and urllib."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client1_cert: Path   # CN modality1, SAN DNS modality1.example
    client1_key: Path
    client2_cert: Path   # CN intruder
    client2_key: Path

    def client_context(self, cert: str | None = "client1", verify: bool = True) -> ssl.SSLContext:
        """A client context trusting the CA and presenting `cert` (None: no certificate)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.check_hostname = verify
        if cert:
            ctx.load_cert_chain(str(getattr(self, f"{cert}_cert")), str(getattr(self, f"{cert}_key")))
        return ctx

    def server_context(self, require_client: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
        return ctx


def _run(*args: str, cwd: Path) -> None:
    r = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"


def _leaf(d: Path, name: str, cn: str, san: str, usage: str) -> None:
    _run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
         "-subj", f"/O=MIFAS tests/CN={cn}", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   f"extendedKeyUsage={usage}\n"
                   f"subjectAltName={san}\n")
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-sha256", "-extfile", ext.name, "-out", f"{name}.pem", cwd=d)


def make_pki(d: Path) -> Pki:
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    ca_ext = d / "ca.ext"
    ca_ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                      "subjectKeyIdentifier=hash\n")
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-sha256", "-subj", "/O=MIFAS tests/CN=MIFAS Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _leaf(d, "server", "mifas-server", "DNS:localhost,IP:127.0.0.1", "serverAuth,clientAuth")
    _leaf(d, "client1", "modality1", "DNS:modality1.example", "clientAuth,serverAuth")
    _leaf(d, "client2", "intruder", "DNS:intruder.example", "clientAuth,serverAuth")
    return Pki(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "client1.pem", d / "client1.key",
               d / "client2.pem", d / "client2.key")


READY_TLS_RE = re.compile(r" dicom_tls=(?P<ip>[^\s]+):(?P<port>\d+)")


def make_leaf(pki: Pki, name: str, cn: str) -> tuple[Path, Path]:
    """One more client certificate (CN `cn`, SAN DNS `cn`.example) signed by the test CA:
    (certificate, key)."""
    _leaf(pki.dir, name, cn, f"DNS:{cn}.example", "clientAuth,serverAuth")
    return pki.dir / f"{name}.pem", pki.dir / f"{name}.key"


class CrlMaker:
    """Certificate revocation lists of the test CA, made with `openssl ca` (its own small
    database under `db`)."""

    def __init__(self, pki: Pki, db: Path):
        self.pki, self.db = pki, Path(db)
        self.db.mkdir(parents=True, exist_ok=True)
        (self.db / "index.txt").write_text("")
        (self.db / "crlnumber").write_text("01\n")
        self.cnf = self.db / "ca.cnf"
        self.cnf.write_text(f"[ca]\ndefault_ca = test\n[test]\ndatabase = {self.db}/index.txt\n"
                            f"crlnumber = {self.db}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n")

    def _ca(self, *args: str) -> None:
        _run("ca", "-config", str(self.cnf), "-keyfile", "ca.key", "-cert", "ca.pem", *args, cwd=self.pki.dir)

    def revoke(self, cert: Path) -> None:
        self._ca("-revoke", str(cert))

    def write(self, out: Path) -> None:
        """The current list, PEM, replacing `out` at once (as a CA tool publishing it would)."""
        tmp = out.with_name(out.name + ".new")
        self._ca("-gencrl", "-out", str(tmp))
        tmp.replace(out)


def tls_port(ready_line: str) -> int:
    m = READY_TLS_RE.search(ready_line)
    assert m, f"no dicom_tls= in the READY line: {ready_line!r}"
    return int(m["port"])


def dcmtk_tls_args(pki: Pki, cert: str | tuple[Path, Path] | None = "client1") -> list[str]:
    """DCMTK client options: +tls key cert (or anonymous TLS) and trust the CA. `cert` names one
    of the Pki's clients, or is a (certificate, key) pair from make_leaf."""
    if cert is None:
        return ["+tla", "+cf", str(pki.ca)]
    if isinstance(cert, tuple):
        return ["+tls", str(cert[1]), str(cert[0]), "+cf", str(pki.ca)]
    return ["+tls", str(getattr(pki, f"{cert}_key")), str(getattr(pki, f"{cert}_cert")), "+cf", str(pki.ca)]


TLS_LOG_RE = re.compile(r"association accepted over TLS.*?tls_version=(\S+) tls_suite=(\S+)")


def negotiated(log_text: str) -> list[tuple[str, str]]:
    """(TLS version, cipher suite) of every association the server accepted over TLS."""
    return TLS_LOG_RE.findall(log_text)
