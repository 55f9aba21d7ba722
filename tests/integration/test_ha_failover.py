"""The HA monitor end to end (issue 11): `mifas serve` with an `[ha]` table watches an HA site of
our MiniDFSCluster launcher (2 namenodes, 2 datanodes) that is also its only storage site. The
VM driver is tests/integration/launcher_ctl.py, which reaches the launcher through this module's
LauncherControl (power-off = kill the namenode, restart = start it again).

Checked, in order, on one site:
- the monitor adopts the active namenode; `mifas ha status`, /metrics and /admin/ha show it;
- the active namenode is killed while DCMTK storescu sends a 300-instance study: the monitor
  fences it (graceful fails, power-off confirms), promotes the standby, restarts the lost VM on
  a host other than the new active's and it rejoins as standby; no C-STORE fails and all 300
  instances read back byte-identical;
- the standby is killed: it is restarted and rejoins; the active stays;
- a planned switchover (`mifas ha switchover`) moves the active role;
- fencing fails (the driver's power-off refuses): nobody is promoted and the event says why;
  when fencing works again, the failover completes.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import dicom_fixtures as F
import minidfs as M
from mifas_helpers import CHILD_ENV, MIFAS_BIN, STORESCU, MifasServer, file_dataset_bytes, run_mifas, split_part10, wait_until
from ha_rig import HOSTS, LauncherControl, archive_config, events, ha_status, metrics, wait_status
from ha_rig import settled as rig_settled
from retrieve_peers import getscu, received_by_sop
from test_portal_auth import Portal, add_user

SITE = "haFail"
# failover is a matter of seconds; these bound the waits generously for a loaded 2-core machine
FAILOVER_S = 60
REJOIN_S = 120

site_fixture = M.sites_fixture("module", specs=({"name": SITE, "namenodes": 2, "datanodes": 2},))


@pytest.fixture(scope="module")
def rig(site_fixture, tmp_path_factory):
    site = site_fixture[0]
    assert site.state()["namenodes"] == ["active", "standby"]
    ctl = LauncherControl(site)
    work = tmp_path_factory.mktemp("ha")
    server = MifasServer(work / "mifas", config=archive_config(site, ctl.addr), name="mifas").start()
    yield site, ctl, server
    try:
        assert server.alive(), f"mifas died during the tests\n{server.log_tail()}"
        assert server.stop() == 0, server.log_tail()
    finally:
        ctl.close()


def p(s: str) -> str:
    return f"site.{SITE}.{s}"


def settled(active: str):
    return rig_settled(SITE, active)


def test_monitor_adopts_the_active_and_shows_it(rig):
    site, ctl, server = rig
    st = wait_status(server, settled("nn0"), FAILOVER_S, "the monitor adopts nn0 as active")
    assert st["monitor"] == "running"
    for h in HOSTS:
        assert st[f"host.{h}.up"] == "true", st
    assert st[p("nn0.host")] == "hostA" and st[p("nn1.host")] == "hostB", st
    assert st[p("nn0.rpc")] == site.namenodes[0], st
    assert st[p("nn0.healthy")] == "true" and st[p("nn1.healthy")] == "true", st
    text = metrics(server)
    assert f'mifas_ha_namenode_active{{site="{SITE}",vm="nn0"}} 1' in text, text
    assert f'mifas_ha_namenode_active{{site="{SITE}",vm="nn1"}} 0' in text, text
    assert 'mifas_ha_host_up{host="hostC"} 1' in text, text
    assert "active_observed" in events(server)
    # nothing was fenced or restarted: the driver was never called
    assert ctl.calls == []


def test_admin_page_lists_hosts_vms_and_events(rig):
    site, ctl, server = rig
    add_user(server.data_dir, "haadmin", "admin")
    add_user(server.data_dir, "haviewer", "viewer")
    anonymous = Portal(server)
    status, _, _ = anonymous.get("/admin/ha")
    assert status == 401  # a script without a session (a browser is sent to /login)
    viewer = Portal(server)
    viewer.login_ok("haviewer")
    status, _, body = viewer.get("/admin/ha")
    assert status == 403, body[:300]
    admin = Portal(server)
    admin.login_ok("haadmin")
    status, _, body = admin.get("/admin/ha")
    assert status == 200, body[:300]
    page = body.decode()
    assert "<h1>HA monitor</h1>" in page
    for h in HOSTS:
        assert f'data-host="{h}" data-up="true"' in page, page
    assert 'data-vm="nn0" data-role="active"' in page, page
    assert 'data-vm="nn1" data-role="standby"' in page, page
    assert 'data-kind="active_observed"' in page, page
    assert 'href="/admin/ha"' in page  # the portal header links the page for admins


def _study(tmp_path: Path, n: int = 300):
    return F.generate_corpus(tmp_path / "study", patients=1, studies=1, series=1, instances=n,
                             tag="hafail", rows=128, cols=128)


def test_kill_active_during_storescu_fails_over_without_a_failed_store(rig, tmp_path):
    site, ctl, server = rig
    wait_status(server, settled("nn0"), FAILOVER_S, "nn0 active before the kill")
    items = _study(tmp_path)
    args = [STORESCU, "-aet", "STORESCU", "-aec", server.aet, "-to", "30", "-ta", "30", "-td", "120",
            "-nh", "-v", server.host, str(server.port)] + [str(c.path) for c in items]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=CHILD_ENV, text=True)
    out: list[str] = []
    responses = 0
    killed_at = None
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line)
        if "Received Store Response" in line:
            responses += 1
            if responses == 60 and killed_at is None:
                # the failure under test: the active namenode dies while the study is sent
                ctl.ok("kill-namenode 0")
                killed_at = time.monotonic()
    rc = proc.wait(timeout=300)
    text = "".join(out)
    assert killed_at is not None, text[-3000:]
    assert rc == 0, text[-3000:]
    assert responses == len(items), (responses, text[-3000:])
    assert "Success" in text and not re.search(r"Store Response \((?!Success)", text), text[-3000:]

    st = wait_status(server, lambda s: s.get(p("active")) == "nn1" and s.get(p("nn1.role")) == "active",
                     FAILOVER_S, "nn1 promoted")
    kinds = events(server)
    tail = kinds[kinds.index("namenode_down"):]
    for k in ("fence_started", "graceful_fence_failed", "fence_confirmed", "promote_started", "promoted"):
        assert k in tail, tail
    assert tail.index("fence_confirmed") < tail.index("promoted"), tail
    assert ("power-off", "nn0", "hostA") in ctl.calls, ctl.calls
    # the lost VM restarts on a live host other than the new active's (anti-affinity), rejoins
    st = wait_status(server, settled("nn1"), REJOIN_S, "nn0 restarted and rejoined as standby")
    restarts = [c for c in ctl.calls if c[0] == "restart" and c[1] == "nn0"]
    assert restarts and restarts[-1][2] != "hostB", ctl.calls
    assert st[p("nn0.host")] == restarts[-1][2], st
    assert "rejoined" in events(server)
    assert ctl.states() == ["standby", "active"]
    assert f'mifas_ha_failovers_total{{site="{SITE}"}} 1' in metrics(server)

    # every instance reads back byte-identical (through the new active)
    got_dir = tmp_path / "got"
    r, _ = getscu(server, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": items[0].study}, got_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    got = received_by_sop(got_dir.iterdir())
    assert len(got) == len(items)
    for c in items:
        assert split_part10(got[c.sop_instance])[1] == file_dataset_bytes(c.path)


def test_killed_standby_is_restarted_and_rejoins(rig):
    site, ctl, server = rig
    wait_status(server, settled("nn1"), REJOIN_S, "nn1 active, nn0 standby")
    before = len(ctl.calls)
    ctl.ok("kill-namenode 0")
    wait_status(server, lambda s: s.get(p("nn0.role")) == "down", FAILOVER_S, "nn0 declared down")
    st = wait_status(server, settled("nn1"), REJOIN_S, "nn0 restarted and rejoined")
    new = ctl.calls[before:]
    # a standby is not fenced (it was seen standby): only restarted, away from nn1's host
    assert [c[0] for c in new] == ["restart"], new
    assert new[0][1] == "nn0" and new[0][2] != st[p("nn1.host")], new
    assert ctl.states() == ["standby", "active"]


def test_planned_switchover(rig):
    site, ctl, server = rig
    wait_status(server, settled("nn1"), REJOIN_S, "settled before the switchover")
    before = len(ctl.calls)
    r = run_mifas("ha", "switchover", SITE, "--config", str(server.config_path),
                  "--data-dir", str(server.data_dir), timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "switchover: started" in r.stdout
    wait_status(server, settled("nn0"), FAILOVER_S, "nn0 active after the switchover")
    assert ctl.states() == ["active", "standby"]
    assert ctl.calls[before:] == [], "a switchover is graceful: no power-off, no restart"
    r = run_mifas("ha", "switchover", "noSuchSite", "--config", str(server.config_path),
                  "--data-dir", str(server.data_dir), timeout=30)
    assert r.returncode != 0 and "noSuchSite" in r.stderr, r.stdout + r.stderr


def test_failed_fence_means_no_promotion(rig):
    site, ctl, server = rig
    wait_status(server, settled("nn0"), REJOIN_S, "nn0 active before the fence test")
    promotions = events(server).count("promoted")
    ctl.refuse_power_off = True
    try:
        ctl.ok("kill-namenode 0")
        wait_until(lambda: "fence_failed" in events(server)[-40:], FAILOVER_S, interval=0.2,
                   what="the fence fails")
        log = server.log_path.read_text(errors="replace")
        failed = [l for l in log.splitlines() if "fence_failed" in l and "event=" in l]
        assert failed and "refused (test: fencing made to fail)" in failed[-1], failed
        st = ha_status(server)
        # no fence, no promotion: nn1 stays standby, and the site has no active
        assert ctl.states() == ["down", "standby"], ctl.states()
        assert st[p("nn1.role")] == "standby", st
        assert st[p("active")] in ("-", "nn0"), st
        # the machine retries the fence after its backoff; still refused, still no promotion
        n = events(server).count("fence_failed")
        wait_until(lambda: events(server).count("fence_failed") > n, FAILOVER_S, interval=0.2,
                   what="a second fence attempt")
        assert ctl.states() == ["down", "standby"]
        assert events(server).count("promoted") == promotions
    finally:
        ctl.refuse_power_off = False
    # fencing works again: the failover completes and nn0 comes back as standby
    wait_status(server, settled("nn1"), REJOIN_S, "failover completes once the fence works")
    assert ctl.states() == ["standby", "active"]
    assert "fence_failed" in metrics(server)


def test_standalone_ha_monitor_serves_status_page_and_metrics(rig, tmp_path):
    """`mifas ha-monitor` runs the same monitor without an archive; its page and /metrics are on
    `ha.http_bind` (localhost, no users). It only watches here: the site is healthy."""
    site, ctl, server = rig
    text = archive_config(site, ctl.addr).replace("[ha]\n", f'[ha]\nhttp_bind = "127.0.0.1:0"\n'
                                                  f'state_dir = "{tmp_path / "ha-state"}"\n', 1)
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(text)
    proc = subprocess.Popen([str(MIFAS_BIN), "ha-monitor", "--config", str(cfg), "--data-dir", str(tmp_path / "d")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CHILD_ENV, text=True)
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        m = re.match(r"MIFAS HA READY http=(\S+) state=(.+)$", ready.strip())
        assert m, ready + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        base = f"http://{m[1]}"

        def page_ok():
            with urllib.request.urlopen(f"{base}/admin/ha", timeout=10) as r:
                body = r.read().decode()
            return 'data-role="active"' in body and 'data-role="standby"' in body

        wait_until(page_ok, FAILOVER_S, interval=0.2, what="the standalone monitor's page shows both roles")
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            assert f'mifas_ha_namenode_up{{site="{SITE}",vm="nn0"}} 1' in r.read().decode()
        r = run_mifas("ha", "status", "--config", str(cfg), timeout=30)
        assert r.returncode == 0 and "monitor: running" in r.stdout, r.stdout + r.stderr
    finally:
        proc.terminate()
        rc = proc.wait(timeout=30)
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    # stopped: `ha status` reads the saved state
    r = run_mifas("ha", "status", "--config", str(cfg), timeout=30)
    assert r.returncode == 0 and "monitor: not running (saved state)" in r.stdout, r.stdout + r.stderr
    assert f"site.{SITE}.active: nn" in r.stdout, r.stdout


def test_fewer_than_three_hosts_is_refused(tmp_path):
    cfg = tmp_path / "two.toml"
    cfg.write_text('[ha]\n[ha.driver]\nkind = "onevm"\n'
                   '[[ha.host]]\nname = "a"\nprobe = "127.0.0.1:1"\n[[ha.host]]\nname = "b"\nprobe = "127.0.0.1:2"\n'
                   '[[ha.site]]\nname = "s"\n'
                   '[[ha.site.namenode]]\nvm = "n0"\nhost = "a"\nrpc = "127.0.0.1:3"\n'
                   '[[ha.site.namenode]]\nvm = "n1"\nhost = "b"\nrpc = "127.0.0.1:4"\n')
    r = run_mifas("ha-monitor", "--config", str(cfg), "--data-dir", str(tmp_path / "d"), timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "at least 3 are required" in r.stderr, r.stderr
