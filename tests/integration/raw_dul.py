"""A minimal DICOM Upper Layer client on a raw TCP socket.

pynetdicom and DCMTK refuse to produce most of the byte sequences the hostile and
fragmentation tests need (mismatched UIDs, truncated data sets, several PDVs in one
PDU, one-byte command fragments, oversized PDUs, aborts in the middle of an object).
This module builds every PDU by hand (PS3.8 section 9) so the tests control each byte.
The benchmarks use it too (bench/harness.py): as a C-FIND client with almost no per-response
cost, and as the pre-encoded C-STORE sender that bounds any C-MOVE into a destination.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

APP_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
IMPL_CLASS_UID = "1.2.826.0.1.3680043.9.7777.1"
IMPL_VERSION = "MIFAS_TESTS"

# PDU types
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_FIND_RQ = 0x0020
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
C_CANCEL_RQ = 0x0FFF
PENDING = (0xFF00, 0xFF01)


class PeerClosed(Exception):
    """The server closed the connection (EOF or reset)."""


def _pad_uid(uid: str) -> bytes:
    b = uid.encode("ascii")
    if len(b) % 2:
        b += b"\x00"
    return b


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")[:16]


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def build_associate_rq(
    called: str,
    calling: str,
    contexts: list[tuple[int, str, list[str]]],
    max_pdu: int = 16384,
    scp_roles: tuple[str, ...] = (),
) -> bytes:
    """contexts: [(context_id, abstract_syntax, [transfer_syntax, ...]), ...]; scp_roles: SOP
    classes for which we propose the SCP role (SCP/SCU Role Selection, PS3.7 D.3.3.4)."""
    body = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + b"\x00" * 32
    body += _item(0x10, APP_CONTEXT.encode("ascii"))
    for cid, abstract, tss in contexts:
        sub = _item(0x30, abstract.encode("ascii"))
        for ts in tss:
            sub += _item(0x40, ts.encode("ascii"))
        body += _item(0x20, struct.pack(">BBBB", cid, 0, 0, 0) + sub)
    user = _item(0x51, struct.pack(">I", max_pdu))
    user += _item(0x52, IMPL_CLASS_UID.encode("ascii"))
    user += _item(0x55, IMPL_VERSION.encode("ascii"))
    for uid in scp_roles:
        raw = uid.encode("ascii")
        user += _item(0x54, struct.pack(">H", len(raw)) + raw + b"\x01\x01")
    body += _item(0x50, user)
    return struct.pack(">BBI", A_ASSOCIATE_RQ, 0, len(body)) + body


def build_pdata(pdvs: list[tuple[int, int, bytes]]) -> bytes:
    """pdvs: [(context_id, message_control_header, fragment), ...] -> one P-DATA-TF PDU."""
    body = b""
    for cid, mch, frag in pdvs:
        body += struct.pack(">IBB", len(frag) + 2, cid, mch) + frag
    return struct.pack(">BBI", P_DATA_TF, 0, len(body)) + body


def build_release_rq() -> bytes:
    return struct.pack(">BBIL", A_RELEASE_RQ, 0, 4, 0)


def build_abort(source: int = 0, reason: int = 0) -> bytes:
    return struct.pack(">BBIBBBB", A_ABORT, 0, 4, 0, 0, source, reason)


# --- command sets (always Implicit VR Little Endian, PS3.7 section 6.3.1) ---------------


def _elem(group: int, elem: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, elem, len(value)) + value


def _us(v: int) -> bytes:
    return struct.pack("<H", v)


def encode_command(elements: list[tuple[int, bytes]]) -> bytes:
    """elements: [(element number in group 0000, encoded value), ...] sorted by caller."""
    body = b"".join(_elem(0x0000, e, v) for e, v in sorted(elements))
    return _elem(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def c_store_rq(msg_id: int, sop_class: str, sop_instance: str) -> bytes:
    return encode_command(
        [
            (0x0002, _pad_uid(sop_class)),
            (0x0100, _us(C_STORE_RQ)),
            (0x0110, _us(msg_id)),
            (0x0700, _us(0)),  # priority medium
            (0x0800, _us(0x0000)),  # a data set follows
            (0x1000, _pad_uid(sop_instance)),
        ]
    )


def c_echo_rq(msg_id: int) -> bytes:
    return encode_command(
        [
            (0x0002, _pad_uid(VERIFICATION)),
            (0x0100, _us(C_ECHO_RQ)),
            (0x0110, _us(msg_id)),
            (0x0800, _us(0x0101)),  # no data set
        ]
    )


def c_find_rq(msg_id: int, sop_class: str) -> bytes:
    return encode_command([
        (0x0002, _pad_uid(sop_class)),
        (0x0100, _us(C_FIND_RQ)),
        (0x0110, _us(msg_id)),
        (0x0700, _us(0)),
        (0x0800, _us(0x0000)),  # an identifier follows
    ])


def c_cancel_rq(msg_id_being_responded_to: int) -> bytes:
    return encode_command([
        (0x0100, _us(C_CANCEL_RQ)),
        (0x0120, _us(msg_id_being_responded_to)),
        (0x0800, _us(0x0101)),
    ])


def pdata_stream(cid: int, data: bytes, command: bool, max_pdu: int) -> bytes:
    """`data` as P-DATA-TF PDUs of one PDV each within the peer's max PDU (0 = unlimited)."""
    frag = ((max_pdu or 1 << 20) - 6) & ~1
    frags = [data[i: i + frag] for i in range(0, len(data), frag)] or [b""]
    return b"".join(build_pdata([(cid, (0x01 if command else 0) | (0x02 if i == len(frags) - 1 else 0), f)])
                    for i, f in enumerate(frags))


def read_part10(path) -> tuple[str, str, str, bytes]:
    """(SOP Class, SOP Instance, transfer syntax, data set bytes) of a Part-10 file, no pydicom."""
    with open(path, "rb") as f:
        data = f.read()
    if data[128:132] != b"DICM":
        raise ValueError(f"{path}: not a Part-10 file")
    pos, meta = 132, {}
    while pos + 8 <= len(data):  # group 0002 is always Explicit VR Little Endian
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        if data[pos + 4: pos + 6] in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            (length,), vpos = struct.unpack_from("<I", data, pos + 8), pos + 12
        else:
            (length,), vpos = struct.unpack_from("<H", data, pos + 6), pos + 8
        meta[elem] = data[vpos: vpos + length]
        pos = vpos + length
    uid = lambda e: meta[e].rstrip(b"\0 ").decode("ascii")  # noqa: E731
    return uid(0x0002), uid(0x0003), uid(0x0010), data[pos:]


def parse_command(raw: bytes) -> dict[int, bytes]:
    """Parse an Implicit VR LE command set into {element: raw value}."""
    out: dict[int, bytes] = {}
    off = 0
    while off + 8 <= len(raw):
        group, elem, length = struct.unpack_from("<HHI", raw, off)
        off += 8
        if group != 0:
            raise ValueError(f"unexpected group {group:04x} in command set")
        out[elem] = raw[off : off + length]
        off += length
    return out


@dataclass
class Response:
    command: dict[int, bytes]

    @property
    def command_field(self) -> int:
        return struct.unpack("<H", self.command[0x0100])[0]

    @property
    def status(self) -> int:
        return struct.unpack("<H", self.command[0x0900])[0]

    @property
    def error_comment(self) -> str | None:
        v = self.command.get(0x0902)
        return None if v is None else v.decode("latin-1").rstrip("\x00 ")

    @property
    def message_id_responded(self) -> int:
        return struct.unpack("<H", self.command[0x0120])[0]

    def uid(self, elem: int) -> str | None:
        v = self.command.get(elem)
        return None if v is None else v.decode("ascii").rstrip("\x00 ")


@dataclass
class PDU:
    type: int
    body: bytes

    def describe(self) -> str:
        names = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF",
                 5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}
        return f"{names.get(self.type, hex(self.type))} {self.body[:32].hex()}"


@dataclass
class AssociateAC:
    contexts: dict[int, tuple[int, str | None]] = field(default_factory=dict)  # id -> (result, ts)
    max_pdu: int | None = None
    called: str = ""
    calling: str = ""
    impl_class_uid: str | None = None


@dataclass
class AssociateRJ:
    result: int
    source: int
    reason: int


def parse_ac(body: bytes) -> AssociateAC:
    ac = AssociateAC()
    ac.called = body[4:20].decode("ascii").strip()
    ac.calling = body[20:36].decode("ascii").strip()
    off = 68
    while off + 4 <= len(body):
        itype, _, ilen = struct.unpack_from(">BBH", body, off)
        payload = body[off + 4 : off + 4 + ilen]
        off += 4 + ilen
        if itype == 0x21:
            cid, _, result, _ = struct.unpack_from(">BBBB", payload, 0)
            ts = None
            soff = 4
            while soff + 4 <= len(payload):
                st, _, sl = struct.unpack_from(">BBH", payload, soff)
                if st == 0x40:
                    ts = payload[soff + 4 : soff + 4 + sl].decode("ascii").rstrip("\x00 ")
                soff += 4 + sl
            ac.contexts[cid] = (result, ts)
        elif itype == 0x50:
            soff = 0
            while soff + 4 <= len(payload):
                st, _, sl = struct.unpack_from(">BBH", payload, soff)
                sub = payload[soff + 4 : soff + 4 + sl]
                if st == 0x51:
                    ac.max_pdu = struct.unpack(">I", sub)[0]
                elif st == 0x52:
                    ac.impl_class_uid = sub.decode("ascii").rstrip("\x00 ")
                soff += 4 + sl
    return ac


def iter_pdvs(body: bytes):
    """The PDVs of one P-DATA-TF body: (message control header, fragment) each (PS3.8 9.3.5.1)."""
    off = 0
    while off < len(body):
        ilen = struct.unpack_from(">I", body, off)[0]
        yield body[off + 5], body[off + 6: off + 4 + ilen]
        off += 4 + ilen


class RawAssociation:
    """One TCP connection speaking hand-made PDUs."""

    def __init__(self, host: str, port: int, timeout: float = 30.0, rcvbuf: int | None = None):
        if rcvbuf is None:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        else:
            # a small receive window, set before connecting (a peer that reads slowly or not at all)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.ac: AssociateAC | None = None
        self.rj: AssociateRJ | None = None
        self.peer_max_pdu = 0
        self._msg_id = 0
        self._buf = bytearray()  # bytes received beyond the PDU being read

    # --- low level -------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise PeerClosed(f"send failed: {e}") from e

    def _recv_exact(self, n: int) -> bytes:
        # large reads: one recv usually brings several PDUs (C-FIND pending responses)
        buf = self._buf
        while len(buf) < n:
            try:
                chunk = self.sock.recv(max(n - len(buf), 262144))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise PeerClosed(str(e)) from e
            if not chunk:
                raise PeerClosed(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def recv_pdu(self, timeout: float | None = None) -> PDU:
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        hdr = self._recv_exact(6)
        ptype, _, length = struct.unpack(">BBI", hdr)
        if length > 64 * 1024 * 1024:
            raise ValueError(f"server announced an absurd PDU length {length}")
        return PDU(ptype, self._recv_exact(length))

    def wait_closed(self, timeout: float) -> list[PDU]:
        """Read until the server closes the connection; return the PDUs it sent meanwhile.

        Raises TimeoutError if the connection is still open after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        pdus = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("server kept the connection open")
            try:
                pdus.append(self.recv_pdu(timeout=left))
            except PeerClosed:
                return pdus
            except socket.timeout as e:
                raise TimeoutError("server kept the connection open") from e
            except ValueError:
                # garbage from the server: treat as closed only if it closes next
                continue

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0): a dropped connection from the server's view."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    # --- association -----------------------------------------------------------------------
    def associate(
        self,
        called: str = "MIFAS",
        calling: str = "RAWSCU",
        contexts: list[tuple[int, str, list[str]]] | None = None,
        max_pdu: int = 16384,
        scp_roles: tuple[str, ...] = (),
    ) -> PDU:
        if contexts is None:
            contexts = [(1, VERIFICATION, [IMPLICIT_LE])]
        self.send(build_associate_rq(called, calling, contexts, max_pdu, scp_roles))
        pdu = self.recv_pdu()
        if pdu.type == A_ASSOCIATE_AC:
            self.ac = parse_ac(pdu.body)
            self.peer_max_pdu = self.ac.max_pdu or 0
        elif pdu.type == A_ASSOCIATE_RJ:
            self.rj = AssociateRJ(pdu.body[1], pdu.body[2], pdu.body[3])
        return pdu

    def accepted_context(self, cid: int) -> bool:
        return self.ac is not None and self.ac.contexts.get(cid, (None,))[0] == 0

    def release(self, timeout: float = 30.0) -> PDU:
        self.send(build_release_rq())
        pdu = self.recv_pdu(timeout=timeout)
        self.close()
        return pdu

    def abort(self) -> None:
        self.send(build_abort())
        self.close()

    # --- DIMSE -----------------------------------------------------------------------------
    def next_msg_id(self) -> int:
        self._msg_id += 1
        return self._msg_id

    def send_fragments(self, cid: int, data: bytes, command: bool, frag_size: int,
                       per_pdu: int = 1, last: bool = True) -> None:
        """Send `data` as PDVs of at most `frag_size` bytes, `per_pdu` PDVs per P-DATA-TF."""
        assert frag_size > 0
        frags = [data[i : i + frag_size] for i in range(0, len(data), frag_size)] or [b""]
        pdvs = []
        for i, frag in enumerate(frags):
            mch = (0x01 if command else 0x00) | (0x02 if (last and i == len(frags) - 1) else 0)
            pdvs.append((cid, mch, frag))
        for i in range(0, len(pdvs), per_pdu):
            self.send(build_pdata(pdvs[i : i + per_pdu]))

    def default_frag(self) -> int:
        # stay within the server's advertised max PDU (PDV header is 6 bytes; 0 = unlimited);
        # PS3.8 E.1: every fragment has an even number of bytes
        return max(16, ((self.peer_max_pdu or 16384) - 6) & ~1)

    def read_response(self, timeout: float | None = None) -> Response:
        """Read one DIMSE response (command only) assembled from P-DATA-TF PDVs."""
        buf = b""
        while True:
            pdu = self.recv_pdu(timeout=timeout)
            if pdu.type != P_DATA_TF:
                raise UnexpectedPDU(pdu)
            for mch, frag in iter_pdvs(pdu.body):
                if not mch & 0x01:
                    raise AssertionError("server sent a data PDV in a response without data set")
                buf += frag
                if mch & 0x02:
                    return Response(parse_command(buf))

    def read_message(self, timeout: float | None = None) -> tuple[dict[int, bytes], bytes | None]:
        """One DIMSE message: (command {element: raw value}, data set bytes or None)."""
        cmd, data = b"", b""
        command = None
        while True:
            pdu = self.recv_pdu(timeout=timeout)
            if pdu.type != P_DATA_TF:
                raise UnexpectedPDU(pdu)
            for mch, frag in iter_pdvs(pdu.body):
                if mch & 0x01:
                    cmd += frag
                    if mch & 0x02:
                        command = parse_command(cmd)
                        if struct.unpack("<H", command[0x0800])[0] == 0x0101:
                            return command, None
                else:
                    data += frag
                    if mch & 0x02:
                        return command, data

    def send_message(self, cid: int, command: bytes, dataset: bytes | None = None) -> None:
        self.send_fragments(cid, command, True, self.default_frag())
        if dataset is not None:
            self.send_fragments(cid, dataset, False, self.default_frag())

    def find(self, cid: int, sop_class: str, identifier: bytes) -> list[tuple[int, bytes | None, float]]:
        """One C-FIND: [(status, identifier bytes or None, time.perf_counter() at arrival)], the
        final response last. Identifiers stay bytes: decoding is the caller's, after timing."""
        self.send(pdata_stream(cid, c_find_rq(self.next_msg_id(), sop_class), True, self.peer_max_pdu)
                  + pdata_stream(cid, identifier, False, self.peer_max_pdu))
        out = []
        while True:
            command, data = self.read_message()
            status = struct.unpack("<H", command[0x0900])[0]
            out.append((status, data, time.perf_counter()))
            if status not in PENDING:
                return out

    def echo(self, cid: int = 1) -> Response:
        self.send(build_pdata([(cid, 0x03, c_echo_rq(self.next_msg_id()))]))
        return self.read_response()

    def store(self, cid: int, sop_class: str, sop_instance: str, dataset: bytes,
              cmd_frag: int | None = None, data_frag: int | None = None,
              cmd_per_pdu: int = 1, data_per_pdu: int = 1) -> Response:
        cmd = c_store_rq(self.next_msg_id(), sop_class, sop_instance)
        self.send_fragments(cid, cmd, True, cmd_frag or self.default_frag(), cmd_per_pdu)
        self.send_fragments(cid, dataset, False, data_frag or self.default_frag(), data_per_pdu)
        return self.read_response()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class UnexpectedPDU(Exception):
    def __init__(self, pdu: PDU):
        super().__init__(f"unexpected PDU {pdu.describe()}")
        self.pdu = pdu
