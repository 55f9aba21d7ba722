"""Slowloris (issue 13, soak): TCP connections that never send an A-ASSOCIATE-RQ must not take the
association slots of real peers, and the ARTIM timer closes every one of them."""

import socket
import time

from mifas_helpers import pyn_associate, wait_until
from raw_dul import VERIFICATION, IMPLICIT_LE

IDLE = 200
LIMIT = 8
ARTIM = 3


def idle_connections(server, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection((server.host, server.port), timeout=10)
        socks.append(s)
    return socks


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    """True once the server closed `s` (EOF or reset) within `timeout`."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def open_fds(pid: int) -> int:
    import os

    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_connections_do_not_take_association_slots(mifas):
    s = mifas({"dicom": {"max_associations": LIMIT, "artim_timeout_secs": ARTIM}})
    fds_before = open_fds(s.proc.pid)
    idle = idle_connections(s, IDLE)
    try:
        t = time.monotonic()
        # with 200 silent connections open, real associations up to the limit are accepted
        held = [pyn_associate(s, [(VERIFICATION, [IMPLICIT_LE])], calling=f"REAL{i}") for i in range(LIMIT)]
        assert all(a.is_established for a in held), [a.is_established for a in held]
        assert [a.send_c_echo().Status for a in held] == [0] * LIMIT
        assert time.monotonic() - t < ARTIM, "real associations waited for the idle ones to time out"
        # ... and the limit itself still holds for real associations
        extra = pyn_associate(s, [(VERIFICATION, [IMPLICIT_LE])], calling="EXTRA")
        assert extra.is_rejected, "an association above max_associations was accepted"
        for a in held:
            a.release()
        # the ARTIM timer closes every silent connection
        deadline = time.monotonic() + ARTIM + 10
        still_open = [c for c in idle if not closed_by_server(c, max(0.1, deadline - time.monotonic()))]
        assert not still_open, f"{len(still_open)} of {IDLE} idle connections still open after ARTIM"
    finally:
        for c in idle:
            c.close()
    wait_until(lambda: open_fds(s.proc.pid) <= fds_before + 2, 10,
               what="MIFAS's descriptors back to their level before the idle connections")
    s.echo_ok()
