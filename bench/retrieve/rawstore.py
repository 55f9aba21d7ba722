#!/usr/bin/env python3
"""Minimal C-STORE SCU on a plain socket: the "ideal archive" for the destination bound.

Reads every Part-10 file of a folder into memory first and pre-encodes each instance's complete
P-DATA-TF stream (command + data set fragments, Explicit VR Little Endian bytes as stored in the
file); then, timed: associates with the SCP, and for each instance sends the prepared bytes and
waits for the C-STORE-RSP (one association, strictly serial, exactly what a C-MOVE sub-operation
stream looks like on the wire), then releases. Almost no sender CPU per instance, so the rate is
the most any archive can push through one association into that SCP on this machine.

Usage: rawstore.py HOST PORT CALLED_AET DIR [--calling AET]
Prints "<count> <seconds> <rate>" (timed part only); exit 1 on any non-success status.
"""
import argparse
import os
import socket
import struct
import sys
import time

APP_CTX = b"1.2.840.10008.3.1.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPL_UID = b"1.2.826.0.1.3680043.8.498.1"


def uid_bytes(u):
    b = u.encode() if isinstance(u, str) else u
    return b + b"\0" if len(b) % 2 else b


def read_part10(path):
    """(sop_class, sop_instance, transfer_syntax, dataset_bytes) without pydicom (fast)."""
    data = open(path, "rb").read()
    if data[128:132] != b"DICM":
        raise ValueError(f"{path}: not a Part-10 file")
    pos = 132
    meta = {}
    # group 0002 is Explicit VR LE; walk it element by element
    while pos < len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            (length,) = struct.unpack_from("<I", data, pos + 8)
            vpos = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            vpos = pos + 8
        meta[elem] = data[vpos:vpos + length]
        pos = vpos + length
    s = lambda v: v.rstrip(b"\0 ").decode()
    return s(meta[0x0002]), s(meta[0x0003]), s(meta[0x0010]), data[pos:]


def element(group, elem, value):
    return struct.pack("<HHI", group, elem, len(value)) + value


def store_command(msg_id, sop_class, sop_instance):
    body = (element(0, 0x0002, uid_bytes(sop_class)) + element(0, 0x0100, struct.pack("<H", 0x0001))
            + element(0, 0x0110, struct.pack("<H", msg_id)) + element(0, 0x0700, struct.pack("<H", 0))
            + element(0, 0x0800, struct.pack("<H", 0x0000)) + element(0, 0x1000, uid_bytes(sop_instance)))
    return element(0, 0x0000, struct.pack("<I", len(body))) + body


def pdata(ctx, payload, command, max_pdu):
    out = []
    chunk = max_pdu - 6
    for i in range(0, len(payload), chunk) or [0]:
        frag = payload[i:i + chunk]
        last = i + chunk >= len(payload)
        mch = (1 if command else 0) | (2 if last else 0)
        pdv = struct.pack(">IBB", len(frag) + 2, ctx, mch) + frag
        out.append(struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv)
    return b"".join(out)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        b = sock.recv(n - len(buf))
        if not b:
            raise ConnectionError("connection closed by the SCP")
        buf += b
    return bytes(buf)


def recv_pdu(sock):
    t, _, length = struct.unpack(">BBI", recv_exact(sock, 6))
    return t, recv_exact(sock, length)


def associate(sock, called, calling, sop_classes):
    items = struct.pack(">BBH", 0x10, 0, len(APP_CTX)) + APP_CTX
    ctx_ids = {}
    for i, cls in enumerate(sorted(sop_classes)):
        cid = 2 * i + 1
        ctx_ids[cls] = cid
        a = uid_bytes(cls)
        sub = struct.pack(">BBH", 0x30, 0, len(a)) + a
        ts = uid_bytes(EXPLICIT_LE)
        sub += struct.pack(">BBH", 0x40, 0, len(ts)) + ts
        items += struct.pack(">BBHBBBB", 0x20, 0, len(sub) + 4, cid, 0, 0, 0) + sub
    user = struct.pack(">BBHI", 0x51, 0, 4, 0)  # max PDU we receive: 0 = unlimited
    user += struct.pack(">BBH", 0x52, 0, len(IMPL_UID)) + IMPL_UID
    items += struct.pack(">BBH", 0x50, 0, len(user)) + user
    body = struct.pack(">HH16s16s32s", 1, 0, called.ljust(16).encode(), calling.ljust(16).encode(), b"") + items
    sock.sendall(struct.pack(">BBI", 0x01, 0, len(body)) + body)
    t, data = recv_pdu(sock)
    if t != 0x02:
        raise ConnectionError(f"association not accepted (PDU type {t:#x}, data {data[:10].hex()})")
    pos = 68
    accepted = set()
    peer_max = 16384
    while pos < len(data):
        it, _, ln = struct.unpack_from(">BBH", data, pos)
        v = data[pos + 4:pos + 4 + ln]
        if it == 0x21 and v[2] == 0:
            accepted.add(v[0])
        elif it == 0x50:
            q = 0
            while q < len(v):
                st, _, sl = struct.unpack_from(">BBH", v, q)
                if st == 0x51:
                    (peer_max,) = struct.unpack_from(">I", v, q + 4)
                q += 4 + sl
        pos += 4 + ln
    if peer_max == 0:
        peer_max = 1 << 20
    missing = [c for c, i in ctx_ids.items() if i not in accepted]
    if missing:
        raise ConnectionError(f"presentation context(s) rejected: {missing}")
    return ctx_ids, peer_max


def read_response(sock):
    cmd = bytearray()
    while True:
        t, data = recv_pdu(sock)
        if t != 0x04:
            raise ConnectionError(f"unexpected PDU type {t:#x}")
        pos = 0
        while pos < len(data):
            (ln,) = struct.unpack_from(">I", data, pos)
            mch = data[pos + 5]
            cmd += data[pos + 6:pos + 4 + ln]
            pos += 4 + ln
            if mch & 3 == 3:
                p = 0
                while p < len(cmd):
                    g, e, l = struct.unpack_from("<HHI", cmd, p)
                    if (g, e) == (0, 0x0900):
                        return struct.unpack_from("<H", cmd, p + 8)[0]
                    p += 8 + l
                raise ConnectionError("C-STORE-RSP without status")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("called")
    ap.add_argument("dir")
    ap.add_argument("--calling", default="RAWSTORE")
    args = ap.parse_args()

    insts = []
    for root, _, names in os.walk(args.dir):
        for n in sorted(names):
            insts.append(read_part10(os.path.join(root, n)))
    bad = [i[1] for i in insts if i[2] != EXPLICIT_LE]
    if bad:
        sys.exit(f"{len(bad)} files are not Explicit VR Little Endian")
    classes = {i[0] for i in insts}

    t0 = time.perf_counter()
    sock = socket.create_connection((args.host, args.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ctx_ids, peer_max = associate(sock, args.called, args.calling, classes)
    # pre-encode after the association (needs the peer's max PDU); outside the timed part
    t_enc = time.perf_counter()
    wire = [pdata(ctx_ids[c], store_command(k + 1, c, u), True, peer_max)
            + pdata(ctx_ids[c], ds, False, peer_max) for k, (c, u, _, ds) in enumerate(insts)]
    t_enc = time.perf_counter() - t_enc
    failed = 0
    for w in wire:
        sock.sendall(w)
        if read_response(sock) != 0:
            failed += 1
    sock.sendall(struct.pack(">BBII", 0x05, 0, 4, 0))
    t, _ = recv_pdu(sock)
    sock.close()
    secs = time.perf_counter() - t0 - t_enc
    print(f"{len(insts)} {secs:.3f} {len(insts) / secs:.1f}")
    if failed or t != 0x06:
        print(f"{failed} C-STORE failures; release answer PDU type {t:#x}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
