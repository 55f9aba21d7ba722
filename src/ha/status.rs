//! What the monitor shows: one snapshot ([`HaStatus`]) built after every step, read by
//! `mifas ha status` (over the control socket), the admin web page and `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::failover::state::{RestartPhase, Workflow};
use super::failover::{Event, EventKind, HaState, MachineState};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HaStatus {
    /// Whether a monitor process answered (false: read from its saved state).
    pub running: bool,
    pub hosts: Vec<HostStatus>,
    pub sites: Vec<SiteStatus>,
    /// The newest events, oldest first.
    pub events: Vec<Event>,
    /// Counts since this monitor process started, by event kind name.
    pub event_counts: BTreeMap<String, u64>,
    /// Per site: promotions, fence failures, restarts since the process started.
    pub site_counts: BTreeMap<String, SiteCounts>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SiteCounts {
    pub failovers: u64,
    pub fence_failures: u64,
    pub restarts: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostStatus {
    pub name: String,
    pub probe: String,
    pub up: bool,
    pub failures: u32,
    pub last_probe_ms: Option<u64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SiteStatus {
    pub name: String,
    pub active: Option<String>,
    /// idle, fencing VM (step, purpose), promoting VM.
    pub workflow: String,
    pub namenodes: Vec<NnStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NnStatus {
    pub vm: String,
    pub host: String,
    pub rpc: String,
    pub http: Option<String>,
    /// active, standby, initializing, unknown; "down" when declared down.
    pub role: String,
    pub healthy: bool,
    pub down: bool,
    pub failures: u32,
    pub last_answer_ms: Option<u64>,
    pub last_latency_ms: Option<f64>,
    pub last_error: Option<String>,
    /// none, restarting on HOST, rejoining.
    pub restart: String,
}

/// Probe details the machine does not keep (addresses, latencies).
#[derive(Debug, Clone, Default)]
pub struct ProbeExtras {
    pub host_probe: BTreeMap<String, String>,
    pub host_error: BTreeMap<String, Option<String>>,
    pub nn_addrs: BTreeMap<String, (String, Option<String>)>,
    pub nn_latency_ms: BTreeMap<String, f64>,
}

fn role_name(s: HaState) -> &'static str {
    match s {
        HaState::Active => "active",
        HaState::Standby => "standby",
        HaState::Initializing => "initializing",
        HaState::Unknown => "unknown",
    }
}

/// The name of an event kind (metrics label, counters).
pub fn kind_name(k: &EventKind) -> &'static str {
    match k {
        EventKind::HostDown { .. } => "host_down",
        EventKind::HostUp { .. } => "host_up",
        EventKind::NamenodeDown { .. } => "namenode_down",
        EventKind::NamenodeUp => "namenode_up",
        EventKind::ActiveObserved => "active_observed",
        EventKind::ActiveLost => "active_lost",
        EventKind::TwoActives { .. } => "two_actives",
        EventKind::FenceStarted { .. } => "fence_started",
        EventKind::CooldownHold { .. } => "cooldown_hold",
        EventKind::GracefulFenceFailed { .. } => "graceful_fence_failed",
        EventKind::FenceConfirmed { .. } => "fence_confirmed",
        EventKind::FenceFailed { .. } => "fence_failed",
        EventKind::NoPromotion => "no_promotion",
        EventKind::PromoteStarted => "promote_started",
        EventKind::Promoted => "promoted",
        EventKind::PromoteFailed { .. } => "promote_failed",
        EventKind::RestartStarted { .. } => "restart_started",
        EventKind::Restarted { .. } => "restarted",
        EventKind::RestartFailed { .. } => "restart_failed",
        EventKind::NoHostForRestart => "no_host_for_restart",
        EventKind::Rejoined => "rejoined",
        EventKind::RejoinTimedOut => "rejoin_timed_out",
        EventKind::SwitchoverStarted => "switchover_started",
        EventKind::SwitchoverRejected => "switchover_rejected",
        EventKind::Resumed => "resumed",
        EventKind::Abandoned => "abandoned",
        EventKind::Ignored => "ignored",
    }
}

impl HaStatus {
    /// Counts one step's events.
    pub fn count(&mut self, events: &[Event]) {
        for e in events {
            *self
                .event_counts
                .entry(kind_name(&e.kind).to_string())
                .or_default() += 1;
            if let Some(site) = &e.site {
                let c = self.site_counts.entry(site.clone()).or_default();
                match e.kind {
                    EventKind::Promoted => c.failovers += 1,
                    EventKind::FenceFailed { .. } => c.fence_failures += 1,
                    EventKind::Restarted { .. } => c.restarts += 1,
                    _ => {}
                }
            }
        }
    }

    /// Refreshes hosts and sites from the machine's state.
    pub fn refresh(&mut self, state: &MachineState, extras: &ProbeExtras) {
        self.hosts = state
            .hosts
            .iter()
            .map(|h| HostStatus {
                name: h.name.clone(),
                probe: extras.host_probe.get(&h.name).cloned().unwrap_or_default(),
                up: !h.down,
                failures: h.failures,
                last_probe_ms: h.last_probe_ms,
                last_error: extras.host_error.get(&h.name).cloned().flatten(),
            })
            .collect();
        self.sites = state
            .sites
            .iter()
            .map(|s| {
                let workflow = match &s.workflow {
                    Workflow::Idle => "idle".to_string(),
                    Workflow::Fencing {
                        target,
                        purpose,
                        step,
                        ..
                    } => format!("fencing {} ({step:?}, {purpose:?})", s.nn(*target).vm),
                    Workflow::Promoting { target, .. } => format!("promoting {}", s.nn(*target).vm),
                };
                let namenodes = [&s.first, &s.second]
                    .into_iter()
                    .map(|n| {
                        let (rpc, http) = extras.nn_addrs.get(&n.vm).cloned().unwrap_or_default();
                        let role = if n.down {
                            "down"
                        } else {
                            n.last_answer
                                .as_ref()
                                .map_or("unknown", |o| role_name(o.state))
                        };
                        NnStatus {
                            vm: n.vm.clone(),
                            host: n.host.clone(),
                            rpc,
                            http,
                            role: role.to_string(),
                            healthy: !n.down && n.last_answer.as_ref().is_some_and(|o| o.healthy),
                            down: n.down,
                            failures: n.failures,
                            last_answer_ms: n.last_answer.as_ref().map(|o| o.at_ms),
                            last_latency_ms: extras.nn_latency_ms.get(&n.vm).copied(),
                            last_error: n.last_error.clone(),
                            restart: match &n.restart {
                                None => "none".into(),
                                Some(RestartPhase::Restarting { host, .. }) => {
                                    format!("restarting on {host}")
                                }
                                Some(RestartPhase::Rejoining { .. }) => "rejoining".into(),
                            },
                        }
                    })
                    .collect();
                SiteStatus {
                    name: s.name.clone(),
                    active: s.active.map(|slot| s.nn(slot).vm.clone()),
                    workflow,
                    namenodes,
                }
            })
            .collect();
    }

    /// `mifas ha status`: one `key: value` per line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "monitor: {}",
            if self.running {
                "running"
            } else {
                "not running (saved state)"
            }
        );
        for h in &self.hosts {
            let _ = writeln!(out, "host.{}.up: {}", h.name, h.up);
            let _ = writeln!(out, "host.{}.failures: {}", h.name, h.failures);
        }
        for s in &self.sites {
            let p = format!("site.{}", s.name);
            let _ = writeln!(out, "{p}.active: {}", s.active.as_deref().unwrap_or("-"));
            let _ = writeln!(out, "{p}.workflow: {}", s.workflow);
            if let Some(c) = self.site_counts.get(&s.name) {
                let _ = writeln!(out, "{p}.failovers: {}", c.failovers);
                let _ = writeln!(out, "{p}.fence_failures: {}", c.fence_failures);
            }
            for n in &s.namenodes {
                let q = format!("{p}.{}", n.vm);
                let _ = writeln!(out, "{q}.host: {}", n.host);
                let _ = writeln!(out, "{q}.rpc: {}", n.rpc);
                let _ = writeln!(out, "{q}.role: {}", n.role);
                let _ = writeln!(out, "{q}.healthy: {}", n.healthy);
                let _ = writeln!(out, "{q}.failures: {}", n.failures);
                let _ = writeln!(out, "{q}.restart: {}", n.restart);
                if let Some(ms) = n.last_latency_ms {
                    let _ = writeln!(out, "{q}.probe_ms: {ms:.1}");
                }
                if let Some(e) = &n.last_error {
                    let _ = writeln!(out, "{q}.last_error: {}", e.replace('\n', " "));
                }
            }
        }
        if let Some(e) = self.events.last() {
            let _ = writeln!(
                out,
                "last_event: #{} {} {}",
                e.seq,
                kind_name(&e.kind),
                e.reason.replace('\n', " ")
            );
        }
        out
    }

    /// Prometheus families for `/metrics`.
    pub fn to_metrics(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP mifas_ha_host_up Host liveness as the HA monitor sees it.\n# TYPE mifas_ha_host_up gauge\n");
        for h in &self.hosts {
            let _ = writeln!(
                out,
                "mifas_ha_host_up{{host=\"{}\"}} {}",
                h.name,
                u8::from(h.up)
            );
        }
        out.push_str("# HELP mifas_ha_namenode_up Namenode answering (not declared down).\n# TYPE mifas_ha_namenode_up gauge\n");
        for s in &self.sites {
            for n in &s.namenodes {
                let _ = writeln!(
                    out,
                    "mifas_ha_namenode_up{{site=\"{}\",vm=\"{}\"}} {}",
                    s.name,
                    n.vm,
                    u8::from(!n.down)
                );
            }
        }
        out.push_str("# HELP mifas_ha_namenode_active The monitor's active namenode of each site.\n# TYPE mifas_ha_namenode_active gauge\n");
        for s in &self.sites {
            for n in &s.namenodes {
                let _ = writeln!(
                    out,
                    "mifas_ha_namenode_active{{site=\"{}\",vm=\"{}\"}} {}",
                    s.name,
                    n.vm,
                    u8::from(s.active.as_deref() == Some(n.vm.as_str()))
                );
            }
        }
        out.push_str("# HELP mifas_ha_failovers_total Promotions since the monitor started.\n# TYPE mifas_ha_failovers_total counter\n");
        for s in &self.sites {
            let c = self.site_counts.get(&s.name).cloned().unwrap_or_default();
            let _ = writeln!(
                out,
                "mifas_ha_failovers_total{{site=\"{}\"}} {}",
                s.name, c.failovers
            );
        }
        out.push_str("# HELP mifas_ha_fence_failures_total Fences that failed (no promotion followed).\n# TYPE mifas_ha_fence_failures_total counter\n");
        for s in &self.sites {
            let c = self.site_counts.get(&s.name).cloned().unwrap_or_default();
            let _ = writeln!(
                out,
                "mifas_ha_fence_failures_total{{site=\"{}\"}} {}",
                s.name, c.fence_failures
            );
        }
        out.push_str("# HELP mifas_ha_events_total Monitor events since it started, by kind.\n# TYPE mifas_ha_events_total counter\n");
        for (kind, n) in &self.event_counts {
            let _ = writeln!(out, "mifas_ha_events_total{{kind=\"{kind}\"}} {n}");
        }
        out.trim_end().to_string()
    }
}
