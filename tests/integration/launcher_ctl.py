#!/usr/bin/env python3
"""The HA tests' VM driver: MIFAS's `[ha.driver]` command templates run this to power a namenode
"VM" off or restart it, and it passes the request to the test's launcher control server
(test_ha_failover.LauncherControl), which commands our MiniDFSCluster launcher.

    launcher_ctl.py HOST:PORT power-off VM HOST
    launcher_ctl.py HOST:PORT restart VM ON_HOST

Exit 0 when the server answers OK, else 1 with the answer on stderr: exactly the contract of a
`virsh` or `onevm` template (exit 0 only when done).
"""

import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    host, port = argv[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=120) as s:
        s.sendall((" ".join(argv[2:]) + "\n").encode())
        reply = s.makefile("r", encoding="utf-8").readline().strip()
    if reply.startswith("OK"):
        print(reply)
        return 0
    print(reply or "no answer from the launcher control", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
