"""C-MOVE / C-GET peers for the retrieve tests (issue 4): a small corpus (generated CT plus
pydicom's compressed and other-syntax files), DCMTK storescp / movescu / getscu runners, an
Orthanc launcher, pynetdicom storage SCPs with scripted failures, and pynetdicom C-MOVE/C-GET
requestors that record every response. No mocks: every peer is a real DICOM implementation."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
import pydicom.filebase
import pydicom.multival
from pydicom.dataset import Dataset
from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         generate_uid)
from pynetdicom import AE, StoragePresentationContexts, build_role, evt

import dicom_fixtures as F
from find_corpus import import_files
from mifas_helpers import (CHILD_ENV, MifasServer, echoscu, free_port, meta_uid, split_part10,
                           wait_until)

STORESCP = "/usr/bin/storescp"
MOVESCU = "/usr/bin/movescu"
GETSCU = "/usr/bin/getscu"
ORTHANC = "/usr/sbin/Orthanc"

PR_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
SR_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
PR_GET = "1.2.840.10008.5.1.4.1.2.1.3"
SR_GET = "1.2.840.10008.5.1.4.1.2.2.3"

UNCOMPRESSED = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.91"}

SUCCESS, PENDING, CANCEL = 0x0000, 0xFF00, 0xFE00
WARNING_SUBOPS = 0xB000
NO_SUBOPS = 0xA702
UNKNOWN_DEST = 0xA801
IDENT_ERROR = 0xA900
UNABLE = 0xC000


# --- corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    path: Path
    sop: str
    sop_class: str
    ts: str
    study: str
    series: str
    patient: str

    @property
    def dataset_bytes(self) -> bytes:
        return split_part10(self.path.read_bytes())[1]


@dataclass
class Corpus:
    items: list[Item]
    ct: list[Item]        # generated 64x64 CT, explicit VR LE: 2 patients x 2 studies x 2 series x 3
    other: list[Item]     # one study, patient RETR-OTHER: compressed + implicit + big endian files
    other_study: str
    broken: list[Item]    # one study, patient RETR-BROKEN: [good RLE, JPEG baseline with garbage data]
    broken_study: str
    undecodable: str      # SOP Instance UID of the garbage JPEG

    def where(self, **kw) -> list[Item]:
        return [i for i in self.items if all(getattr(i, k) == v for k, v in kw.items())]

    @property
    def ct_studies(self) -> list[str]:
        return sorted({i.study for i in self.ct})

    @property
    def ct_patients(self) -> list[str]:
        return sorted({i.patient for i in self.ct})

    def by_sop(self) -> dict[str, Item]:
        return {i.sop: i for i in self.items}


# pydicom files moved to a storescp that accepts only uncompressed syntaxes (→ decompressed or
# converted by MIFAS) and to one with +xa (→ sent unchanged)
OTHER_FIXTURES = ["jpeg_baseline", "jpeg_lossless", "j2k_lossless", "j2k", "rle", "multiframe_rle",
                  "mr_implicit", "big_endian"]
OTHER_PATIENT = "RETR-OTHER"


def _info(path: Path) -> Item:
    i = F.file_info(path)
    return Item(Path(path), i.sop_instance, i.sop_class, i.ts, i.study, i.series, i.patient_id)


def make_corpus(outdir: Path) -> Corpus:
    outdir = Path(outdir)
    ct_dir = outdir / "ct"
    ct = [_info(c.path) for c in F.generate_corpus(ct_dir, patients=2, studies=2, series=2, instances=3,
                                                     tag="retrieve", rows=64, cols=64)]
    other_dir = outdir / "other"
    other_dir.mkdir(parents=True, exist_ok=True)
    root = "1.2.826.0.1.3680043.8.498."
    study = generate_uid(root, ["retrieve-other-study"])
    other = []
    by_id = {f.id: f for f in F.FIXTURES}
    for n, fid in enumerate(OTHER_FIXTURES):
        fx = by_id[fid]
        if fx.path is None:
            continue
        src = pydicom.dcmread(fx.path)
        ts = str(src.file_meta.TransferSyntaxUID)
        ds = F.with_uids(src, SOPInstanceUID=generate_uid(root, ["retrieve-other-i", fid]),
                         StudyInstanceUID=study,
                         SeriesInstanceUID=generate_uid(root, ["retrieve-other-se", fid]),
                         PatientID=OTHER_PATIENT)
        if "SeriesNumber" in ds:
            ds["SeriesNumber"].value = n + 1
        path = F.write_part10(ds, other_dir / f"{fid}.dcm", ts=ts)
        other.append(_info(path))
    broken, broken_study, undecodable = _broken_study(outdir / "broken", root)
    return Corpus(ct + other + broken, ct, other, study, broken, broken_study, undecodable)


def _broken_study(outdir: Path, root: str):
    """A study of two: a good RLE image and a JPEG baseline one whose single fragment is garbage
    (stored fine, sent fine in its own syntax, but impossible to decompress)."""
    from pydicom.encaps import encapsulate

    outdir.mkdir(parents=True, exist_ok=True)
    study = generate_uid(root, ["retrieve-broken-study"])
    by_id = {f.id: f for f in F.FIXTURES}
    out = []
    undecodable = generate_uid(root, ["retrieve-broken-i", "garbage"])
    for fid, sop in (("rle", generate_uid(root, ["retrieve-broken-i", "rle"])), ("jpeg_baseline", undecodable)):
        src = pydicom.dcmread(by_id[fid].path)
        ts = str(src.file_meta.TransferSyntaxUID)
        ds = F.with_uids(src, SOPInstanceUID=sop, StudyInstanceUID=study,
                         SeriesInstanceUID=generate_uid(root, ["retrieve-broken-se", fid]),
                         PatientID="RETR-BROKEN")
        if sop == undecodable:
            rng = np.random.default_rng(7)
            garbage = b"\xff\xd8" + rng.integers(1, 255, 3000, dtype=np.uint8).tobytes() + b"\xff\xd9"
            ds.PixelData = encapsulate([garbage])
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True
        out.append(_info(F.write_part10(ds, outdir / f"{fid}.dcm", ts=ts)))
    return out, study, undecodable


def served_archive(workdir: Path, corpus: Corpus, config: dict | None, name: str) -> MifasServer:
    """`mifas import` the corpus into a fresh data dir, then `mifas serve` with `config`."""
    workdir = Path(workdir)
    data = workdir / "data"
    import_files(data, *sorted({i.path.parent for i in corpus.items}))
    return MifasServer(workdir, config=config, data_dir=data, name=name).start()


def close_archive(s: MifasServer) -> None:
    """As conftest's factory: alive at the end, exit 0 on SIGTERM."""
    if s.proc is None:
        return
    if s.proc.poll() is not None:
        raise AssertionError(f"{s.name}: server died during the tests (exit code {s.proc.returncode})\n"
                             f"{s.log_tail()}")
    rc = s.stop()
    assert rc == 0, f"{s.name}: exit code {rc} after SIGTERM\n{s.log_tail()}"


def distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def remote_ae(aet: str, port: int, **kw) -> dict:
    return {"aet": aet, "host": "127.0.0.1", "port": port, **kw}


# --- comparing what a peer received with the originals ---------------------------------------


def pixels(path_or_ds) -> np.ndarray:
    ds = path_or_ds if isinstance(path_or_ds, Dataset) else pydicom.dcmread(path_or_ds)
    return np.asarray(ds.pixel_array)


KEPT_ATTRIBUTES = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID",
                   "PatientName", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "NumberOfFrames"]


# what a decompression may change: pixel data and its description, lossy-compression notes
MAY_CHANGE = {0x7FE00010, 0x00280004, 0x00280006, 0x00282110, 0x00282112, 0x00282114}


def _flat(ds: Dataset) -> list:
    out = []
    for e in ds.iterall():
        if e.VR == "SQ" or e.tag.element == 0:  # sequences: their items' elements are listed
            continue
        v = e.value
        out.append((int(e.tag), v if isinstance(v, (bytes, str, int, float)) or v is None else str(v)))
    return out


def assert_same_object(received: bytes, item: Item, *, what: str = "", content_only: bool = False) -> str:
    """`received`: a Part-10 file as a peer wrote it (bit-preserving). Same transfer syntax as
    stored → data set bytes identical; another one → it must be uncompressed, the attributes kept
    and the pixel data equal after decoding (lossy JPEG / JPEG 2000: max abs diff ≤ 2).
    Returns the received transfer syntax."""
    _, ds_bytes, meta = split_part10(received)
    ts = meta_uid(meta, 0x0010)
    tag = f"{what}{Path(item.path).name} ({item.sop}, stored {item.ts}, received {ts})"
    if ts == item.ts and content_only:
        # the peer re-encodes what it stores (Orthanc: defined-length sequences, OB for
        # encapsulated pixel data): every element value, the pixel data bytes included, equal
        got = pydicom.dcmread(pydicom.filebase.DicomBytesIO(received), force=True)
        src = pydicom.dcmread(item.path)
        a, b = _flat(src), _flat(got)
        if a != b:
            da, db = dict(a), dict(b)
            bad = sorted(t for t in set(da) | set(db) if da.get(t) != db.get(t))
            raise AssertionError(f"{tag}: element values differ: {[f'{t:08X}' for t in bad[:10]]}")
        return ts
    if ts == item.ts:
        src = item.dataset_bytes
        assert len(ds_bytes) == len(src) and ds_bytes == src, (
            f"{tag}: same transfer syntax but the data set bytes differ "
            f"({len(ds_bytes)} bytes received, {len(src)} stored)")
        return ts
    assert ts in UNCOMPRESSED, f"{tag}: converted to a syntax the peer did not ask for"
    got = pydicom.dcmread(pydicom.filebase.DicomBytesIO(received), force=True)
    src = pydicom.dcmread(item.path)
    # every other element keeps its value (decoded); binary values only within one byte order
    same_order = (item.ts == ExplicitVRBigEndian) == (ts == ExplicitVRBigEndian)
    da = {t: v for t, v in _flat(src) if t not in MAY_CHANGE and (same_order or not isinstance(v, bytes))}
    db = {t: v for t, v in _flat(got) if t not in MAY_CHANGE and (same_order or not isinstance(v, bytes))}
    bad = sorted(t for t in set(da) | set(db) if da.get(t) != db.get(t))
    assert not bad, (f"{tag}: elements changed in the conversion: "
                     + ", ".join(f"{t:08X} {da.get(t)!r:.40} -> {db.get(t)!r:.40}" for t in bad[:8]))
    for kw in KEPT_ATTRIBUTES:
        if kw in src:
            assert kw in got, f"{tag}: {kw} lost in the conversion"
            a, b = src[kw].value, got[kw].value
            if kw == "NumberOfFrames":
                a, b = int(a), int(b)
            assert str(a) == str(b), f"{tag}: {kw} {b!r} != stored {a!r}"
    assert "PixelData" in got, f"{tag}: no PixelData"
    assert not got["PixelData"].is_undefined_length, f"{tag}: pixel data still encapsulated"
    a, b = pixels(src), pixels(got)
    assert a.shape == b.shape, f"{tag}: decoded shape {b.shape} != {a.shape}"
    diff = int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64)))) if a.size else 0
    tol = 2 if item.ts in LOSSY else 0
    assert diff <= tol, f"{tag}: pixel values differ after decoding (max abs diff {diff}, allowed {tol})"
    return ts


def received_by_sop(paths) -> dict[str, bytes]:
    """{SOP Instance UID: file bytes} for Part-10 files written by storescp/getscu (+B)."""
    out: dict[str, bytes] = {}
    for p in paths:
        raw = Path(p).read_bytes()
        _, _, meta = split_part10(raw)
        uid = meta_uid(meta, 0x0003)
        assert uid not in out, f"{uid} received twice"
        out[uid] = raw
    return out


def assert_received_exactly(received: dict[str, bytes], expected: list[Item], what: str = "",
                            content_only: bool = False) -> dict[str, str]:
    """The set of received SOP instances is the expected one and each equals its original.
    Returns {sop: received transfer syntax}."""
    want = {i.sop for i in expected}
    got = set(received)
    assert got == want, (f"{what}received {len(got)} instances, expected {len(want)}: "
                         f"missing {sorted(want - got)[:5]}, unexpected {sorted(got - want)[:5]}")
    by = {i.sop: i for i in expected}
    return {uid: assert_same_object(raw, by[uid], what=what, content_only=content_only)
            for uid, raw in received.items()}


# --- DIMSE responses ------------------------------------------------------------------------


@dataclass
class Rsp:
    status: int
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    failed_uids: list[str] | None = None
    error_comment: str | None = None

    def counts(self):
        return (self.remaining, self.completed, self.failed, self.warning)

    def __str__(self):
        s = (f"0x{self.status:04X} remaining={self.remaining} completed={self.completed} "
             f"failed={self.failed} warning={self.warning}")
        if self.failed_uids is not None:
            s += f" failed_uids={len(self.failed_uids)}"
        if self.error_comment:
            s += f" comment={self.error_comment!r}"
        return s


@dataclass
class RetrieveResult:
    pending: list[Rsp] = field(default_factory=list)
    final: Rsp | None = None
    log: str = ""  # tool output (DCMTK) or "" (pynetdicom)

    def describe(self) -> str:
        lines = [f"final: {self.final}", f"pending ({len(self.pending)}):"]
        lines += [f"  {p}" for p in self.pending[:20]]
        if self.log:
            lines.append("--- tool output tail ---")
            lines += self.log.splitlines()[-40:]
        return "\n".join(lines)

    def assert_final(self, status: int | set, *, completed=None, failed=None, warning=None, remaining=None):
        statuses = status if isinstance(status, set) else {status}
        assert self.final is not None, f"no final response\n{self.describe()}"
        assert self.final.status in statuses, (
            f"final status 0x{self.final.status:04X}, expected "
            f"{' or '.join(f'0x{s:04X}' for s in sorted(statuses))}\n{self.describe()}")
        for name, want in (("completed", completed), ("failed", failed), ("warning", warning),
                           ("remaining", remaining)):
            if want is not None:
                got = getattr(self.final, name)
                got = 0 if (got is None and name == "remaining") else got
                assert got == want, f"final {name} = {got}, expected {want}\n{self.describe()}"

    def assert_pending_progress(self, total: int):
        """Each pending: counts add up to `total`; remaining never grows, completed never shrinks."""
        prev = None
        for p in self.pending:
            assert p.status == PENDING, f"pending status 0x{p.status:04X}\n{self.describe()}"
            c = [0 if x is None else x for x in p.counts()]
            assert sum(c) == total, f"pending counts {p} do not add up to {total}\n{self.describe()}"
            if prev is not None:
                assert c[0] < prev[0], f"remaining did not decrease: {prev} -> {c}\n{self.describe()}"
                assert c[1] >= prev[1] and c[2] >= prev[2] and c[3] >= prev[3], (
                    f"counts went down: {prev} -> {c}\n{self.describe()}")
            prev = c


def _rsp_from_status(status: Dataset, ident: Dataset | None) -> Rsp:
    def g(kw):
        v = status.get(kw)
        return None if v is None else int(v)

    r = Rsp(int(status.Status), g("NumberOfRemainingSuboperations"), g("NumberOfCompletedSuboperations"),
            g("NumberOfFailedSuboperations"), g("NumberOfWarningSuboperations"))
    if "ErrorComment" in status:
        r.error_comment = str(status.ErrorComment)
    if ident is not None and "FailedSOPInstanceUIDList" in ident:
        v = ident.FailedSOPInstanceUIDList
        r.failed_uids = [str(x) for x in (v if isinstance(v, (list, pydicom.multival.MultiValue)) else [v]) if x]
    elif ident is not None:
        r.failed_uids = []
    return r


_FIELD_RE = {
    "remaining": re.compile(r"Remaining Suboperations\s*:\s*(\S+)"),
    "completed": re.compile(r"Completed Suboperations\s*:\s*(\S+)"),
    "failed": re.compile(r"Failed Suboperations\s*:\s*(\S+)"),
    "warning": re.compile(r"Warning Suboperations\s*:\s*(\S+)"),
}
_STATUS_RE = re.compile(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})")


def parse_dcmtk_responses(log: str, rsp_type: str) -> RetrieveResult:
    """Responses from a DCMTK -d log: blocks starting at 'Message Type : C-MOVE RSP'."""
    res = RetrieveResult(log=log)
    blocks = re.split(r"Message Type\s*:\s*", log)[1:]
    for b in blocks:
        if not b.startswith(rsp_type):
            continue
        m = _STATUS_RE.search(b)
        if not m:
            continue
        r = Rsp(int(m[1], 16))
        for name, rx in _FIELD_RE.items():
            fm = rx.search(b)
            if fm and fm[1].isdigit():
                setattr(r, name, int(fm[1]))
        if r.status in (PENDING, 0xFF01):
            res.pending.append(r)
        else:
            res.final = r
    return res


# --- DCMTK tools ----------------------------------------------------------------------------


def _keys(keys: dict) -> list[str]:
    args = []
    for k, v in keys.items():
        args += ["-k", f"{k}={v}" if v is not None else k]
    return args


def movescu(server: MifasServer, keys: dict, dest: str, model: str = "S", calling: str = "MOVESCU",
            extra=(), timeout: float = 120, on_line=None) -> tuple[subprocess.CompletedProcess, RetrieveResult]:
    """DCMTK movescu -P/-S to `server`, Move Destination `dest`; responses parsed from -d output.
    `on_line(line)` sees each output line as movescu prints it."""
    args = [MOVESCU, "-d", f"-{model}", "-aet", calling, "-aec", server.aet, "-aem", dest,
            "-to", "10", "-ta", "10", "-td", "60", *extra, *_keys(keys), server.host, str(server.port)]
    if on_line is None:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=CHILD_ENV)
        return r, parse_dcmtk_responses(r.stdout + r.stderr, "C-MOVE RSP")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=CHILD_ENV)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            on_line(line)
        proc.wait()
    finally:
        timer.cancel()
    out = "".join(lines)
    r = subprocess.CompletedProcess(args, proc.returncode, out, "")
    return r, parse_dcmtk_responses(out, "C-MOVE RSP")


def getscu(server: MifasServer, keys: dict, outdir: Path, model: str = "S", calling: str = "GETSCU",
           extra=(), timeout: float = 120) -> tuple[subprocess.CompletedProcess, RetrieveResult]:
    """DCMTK getscu -P/-S, received objects written bit-preserving (+B) into `outdir`."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    args = [GETSCU, "-d", f"-{model}", "-aet", calling, "-aec", server.aet, "-to", "10", "-ta", "10",
            "-td", "60", "+B", "-od", str(outdir), *extra, *_keys(keys), server.host, str(server.port)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=CHILD_ENV)
    return r, parse_dcmtk_responses(r.stdout + r.stderr, "C-GET RSP")


def wait_echo(port: int, aet: str, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    """Readiness of a DICOM peer we started: C-ECHO answered (echoscu), process still alive."""
    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"{aet} exited (rc={proc.returncode}) before answering C-ECHO\n"
                                 f"{_tail(log)}")
        return echoscu("127.0.0.1", port, aet, calling="READYCHECK", timeout=15).returncode == 0

    wait_until(ready, timeout, interval=0.05, what=f"{aet} on port {port} to answer C-ECHO")


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


class StoreSCP:
    """DCMTK storescp, bit preserving (+B): the files hold the data set bytes as received.
    Default: accepts only uncompressed syntaxes; accept_all: +xa (every syntax it knows)."""

    def __init__(self, workdir: Path, port: int, aet: str = "STORESCP", accept_all: bool = False,
                 fork: bool = False, extra=()):
        self.workdir = Path(workdir)
        self.outdir = self.workdir / "received"
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.port, self.aet = port, aet
        self.log = self.workdir / "storescp.log"
        self.args = [STORESCP, "-v", "-aet", aet, "+B", "-od", str(self.outdir)]
        if accept_all:
            self.args.append("+xa")
        if fork:
            self.args.append("--fork")
        self.args += [*extra, str(port)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "StoreSCP":
        with open(self.log, "ab") as log:
            # own process group: with --fork the children go down with it
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=CHILD_ENV,
                                         cwd=self.workdir, start_new_session=True)
        try:
            wait_echo(self.port, self.aet, self.proc, self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def files(self) -> list[Path]:
        return sorted(p for p in self.outdir.iterdir() if p.is_file() and not p.name.startswith("."))

    def received(self) -> dict[str, bytes]:
        return received_by_sop(self.files())

    def log_tail(self) -> str:
        return _tail(self.log)

    def stop(self) -> None:
        """SIGTERM to its process group (with --fork, the children too)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Orthanc:
    """Debian's Orthanc on free DICOM/HTTP ports with a temp config (as bench/run_ingest.sh).
    Ready when *our* process answers REST /system with our unique Name."""

    def __init__(self, workdir: Path, dicom_port: int | None = None, aet: str = "ORTHANC",
                 modalities: dict | None = None, config: dict | None = None):
        self.workdir = Path(workdir)
        self.dicom_port = dicom_port or free_port()
        self.http_port = free_port()
        self.aet = aet
        self.name = f"mifas-tests-{os.getpid()}-{self.dicom_port}"
        (self.workdir / "storage").mkdir(parents=True, exist_ok=True)
        (self.workdir / "index").mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": self.name,
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "StorageCompression": False,
            "DicomServerEnabled": True,
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "DicomModalities": modalities or {},
            **(config or {}),  # e.g. DicomAlwaysAllowFind for the C-FIND cross-check
        }, indent=1))
        self.log = self.workdir / "orthanc.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Orthanc":
        assert Path(ORTHANC).exists(), f"{ORTHANC} missing: install Debian's orthanc (tests/run.sh does)"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([ORTHANC, str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                         env=CHILD_ENV, cwd=self.workdir)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"Orthanc exited (rc={self.proc.returncode})\n{_tail(self.log)}")
            try:
                return self.get("/system").get("Name") == self.name
            except OSError:
                return False

        try:
            wait_until(ready, timeout, interval=0.05, what="Orthanc REST /system")
            wait_echo(self.dicom_port, self.aet, self.proc, self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def _url(self, path):
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path: str):
        with urllib.request.urlopen(self._url(path), timeout=30) as r:
            return json.loads(r.read())

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self._url(path), timeout=30) as r:
            return r.read()

    def request(self, method: str, path: str, body, timeout: float = 120):
        req = urllib.request.Request(self._url(path), data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw.strip() else None

    @property
    def host(self) -> str:  # with .port and .aet: usable wherever the tests take a MifasServer
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.dicom_port

    def upload(self, paths) -> int:
        """POST every Part-10 file to REST /instances; returns how many Orthanc accepted."""
        n = 0
        for p in paths:
            req = urllib.request.Request(self._url("/instances"), data=Path(p).read_bytes(), method="POST",
                                         headers={"Content-Type": "application/dicom"})
            with urllib.request.urlopen(req, timeout=60) as r:
                n += json.loads(r.read()).get("Status") in ("Success", "AlreadyStored")
        return n

    def instances(self) -> dict[str, str]:
        """{SOP Instance UID: Orthanc id}"""
        out = {}
        for inst in self.get("/instances?expand"):
            out[inst["MainDicomTags"]["SOPInstanceUID"]] = inst["ID"]
        return out

    def file(self, orthanc_id: str) -> bytes:
        return self.get_bytes(f"/instances/{orthanc_id}/file")

    def log_tail(self) -> str:
        return _tail(self.log)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Stored:
    sop: str
    sop_class: str
    ts: str
    dataset: bytes
    originator_aet: str | None
    originator_msg_id: int | None

    def part10(self) -> bytes:
        """Minimal Part-10 wrapper so assert_same_object can read it."""
        from pydicom.dataset import FileMetaDataset
        import pydicom.filebase
        import pydicom.filewriter

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = self.sop_class
        meta.MediaStorageSOPInstanceUID = self.sop
        meta.TransferSyntaxUID = self.ts
        meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.7777.3"
        buf = pydicom.filebase.DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        buf.write(b"\x00" * 128 + b"DICM")
        pydicom.filewriter.write_file_meta_info(buf, meta, enforce_standard=True)
        return buf.getvalue() + self.dataset


class StoreRecorder:
    """C-STORE handler for a pynetdicom storage SCP or a C-GET requestor, with a script:
    fail_after=k → stores after the k-th answer `fail_status`; abort_after=k → A-ABORT on the
    (k+1)-th C-STORE-RQ; warn_on={n,...} → status 0xB000 for the n-th (1-based) store;
    gate_on={n,...} → the n-th store blocks until `gate` is set (`entered` is set first)."""

    def __init__(self, fail_after=None, fail_status=0xA700, abort_after=None, warn_on=(), gate_on=(),
                 gate_timeout: float = 30):
        self.fail_after, self.fail_status, self.abort_after = fail_after, fail_status, abort_after
        self.warn_on, self.gate_on = set(warn_on), set(gate_on)
        self.gate = threading.Event()
        self.gate_timeout = gate_timeout
        self.entered = threading.Event()
        self.lock = threading.Lock()
        self.calls = 0
        self.stored: list[Stored] = []
        self.refused: list[str] = []
        self.aborted_on: str | None = None
        self.order: list[int] = []   # id() of the association of each successful store, in order
        self.calling: set[str] = set()
        # associations (storage SCP use)
        self.open = 0
        self.peak = 0
        self.associations = 0

    def on_store(self, event):
        req = event.request
        with self.lock:
            self.calls += 1
            n = self.calls
        uid = str(req.AffectedSOPInstanceUID)
        if self.abort_after is not None and n > self.abort_after:
            self.aborted_on = uid
            event.assoc.abort()
            return 0xA700
        if n in self.gate_on:
            self.entered.set()
            self.gate.wait(timeout=self.gate_timeout)
        if self.fail_after is not None and n > self.fail_after:
            with self.lock:
                self.refused.append(uid)
            return self.fail_status
        with self.lock:
            self.order.append(id(event.assoc))
            self.calling.add(str(event.assoc.requestor.ae_title).strip())
        orig_aet = req.MoveOriginatorApplicationEntityTitle
        orig_id = req.MoveOriginatorMessageID
        st = Stored(uid, str(req.AffectedSOPClassUID), str(event.context.transfer_syntax),
                    req.DataSet.getvalue(),
                    (orig_aet.decode() if isinstance(orig_aet, bytes) else orig_aet or None),
                    orig_id)
        if isinstance(st.originator_aet, str):
            st.originator_aet = st.originator_aet.strip()
        with self.lock:
            self.stored.append(st)
        return 0xB000 if n in self.warn_on else 0x0000

    def on_established(self, event):
        with self.lock:
            self.open += 1
            self.associations += 1
            self.peak = max(self.peak, self.open)

    def on_closed(self, event):
        with self.lock:
            self.open -= 1

    def handlers(self):
        return [(evt.EVT_C_STORE, self.on_store), (evt.EVT_ESTABLISHED, self.on_established),
                (evt.EVT_RELEASED, self.on_closed), (evt.EVT_ABORTED, self.on_closed)]

    def received(self) -> dict[str, bytes]:
        with self.lock:
            out = {}
            for s in self.stored:
                assert s.sop not in out, f"{s.sop} stored twice"
                out[s.sop] = s.part10()
            return out


class PynStoreSCP:
    """A pynetdicom storage SCP on `port`: `sop_classes` (default: all storage classes) in
    `transfer_syntaxes` (default: the uncompressed ones); `require_called_aet`: rejects an
    association whose called AE title is not `aet`; the behaviour is the StoreRecorder's script."""

    def __init__(self, port: int, aet: str = "PYNSCP", transfer_syntaxes=None, sop_classes=None,
                 require_called_aet: bool = False, **script):
        self.port, self.aet = port, aet
        self.rec = StoreRecorder(**script)
        self.ae = AE(ae_title=aet)
        self.ae.acse_timeout = 30
        self.ae.dimse_timeout = 60
        self.ae.network_timeout = 60
        self.ae.maximum_associations = 32
        self.ae.require_called_aet = require_called_aet
        tss = transfer_syntaxes or [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
        for cx in StoragePresentationContexts:
            if sop_classes is None or cx.abstract_syntax in sop_classes:
                self.ae.add_supported_context(cx.abstract_syntax, tss)
        self.ae.add_supported_context("1.2.840.10008.1.1")
        self.server = None

    def start(self) -> "PynStoreSCP":
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=self.rec.handlers())
        return self

    def stop(self) -> None:
        self.rec.gate.set()
        if self.server is not None:
            self.server.shutdown()
            self.server = None


# --- pynetdicom requestors ------------------------------------------------------------------


def _requestor(calling: str) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    ae.network_timeout = 60
    return ae


def context_id(assoc, abstract: str) -> int:
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == abstract:
            return cx.context_id
    raise AssertionError(f"no accepted context for {abstract}")


STOP = object()  # returned by an on_response callback: stop reading responses


def run_retrieve(gen, on_response=None) -> RetrieveResult:
    res = RetrieveResult()
    for status, ident in gen:
        assert status is not None and "Status" in status, (
            f"no response (association aborted or timed out); so far:\n{res.describe()}")
        r = _rsp_from_status(status, ident)
        if r.status in (PENDING, 0xFF01):
            res.pending.append(r)
        else:
            res.final = r
        if on_response and on_response(r) is STOP:
            break
    return res


def pyn_move(server: MifasServer, keys: Dataset | dict, dest: str, model: str = SR_MOVE,
             calling: str = "PYNMOVE", msg_id: int = 1, on_response=None,
             assoc_hook=None) -> RetrieveResult:
    """C-MOVE with pynetdicom; `on_response(assoc, rsp)` sees every response as it comes (and
    may return STOP)."""
    ds = keys if isinstance(keys, Dataset) else identifier(keys)
    ae = _requestor(calling)
    ae.add_requested_context(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(server.host, server.port, ae_title=server.aet)
    assert assoc.is_established, f"association with {server.aet} not established\n{server.log_tail()}"
    try:
        if assoc_hook:
            assoc_hook(assoc)
        cb = (lambda r: on_response(assoc, r)) if on_response else None
        return run_retrieve(assoc.send_c_move(ds, dest, model, msg_id=msg_id), cb)
    finally:
        if assoc.is_established:
            assoc.release()


def pyn_get(server: MifasServer, keys: Dataset | dict, storage: list[tuple[str, list[str]]],
            model: str = SR_GET, roles: bool = True, rec: StoreRecorder | None = None,
            calling: str = "PYNGET", msg_id: int = 1, on_response=None,
            assoc_hook=None) -> tuple[RetrieveResult, StoreRecorder]:
    """C-GET with pynetdicom: `storage` = [(SOP class, [transfer syntaxes])] proposed beside the
    GET model, with SCP role selection for each when `roles`."""
    ds = keys if isinstance(keys, Dataset) else identifier(keys)
    rec = rec or StoreRecorder()
    ae = _requestor(calling)
    ae.add_requested_context(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    for sop, tss in storage:
        ae.add_requested_context(sop, tss)
    ext_neg = [build_role(sop, scp_role=True) for sop in dict.fromkeys(s for s, _ in storage)] if roles else []
    assoc = ae.associate(server.host, server.port, ae_title=server.aet, ext_neg=ext_neg,
                         evt_handlers=[(evt.EVT_C_STORE, rec.on_store)])
    assert assoc.is_established, f"association with {server.aet} not established\n{server.log_tail()}"
    try:
        if assoc_hook:
            assoc_hook(assoc)
        cb = (lambda r: on_response(assoc, r)) if on_response else None
        return run_retrieve(assoc.send_c_get(ds, model, msg_id=msg_id), cb), rec
    finally:
        if assoc.is_established:
            assoc.release()


def storage_contexts(items: list[Item], *, uncompressed: bool = False,
                     stored: bool | None = None) -> list[tuple[str, list[str]]]:
    """Contexts for the items' SOP classes: their stored syntaxes (`stored`, default unless
    `uncompressed`) and/or Explicit + Implicit VR LE (`uncompressed`)."""
    stored = (not uncompressed) if stored is None else stored
    out: dict[str, list[str]] = {}
    for i in items:
        tss = out.setdefault(i.sop_class, [])
        want = ([i.ts] if stored else []) + ([ExplicitVRLittleEndian, ImplicitVRLittleEndian] if uncompressed else [])
        for t in want:
            if t not in tss:
                tss.append(t)
    # one presentation context holds one abstract syntax with several syntaxes: the acceptor
    # picks one, so propose a context per (class, syntax) instead
    return [(sop, [t]) for sop, tss in out.items() for t in tss]


def identifier(keys: dict) -> Dataset:
    ds = Dataset()
    old = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        for kw, v in keys.items():
            setattr(ds, kw, None if v == "" else v)
    finally:
        pydicom.config.settings.writing_validation_mode = old
    return ds

