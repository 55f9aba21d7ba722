"""The MiniDFSCluster launcher (tests/minidfs) against a real client: WebHDFS on the namenodes'
HTTP ports, spoken from Python. Three sites share the module (siteA an HA pair, siteB and siteC
one namenode each, 2 datanodes everywhere), as the HDFS tests of MIFAS will use them."""

from __future__ import annotations

import http.client
import os
import socket

import pytest

import minidfs as M

sites = M.sites_fixture("module")


def _site(sites, name) -> M.Site:
    return next(s for s in sites if s.name == name)


def _refused(hostport: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _listening_ips(pid: int, port: int) -> set[str]:
    """IPv4 addresses on which process pid listens on TCP port (from /proc: no ss/lsof needed;
    Java's sockets are IPv6 ones holding IPv4-mapped addresses)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ips = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            f = line.split()
            addr, hexport = f[1].split(":")
            if f[3] != "0A" or int(hexport, 16) != port or f[9] not in inodes:  # 0A = LISTEN
                continue
            v4 = addr[-8:]  # IPv4, or the low word of an IPv6 address, little-endian
            if len(addr) == 32 and addr[:24] not in ("0000000000000000FFFF0000", "0" * 24):
                ips.add("ipv6")
                continue
            ips.add(".".join(str(int(v4[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return ips


def test_three_sites_ready_lines_and_client_conf(sites):
    a, b, c = (_site(sites, n) for n in ("siteA", "siteB", "siteC"))
    # the HA pair is a nameservice named after the site, its namenodes on the ports we asked for
    assert a.url == "hdfs://siteA"
    assert a.namenodes == [f"127.0.0.1:{p}" for p in a.nn_ports]
    assert a.http == [f"127.0.0.1:{p}" for p in a.nn_http_ports]
    assert a.state() == {"site": "up", "namenodes": ["active", "standby"], "datanodes": ["up", "up"]}
    conf = a.client_conf()
    assert conf["dfs.ha.namenodes.siteA"] == "nn0,nn1"
    assert conf["dfs.namenode.rpc-address.siteA.nn0"] == a.namenodes[0]
    assert conf["dfs.namenode.rpc-address.siteA.nn1"] == a.namenodes[1]
    for s in (b, c):
        assert s.url == f"hdfs://{s.namenodes[0]}" and len(s.namenodes) == 1
        assert s.state() == {"site": "up", "namenodes": ["active"], "datanodes": ["up", "up"]}
    for s in (a, b, c):
        assert s.client_conf()["dfs.client.block.write.replace-datanode-on-failure.enable"] == "false"
        # the same settings, one line, from the launcher itself
        assert "dfs.client.block.write.replace-datanode-on-failure.policy=NEVER" in s.ok("client-conf")
    assert a.command("no-such-command").startswith("ERR ")
    assert b.command("kill-datanode 7").startswith("ERR ")


def test_webhdfs_write_read_on_every_site(sites):
    for s in sites:
        data = os.urandom(1024 * 1024 + 1) + s.name.encode()
        h = s.active_http()
        M.webhdfs_put(h, f"/rw/{s.name}.bin", data)
        assert M.webhdfs_get(h, f"/rw/{s.name}.bin") == data
        assert M.webhdfs_status(h, f"/rw/{s.name}.bin")["replication"] == 2
        # both datanodes hold the block, and the namenode hands them out as 127.0.0.1
        (hosts,) = M.webhdfs_block_hosts(h, f"/rw/{s.name}.bin")
        assert len(set(hosts)) == 2 and all(x.startswith("127.0.0.1:") for x in hosts), hosts
        for x in hosts:
            assert _listening_ips(s.proc.pid, int(x.rsplit(":", 1)[1])) == {"127.0.0.1"}


def test_ha_failover_by_command(sites):
    a = _site(sites, "siteA")
    before = os.urandom(200_000)
    M.webhdfs_put(a.http[0], "/ha/before.bin", before)

    # two actives on one shared edits directory must be refused
    assert a.command("transition-active 1").startswith("ERR ")
    assert a.kill_namenode(0) == "namenode 0 down"
    assert a.state()["namenodes"] == ["down", "standby"]
    with pytest.raises(M.WebHdfsError) as e:
        M.webhdfs_get(a.http[1], "/ha/before.bin")
    assert e.value.status == 403 and "StandbyException" in e.value.body
    assert a.transition_active(1) == "namenode 1 active"
    assert a.state()["namenodes"] == ["down", "active"]
    assert M.webhdfs_get(a.http[1], "/ha/before.bin") == before
    during = os.urandom(150_000)
    M.webhdfs_put(a.http[1], "/ha/during.bin", during)
    # a datanode restarts while one namenode of its pair is down (it registers with the other)
    a.kill_datanode(0)
    assert a.restart_datanode(0) == "datanode 0 up"
    assert a.state()["datanodes"] == ["up", "up"]

    assert a.restart_namenode(0) == "namenode 0 standby"
    assert a.state()["namenodes"] == ["standby", "active"]
    a.transition_standby(1)
    a.transition_active(0)
    assert a.state()["namenodes"] == ["active", "standby"]
    # what namenode 1 wrote reached namenode 0 through the shared edits
    assert M.webhdfs_get(a.http[0], "/ha/during.bin") == during


def test_datanode_kill_expire_restart(sites):
    b = _site(sites, "siteB")
    h = b.active_http()
    data = os.urandom(300_000)
    M.webhdfs_put(h, "/dn/a.bin", data)
    (hosts,) = M.webhdfs_block_hosts(h, "/dn/a.bin")
    assert len(hosts) == 2

    addrs = b.datanode_addrs()
    assert sorted(addrs) == sorted(hosts)

    assert b.kill_datanode(1) == "datanode 1 down"
    assert b.state()["datanodes"] == ["up", "down"]
    assert b.datanode_addrs() == addrs
    assert b.command("kill-datanode 1").startswith("ERR ")
    b.expire_datanode(1)
    # the namenode now hands out only the live replica, and new files go to the live datanode
    (left,) = M.webhdfs_block_hosts(h, "/dn/a.bin")
    assert left == [addrs[0]]
    assert M.webhdfs_get(h, "/dn/a.bin") == data
    M.webhdfs_put(h, "/dn/b.bin", data)
    assert M.webhdfs_block_hosts(h, "/dn/b.bin") == [left]

    assert b.restart_datanode(1) == "datanode 1 up"
    assert b.state()["datanodes"] == ["up", "up"]
    # back on its old transfer port, registered: a new file gets both datanodes again
    M.webhdfs_put(h, "/dn/c.bin", data)
    (again,) = M.webhdfs_block_hosts(h, "/dn/c.bin")
    assert sorted(again) == sorted(hosts)


@pytest.mark.parametrize("name", ["siteA", "siteC"])
def test_stop_and_start_whole_site_keeps_data(sites, name):
    s = _site(sites, name)
    data = os.urandom(500_000)
    M.webhdfs_put(s.active_http(), "/keep.bin", data)

    s.stop_site()
    assert s.state() == {"site": "down", "namenodes": ["down"] * len(s.namenodes),
                         "datanodes": ["down", "down"]}
    assert all(_refused(x) for x in s.namenodes + s.http), "a stopped site still listens"
    assert s.command("kill-datanode 0").startswith("ERR ")

    s.start_site()
    st = s.state()
    assert st["site"] == "up" and st["namenodes"][0] == "active" and st["datanodes"] == ["up", "up"]
    # same ports (the READY line's addresses stay valid), same data
    assert M.webhdfs_get(s.http[0], "/keep.bin") == data
    M.webhdfs_put(s.http[0], "/after-restart.bin", data)


def test_corrupt_block_fails_reads(sites):
    c = _site(sites, "siteC")
    h = c.active_http()
    data = os.urandom(100_000)
    M.webhdfs_put(h, "/corrupt.bin", data)
    assert c.corrupt_block("/corrupt.bin").startswith("corrupted 2 replica(s)")
    # every replica fails its checksum: the datanode cannot serve the bytes (it has sent its
    # headers already, so the body ends short)
    with pytest.raises((M.WebHdfsError, http.client.HTTPException)):
        M.webhdfs_get(h, "/corrupt.bin")


def test_bind_address_then_exit_when_stdin_closes(tmp_path):
    # --bind-address (for sites in network namespaces): 127.0.0.2 is another loopback address
    s = M.Site("solo", tmp_path / "solo", datanodes=1, bind_address="127.0.0.2").start()
    pid = s.proc.pid
    assert s.namenodes == [f"127.0.0.2:{s.nn_ports[0]}"] and s.url == f"hdfs://127.0.0.2:{s.nn_ports[0]}"
    assert s.client_conf()["dfs.client.use.datanode.hostname"] == "true"
    data = os.urandom(70_000)
    M.webhdfs_put(s.http[0], "/bound.bin", data)
    assert M.webhdfs_get(s.http[0], "/bound.bin") == data
    # the namenode records the datanode as 127.0.0.1 (its registration's source address), but
    # the datanode listens on the bind address only: hence use.datanode.hostname
    ((name,),) = M.webhdfs_block_hosts(s.http[0], "/bound.bin")
    port = int(name.rsplit(":", 1)[1])
    assert s.datanode_addrs() == [f"127.0.0.2:{port}"]
    assert _listening_ips(pid, port) == {"127.0.0.2"}
    # the namenode listens everywhere (its configured address stays 127.0.0.1 for the datanodes)
    assert _listening_ips(pid, s.nn_ports[0]) == {"0.0.0.0"}

    assert s.close() == 0
    # the JVM is gone and its ports are free: a crashed test leaves nothing behind
    assert not os.path.exists(f"/proc/{pid}")
    assert _refused(s.namenodes[0]) and _refused(s.http[0]) and _refused(f"127.0.0.2:{port}")
