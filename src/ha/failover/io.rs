//! What goes into the machine (probe results, action results, requests, ticks) and what comes
//! out (actions for the driver to execute, events for the timeline).

use super::events::Event;
use serde::{Deserialize, Serialize};

/// The HA state a namenode reports (`getServiceStatus` / JMX `NameNodeStatus.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaState {
    Active,
    Standby,
    /// Starting up (loading the fsimage): not failed, not promotable yet.
    Initializing,
    /// Answered, but with a state we do not understand: counts as a failed probe.
    Unknown,
}

/// The result of one namenode probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NnProbe {
    /// The namenode answered. `healthy` is `monitorHealth` succeeding.
    Answered { state: HaState, healthy: bool },
    /// Timeout, connection refused, protocol error: the text goes into events.
    Failed { error: String },
}

/// How an action the machine asked for ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok,
    Failed { error: String },
    TimedOut,
}

/// One input, with the time (ms, any monotonic origin) it was observed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    HostProbe {
        at_ms: u64,
        host: String,
        alive: bool,
    },
    NamenodeProbe {
        at_ms: u64,
        vm: String,
        result: NnProbe,
    },
    /// The answer to the action with this id ([`Action::id`]).
    ActionResult {
        at_ms: u64,
        id: u64,
        outcome: Outcome,
    },
    /// `mifas ha switchover SITE`.
    Switchover { at_ms: u64, site: String },
    /// Time passes: deadlines, cooldowns and backoffs are checked. Send one at least every
    /// probe interval (or at [`super::Machine::next_deadline_ms`]).
    Tick { at_ms: u64 },
}

impl Input {
    pub fn at_ms(&self) -> u64 {
        match self {
            Input::HostProbe { at_ms, .. }
            | Input::NamenodeProbe { at_ms, .. }
            | Input::ActionResult { at_ms, .. }
            | Input::Switchover { at_ms, .. }
            | Input::Tick { at_ms } => *at_ms,
        }
    }
}

/// Something the driver must do, then report with [`Input::ActionResult`] and the same `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Unique over the machine's life (persisted), so a late answer to an abandoned action is
    /// recognised and ignored.
    pub id: u64,
    /// The [`Event::seq`] of the event that explains why this action is taken.
    pub cause: u64,
    pub site: String,
    pub vm: String,
    pub kind: ActionKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionKind {
    /// Hadoop RPC `transitionToStandby` to the namenode, giving up after `timeout_ms`.
    TransitionToStandby { timeout_ms: u64 },
    /// Power the VM off through the VM driver (`host` is where the machine believes it runs).
    /// The driver must answer `Ok` only when the VM is known to be off.
    PowerOff { host: String },
    /// Hadoop RPC `transitionToActive`, giving up after `timeout_ms`.
    TransitionToActive { timeout_ms: u64 },
    /// Stop the VM if it still runs, then start it on `on_host`.
    RestartVm { on_host: String },
}

/// Everything one input produced. Empty `actions` is the "none" action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub events: Vec<Event>,
    pub actions: Vec<Action>,
}
