"""C-FIND peers for the tests: pynetdicom, DCMTK findscu (-X: responses written to files and read
back with pydicom) and a raw DIMSE client (raw_dul) for C-CANCEL timing and undecodable
identifiers. Each returns the pending (status, identifier) pairs and the final status."""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pydicom.config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

import dicom_fixtures as F
import raw_dul as R
from find_oracle import PATIENT_ROOT, STUDY_ROOT
from mifas_helpers import CHILD_ENV

FIND_UID = {PATIENT_ROOT: "1.2.840.10008.5.1.4.1.2.1.1", STUDY_ROOT: "1.2.840.10008.5.1.4.1.2.2.1"}
VERIFICATION = "1.2.840.10008.1.1"
FINDSCU = "/usr/bin/findscu"

C_FIND_RQ = 0x0020
C_CANCEL_RQ = 0x0FFF


# --- identifiers ----------------------------------------------------------------------------


def identifier(keys: dict) -> Dataset:
    """Dataset from {keyword: value}: "" / None = empty key, list = multi-valued, a list of
    dicts = sequence, a DataElement = used as is (wrong VRs). Non-ASCII text without an explicit
    SpecificCharacterSet gets ISO_IR 192."""
    ds = Dataset()
    old = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        for kw, v in keys.items():
            if isinstance(v, DataElement):
                ds.add(v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                ds[kw] = DataElement(kw, "SQ", Sequence([identifier(item) for item in v]))
            elif isinstance(v, list) and not v:
                ds[kw] = DataElement(kw, "SQ", Sequence([Dataset()]))
            else:
                setattr(ds, kw, None if v == "" else v)
    finally:
        pydicom.config.settings.writing_validation_mode = old
    if "SpecificCharacterSet" not in ds and not _ascii(keys):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _ascii(v) -> bool:
    if isinstance(v, dict):
        return all(_ascii(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return all(_ascii(x) for x in v)
    if isinstance(v, str):
        return v.isascii()
    return True


@dataclass
class FindResult:
    pending: list = field(default_factory=list)   # [(status, identifier Dataset)]
    final: int | None = None
    comment: str | None = None                     # ErrorComment of the final response
    log: str = ""

    def describe(self) -> str:
        return (f"{len(self.pending)} pending, final "
                f"{'None' if self.final is None else f'0x{self.final:04X}'} {self.comment or ''}")


# --- pynetdicom -----------------------------------------------------------------------------


def pyn_ae(ts=(ExplicitVRLittleEndian, ImplicitVRLittleEndian)) -> AE:
    ae = AE(ae_title="PYNFIND")
    ae.acse_timeout = 15
    ae.dimse_timeout = 30
    ae.network_timeout = 30
    for uid in FIND_UID.values():
        ae.add_requested_context(uid, list(ts))
    ae.add_requested_context(VERIFICATION, [ImplicitVRLittleEndian])
    return ae


def pyn_associate(server, ts=(ExplicitVRLittleEndian, ImplicitVRLittleEndian), ext_info: bytes | None = None,
                  models=(STUDY_ROOT,)):
    ext = []
    if ext_info is not None:
        for m in models:
            item = SOPClassExtendedNegotiation()
            item.sop_class_uid = FIND_UID[m]
            item.service_class_application_information = ext_info
            ext.append(item)
    assoc = pyn_ae(ts).associate(server.host, server.port, ae_title=server.aet, ext_neg=ext or None)
    assert assoc.is_established, f"association with {server.host}:{server.port} not established"
    return assoc


def pyn_find_on(assoc, model: str, ds: Dataset, msg_id: int = 1, cancel_after: int | None = None) -> FindResult:
    res = FindResult()
    ctx = next(c for c in assoc.accepted_contexts if c.abstract_syntax == FIND_UID[model])
    for status, ident in assoc.send_c_find(ds, FIND_UID[model], msg_id=msg_id):
        if not status or "Status" not in status:
            raise AssertionError(f"no C-FIND response (association aborted or timed out); got {res.describe()}")
        st = int(status.Status)
        if st in (0xFF00, 0xFF01):
            res.pending.append((st, ident))
            if cancel_after is not None and len(res.pending) == cancel_after:
                assoc.send_c_cancel(msg_id, ctx.context_id)
        else:
            res.final = st
            res.comment = status.get("ErrorComment")
    return res


def pyn_find(server, model: str, ds: Dataset, **kw) -> FindResult:
    assoc = pyn_associate(server, **{k: v for k, v in kw.items() if k in ("ts", "ext_info", "models")})
    try:
        return pyn_find_on(assoc, model, ds, **{k: v for k, v in kw.items() if k in ("msg_id", "cancel_after")})
    finally:
        if assoc.is_established:
            assoc.release()


def pyn_echo_on(assoc) -> int:
    st = assoc.send_c_echo()
    return int(st.Status) if st and "Status" in st else -1


# --- DCMTK findscu --------------------------------------------------------------------------

_STATUS_RE = re.compile(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})")
_COMMENT_RE = re.compile(r"\(0000,0902\) LO \[(.*)\]")


def write_query_file(ds: Dataset, path: Path) -> Path:
    """A data set file (no meta group, explicit VR LE) as findscu's query template."""
    old = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=False)
    finally:
        pydicom.config.settings.writing_validation_mode = old
    return path


def findscu(server, model: str, ds: Dataset, workdir: Path, extra=(), keys=()) -> FindResult:
    """findscu -P/-S with the query in a file (so any character set can be sent); responses
    extracted with -X and read back; statuses taken from the -d log."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("rsp*.dcm"):
        old.unlink()
    q = write_query_file(ds, workdir / "query.dcm")
    args = [FINDSCU, "-d", "-P" if model == PATIENT_ROOT else "-S", "-aet", "FINDSCU", "-aec", server.aet,
            "-to", "10", "-ta", "10", "-td", "30", "-X", "-od", str(workdir)]
    for k in keys:
        args += ["-k", k]
    args += list(extra) + [server.host, str(server.port), str(q)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=CHILD_ENV,
                       errors="replace")
    log = r.stdout + r.stderr
    statuses = [int(m, 16) for m in _STATUS_RE.findall(log)]
    res = FindResult(log=log)
    errors = [line for line in log.splitlines()
              if re.match(r"^[EF]: .*(Fail|DIMSE|Abort|rror|Odd|Illegal)", line)]
    files = sorted(workdir.glob("rsp*.dcm"))
    pend = [s for s in statuses if s in (0xFF00, 0xFF01)]
    res.final = statuses[-1] if statuses and statuses[-1] not in (0xFF00, 0xFF01) else None
    assert len(files) == len(pend), f"{len(files)} response files for {len(pend)} pending statuses\n{log[-4000:]}"
    res.pending = [(s, pydicom.dcmread(f)) for s, f in zip(pend, files)]
    comments = _COMMENT_RE.findall(log)
    res.comment = comments[-1].rstrip() if comments and res.final not in (0x0000, None) else None
    if res.final is None:
        res.comment = f"findscu rc={r.returncode}, no final response: " + " | ".join(errors[-4:])
    return res


# --- raw DIMSE client -----------------------------------------------------------------------


def c_find_rq(msg_id: int, model: str) -> bytes:
    return R.c_find_rq(msg_id, FIND_UID[model])


c_cancel_rq = R.c_cancel_rq


class RawFind(R.RawAssociation):
    """Raw association with Study Root / Patient Root FIND contexts 1 and 3 (explicit VR LE)
    and Verification on 5."""

    def open(self, called: str):
        pdu = self.associate(called=called, calling="RAWFIND", contexts=[
            (1, FIND_UID[STUDY_ROOT], [R.EXPLICIT_LE]),
            (3, FIND_UID[PATIENT_ROOT], [R.EXPLICIT_LE]),
            (5, VERIFICATION, [R.IMPLICIT_LE]),
        ])
        assert pdu.type == R.A_ASSOCIATE_AC, f"association refused: {pdu.describe()}"
        assert self.accepted_context(1) and self.accepted_context(5)
        return self

    def find_responses(self, stop_after: int | None = None, on_pending=None) -> FindResult:
        """Read C-FIND responses until the final one."""
        res = FindResult()
        while True:
            command, data = self.read_message()
            st = struct.unpack("<H", command[0x0900])[0]
            if st in (0xFF00, 0xFF01):
                res.pending.append((st, decode_explicit(data)))
                if on_pending:
                    on_pending(len(res.pending))
            else:
                res.final = st
                if 0x0902 in command:
                    res.comment = command[0x0902].decode("utf-8", "replace").rstrip("\x00 ")
                return res


def decode_explicit(data: bytes | None) -> Dataset | None:
    if data is None:
        return None
    from io import BytesIO
    from pydicom.filereader import read_dataset
    return read_dataset(BytesIO(data), is_implicit_VR=False, is_little_endian=True)


def encode_explicit(ds: Dataset) -> bytes:
    return F.encode_dataset(ds, implicit=False, little=True)
