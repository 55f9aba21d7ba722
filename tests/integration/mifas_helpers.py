"""Start/stop the real `mifas` binary, write configs, run DCMTK tools, inspect the data dir."""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from pynetdicom import AE

REPO = Path(__file__).resolve().parents[2]
MIFAS_BIN = Path(os.environ.get("MIFAS_BIN", REPO / "target" / "release" / "mifas")).absolute()

ECHOSCU = "/usr/bin/echoscu"
STORESCU = "/usr/bin/storescu"
DCMDUMP = "/usr/bin/dcmdump"

# Optional words after http= (issue 13: " dicom_tls=ADDR", " https") leave the rest as it was.
READY_RE = re.compile(r"^MIFAS READY dicom=(?P<ip>\S+):(?P<port>\d+) aet=(?P<aet>\S+) data=(?P<data>.+) "
                      r"http=(?P<http>\S+):(?P<http_port>\d+)(?P<extra>(?: [a-z_]+(?:=\S+)?)*)$")

# Environment for every child: DCMTK keeps Nagle on without this (≈40 ms per C-STORE).
CHILD_ENV = dict(os.environ, TCP_NODELAY="1")
CHILD_ENV.setdefault("RUST_LOG", "info")
CHILD_ENV.setdefault("RUST_BACKTRACE", "1")  # panics print their backtrace
# ... but errors do not capture one: dicom-parser signals the end of every data set it reads with an
# error, and with RUST_BACKTRACE=1 alone each would walk the stack (a 500-instance /metadata took
# 19.8 ms instead of 13.8)
CHILD_ENV.setdefault("RUST_LIB_BACKTRACE", "0")

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 40.0


# --- config -------------------------------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table
        return "{ " + ", ".join(f'"{k}" = {_toml_value(x)}' for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(cfg: dict) -> str:
    """Tiny TOML writer: {table: {key: scalar|list|[{...}] (array of tables)}}; a top-level
    list of dicts is a top-level array of tables: {"remote_ae": [{...}, ...]} -> [[remote_ae]]."""
    out = []
    for table, body in cfg.items():
        if isinstance(body, (list, tuple)):
            for entry in body:
                if not isinstance(entry, dict):
                    raise TypeError(f"top-level {table!r} must be a table or a list of tables")
                out.append(f"[[{table}]]")
                for ek, ev in entry.items():
                    out.append(f"{ek} = {_toml_value(ev)}")
                out.append("")
            continue
        scalars = {k: v for k, v in body.items() if not (isinstance(v, list) and v and isinstance(v[0], dict))}
        arrays = {k: v for k, v in body.items() if k not in scalars}
        out.append(f"[{table}]")
        for k, v in scalars.items():
            out.append(f"{k} = {_toml_value(v)}")
        out.append("")
        for k, entries in arrays.items():
            for entry in entries:
                out.append(f"[[{table}.{k}]]")
                for ek, ev in entry.items():
                    out.append(f"{ek} = {_toml_value(ev)}")
                out.append("")
    return "\n".join(out) + "\n"


def write_config(path: Path, cfg: dict | str) -> Path:
    path = Path(path)
    path.write_text(cfg if isinstance(cfg, str) else to_toml(cfg), encoding="utf-8")
    return path


# --- server -------------------------------------------------------------------------------


class MifasServer:
    """One `mifas serve` process on a free port with its own data dir."""

    def __init__(self, workdir: Path, config: dict | str | None = None, extra_args=(),
                 data_dir: Path | None = None, name: str = "mifas"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        self.config_path = None
        if config is not None:
            self.config_path = write_config(self.workdir / f"{name}.toml", config)
        self.extra_args = list(extra_args)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.aet: str | None = None
        self.ready_line: str | None = None
        self.stdout_lines: list[str] = []
        self.log_path = self.workdir / f"{name}.stderr.log"
        self.starts = 0
        self.expected_dead = False  # set when a test kills/stops the server on purpose
        self.argv_override: list[str] | None = None  # full argument list after `mifas`

    # command line
    def argv(self) -> list[str]:
        if self.argv_override is not None:
            return [str(MIFAS_BIN), *map(str, self.argv_override)]
        args = [str(MIFAS_BIN), "serve", "--data-dir", str(self.data_dir), "--dicom-port", "0",
                "--http-port", "0"]
        if self.config_path:
            args += ["--config", str(self.config_path)]
        return args + self.extra_args

    def start(self) -> "MifasServer":
        assert MIFAS_BIN.exists(), f"{MIFAS_BIN} not built"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts}: {' '.join(self.argv())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.PIPE, stderr=log,
                                     cwd=self.workdir, env=CHILD_ENV)
        log.close()
        self.expected_dead = False
        self.stdout_lines = []
        line = read_ready_line(self.proc, STARTUP_TIMEOUT, self.stdout_lines, self.log_tail)
        m = READY_RE.match(line)
        self.ready_line = line
        ip, self.port, self.aet = m["ip"], int(m["port"]), m["aet"]
        self.http_port = int(m["http_port"])
        self.host = "127.0.0.1" if ip in ("0.0.0.0", "::", "[::]") else ip.strip("[]")
        # keep draining stdout so the server can never block on a full pipe
        threading.Thread(target=_drain, args=(self.proc.stdout, self.stdout_lines), daemon=True).start()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def assert_alive(self, what: str = "") -> None:
        assert self.alive(), (f"server died {what}: exit code {self.proc.returncode}\n"
                              f"--- stderr tail ---\n{self.log_tail()}")

    def stop(self, sig=signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig` and wait; returns the exit code."""
        assert self.proc is not None
        self.expected_dead = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"server did not exit within {timeout}s after {sig!r}\n{self.log_tail()}")
        return self.proc.returncode

    def stop_ok(self) -> None:
        self.assert_alive("before stop")
        rc = self.stop()
        assert rc == 0, f"server exit code {rc} after SIGTERM\n{self.log_tail()}"

    def signal(self, sig) -> None:
        """Send a signal without waiting (the test then owns the shutdown)."""
        self.expected_dead = True
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.expected_dead = True
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> "MifasServer":
        assert not self.alive()
        return self.start()

    # inspection
    def echo_ok(self) -> None:
        """The server still answers C-ECHO (DCMTK echoscu, a fresh association)."""
        self.assert_alive()
        r = echoscu(self.host, self.port, self.aet)
        assert r.returncode == 0, f"echoscu failed rc={r.returncode}\n{r.stdout}\n{r.stderr}\n{self.log_tail()}"

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def vm_hwm_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return -1

    def stats(self) -> dict[str, int]:
        assert not self.alive(), "stats needs the server stopped"
        return mifas_stats(self.data_dir, self.config_path)


def _drain(stream, sink):
    try:
        for raw in iter(stream.readline, b""):
            sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
    except (ValueError, OSError):
        pass


def read_ready_line(proc: subprocess.Popen, timeout: float, sink: list, log_tail) -> str:
    """Read stdout until the READY line; no sleeps: select() with a deadline."""
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    fd = proc.stdout.fileno()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait()
                raise AssertionError(f"no READY line within {timeout}s; stdout={sink}\n{log_tail()}")
            if not sel.select(timeout=left):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                proc.wait(timeout=10)
                raise AssertionError(f"server exited (rc={proc.returncode}) before READY; "
                                     f"stdout={sink}\n{log_tail()}")
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode("utf-8", "replace").rstrip("\r")
                sink.append(line)
                if READY_RE.match(line):
                    if buf:
                        sink.append(buf.decode("utf-8", "replace"))
                    return line
                if line.startswith("MIFAS READY"):
                    raise AssertionError(f"malformed READY line: {line!r}")
    finally:
        sel.close()


# --- CLI ----------------------------------------------------------------------------------


def run_mifas(*args, timeout: float = 120, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(MIFAS_BIN), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=CHILD_ENV)


def parse_kv(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+): (.*)$", line.strip())
        if m:
            out[m[1]] = m[2]
    return out


def mifas_stats(data_dir: Path, config: Path | None = None) -> dict[str, int]:
    args = ["stats", "--data-dir", data_dir]
    if config:
        args += ["--config", config]
    r = run_mifas(*args)
    assert r.returncode == 0, f"mifas stats rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr}"
    kv = parse_kv(r.stdout)
    for key in ("patients", "studies", "series", "instances", "bytes"):
        assert key in kv, f"`mifas stats` output lacks `{key}: N`:\n{r.stdout}"
    return {k: int(kv[k]) for k in ("patients", "studies", "series", "instances", "bytes")}


def echoscu(host, port, called="MIFAS", calling="ECHOSCU", timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run([ECHOSCU, "-aet", calling, "-aec", called, "-to", "10", "-ta", "10",
                           "-td", "10", host, str(port)],
                          capture_output=True, text=True, timeout=timeout, env=CHILD_ENV)


# storescu proposal option for a file's own transfer syntax
STORESCU_TS_OPTION = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def storescu(host, port, files, called="MIFAS", calling="STORESCU", ts: str | None = None,
             extra=(), timeout=120) -> subprocess.CompletedProcess:
    args = [STORESCU, "-aet", calling, "-aec", called, "-to", "10", "-ta", "10", "-td", "30",
            "-nh", "-v"]
    if ts:
        args.append(STORESCU_TS_OPTION[ts])
    args += list(extra)
    args += [host, str(port)] + [str(f) for f in files]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=CHILD_ENV)


# --- data dir -----------------------------------------------------------------------------


def object_path(data_dir: Path, sop_instance_uid: str) -> Path:
    """The newest stored generation of an instance (`<uid>.dcm` is generation 0, a replacement
    is `<uid>.g<N>.dcm`); the generation 0 path when none is stored."""
    h = hashlib.sha256(sop_instance_uid.encode("ascii")).hexdigest()
    d = Path(data_dir) / "objects" / h[:2]
    newer = [(int(p.name[len(sop_instance_uid) + 2:-4]), p) for p in d.glob(f"{sop_instance_uid}.g*.dcm")]
    return max(newer)[1] if newer else d / f"{sop_instance_uid}.dcm"


def list_objects(data_dir: Path) -> list[Path]:
    root = Path(data_dir) / "objects"
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file())


def spool_files(data_dir: Path) -> list[Path]:
    root = Path(data_dir) / "spool"
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file())


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `pred` until truthy; only for states the server gives no signal for."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_spool_empty(data_dir: Path, timeout: float = 15.0) -> None:
    wait_until(lambda: not spool_files(data_dir), timeout,
               what=f"empty spool, still: {spool_files(data_dir)}")


# --- Part-10 files ------------------------------------------------------------------------

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UR", b"UT", b"UN", b"SV", b"UV"}


def split_part10(data: bytes) -> tuple[bytes, bytes, dict[tuple[int, int], bytes]]:
    """Return (meta group bytes, data set bytes, {tag: raw value} of the meta group)."""
    assert data[128:132] == b"DICM", "not a Part-10 file (no DICM at 128)"
    off = 132
    meta: dict[tuple[int, int], bytes] = {}
    while off + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, off)
        if group != 0x0002:
            break
        vr = data[off + 4 : off + 6]
        if vr in _LONG_VRS:
            length = struct.unpack_from("<I", data, off + 8)[0]
            voff = off + 12
        else:
            length = struct.unpack_from("<H", data, off + 6)[0]
            voff = off + 8
        meta[(group, elem)] = data[voff : voff + length]
        off = voff + length
    return data[132:off], data[off:], meta


def meta_uid(meta: dict, elem: int) -> str | None:
    v = meta.get((0x0002, elem))
    return None if v is None else v.decode("ascii").rstrip("\x00 ")


def file_dataset_bytes(path: Path) -> bytes:
    return split_part10(Path(path).read_bytes())[1]


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def check_stored_object(data_dir: Path, sop_class: str, sop_instance: str, ts: str,
                        dataset: bytes | None = None) -> bytes:
    """Assert the stored object exists with a MIFAS-built meta group; return its data set bytes."""
    p = object_path(data_dir, sop_instance)
    assert p.is_file(), f"stored object {p} missing; objects={list_objects(data_dir)}"
    raw = p.read_bytes()
    assert raw[:128] == b"\x00" * 128, "preamble is not 128 zero bytes"
    _, ds, meta = split_part10(raw)
    assert meta_uid(meta, 0x0002) == sop_class, f"MediaStorageSOPClassUID {meta_uid(meta, 0x0002)} != {sop_class}"
    assert meta_uid(meta, 0x0003) == sop_instance, f"MediaStorageSOPInstanceUID {meta_uid(meta, 0x0003)}"
    assert meta_uid(meta, 0x0010) == ts, f"TransferSyntaxUID in meta {meta_uid(meta, 0x0010)} != {ts}"
    assert meta_uid(meta, 0x0012), "no ImplementationClassUID in the stored meta group"
    if (0x0002, 0x0000) in meta:
        group_len = struct.unpack("<I", meta[(0x0002, 0x0000)])[0]
        meta_bytes = split_part10(raw)[0]
        # group length counts everything after the (0002,0000) element itself (12 bytes)
        assert group_len == len(meta_bytes) - 12, "FileMetaInformationGroupLength is wrong"
    if dataset is not None:
        assert len(ds) == len(dataset), f"stored data set has {len(ds)} bytes, sent {len(dataset)}"
        assert sha256(ds) == sha256(dataset), "stored data set differs from the bytes sent"
    return ds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- pynetdicom ---------------------------------------------------------------------------


def pyn_ae(contexts, calling="PYNETDICOM", max_pdu=16382) -> AE:
    """contexts: [(abstract_syntax, [ts, ...]), ...]"""
    ae = AE(ae_title=calling)
    ae.acse_timeout = 15
    ae.dimse_timeout = 60
    ae.network_timeout = 60
    ae.maximum_pdu_size = max_pdu
    for abstract, tss in contexts:
        ae.add_requested_context(abstract, tss)
    return ae


def pyn_associate(server: MifasServer, contexts, calling="PYNETDICOM", called=None, max_pdu=16382):
    ae = pyn_ae(contexts, calling=calling, max_pdu=max_pdu)
    assoc = ae.associate(server.host, server.port, ae_title=called or server.aet)
    return assoc


def contexts_for_files(paths) -> list[tuple[str, list[str]]]:
    """One context per (SOP class, TS) pair of the files, in the file's own TS."""
    seen = []
    for p in paths:
        import dicom_fixtures as F

        info = F.file_info(p)
        key = (info.sop_class, [info.ts])
        if key not in seen:
            seen.append(key)
    return seen
