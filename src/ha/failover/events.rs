//! The timeline: every decision of the machine is an event with a structured kind (for
//! counters, tests and the admin page) and a sentence saying why (for operators).

use serde::{Deserialize, Serialize};

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing over the machine's life (persisted with the state): the key for sled.
    pub seq: u64,
    pub at_ms: u64,
    pub site: Option<String>,
    pub vm: Option<String>,
    pub kind: EventKind,
    /// Human-readable: what happened and why the machine does what it does next.
    pub reason: String,
}

/// How a fence was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FenceMethod {
    /// `transitionToStandby` succeeded: the namenode runs on, as standby.
    Graceful,
    /// The VM driver confirmed the VM is off.
    PowerOff,
}

/// Why a namenode is being fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FencePurpose {
    /// The active was declared down: fence it, then promote the standby.
    Failover,
    /// A namenode that is not the machine's active reported Active: fence it, promote nobody.
    SplitBrain,
    /// A planned switchover: fence the active gracefully, then promote the standby.
    Switchover,
    /// A namenode is down and was never seen as standby or fenced since it was last active (or
    /// never seen at all): it might be an active we cannot reach, so it is fenced before anyone
    /// is promoted or it is restarted.
    UnknownRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    HostDown {
        host: String,
    },
    HostUp {
        host: String,
    },
    /// Declared down after `failures` consecutive failed probes (or because its host is down).
    NamenodeDown {
        failures: u32,
    },
    NamenodeUp,
    /// A namenode reported Active and the machine had no active for the site: adopted.
    ActiveObserved,
    /// The machine's active reported Standby: the site has no active now.
    ActiveLost,
    /// `other` reported Active while `active` is the machine's active.
    TwoActives {
        active: String,
        other: String,
    },
    FenceStarted {
        purpose: FencePurpose,
    },
    /// A failover is due but the cooldown holds it until `until_ms`.
    CooldownHold {
        until_ms: u64,
    },
    /// The graceful step failed; the power-off follows.
    GracefulFenceFailed {
        error: String,
    },
    FenceConfirmed {
        method: FenceMethod,
    },
    /// Graceful and power-off fencing both failed: nobody is promoted.
    FenceFailed {
        error: String,
    },
    /// The previous active is fenced but nobody could be promoted (both namenodes down, or the
    /// standby not healthy).
    NoPromotion,
    PromoteStarted,
    Promoted,
    PromoteFailed {
        error: String,
    },
    RestartStarted {
        host: String,
    },
    Restarted {
        host: String,
    },
    RestartFailed {
        error: String,
    },
    /// No live host other than the peer namenode's: the restart waits.
    NoHostForRestart,
    Rejoined,
    RejoinTimedOut,
    SwitchoverStarted,
    SwitchoverRejected,
    /// The monitor restarted mid-action and issues the action again.
    Resumed,
    /// Abandoned before its action finished (the peer's role changed meanwhile).
    Abandoned,
    /// An input naming an unknown host, VM, site or action id (e.g. the answer to an action
    /// issued before a monitor restart): ignored.
    Ignored,
}
