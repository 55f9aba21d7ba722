//! Recording probe results: failure counting (k consecutive failures declare a host or a
//! namenode down), role evidence, and adopting an active the machine sees. No decision to act
//! is taken here; [`super::rules`] does that once the input is recorded.

use super::config::FailoverConfig;
use super::events::EventKind;
use super::io::{HaState, NnProbe};
use super::machine::Tx;
use super::state::{HostState, Observation, RestartPhase, SiteState, Slot, Workflow};

pub(crate) fn host_probe(
    cfg: &FailoverConfig,
    hosts: &mut [HostState],
    sites: &mut [SiteState],
    tx: &mut Tx<'_>,
    host: &str,
    alive: bool,
) {
    let Some(h) = hosts.iter_mut().find(|h| h.name == host) else {
        tx.event(
            "",
            None,
            EventKind::Ignored,
            format!("probe result for unknown host {host:?} ignored"),
        );
        return;
    };
    h.last_probe_ms = Some(tx.now);
    if alive {
        h.failures = 0;
        h.seen_alive = true;
        if h.down {
            h.down = false;
            tx.event(
                "",
                None,
                EventKind::HostUp {
                    host: host.to_string(),
                },
                format!("host {host} answers again"),
            );
        }
        return;
    }
    h.failures = h.failures.saturating_add(1);
    if h.down || h.failures < cfg.failure_threshold {
        return;
    }
    h.down = true;
    let failures = h.failures;
    tx.event(
        "",
        None,
        EventKind::HostDown {
            host: host.to_string(),
        },
        format!("host {host} is down after {failures} consecutive failed probes"),
    );
    // A host failure means every VM on it, without waiting for each namenode's own probes.
    for site in sites.iter_mut() {
        for slot in Slot::BOTH {
            let nn = site.nn_mut(slot);
            match nn.restart {
                // The driver is moving it; its answer decides.
                Some(RestartPhase::Restarting { .. }) => continue,
                Some(RestartPhase::Rejoining { .. }) if nn.host == host => nn.restart = None,
                _ => {}
            }
            if nn.host != host || nn.down {
                continue;
            }
            nn.down = true;
            let vm = nn.vm.clone();
            let nn_failures = nn.failures;
            tx.event(
                &site.name,
                Some(&vm),
                EventKind::NamenodeDown {
                    failures: nn_failures,
                },
                format!("{vm} is down: its host {host} is down"),
            );
        }
    }
}

pub(crate) fn nn_probe(
    cfg: &FailoverConfig,
    sites: &mut [SiteState],
    tx: &mut Tx<'_>,
    vm: &str,
    result: NnProbe,
) {
    let Some((site, slot)) = sites
        .iter_mut()
        .find_map(|s| s.slot_of(vm).map(|slot| (s, slot)))
    else {
        tx.event(
            "",
            None,
            EventKind::Ignored,
            format!("probe result for unknown namenode VM {vm:?} ignored"),
        );
        return;
    };
    let site_name = site.name.clone();
    let (now, mark) = (tx.now, tx.mark);
    let nn = site.nn_mut(slot);
    let (ok, answered, problem) = match &result {
        NnProbe::Answered { state, healthy } => {
            nn.last_answer = Some(Observation {
                at_ms: now,
                state: *state,
                healthy: *healthy,
            });
            match state {
                HaState::Active => nn.active_mark = Some(mark),
                HaState::Standby => nn.standby_mark = Some(mark),
                HaState::Initializing | HaState::Unknown => {}
            }
            let ok = *healthy && *state != HaState::Unknown;
            let problem = if !*healthy {
                "monitorHealth failed".to_string()
            } else {
                format!("answered with HA state {state:?}")
            };
            (ok, Some((*state, *healthy)), problem)
        }
        NnProbe::Failed { error } => {
            nn.last_error = Some(error.clone());
            (false, None, error.clone())
        }
    };

    if ok {
        nn.failures = 0;
        let rejoining = matches!(nn.restart, Some(RestartPhase::Rejoining { .. }));
        // Rejoined once it has a role. A restarted namenode comes up standby; one that
        // comes up Active is still out of its restart, and the two-actives rule handles it.
        let role = answered.map(|(state, _)| state);
        if rejoining && matches!(role, Some(HaState::Standby | HaState::Active)) {
            nn.restart = None;
            nn.down = false;
            tx.event(
                &site_name,
                Some(vm),
                EventKind::Rejoined,
                format!(
                    "{vm} answers again, healthy, as {:?}",
                    role.unwrap_or(HaState::Unknown)
                ),
            );
        } else if nn.down && nn.restart.is_none() {
            nn.down = false;
            tx.event(
                &site_name,
                Some(vm),
                EventKind::NamenodeUp,
                format!("{vm} answers again"),
            );
        }
    } else if nn.restart.is_none() {
        // A VM being restarted or booting is expected not to answer; its deadline covers it.
        nn.failures = nn.failures.saturating_add(1);
        if !nn.down && nn.failures >= cfg.failure_threshold {
            nn.down = true;
            let failures = nn.failures;
            tx.event(
                &site_name,
                Some(vm),
                EventKind::NamenodeDown { failures },
                format!(
                    "{vm} is down after {failures} consecutive failed probes (last: {problem})"
                ),
            );
        }
    }

    match answered {
        // Adopt only when nothing is in flight: a namenode being fenced that answers Active
        // is the fence's business, and during a promotion the promoted one wins.
        Some((HaState::Active, _)) if site.active.is_none() && site.workflow == Workflow::Idle => {
            site.active = Some(slot);
            tx.event(
                &site_name,
                Some(vm),
                EventKind::ActiveObserved,
                format!("{vm} reports Active; the site had no known active: adopted"),
            );
        }
        Some((HaState::Standby, _)) if site.active == Some(slot) => {
            site.active = None;
            tx.event(
                &site_name,
                Some(vm),
                EventKind::ActiveLost,
                format!("{vm}, the active, now reports Standby: the site has no active"),
            );
        }
        _ => {}
    }
}
