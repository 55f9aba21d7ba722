//! The ordinary paths: configuration checks, detection, failover of a killed or partitioned
//! active, flapping, host failures (anti-affinity, two VMs on one host), planned switchover.

use super::world::World;
use super::*;

#[test]
fn defaults_detect_in_under_three_seconds_and_bad_configs_are_refused() {
    let cfg = FailoverConfig::default();
    assert_eq!(cfg.validate(), Ok(()));
    assert!(
        cfg.detection_budget_ms() < 3000,
        "{}",
        cfg.detection_budget_ms()
    );
    assert_eq!(cfg.detection_budget_ms(), 1900);

    let zero = FailoverConfig {
        failure_threshold: 0,
        ..FailoverConfig::default()
    };
    assert_eq!(
        zero.validate(),
        Err(ConfigError::Zero {
            key: "failure_threshold"
        })
    );
    let slow = FailoverConfig {
        probe_timeout_ms: 500,
        ..FailoverConfig::default()
    };
    assert!(matches!(
        slow.validate(),
        Err(ConfigError::ProbeTimeoutTooLong { .. })
    ));
    assert!(matches!(
        Machine::new(slow, &one_site()),
        Err(SetupError::Config(_))
    ));
}

#[test]
fn fewer_than_three_hosts_and_bad_layouts_are_refused() {
    let two = spec(2, &[("s1", ("s1-a", "h1"), ("s1-b", "h2"))]);
    assert_eq!(
        Machine::new(FailoverConfig::default(), &two).err(),
        Some(SetupError::Model(ModelError::TooFewHosts { found: 2 }))
    );
    let mut dup = one_site();
    dup.hosts.push("h1".to_string());
    assert_eq!(dup.validate(), Err(ModelError::DuplicateHost("h1".into())));
    let same = spec(3, &[("s1", ("s1-a", "h1"), ("s1-b", "h1"))]);
    assert!(matches!(same.validate(), Err(ModelError::SameHost { .. })));
    let vm_twice = spec(
        3,
        &[
            ("s1", ("a", "h1"), ("b", "h2")),
            ("s2", ("a", "h2"), ("c", "h3")),
        ],
    );
    assert_eq!(
        vm_twice.validate(),
        Err(ModelError::DuplicateVm("a".into()))
    );
    let unknown = spec(3, &[("s1", ("s1-a", "h1"), ("s1-b", "h9"))]);
    assert!(matches!(
        unknown.validate(),
        Err(ModelError::UnknownHost { .. })
    ));
    let none = spec(3, &[]);
    assert_eq!(none.validate(), Err(ModelError::NoSites));
}

#[test]
fn killed_active_is_fenced_promoted_away_from_and_restarted_as_standby() {
    let mut sim = started();
    let t0 = sim.now;
    sim.world.vm_mut("s1-a").running = false;
    sim.run_for(20_000);

    let promoted = sim.events.iter().find(|e| e.kind == EventKind::Promoted);
    let promoted = promoted.unwrap();
    assert_eq!(promoted.vm.as_deref(), Some("s1-b"));
    // Detection (3 refused probes), a refused graceful step, power-off, promotion.
    assert!(
        promoted.at_ms - t0 < 3000,
        "failover took {} ms",
        promoted.at_ms - t0
    );
    assert_eq!(
        verbs(&sim.actions),
        vec![
            v("standby", "s1-a"),
            v("power-off", "s1-a"),
            v("active", "s1-b"),
            v("restart", "s1-a"),
        ]
    );
    // Restarted in place: h1 is alive and is not s1-b's host.
    assert!(matches!(&sim.actions[3].kind, ActionKind::RestartVm { on_host } if on_host == "h1"));
    assert_eq!(sim.world.actives("s1"), vec!["s1-b".to_string()]);
    assert!(sim.has_event(|e| e.kind == EventKind::Rejoined && e.vm.as_deref() == Some("s1-a")));
    assert!(
        sim.world
            .serving("s1")
            .contains(&("s1-a".into(), HaState::Standby, "h1".into()))
    );
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-b"));
    // Quiet afterwards: no further actions once the site is whole again.
    let n = sim.actions.len();
    sim.run_for(60_000);
    assert_eq!(sim.actions.len(), n, "{:?}", &sim.actions[n..]);
}

#[test]
fn partitioned_active_is_powered_off_after_the_graceful_step_times_out() {
    let mut sim = started();
    sim.world.vm_mut("s1-a").partitioned = true;
    sim.run_for(15_000);

    assert_eq!(
        verbs(&sim.actions)[..3],
        [
            v("standby", "s1-a"),
            v("power-off", "s1-a"),
            v("active", "s1-b"),
        ]
    );
    let graceful = sim
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::GracefulFenceFailed { .. }));
    assert!(graceful.unwrap().reason.contains("timed out"));
    assert!(sim.has_event(|e| e.kind
        == EventKind::FenceConfirmed {
            method: FenceMethod::PowerOff
        }));
    // Never two actives: the partitioned one was off before s1-b was promoted (the checker
    // asserts this at every step), and it came back as a standby.
    assert_eq!(sim.world.actives("s1"), vec!["s1-b".to_string()]);
    assert!(!sim.world.vm("s1-a").partitioned);
    assert_eq!(sim.world.vm("s1-a").role, HaState::Standby);
}

#[test]
fn flapping_probes_never_reach_the_threshold() {
    let mut sim = started();
    for _ in 0..20 {
        // Two failed probes, one good one: k = 3 consecutive failures is never reached.
        sim.world.vm_mut("s1-a").partitioned = true;
        sim.run_for(1000);
        sim.world.vm_mut("s1-a").partitioned = false;
        sim.run_for(500);
    }
    assert!(sim.actions.is_empty(), "{:?}", sim.actions);
    assert!(!sim.has_event(|e| matches!(e.kind, EventKind::NamenodeDown { .. })));
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-a"));
    // The same pattern on a host.
    for _ in 0..10 {
        sim.world.hosts[1].1 = false;
        sim.run_for(1000);
        sim.world.hosts[1].1 = true;
        sim.run_for(500);
    }
    assert!(!sim.has_event(|e| matches!(e.kind, EventKind::HostDown { .. })));
    assert!(sim.actions.is_empty());
}

#[test]
fn host_failure_restarts_the_lost_vm_on_the_third_host() {
    let mut sim = started();
    sim.world.kill_host("h1");
    sim.run_for(20_000);

    assert!(sim.has_event(|e| e.kind == EventKind::HostDown { host: "h1".into() }));
    // Its host is down: the graceful RPC is skipped, the fence is the power-off.
    assert_eq!(
        verbs(&sim.actions),
        vec![
            v("power-off", "s1-a"),
            v("active", "s1-b"),
            v("restart", "s1-a"),
        ]
    );
    // Anti-affinity with three hosts: not h1 (down), not h2 (the new active's): h3.
    assert!(matches!(&sim.actions[2].kind, ActionKind::RestartVm { on_host } if on_host == "h3"));
    let serving = sim.world.serving("s1");
    assert!(serving.contains(&("s1-b".into(), HaState::Active, "h2".into())));
    assert!(serving.contains(&("s1-a".into(), HaState::Standby, "h3".into())));
    assert_eq!(sim.site_state("s1").first.host, "h3");
}

#[test]
fn without_a_third_live_host_the_restart_waits_for_one() {
    let mut sim = started();
    sim.world.kill_host("h1");
    sim.world.kill_host("h3");
    sim.run_for(15_000);
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-b"));
    assert_eq!(
        sim.count_actions(|a| matches!(a.kind, ActionKind::RestartVm { .. })),
        0
    );
    let waiting = sim
        .events
        .iter()
        .find(|e| e.kind == EventKind::NoHostForRestart)
        .unwrap();
    assert!(waiting.reason.contains("h2"), "{}", waiting.reason);

    sim.world.revive_host("h3");
    sim.run_for(15_000);
    let restarts: Vec<&Action> = sim
        .actions
        .iter()
        .filter(|a| matches!(a.kind, ActionKind::RestartVm { .. }))
        .collect();
    assert_eq!(restarts.len(), 1);
    assert!(matches!(&restarts[0].kind, ActionKind::RestartVm { on_host } if on_host == "h3"));
    assert!(sim.has_event(|e| e.kind == EventKind::Rejoined));
}

#[test]
fn a_host_with_two_sites_namenodes_fails_both_over() {
    let spec = spec(
        3,
        &[
            ("s1", ("s1-a", "h1"), ("s1-b", "h2")),
            ("s2", ("s2-a", "h1"), ("s2-b", "h3")),
        ],
    );
    let mut sim = Sim::new(&spec, World::from_spec(&spec));
    sim.run_for(2000);
    let t0 = sim.now;
    sim.world.kill_host("h1");
    sim.run_for(20_000);

    for (site, lost, survivor, dest) in [("s1", "s1-a", "s1-b", "h3"), ("s2", "s2-a", "s2-b", "h2")]
    {
        let down = sim
            .events
            .iter()
            .find(|e| {
                matches!(e.kind, EventKind::NamenodeDown { .. }) && e.vm.as_deref() == Some(lost)
            })
            .unwrap();
        assert!(down.reason.contains("host h1"), "{}", down.reason);
        let promoted = sim
            .events
            .iter()
            .find(|e| e.kind == EventKind::Promoted && e.site.as_deref() == Some(site))
            .unwrap();
        assert_eq!(promoted.vm.as_deref(), Some(survivor));
        assert!(promoted.at_ms - t0 < 3000);
        assert_eq!(sim.world.actives(site), vec![survivor.to_string()]);
        // Each lost VM goes to the live host its surviving peer is not on.
        assert!(
            sim.world
                .serving(site)
                .contains(&(lost.into(), HaState::Standby, dest.into())),
            "{site}: {:?}",
            sim.world.serving(site)
        );
    }
    assert_eq!(
        sim.count_actions(|a| matches!(a.kind, ActionKind::TransitionToStandby { .. })),
        0
    );
}

#[test]
fn planned_switchover_is_graceful_and_powers_nothing_off() {
    let mut sim = started();
    sim.switchover("s1");
    sim.run_for(3000);
    assert_eq!(
        verbs(&sim.actions),
        vec![v("standby", "s1-a"), v("active", "s1-b")]
    );
    assert_eq!(sim.world.actives("s1"), vec!["s1-b".to_string()]);
    assert!(sim.world.vm("s1-a").running);
    assert_eq!(sim.world.vm("s1-a").role, HaState::Standby);
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-b"));

    // And back: a switchover is not held by the cooldown.
    sim.switchover("s1");
    sim.run_for(3000);
    assert_eq!(sim.world.actives("s1"), vec!["s1-a".to_string()]);
    assert_eq!(
        sim.count_actions(|a| matches!(a.kind, ActionKind::PowerOff { .. })),
        0
    );
}

#[test]
fn switchover_falls_back_to_power_off_when_the_graceful_step_fails() {
    let mut sim = started();
    sim.world.faults.graceful_fails = true;
    sim.switchover("s1");
    sim.run_for(15_000);
    assert_eq!(
        verbs(&sim.actions),
        vec![
            v("standby", "s1-a"),
            v("power-off", "s1-a"),
            v("active", "s1-b"),
            v("restart", "s1-a"),
        ]
    );
    assert_eq!(sim.world.actives("s1"), vec!["s1-b".to_string()]);
}

#[test]
fn switchover_is_refused_without_a_healthy_standby() {
    let mut sim = started();
    sim.world.vm_mut("s1-b").healthy = false;
    sim.run_for(500);
    sim.switchover("s1");
    sim.switchover("nope");
    let refused: Vec<&Event> = sim
        .events
        .iter()
        .filter(|e| e.kind == EventKind::SwitchoverRejected)
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(refused[0].reason.contains("s1-b"), "{}", refused[0].reason);
    assert!(
        !sim.actions
            .iter()
            .any(|a| matches!(a.kind, ActionKind::TransitionToStandby { .. }))
    );
}
