//! The hard paths: fencing that fails, both namenodes down, a paused active that resumes, two
//! actives, cooldown, and a standby that is not promotable.

use super::world::World;
use super::*;

fn promotions(sim: &Sim) -> usize {
    sim.count_actions(|a| matches!(a.kind, ActionKind::TransitionToActive { .. }))
}

#[test]
fn fence_failure_means_no_promotion_and_the_event_says_why() {
    let mut sim = started();
    sim.world.vm_mut("s1-a").partitioned = true;
    sim.world.faults.power_off_fails = true;
    sim.run_for(20_000);

    assert_eq!(promotions(&sim), 0, "{:?}", verbs(&sim.actions));
    let failed = sim
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::FenceFailed { .. }))
        .unwrap();
    assert_eq!(failed.vm.as_deref(), Some("s1-a"));
    for part in [
        "timed out",
        "virsh destroy: failed to connect",
        "no promotion",
        "s1-b",
    ] {
        assert!(
            failed.reason.contains(part),
            "{part:?} missing in {}",
            failed.reason
        );
    }
    assert_eq!(sim.world.vm("s1-b").role, HaState::Standby);
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-a"));
    // Fencing is retried after the backoff, not in a tight loop.
    let power_offs: Vec<u64> = sim
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::FenceFailed { .. }))
        .map(|e| e.at_ms)
        .collect();
    assert!(
        power_offs.len() >= 2 && power_offs.len() <= 4,
        "{power_offs:?}"
    );
    for w in power_offs.windows(2) {
        assert!(w[1] - w[0] >= sim.cfg.retry_backoff_ms);
    }

    // Once the driver works again, the next attempt fences and promotes.
    sim.world.faults.power_off_fails = false;
    sim.run_for(15_000);
    assert_eq!(sim.world.actives("s1"), vec!["s1-b".to_string()]);
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-b"));
}

#[test]
fn both_namenodes_down_promotes_nobody_until_one_rejoins_as_standby() {
    let mut sim = started();
    sim.world.vm_mut("s1-a").running = false;
    sim.world.vm_mut("s1-b").running = false;
    sim.run_for(30_000);

    let no_promo = sim
        .events
        .iter()
        .find(|e| e.kind == EventKind::NoPromotion)
        .unwrap();
    assert!(
        no_promo.reason.contains("both namenodes"),
        "{}",
        no_promo.reason
    );
    // Both were restarted (on distinct hosts), and only after both were seen again as
    // standbys was one of them promoted.
    let restarts: Vec<&Action> = sim
        .actions
        .iter()
        .filter(|a| matches!(a.kind, ActionKind::RestartVm { .. }))
        .collect();
    assert_eq!(restarts.len(), 2, "{:?}", verbs(&sim.actions));
    let first_promotion = sim
        .actions
        .iter()
        .position(|a| matches!(a.kind, ActionKind::TransitionToActive { .. }))
        .unwrap();
    let promo_cause = sim.actions[first_promotion].cause;
    let rejoined_before = sim
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Rejoined && e.seq < promo_cause)
        .count();
    assert!(rejoined_before >= 1);
    assert_eq!(promotions(&sim), 1);
    // The configured preference decides between two equal standbys.
    assert_eq!(sim.world.actives("s1"), vec!["s1-a".to_string()]);
    let serving = sim.world.serving("s1");
    assert_eq!(serving.len(), 2);
    assert_ne!(serving[0].2, serving[1].2, "anti-affinity: {serving:?}");
}

#[test]
fn paused_active_whose_fence_fails_stays_the_only_active_when_it_resumes() {
    let mut sim = started();
    sim.world.vm_mut("s1-a").paused = true;
    sim.world.faults.power_off_fails = true;
    sim.run_for(4000);
    assert!(sim.has_event(|e| matches!(e.kind, EventKind::FenceFailed { .. })));
    sim.world.vm_mut("s1-a").paused = false;
    sim.world.faults.power_off_fails = false;
    sim.run_for(20_000);

    assert_eq!(promotions(&sim), 0, "{:?}", verbs(&sim.actions));
    assert!(sim.has_event(|e| e.kind == EventKind::NamenodeUp));
    assert_eq!(sim.world.actives("s1"), vec!["s1-a".to_string()]);
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-a"));
}

#[test]
fn paused_active_that_resumes_after_the_failover_is_fenced() {
    let mut sim = started();
    // SIGSTOP: probes time out. The driver reports the power-off done without doing it and
    // cannot restart the VM, so the old process is still there, paused, with its Active role.
    sim.world.vm_mut("s1-a").paused = true;
    sim.world.faults.power_off_lies = true;
    sim.world.faults.restart_fails = true;
    sim.allow_world_two_actives = true;
    sim.run_for(5000);
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-b"));
    assert_eq!(promotions(&sim), 1);

    // SIGCONT: it answers as Active again.
    sim.world.vm_mut("s1-a").paused = false;
    sim.run_for(3000);
    let two = sim
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::TwoActives { .. }))
        .unwrap();
    assert_eq!(
        two.kind,
        EventKind::TwoActives {
            active: "s1-b".into(),
            other: "s1-a".into()
        }
    );
    // Fenced gracefully (it answers now); the promoted one stays active; nobody else promoted.
    let after: Vec<_> = verbs(&sim.actions)
        .into_iter()
        .filter(|(verb, _)| *verb != "restart")
        .collect();
    assert_eq!(
        after,
        vec![
            v("standby", "s1-a"),
            v("power-off", "s1-a"),
            v("active", "s1-b"),
            v("standby", "s1-a"),
        ]
    );
    assert_eq!(sim.world.actives("s1"), vec!["s1-b".to_string()]);
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-b"));
    sim.allow_world_two_actives = false;
    sim.world.faults = Default::default();
    sim.run_for(30_000);
    assert_eq!(promotions(&sim), 1);
    assert_eq!(sim.world.actives("s1"), vec!["s1-b".to_string()]);
}

#[test]
fn two_actives_at_start_fence_the_one_seen_second() {
    let spec = one_site();
    let mut world = World::from_spec(&spec);
    world.vm_mut("s1-b").role = HaState::Active;
    let mut sim = Sim::new(&spec, world);
    sim.allow_world_two_actives = true;
    sim.run_for(3000);
    assert_eq!(verbs(&sim.actions), vec![v("standby", "s1-b")]);
    assert_eq!(sim.world.actives("s1"), vec!["s1-a".to_string()]);
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-a"));
}

#[test]
fn cooldown_holds_a_second_failover_unless_the_host_is_dead() {
    let mut sim = started();
    sim.world.vm_mut("s1-a").running = false;
    sim.run_for(12_000);
    let promoted_at = sim
        .events
        .iter()
        .find(|e| e.kind == EventKind::Promoted)
        .unwrap()
        .at_ms;
    assert!(sim.has_event(|e| e.kind == EventKind::Rejoined));

    // The new active fails within the window while its host is fine: held.
    sim.world.vm_mut("s1-b").partitioned = true;
    sim.run_for(10_000);
    let holds: Vec<&Event> = sim
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::CooldownHold { .. }))
        .collect();
    assert_eq!(holds.len(), 1, "one event per hold");
    assert_eq!(
        holds[0].kind,
        EventKind::CooldownHold {
            until_ms: promoted_at + sim.cfg.cooldown_ms
        }
    );
    assert_eq!(promotions(&sim), 1);

    // Still down when the window ends: the failover proceeds then, not before.
    sim.run_until(promoted_at + sim.cfg.cooldown_ms + 5000);
    let fence_back = sim
        .events
        .iter()
        .filter(|e| {
            e.kind
                == EventKind::FenceStarted {
                    purpose: FencePurpose::Failover,
                }
        })
        .nth(1)
        .unwrap();
    assert!(fence_back.at_ms >= promoted_at + sim.cfg.cooldown_ms);
    assert_eq!(sim.world.actives("s1"), vec!["s1-a".to_string()]);

    // A dead host is not a flap: within the new window, losing s1-a's host fails over at once.
    let t = sim.now;
    let host = sim.world.vm("s1-a").host.clone();
    sim.world.kill_host(&host);
    sim.run_for(4000);
    assert!(sim.now - t < sim.cfg.cooldown_ms);
    assert_eq!(promotions(&sim), 3);
    assert_eq!(sim.world.actives("s1"), vec!["s1-b".to_string()]);
}

#[test]
fn an_unhealthy_standby_is_not_promoted_until_healthy() {
    let mut sim = started();
    sim.world.vm_mut("s1-b").healthy = false;
    sim.world.faults.restart_fails = true;
    sim.world.vm_mut("s1-a").running = false;
    sim.run_for(10_000);
    assert_eq!(promotions(&sim), 0);
    let no_promo = sim
        .events
        .iter()
        .find(|e| e.kind == EventKind::NoPromotion)
        .unwrap();
    assert!(no_promo.reason.contains("s1-b"), "{}", no_promo.reason);

    sim.world.vm_mut("s1-b").healthy = true;
    sim.world.faults.restart_fails = false;
    sim.run_for(10_000);
    assert_eq!(promotions(&sim), 1);
    assert_eq!(sim.world.actives("s1"), vec!["s1-b".to_string()]);
}

#[test]
fn no_promotion_before_the_peer_role_is_known() {
    // s1-b is the real active but s1-a (a standby) answers first in every probe round: s1-a
    // must not be promoted while s1-b's role is unknown.
    let spec = one_site();
    let mut world = World::from_spec(&spec);
    world.vm_mut("s1-a").role = HaState::Standby;
    world.vm_mut("s1-b").role = HaState::Active;
    let mut sim = Sim::new(&spec, world);
    sim.run_for(5000);
    assert!(sim.actions.is_empty(), "{:?}", verbs(&sim.actions));
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-b"));
}

#[test]
fn a_promotion_whose_answer_is_lost_counts_as_possibly_active() {
    // The switchover's transitionToActive works but the driver reports a timeout: the old
    // active (a healthy standby now) must not be promoted back while the new one may be active.
    let mut sim = started();
    sim.world.faults.promote_answer_lost = true;
    sim.switchover("s1");
    sim.run_for(10_000);
    assert!(sim.has_event(|e| matches!(e.kind, EventKind::PromoteFailed { .. })));
    assert_eq!(promotions(&sim), 1, "{:?}", verbs(&sim.actions));
    assert_eq!(sim.world.actives("s1"), vec!["s1-b".to_string()]);
    // Its next probe shows it active: adopted.
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-b"));
}

#[test]
fn a_possibly_active_namenode_that_vanishes_is_fenced_before_its_peer_is_promoted() {
    // The promotion works but its answer is lost, and the new active then becomes unreachable
    // (it still runs, as Active): it must be fenced before the old one is promoted back.
    let mut sim = started();
    sim.world.faults.promote_answer_lost = true;
    // Between two probe rounds (every 500 ms from 50 ms), so that no probe sees it active.
    sim.run_for(100);
    sim.switchover("s1");
    sim.run_for(50);
    assert!(matches!(
        sim.site_state("s1").workflow,
        state::Workflow::Promoting { .. }
    ));
    assert_eq!(sim.world.vm("s1-b").role, HaState::Active);
    sim.world.vm_mut("s1-b").partitioned = true;
    sim.run_for(20_000);
    let fence = sim
        .events
        .iter()
        .find(|e| {
            e.kind
                == EventKind::FenceStarted {
                    purpose: FencePurpose::UnknownRole,
                }
        })
        .unwrap();
    assert_eq!(fence.vm.as_deref(), Some("s1-b"));
    let after: Vec<_> = verbs(&sim.actions)
        .into_iter()
        .filter(|(verb, _)| *verb != "restart")
        .collect();
    assert_eq!(
        after,
        vec![
            v("standby", "s1-a"),
            v("active", "s1-b"),
            v("standby", "s1-b"),
            v("power-off", "s1-b"),
            v("active", "s1-a"),
        ]
    );
    assert_eq!(sim.world.actives("s1"), vec!["s1-a".to_string()]);
}
