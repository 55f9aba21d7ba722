//! The machine's whole memory, serialisable so it can be persisted after every step and a
//! restarted monitor resumes from it ([`super::Machine::resume`]).
//!
//! Role evidence is ordered by *marks* (a counter bumped on every input), not by timestamps:
//! two inputs in the same millisecond still have a definite order, and "fenced after it was
//! last seen active" must never be ambiguous.

use super::events::FencePurpose;
use super::io::HaState;
use super::model::{ClusterSpec, ModelError, SiteSpec};
use serde::{Deserialize, Serialize};

/// Which of a site's two namenodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Slot {
    First,
    Second,
}

impl Slot {
    pub const BOTH: [Slot; 2] = [Slot::First, Slot::Second];

    pub fn other(self) -> Slot {
        match self {
            Slot::First => Slot::Second,
            Slot::Second => Slot::First,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    pub hosts: Vec<HostState>,
    pub sites: Vec<SiteState>,
    pub counters: Counters,
}

/// Monotonic counters, persisted so ids and event numbers never repeat across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Latest time seen on any input (inputs may arrive slightly out of order).
    pub now_ms: u64,
    /// Bumped once per input; orders role evidence.
    pub mark: u64,
    pub next_action_id: u64,
    pub next_event_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    pub name: String,
    pub down: bool,
    pub failures: u32,
    /// Answered at least once: a host never seen alive is no place to restart a VM on.
    pub seen_alive: bool,
    pub last_probe_ms: Option<u64>,
}

/// What a namenode last answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub at_ms: u64,
    pub state: HaState,
    pub healthy: bool,
}

/// Where a namenode stands between "could be active" and "certainly not active".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// Its latest role evidence is Active (a probe, or our promotion, or a promotion whose
    /// outcome we do not know).
    Active,
    /// Fenced or seen standby after it was last active: promoting its peer is safe.
    Safe,
    /// Nothing known (never answered, never fenced).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NnState {
    pub vm: String,
    pub host: String,
    pub failures: u32,
    pub down: bool,
    pub last_answer: Option<Observation>,
    pub last_error: Option<String>,
    /// Marks of the latest Active evidence, Standby evidence and confirmed fence.
    pub active_mark: Option<u64>,
    pub standby_mark: Option<u64>,
    pub fenced_mark: Option<u64>,
    pub restart: Option<RestartPhase>,
    pub last_restart_attempt_ms: Option<u64>,
    pub promote_failures: u32,
    pub last_promote_failure_ms: Option<u64>,
}

impl NnState {
    pub fn evidence(&self) -> Evidence {
        let safe = self.standby_mark.max(self.fenced_mark);
        match (self.active_mark, safe) {
            (None, None) => Evidence::Unknown,
            (None, Some(_)) => Evidence::Safe,
            (Some(a), Some(s)) if s > a => Evidence::Safe,
            (Some(_), _) => Evidence::Active,
        }
    }

    /// Reachable, healthy and standby as of its last answer, not down and not restarting: the
    /// only namenode `transitionToActive` may be sent to.
    pub fn promotable(&self) -> bool {
        !self.down
            && self.failures == 0
            && self.restart.is_none()
            && self
                .last_answer
                .as_ref()
                .is_some_and(|o| o.healthy && o.state == HaState::Standby)
            && self.evidence() == Evidence::Safe
    }
}

/// A VM restart in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPhase {
    /// `RestartVm` sent; waiting for the driver.
    Restarting {
        host: String,
        action: u64,
        deadline_ms: u64,
    },
    /// The VM runs again; waiting for its namenode to answer as a healthy standby.
    Rejoining { deadline_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FenceStep {
    Graceful,
    PowerOff,
}

/// The site's role-changing work: at most one at a time, so a fence and a promotion can never
/// race each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Workflow {
    Idle,
    Fencing {
        target: Slot,
        purpose: FencePurpose,
        step: FenceStep,
        /// The graceful step's error, kept for the final event when the power-off fails too.
        graceful_error: Option<String>,
        action: u64,
        deadline_ms: u64,
    },
    Promoting {
        target: Slot,
        action: u64,
        deadline_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteState {
    pub name: String,
    /// Promoted first when neither namenode is active (from the configured `believed_active`).
    pub preferred: Option<Slot>,
    pub first: NnState,
    pub second: NnState,
    /// The machine's active: the one it promoted, or the one it saw active.
    pub active: Option<Slot>,
    pub workflow: Workflow,
    pub last_promotion_ms: Option<u64>,
    pub last_fence_failure_ms: Option<u64>,
    /// The current cooldown hold is already in the timeline (one event per hold, not per tick).
    pub cooldown_noted: bool,
}

impl SiteState {
    pub fn nn(&self, s: Slot) -> &NnState {
        match s {
            Slot::First => &self.first,
            Slot::Second => &self.second,
        }
    }

    pub fn nn_mut(&mut self, s: Slot) -> &mut NnState {
        match s {
            Slot::First => &mut self.first,
            Slot::Second => &mut self.second,
        }
    }

    pub fn slot_of(&self, vm: &str) -> Option<Slot> {
        Slot::BOTH.into_iter().find(|s| self.nn(*s).vm == vm)
    }

    /// The safety rule of every promotion: the target is a healthy reachable standby and its
    /// peer is fenced or seen standby since it was last active.
    pub fn can_promote(&self, target: Slot) -> bool {
        self.nn(target).promotable() && self.nn(target.other()).evidence() == Evidence::Safe
    }

    fn from_spec(spec: &SiteSpec) -> SiteState {
        let [a, b] = &spec.namenodes;
        let preferred = spec.believed_active.as_ref().and_then(|vm| {
            if &a.vm == vm {
                Some(Slot::First)
            } else if &b.vm == vm {
                Some(Slot::Second)
            } else {
                None
            }
        });
        SiteState {
            name: spec.name.clone(),
            preferred,
            first: NnState::new(&a.vm, &a.host),
            second: NnState::new(&b.vm, &b.host),
            active: None,
            workflow: Workflow::Idle,
            last_promotion_ms: None,
            last_fence_failure_ms: None,
            cooldown_noted: false,
        }
    }
}

impl NnState {
    fn new(vm: &str, host: &str) -> NnState {
        NnState {
            vm: vm.to_string(),
            host: host.to_string(),
            failures: 0,
            down: false,
            last_answer: None,
            last_error: None,
            active_mark: None,
            standby_mark: None,
            fenced_mark: None,
            restart: None,
            last_restart_attempt_ms: None,
            promote_failures: 0,
            last_promote_failure_ms: None,
        }
    }
}

impl MachineState {
    /// The initial state: nothing known about any role until the first probes answer.
    pub fn from_spec(spec: &ClusterSpec) -> Result<MachineState, ModelError> {
        spec.validate()?;
        Ok(MachineState {
            hosts: spec
                .hosts
                .iter()
                .map(|h| HostState {
                    name: h.clone(),
                    down: false,
                    failures: 0,
                    seen_alive: false,
                    last_probe_ms: None,
                })
                .collect(),
            sites: spec.sites.iter().map(SiteState::from_spec).collect(),
            counters: Counters::default(),
        })
    }

    /// The cluster as it is now (VMs on their current hosts), for checking a loaded state with
    /// the same rules as a configuration.
    pub fn current_spec(&self) -> ClusterSpec {
        ClusterSpec {
            hosts: self.hosts.iter().map(|h| h.name.clone()).collect(),
            sites: self
                .sites
                .iter()
                .map(|s| SiteSpec {
                    name: s.name.clone(),
                    namenodes: [
                        super::model::NamenodeSpec {
                            vm: s.first.vm.clone(),
                            host: s.first.host.clone(),
                        },
                        super::model::NamenodeSpec {
                            vm: s.second.vm.clone(),
                            host: s.second.host.clone(),
                        },
                    ],
                    believed_active: None,
                })
                .collect(),
        }
    }

    pub fn host_down(&self, name: &str) -> bool {
        self.hosts.iter().any(|h| h.name == name && h.down)
    }
}
