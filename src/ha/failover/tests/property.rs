//! Random fault sequences (deterministic seeds) against the invariants, checked by [`Sim`] after
//! every input: every action is justified by an event about its VM; no promotion without the
//! peer fenced or seen standby since it was last active; never two actives in the world. After
//! the faults stop, every site must converge to one active and one standby on distinct hosts.

use super::world::World;
use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn perturb(sim: &mut Sim, rng: &mut StdRng) {
    for (name, alive) in sim.world.hosts.clone() {
        if alive && rng.random_bool(0.01) {
            sim.world.kill_host(&name);
        } else if !alive && rng.random_bool(0.1) {
            sim.world.revive_host(&name);
        }
    }
    for vm in &mut sim.world.vms {
        if vm.running && rng.random_bool(0.01) {
            vm.running = false;
        }
        if rng.random_bool(if vm.paused { 0.1 } else { 0.01 }) {
            vm.paused = !vm.paused;
        }
        if rng.random_bool(if vm.partitioned { 0.1 } else { 0.01 }) {
            vm.partitioned = !vm.partitioned;
        }
        if rng.random_bool(if vm.healthy { 0.01 } else { 0.1 }) {
            vm.healthy = !vm.healthy;
        }
    }
    let f = &mut sim.world.faults;
    for flag in [
        &mut f.graceful_fails,
        &mut f.power_off_fails,
        &mut f.promote_fails,
        &mut f.promote_answer_lost,
        &mut f.restart_fails,
    ] {
        if rng.random_bool(if *flag { 0.2 } else { 0.02 }) {
            *flag = !*flag;
        }
    }
}

fn heal(sim: &mut Sim) {
    for (name, _) in sim.world.hosts.clone() {
        sim.world.revive_host(&name);
    }
    for vm in &mut sim.world.vms {
        vm.paused = false;
        vm.partitioned = false;
        vm.healthy = true;
    }
    sim.world.faults = Default::default();
}

fn converged(sim: &Sim) -> Result<(), String> {
    for site in sim.world.sites() {
        let actives = sim.world.actives(&site);
        let serving = sim.world.serving(&site);
        if actives.len() != 1 {
            return Err(format!("{site}: actives {actives:?}"));
        }
        if serving.len() != 2 || serving.iter().filter(|s| s.1 == HaState::Standby).count() != 1 {
            return Err(format!("{site}: serving {serving:?}"));
        }
        if serving[0].2 == serving[1].2 {
            return Err(format!("{site}: both on one host {serving:?}"));
        }
        if sim.machine_active(&site).as_ref() != actives.first() {
            return Err(format!(
                "{site}: machine believes {:?}, world has {actives:?}",
                sim.machine_active(&site)
            ));
        }
    }
    Ok(())
}

#[test]
fn random_faults_keep_the_invariants_and_heal() {
    let spec = spec(
        4,
        &[
            ("s1", ("s1-a", "h1"), ("s1-b", "h2")),
            ("s2", ("s2-a", "h2"), ("s2-b", "h3")),
        ],
    );
    let mut promotions = 0;
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sim = Sim::new(&spec, World::from_spec(&spec));
        sim.run_for(2000);
        for _ in 0..240 {
            perturb(&mut sim, &mut rng);
            for site in ["s1", "s2"] {
                if rng.random_bool(0.02) {
                    sim.switchover(site);
                }
            }
            if rng.random_bool(0.02) {
                sim.restart_monitor();
            }
            sim.run_for(500);
        }
        heal(&mut sim);
        sim.run_for(300_000);
        if let Err(why) = converged(&sim) {
            let tail: Vec<String> = sim
                .events
                .iter()
                .rev()
                .take(25)
                .map(|e| format!("{} {:?} {:?}: {}", e.at_ms, e.vm, e.kind, e.reason))
                .collect();
            panic!("seed {seed} did not converge: {why}\n{}", tail.join("\n"));
        }
        promotions +=
            sim.count_actions(|a| matches!(a.kind, ActionKind::TransitionToActive { .. }));
    }
    // The faults did exercise failovers (else the invariants were checked on nothing).
    assert!(
        promotions > 200,
        "only {promotions} promotions over all seeds"
    );
}
