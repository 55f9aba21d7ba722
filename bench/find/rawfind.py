"""A minimal blocking C-FIND SCU over a plain socket (no reactor threads, no per-response decoding
while timing): the low-overhead counterpart of pynetdicom in find_driver.py.

One association (Study Root Q/R FIND, Implicit VR Little Endian, max PDU 65536). find() sends the
C-FIND-RQ (command PDV and identifier PDV in two P-DATA-TF PDUs, written with one sendall), then
reads PDUs until a C-FIND-RSP whose status is not pending; the identifiers are kept as bytes and
decoded with pydicom only after the clock has stopped.
"""
import socket
import struct
from io import BytesIO

from pydicom.dataset import Dataset
from pynetdicom import dsutils

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPL_CLASS = "1.2.826.0.1.3680043.8.498.1"
MAX_PDU = 65536


def _uid(u):
    b = u.encode()
    return b + (b"\0" if len(b) % 2 else b"")


def _ul(u):
    """UIDs in UL items are not padded (the item length is exact)."""
    return u.encode()


def _item(t, payload):
    return struct.pack(">BBH", t, 0, len(payload)) + payload


def _encode_implicit(ds):
    return dsutils.encode(ds, True, True)  # implicit VR, little endian


def _command(message_id):
    body = b""
    # (0000,0002) UI, (0000,0100) US, (0000,0110) US, (0000,0700) US, (0000,0800) US
    def el(elem, value):
        return struct.pack("<HHI", 0, elem, len(value)) + value
    body += el(0x0002, _uid(STUDY_ROOT_FIND))
    body += el(0x0100, struct.pack("<H", 0x0020))
    body += el(0x0110, struct.pack("<H", message_id))
    body += el(0x0700, struct.pack("<H", 0))
    body += el(0x0800, struct.pack("<H", 0x0102))
    return el(0x0000, struct.pack("<I", len(body))) + body


def _command_fields(data):
    """(status, dataset present) from an implicit-LE command set."""
    i, status, has_ds = 0, None, True
    while i + 8 <= len(data):
        g, e, ln = struct.unpack_from("<HHI", data, i)
        v = data[i + 8:i + 8 + ln]
        if g == 0 and e == 0x0900:
            status = struct.unpack("<H", v[:2])[0]
        elif g == 0 and e == 0x0800:
            has_ds = struct.unpack("<H", v[:2])[0] != 0x0101
        i += 8 + ln
    return status, has_ds


class RawFindSCU:
    def __init__(self, host, port, called, calling="FINDBENCHRAW", timeout=300):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.msg_id = 0
        pc = struct.pack(">BBBB", 1, 0, 0, 0) + _item(0x30, _ul(STUDY_ROOT_FIND)) + \
            _item(0x40, _ul(IMPLICIT_LE))
        ui = _item(0x51, struct.pack(">I", MAX_PDU)) + _item(0x52, _ul(IMPL_CLASS))
        body = struct.pack(">HH", 1, 0) + called.ljust(16).encode()[:16] + \
            calling.ljust(16).encode()[:16] + b"\0" * 32 + _item(0x10, _ul(APP_CONTEXT)) + \
            _item(0x20, pc) + _item(0x50, ui)
        self.sock.sendall(struct.pack(">BBI", 1, 0, len(body)) + body)
        t, pdu = self._read_pdu()
        if t != 2:
            raise ConnectionError(f"association not accepted (PDU type {t})")
        # find the presentation context result (item 0x21)
        i = 68
        ok = False
        while i + 4 <= len(pdu):
            it, _, ln = struct.unpack_from(">BBH", pdu, i)
            if it == 0x21 and pdu[i + 6] == 0:
                ok = True
            i += 4 + ln
        if not ok:
            raise ConnectionError("Study Root FIND / Implicit VR LE not accepted")

    def _recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _read_pdu(self):
        t, _, ln = struct.unpack(">BBI", self._recv_exact(6))
        return t, self._recv_exact(ln)

    def find(self, identifier: Dataset):
        """Returns (statuses, identifiers_bytes, t_first_rsp_perf, t_end_perf). Caller times."""
        import time
        self.msg_id = (self.msg_id % 65535) + 1
        cmd = _command(self.msg_id)
        ds = _encode_implicit(identifier)
        pdu1 = struct.pack(">BBI", 4, 0, len(cmd) + 6) + struct.pack(">IBB", len(cmd) + 2, 1, 0x03) + cmd
        pdu2 = struct.pack(">BBI", 4, 0, len(ds) + 6) + struct.pack(">IBB", len(ds) + 2, 1, 0x02) + ds
        self.sock.sendall(pdu1 + pdu2)
        statuses, idents = [], []
        cmd_buf, ds_buf = bytearray(), bytearray()
        t_first = None
        expecting_ds = False
        while True:
            t, pdu = self._read_pdu()
            if t != 4:
                raise ConnectionError(f"unexpected PDU type {t} during C-FIND")
            i = 0
            while i < len(pdu):
                ln, _ctx, mch = struct.unpack_from(">IBB", pdu, i)
                frag = pdu[i + 6:i + 4 + ln]
                i += 4 + ln
                if mch & 1:  # command
                    cmd_buf += frag
                    if mch & 2:
                        if t_first is None:
                            t_first = time.perf_counter()
                        status, has_ds = _command_fields(bytes(cmd_buf))
                        cmd_buf = bytearray()
                        statuses.append(status)
                        if status not in (0xFF00, 0xFF01) and not has_ds:
                            return statuses, idents, t_first, time.perf_counter()
                        expecting_ds = has_ds
                        if not has_ds:
                            idents.append(None)
                else:
                    ds_buf += frag
                    if mch & 2:
                        idents.append(bytes(ds_buf))
                        ds_buf = bytearray()
                        expecting_ds = False
                        if statuses[-1] not in (0xFF00, 0xFF01):
                            return statuses, idents, t_first, time.perf_counter()

    def echo_like_close(self):
        try:
            self.sock.sendall(struct.pack(">BBI", 5, 0, 4) + b"\0\0\0\0")
            self._read_pdu()
        except OSError:
            pass
        self.sock.close()


def decode(b):
    if b is None:
        return None
    return dsutils.decode(BytesIO(b), True, True)
