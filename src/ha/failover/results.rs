//! Answers to the actions the machine asked for (and their deadlines, and re-issuing them after
//! a monitor restart). A fence is confirmed only by an `Ok` answer: a timeout is a failure.

use super::config::FailoverConfig;
use super::events::{EventKind, FenceMethod, FencePurpose};
use super::io::{ActionKind, Outcome};
use super::machine::Tx;
use super::rules::{describe, start_promote};
use super::state::{Evidence, FenceStep, RestartPhase, SiteState, Slot, Workflow};

fn error_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok => "ok".to_string(),
        Outcome::Failed { error } => error.clone(),
        Outcome::TimedOut => "timed out".to_string(),
    }
}

pub(crate) fn action_result(
    cfg: &FailoverConfig,
    sites: &mut [SiteState],
    tx: &mut Tx<'_>,
    id: u64,
    outcome: Outcome,
) {
    for site in sites.iter_mut() {
        match site.workflow {
            Workflow::Fencing { action, .. } if action == id => {
                return fence_result(cfg, site, tx, outcome);
            }
            Workflow::Promoting { action, .. } if action == id => {
                return promote_result(site, tx, outcome);
            }
            _ => {}
        }
        for s in Slot::BOTH {
            if matches!(site.nn(s).restart, Some(RestartPhase::Restarting { action, .. }) if action == id)
            {
                return restart_result(cfg, site, s, tx, outcome);
            }
        }
    }
    tx.event(
        "",
        None,
        EventKind::Ignored,
        format!(
            "answer to action {id} ({}) ignored: it is not in flight (timed out, or issued \
             before a monitor restart)",
            error_text(&outcome)
        ),
    );
}

fn fence_result(cfg: &FailoverConfig, site: &mut SiteState, tx: &mut Tx<'_>, outcome: Outcome) {
    let Workflow::Fencing {
        target,
        purpose,
        step,
        graceful_error,
        ..
    } = site.workflow.clone()
    else {
        return;
    };
    let vm = site.nn(target).vm.clone();
    let host = site.nn(target).host.clone();
    match (step, &outcome) {
        (_, Outcome::Ok) => fence_confirmed(cfg, site, target, purpose, step, tx),
        (FenceStep::Graceful, _) => {
            let error = error_text(&outcome);
            let cause = tx.event(
                &site.name,
                Some(&vm),
                EventKind::GracefulFenceFailed {
                    error: error.clone(),
                },
                format!("transitionToStandby of {vm} failed ({error}): powering it off"),
            );
            let action = tx.action(cause, &site.name, &vm, ActionKind::PowerOff { host });
            site.workflow = Workflow::Fencing {
                target,
                purpose,
                step: FenceStep::PowerOff,
                graceful_error: Some(error),
                action,
                deadline_ms: tx.now.saturating_add(cfg.power_off_timeout_ms),
            };
        }
        (FenceStep::PowerOff, _) => {
            let error = format!(
                "graceful: {}; power-off: {}",
                graceful_error.as_deref().unwrap_or("not tried"),
                error_text(&outcome)
            );
            let peer = site.nn(target.other()).vm.clone();
            let consequence = if purpose == FencePurpose::SplitBrain {
                "it may go on acting as a second active until a fence succeeds".to_string()
            } else {
                format!("no promotion: {peer} is not promoted, since {vm} may still be active")
            };
            tx.event(
                &site.name,
                Some(&vm),
                EventKind::FenceFailed {
                    error: error.clone(),
                },
                format!(
                    "{vm} could not be fenced ({error}); {consequence}; retrying in {} ms",
                    cfg.retry_backoff_ms
                ),
            );
            site.last_fence_failure_ms = Some(tx.now);
            site.workflow = Workflow::Idle;
        }
    }
}

fn fence_confirmed(
    cfg: &FailoverConfig,
    site: &mut SiteState,
    target: Slot,
    purpose: FencePurpose,
    step: FenceStep,
    tx: &mut Tx<'_>,
) {
    let mark = tx.mark;
    let nn = site.nn_mut(target);
    nn.fenced_mark = Some(mark);
    let method = match step {
        FenceStep::Graceful => {
            // It said so itself: it runs on, as standby.
            nn.standby_mark = Some(mark);
            FenceMethod::Graceful
        }
        FenceStep::PowerOff => {
            // Off: down until restarted (rule 4 restarts it elsewhere if need be).
            nn.down = true;
            FenceMethod::PowerOff
        }
    };
    let vm = nn.vm.clone();
    if site.active == Some(target) {
        site.active = None;
    }
    site.workflow = Workflow::Idle;
    let how = match method {
        FenceMethod::Graceful => "it is standby now",
        FenceMethod::PowerOff => "its VM is off",
    };
    tx.event(
        &site.name,
        Some(&vm),
        EventKind::FenceConfirmed { method },
        format!("{vm} is fenced: {how}"),
    );
    if purpose == FencePurpose::SplitBrain || site.active.is_some() {
        return;
    }
    let peer = target.other();
    let peer_vm = site.nn(peer).vm.clone();
    if site.can_promote(peer) {
        let cause = tx.event(
            &site.name,
            Some(&peer_vm),
            EventKind::PromoteStarted,
            format!("{vm} is fenced and {peer_vm} is a healthy standby: promoting {peer_vm}"),
        );
        start_promote(cfg, site, peer, cause, tx);
    } else {
        let both = if site.nn(peer).down {
            " (both namenodes of the site are down: restarting them)"
        } else {
            ""
        };
        tx.event(
            &site.name,
            Some(&peer_vm),
            EventKind::NoPromotion,
            format!(
                "{vm} is fenced but {peer_vm} cannot be promoted: {}{both}; the site has no \
                 active until a namenode is a healthy standby",
                describe(site.nn(peer))
            ),
        );
    }
}

fn promote_result(site: &mut SiteState, tx: &mut Tx<'_>, outcome: Outcome) {
    let Workflow::Promoting { target, .. } = site.workflow else {
        return;
    };
    let (now, mark) = (tx.now, tx.mark);
    site.workflow = Workflow::Idle;
    let nn = site.nn_mut(target);
    // Either way it may be active now: until it reports standby or is fenced, its peer must
    // not be promoted.
    nn.active_mark = Some(mark);
    let vm = nn.vm.clone();
    match outcome {
        Outcome::Ok => {
            nn.promote_failures = 0;
            site.active = Some(target);
            site.last_promotion_ms = Some(now);
            site.cooldown_noted = false;
            tx.event(
                &site.name,
                Some(&vm),
                EventKind::Promoted,
                format!("{vm} is active"),
            );
        }
        Outcome::Failed { .. } | Outcome::TimedOut => {
            nn.promote_failures = nn.promote_failures.saturating_add(1);
            nn.last_promote_failure_ms = Some(now);
            let error = error_text(&outcome);
            tx.event(
                &site.name,
                Some(&vm),
                EventKind::PromoteFailed {
                    error: error.clone(),
                },
                format!(
                    "transitionToActive of {vm} failed ({error}); it counts as possibly active \
                     until it reports standby or is fenced"
                ),
            );
        }
    }
}

fn restart_result(
    cfg: &FailoverConfig,
    site: &mut SiteState,
    s: Slot,
    tx: &mut Tx<'_>,
    outcome: Outcome,
) {
    let now = tx.now;
    let nn = site.nn_mut(s);
    let Some(RestartPhase::Restarting { host, .. }) = nn.restart.clone() else {
        return;
    };
    let vm = nn.vm.clone();
    match outcome {
        Outcome::Ok => {
            nn.host = host.clone();
            nn.down = false;
            nn.failures = 0;
            nn.restart = Some(RestartPhase::Rejoining {
                deadline_ms: now.saturating_add(cfg.rejoin_timeout_ms),
            });
            tx.event(
                &site.name,
                Some(&vm),
                EventKind::Restarted { host: host.clone() },
                format!("{vm} runs on {host} again; waiting for it to rejoin as standby"),
            );
        }
        Outcome::Failed { .. } | Outcome::TimedOut => {
            nn.restart = None;
            let error = error_text(&outcome);
            tx.event(
                &site.name,
                Some(&vm),
                EventKind::RestartFailed {
                    error: error.clone(),
                },
                format!(
                    "restart of {vm} on {host} failed ({error}); retrying in {} ms",
                    cfg.retry_backoff_ms
                ),
            );
        }
    }
}

/// Overdue actions count as timed out; a restarted VM that never rejoined is down again.
pub(crate) fn expire(cfg: &FailoverConfig, sites: &mut [SiteState], tx: &mut Tx<'_>) {
    let now = tx.now;
    for site in sites.iter_mut() {
        match site.workflow {
            Workflow::Fencing { deadline_ms, .. } if now >= deadline_ms => {
                fence_result(cfg, site, tx, Outcome::TimedOut)
            }
            Workflow::Promoting { deadline_ms, .. } if now >= deadline_ms => {
                promote_result(site, tx, Outcome::TimedOut)
            }
            _ => {}
        }
        for s in Slot::BOTH {
            match site.nn(s).restart {
                Some(RestartPhase::Restarting { deadline_ms, .. }) if now >= deadline_ms => {
                    restart_result(cfg, site, s, tx, Outcome::TimedOut)
                }
                Some(RestartPhase::Rejoining { deadline_ms }) if now >= deadline_ms => {
                    let nn = site.nn_mut(s);
                    nn.restart = None;
                    nn.down = true;
                    let vm = nn.vm.clone();
                    tx.event(
                        &site.name,
                        Some(&vm),
                        EventKind::RejoinTimedOut,
                        format!(
                            "{vm} did not answer as a healthy standby within {} ms of its restart",
                            cfg.rejoin_timeout_ms
                        ),
                    );
                }
                _ => {}
            }
        }
    }
}

/// After a monitor restart: the answers to in-flight actions died with the old process, so
/// each is issued again under a new id (the old id's late answer, if any, is ignored).
pub(crate) fn reissue(cfg: &FailoverConfig, site: &mut SiteState, tx: &mut Tx<'_>) {
    match site.workflow.clone() {
        Workflow::Idle => {}
        Workflow::Fencing {
            target,
            purpose,
            step,
            graceful_error,
            ..
        } => {
            let nn = site.nn(target);
            let (vm, host) = (nn.vm.clone(), nn.host.clone());
            let (kind, wait, what) = match step {
                FenceStep::Graceful => (
                    ActionKind::TransitionToStandby {
                        timeout_ms: cfg.graceful_fence_timeout_ms,
                    },
                    cfg.answer_deadline(cfg.graceful_fence_timeout_ms),
                    "transitionToStandby",
                ),
                FenceStep::PowerOff => (
                    ActionKind::PowerOff { host },
                    cfg.power_off_timeout_ms,
                    "power-off",
                ),
            };
            let cause = tx.event(
                &site.name,
                Some(&vm),
                EventKind::Resumed,
                format!("monitor restarted while fencing {vm}: issuing its {what} again"),
            );
            let action = tx.action(cause, &site.name, &vm, kind);
            site.workflow = Workflow::Fencing {
                target,
                purpose,
                step,
                graceful_error,
                action,
                deadline_ms: tx.now.saturating_add(wait),
            };
        }
        Workflow::Promoting { target, .. } => {
            let (vm, peer) = (site.nn(target).vm.clone(), site.nn(target.other()));
            if peer.evidence() == Evidence::Safe && !site.nn(target).down {
                let cause = tx.event(
                    &site.name,
                    Some(&vm),
                    EventKind::Resumed,
                    format!(
                        "monitor restarted while promoting {vm}; {} is still fenced or \
                         standby: issuing transitionToActive again",
                        peer.vm
                    ),
                );
                start_promote(cfg, site, target, cause, tx);
            } else {
                let why = format!(
                    "monitor restarted while promoting {vm}, but {} is no longer known to be \
                     fenced or standby, or {vm} is down: promotion abandoned",
                    peer.vm
                );
                site.workflow = Workflow::Idle;
                // The lost transitionToActive may have worked: like a failed promotion, the
                // target counts as possibly active until it reports standby or is fenced.
                site.nn_mut(target).active_mark = Some(tx.mark);
                tx.event(&site.name, Some(&vm), EventKind::Abandoned, why);
            }
        }
    }
    for s in Slot::BOTH {
        let Some(RestartPhase::Restarting { host, .. }) = site.nn(s).restart.clone() else {
            continue;
        };
        let vm = site.nn(s).vm.clone();
        let cause = tx.event(
            &site.name,
            Some(&vm),
            EventKind::Resumed,
            format!("monitor restarted while restarting {vm} on {host}: issuing it again"),
        );
        let action = tx.action(
            cause,
            &site.name,
            &vm,
            ActionKind::RestartVm {
                on_host: host.clone(),
            },
        );
        site.nn_mut(s).restart = Some(RestartPhase::Restarting {
            host,
            action,
            deadline_ms: tx.now.saturating_add(cfg.restart_timeout_ms),
        });
    }
}
