//! A monitor restart at every single input of a failover (state serialised, deserialised,
//! resumed; answers in flight lost) ends in the same place as the run without a restart.

use super::world::{Faults, World};
use super::*;

/// What a run ends with: per site, the world's actives and serving namenodes, and the
/// machine's active.
type Ending = Vec<(Vec<String>, Vec<(String, HaState, String)>, Option<String>)>;

fn outcome(sim: &Sim) -> Ending {
    sim.world
        .sites()
        .iter()
        .map(|s| {
            (
                sim.world.actives(s),
                sim.world.serving(s),
                sim.machine_active(s),
            )
        })
        .collect()
}

/// Runs `fault` after 2 s, then 60 s more, restarting the monitor before input `restart_at`.
/// Returns the outcome and the input numbers at the fault and at the end of the failover (the
/// last action's input).
fn run(
    spec: &ClusterSpec,
    faults: &Faults,
    fault: &dyn Fn(&mut Sim),
    restart_at: Option<usize>,
) -> (Ending, usize, usize, Sim) {
    let mut world = World::from_spec(spec);
    world.faults = faults.clone();
    let mut sim = Sim::new(spec, world);
    sim.restart_before_input = restart_at;
    sim.run_for(2000);
    let at_fault = sim.inputs;
    fault(&mut sim);
    let mut last_action_input = at_fault;
    let mut seen_actions = sim.actions.len();
    for _ in 0..600 {
        sim.run_for(100);
        if sim.actions.len() != seen_actions {
            seen_actions = sim.actions.len();
            last_action_input = sim.inputs;
        }
    }
    (outcome(&sim), at_fault, last_action_input, sim)
}

fn restart_everywhere(spec: &ClusterSpec, faults: Faults, fault: &dyn Fn(&mut Sim)) {
    let (baseline, from, to, base) = run(spec, &faults, fault, None);
    assert!(to > from, "the fault caused no action");
    // The baseline itself must be a finished failover: one active per site, both serving.
    for (actives, serving, active) in &baseline {
        assert_eq!(actives.len(), 1, "{baseline:?}");
        assert_eq!(serving.len(), 2, "{baseline:?}");
        assert_eq!(active.as_ref(), actives.first());
    }
    let mut resumed_mid_action = 0;
    for i in from..=to + 1 {
        let (got, _, _, sim) = run(spec, &faults, fault, Some(i));
        assert_eq!(
            got,
            baseline,
            "restart before input {i} changed the outcome\nbaseline actions: {:?}\nthis run: {:?}",
            verbs(&base.actions),
            verbs(&sim.actions)
        );
        if sim.has_event(|e| e.kind == EventKind::Resumed) {
            resumed_mid_action += 1;
        }
    }
    // The loop did cover restarts in the middle of fences, promotions and restarts.
    assert!(resumed_mid_action > 0);
}

#[test]
fn monitor_restart_at_every_step_of_a_host_failure() {
    let spec = spec(
        3,
        &[
            ("s1", ("s1-a", "h1"), ("s1-b", "h2")),
            ("s2", ("s2-a", "h1"), ("s2-b", "h3")),
        ],
    );
    restart_everywhere(&spec, Faults::default(), &|sim: &mut Sim| {
        sim.world.kill_host("h1")
    });
}

#[test]
fn monitor_restart_at_every_step_of_a_partition_failover() {
    restart_everywhere(&one_site(), Faults::default(), &|sim: &mut Sim| {
        sim.world.vm_mut("s1-a").partitioned = true
    });
}

#[test]
fn monitor_restart_at_every_step_of_a_switchover_with_failing_graceful_step() {
    let faults = Faults {
        graceful_fails: true,
        ..Faults::default()
    };
    restart_everywhere(&one_site(), faults, &|sim: &mut Sim| sim.switchover("s1"));
}

/// A saved state in the middle of a promotion whose peer meanwhile showed Active again: the
/// resumed machine must not re-issue the promotion.
#[test]
fn resume_never_promotes_blindly() {
    let mut sim = started();
    sim.world.vm_mut("s1-a").running = false;
    // Run until the promotion is in flight.
    while !matches!(
        sim.site_state("s1").workflow,
        state::Workflow::Promoting { .. }
    ) {
        sim.run_for(50);
        assert!(sim.now < 10_000, "no promotion started");
    }
    let mut saved = sim.m.state().clone();
    let mark = saved.counters.mark + 1;
    saved.counters.mark = mark;
    saved.sites[0].first.active_mark = Some(mark);
    let (_, out) = Machine::resume(FailoverConfig::default(), saved, sim.now).unwrap();
    assert!(
        out.actions
            .iter()
            .all(|a| !matches!(a.kind, ActionKind::TransitionToActive { .. }))
    );
    assert!(out.events.iter().any(|e| e.kind == EventKind::Abandoned));

    // The same state, untouched, re-issues the promotion under a new id.
    let saved = sim.m.state().clone();
    let (_, out) = Machine::resume(FailoverConfig::default(), saved, sim.now).unwrap();
    let reissued: Vec<&Action> = out.actions.iter().collect();
    assert_eq!(reissued.len(), 1);
    assert!(matches!(
        reissued[0].kind,
        ActionKind::TransitionToActive { .. }
    ));
    assert!(sim.actions.iter().all(|a| a.id != reissued[0].id));
}

/// A saved state whose host list was edited below three hosts is refused on resume.
#[test]
fn resume_refuses_a_state_with_too_few_hosts() {
    let sim = started();
    let mut saved = sim.m.state().clone();
    saved.hosts.pop();
    assert!(matches!(
        Machine::resume(FailoverConfig::default(), saved, sim.now),
        Err(SetupError::Model(ModelError::TooFewHosts { found: 2 }))
    ));
}
