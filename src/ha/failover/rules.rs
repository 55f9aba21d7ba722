//! The decisions, re-evaluated after every input, per site, in this order:
//! 1. two actives: fence the one that is not the machine's active (no promotion follows);
//! 2. the active is down (or a down namenode's role is unknown): fence it, unless the cooldown
//!    holds a failover (see [`FailoverConfig::cooldown_ms`]);
//! 3. no active: promote a healthy standby whose peer is fenced or standby;
//! 4. when no fence or promotion is in flight, restart every down namenode that is known not
//!    to be active, on a live host other than its peer's (anti-affinity).
//!
//! Rules 1–3 start at most one fence or promotion per site at a time ([`Workflow`]).

use super::config::FailoverConfig;
use super::events::{EventKind, FencePurpose};
use super::io::ActionKind;
use super::machine::Tx;
use super::state::{
    Evidence, FenceStep, HostState, NnState, RestartPhase, SiteState, Slot, Workflow,
};
use std::collections::BTreeMap;

pub(crate) fn evaluate(
    cfg: &FailoverConfig,
    hosts: &[HostState],
    sites: &mut [SiteState],
    tx: &mut Tx<'_>,
) {
    let mut load = host_load(sites);
    for site in sites.iter_mut() {
        role_rules(cfg, hosts, site, tx);
        restart_rules(cfg, hosts, site, &mut load, tx);
    }
}

fn host_down(hosts: &[HostState], name: &str) -> bool {
    hosts.iter().any(|h| h.name == name && h.down)
}

fn after(t: Option<u64>, wait: u64, now: u64) -> bool {
    t.is_none_or(|t| now >= t.saturating_add(wait))
}

fn role_rules(cfg: &FailoverConfig, hosts: &[HostState], site: &mut SiteState, tx: &mut Tx<'_>) {
    if site.workflow != Workflow::Idle {
        return;
    }
    let now = tx.now;
    let may_fence = after(site.last_fence_failure_ms, cfg.retry_backoff_ms, now);

    // 1. Two actives.
    if let Some(a) = site.active {
        let o = a.other();
        if site.nn(o).evidence() == Evidence::Active {
            if may_fence {
                let (active, other) = (site.nn(a).vm.clone(), site.nn(o).vm.clone());
                let cause = tx.event(
                    &site.name,
                    Some(&other),
                    EventKind::TwoActives {
                        active: active.clone(),
                        other: other.clone(),
                    },
                    format!(
                        "{other} reports Active while {active} is the active: fencing {other}; \
                         {active} stays active"
                    ),
                );
                start_fence(cfg, hosts, site, o, FencePurpose::SplitBrain, cause, tx);
            }
            return;
        }
    }

    // 2. A down active, or a down namenode that might be an active we cannot reach.
    let target = match site.active {
        Some(a) if site.nn(a).down => Some((a, FencePurpose::Failover)),
        Some(_) | None => Slot::BOTH
            .into_iter()
            .find(|s| {
                let nn = site.nn(*s);
                site.active != Some(*s)
                    && nn.down
                    && nn.restart.is_none()
                    && nn.evidence() != Evidence::Safe
            })
            .map(|s| (s, FencePurpose::UnknownRole)),
    };
    if let Some((t, purpose)) = target {
        let host_dead = host_down(hosts, &site.nn(t).host);
        if purpose == FencePurpose::Failover
            && !host_dead
            && !after(site.last_promotion_ms, cfg.cooldown_ms, now)
        {
            if !site.cooldown_noted {
                site.cooldown_noted = true;
                let until_ms = site
                    .last_promotion_ms
                    .unwrap_or(now)
                    .saturating_add(cfg.cooldown_ms);
                let vm = site.nn(t).vm.clone();
                tx.event(
                    &site.name,
                    Some(&vm),
                    EventKind::CooldownHold { until_ms },
                    format!(
                        "{vm} is down, but the site failed over less than {} ms ago: holding \
                         the failover until {until_ms} (its host is alive, so this may be a flap)",
                        cfg.cooldown_ms
                    ),
                );
            }
            return;
        }
        if !may_fence {
            return;
        }
        site.cooldown_noted = false;
        let nn = site.nn(t);
        let vm = nn.vm.clone();
        let why = match purpose {
            FencePurpose::Failover => format!(
                "{vm}, the active, is down ({}): fencing it before promoting {}",
                describe(nn),
                site.nn(t.other()).vm
            ),
            _ => format!(
                "{vm} is down ({}) and was not seen standby or fenced since it was last \
                 active (or ever): fencing it, as it may be an active we cannot reach",
                describe(nn)
            ),
        };
        let cause = tx.event(
            &site.name,
            Some(&vm),
            EventKind::FenceStarted { purpose },
            why,
        );
        start_fence(cfg, hosts, site, t, purpose, cause, tx);
        return;
    }

    // 3. No active: promote a safe standby.
    if site.active.is_some() {
        return;
    }
    let may_promote = Slot::BOTH.into_iter().all(|s| {
        after(
            site.nn(s).last_promote_failure_ms,
            cfg.retry_backoff_ms,
            now,
        )
    });
    if !may_promote {
        return;
    }
    let pick = Slot::BOTH
        .into_iter()
        .filter(|s| site.can_promote(*s))
        .min_by_key(|s| (site.nn(*s).promote_failures, site.preferred != Some(*s), *s));
    if let Some(y) = pick {
        let (vm, peer) = (site.nn(y).vm.clone(), site.nn(y.other()).vm.clone());
        let cause = tx.event(
            &site.name,
            Some(&vm),
            EventKind::PromoteStarted,
            format!(
                "the site has no active; {vm} is a healthy standby and {peer} is fenced or \
                 standby: promoting {vm}"
            ),
        );
        start_promote(cfg, site, y, cause, tx);
    }
}

/// Why a namenode is not fine, for event texts.
pub(crate) fn describe(nn: &NnState) -> String {
    if nn.restart.is_some() {
        return "being restarted".to_string();
    }
    let answer = match &nn.last_answer {
        None => "never answered".to_string(),
        Some(o) if !o.healthy => format!("last answered {:?}, unhealthy", o.state),
        Some(o) => format!("last answered {:?}", o.state),
    };
    match (&nn.last_error, nn.down) {
        (Some(e), true) => format!(
            "down after {} failed probes, last error: {e}; {answer}",
            nn.failures
        ),
        (None, true) => format!("down; {answer}"),
        (_, false) => answer,
    }
}

/// Starts fencing `target`: gracefully, or straight by power-off when its host is down (the
/// RPC cannot reach it, and its timeout would only delay the failover).
pub(crate) fn start_fence(
    cfg: &FailoverConfig,
    hosts: &[HostState],
    site: &mut SiteState,
    target: Slot,
    purpose: FencePurpose,
    cause: u64,
    tx: &mut Tx<'_>,
) {
    let nn = site.nn(target);
    let (vm, host) = (nn.vm.clone(), nn.host.clone());
    let (step, kind, graceful_error, deadline) = if host_down(hosts, &host) {
        (
            FenceStep::PowerOff,
            ActionKind::PowerOff { host: host.clone() },
            Some(format!("host {host} is down, graceful step skipped")),
            cfg.power_off_timeout_ms,
        )
    } else {
        (
            FenceStep::Graceful,
            ActionKind::TransitionToStandby {
                timeout_ms: cfg.graceful_fence_timeout_ms,
            },
            None,
            cfg.answer_deadline(cfg.graceful_fence_timeout_ms),
        )
    };
    let action = tx.action(cause, &site.name, &vm, kind);
    site.workflow = Workflow::Fencing {
        target,
        purpose,
        step,
        graceful_error,
        action,
        deadline_ms: tx.now.saturating_add(deadline),
    };
}

pub(crate) fn start_promote(
    cfg: &FailoverConfig,
    site: &mut SiteState,
    target: Slot,
    cause: u64,
    tx: &mut Tx<'_>,
) {
    let vm = site.nn(target).vm.clone();
    let action = tx.action(
        cause,
        &site.name,
        &vm,
        ActionKind::TransitionToActive {
            timeout_ms: cfg.promote_timeout_ms,
        },
    );
    site.workflow = Workflow::Promoting {
        target,
        action,
        deadline_ms: tx
            .now
            .saturating_add(cfg.answer_deadline(cfg.promote_timeout_ms)),
    };
}

/// VMs per host, counting a VM being restarted on its destination.
fn host_load(sites: &[SiteState]) -> BTreeMap<String, usize> {
    let mut load = BTreeMap::new();
    for site in sites {
        for nn in [&site.first, &site.second] {
            *load.entry(placed_on(nn).to_string()).or_insert(0) += 1;
        }
    }
    load
}

fn placed_on(nn: &NnState) -> &str {
    match &nn.restart {
        Some(RestartPhase::Restarting { host, .. }) => host,
        _ => &nn.host,
    }
}

/// Where to restart a VM: a live host (seen alive, not down) other than its peer's. Its
/// current host if that qualifies (a restart in place keeps the layout), else the least loaded
/// one, ties broken by configuration order.
fn place<'h>(
    hosts: &'h [HostState],
    load: &BTreeMap<String, usize>,
    current: &str,
    peer: &str,
) -> Option<&'h str> {
    let candidates = hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.down && h.seen_alive && h.name != peer);
    if let Some((_, h)) = candidates.clone().find(|(_, h)| h.name == current) {
        return Some(&h.name);
    }
    candidates
        .min_by_key(|(i, h)| (load.get(&h.name).copied().unwrap_or(0), *i))
        .map(|(_, h)| h.name.as_str())
}

fn restart_rules(
    cfg: &FailoverConfig,
    hosts: &[HostState],
    site: &mut SiteState,
    load: &mut BTreeMap<String, usize>,
    tx: &mut Tx<'_>,
) {
    // Restarts wait for the site's fence or promotion to finish (FAILOVER, then FAILBACK):
    // the anti-affinity target depends on who the new active is.
    if site.workflow != Workflow::Idle {
        return;
    }
    for s in Slot::BOTH {
        let nn = site.nn(s);
        // Only a namenode known not to be active is restarted: a down active or one of
        // unknown role goes through a fence first (rule 2).
        if !nn.down
            || nn.restart.is_some()
            || site.active == Some(s)
            || nn.evidence() != Evidence::Safe
            || !after(nn.last_restart_attempt_ms, cfg.retry_backoff_ms, tx.now)
        {
            continue;
        }
        let vm = nn.vm.clone();
        let current = nn.host.clone();
        let peer = site.nn(s.other());
        let (peer_vm, peer_host) = (peer.vm.clone(), placed_on(peer).to_string());
        let dest = place(hosts, load, &current, &peer_host).map(str::to_string);
        let now = tx.now;
        let Some(dest) = dest else {
            site.nn_mut(s).last_restart_attempt_ms = Some(now);
            tx.event(
                &site.name,
                Some(&vm),
                EventKind::NoHostForRestart,
                format!(
                    "{vm} is down but no live host other than {peer_host} ({peer_vm}'s) is \
                     available: retrying in {} ms",
                    cfg.retry_backoff_ms
                ),
            );
            continue;
        };
        let cause = tx.event(
            &site.name,
            Some(&vm),
            EventKind::RestartStarted { host: dest.clone() },
            format!(
                "{vm} is down ({}) and not active: restarting it on {dest} (not on \
                 {peer_host}, where {peer_vm} runs)",
                describe(site.nn(s))
            ),
        );
        let action = tx.action(
            cause,
            &site.name,
            &vm,
            ActionKind::RestartVm {
                on_host: dest.clone(),
            },
        );
        if let Some(n) = load.get_mut(&current) {
            *n = n.saturating_sub(1);
        }
        *load.entry(dest.clone()).or_insert(0) += 1;
        let nn = site.nn_mut(s);
        nn.last_restart_attempt_ms = Some(now);
        nn.restart = Some(RestartPhase::Restarting {
            host: dest,
            action,
            deadline_ms: now.saturating_add(cfg.restart_timeout_ms),
        });
    }
}

/// `mifas ha switchover SITE`: graceful standby of the active, then promotion of the standby;
/// power-off only if the graceful step fails. Refused (with an event saying why) unless the
/// site is idle, has a live active and a promotable standby. Not held by the cooldown: an
/// operator asked for it.
pub(crate) fn switchover(
    cfg: &FailoverConfig,
    hosts: &[HostState],
    sites: &mut [SiteState],
    tx: &mut Tx<'_>,
    site_name: &str,
) {
    let Some(site) = sites.iter_mut().find(|s| s.name == site_name) else {
        tx.event(
            "",
            None,
            EventKind::SwitchoverRejected,
            format!("switchover of unknown site {site_name:?} refused"),
        );
        return;
    };
    let refusal = match site.active {
        _ if site.workflow != Workflow::Idle => {
            Some("a fence or promotion is in progress".to_string())
        }
        None => Some("the site has no known active namenode".to_string()),
        Some(a) if site.nn(a).down => Some(format!(
            "the active {} is down: the automatic failover handles it",
            site.nn(a).vm
        )),
        Some(a) if !site.nn(a.other()).promotable() => Some(format!(
            "the standby {} is not a healthy reachable standby ({})",
            site.nn(a.other()).vm,
            describe(site.nn(a.other()))
        )),
        Some(_) => None,
    };
    if let Some(why) = refusal {
        tx.event(
            &site.name,
            None,
            EventKind::SwitchoverRejected,
            format!("switchover of {site_name} refused: {why}"),
        );
        return;
    }
    let Some(a) = site.active else { return };
    let (vm, peer) = (site.nn(a).vm.clone(), site.nn(a.other()).vm.clone());
    let cause = tx.event(
        &site.name,
        Some(&vm),
        EventKind::SwitchoverStarted,
        format!("planned switchover: {vm} to standby, then {peer} to active"),
    );
    start_fence(cfg, hosts, site, a, FencePurpose::Switchover, cause, tx);
}
