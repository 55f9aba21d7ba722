//! The failover state machine of the HA monitor (issue 11, DESIGN.md §7; the thesis' FAILOVER
//! then FAILBACK of §3.1, Fig. 3-3): pure logic, driven by probe results, action results and a
//! clock carried by the inputs. No I/O, no async, no storage: a driver feeds [`Input`]s to
//! [`Machine::handle`], executes the returned [`Action`]s, persists [`Machine::state`] and the
//! [`Event`]s, and after a restart continues with [`Machine::resume`].
//!
//! Rules kept (each proven by a test in `tests/`):
//! - detection after `failure_threshold` consecutive failed probes (defaults: < 2 s);
//! - a host declared down means every namenode VM on it;
//! - the old active is fenced first: graceful `transitionToStandby` with a timeout, then
//!   power-off through the VM driver; a fence counts only when confirmed (`Ok`); when both fail
//!   nobody is promoted and the event says why;
//! - a namenode is promoted only when it is a healthy reachable standby and its peer is fenced
//!   or standby since it was last active — so the machine never makes two actives, and a paused
//!   active that resumes as Active is fenced, not obeyed;
//! - a lost VM is restarted on a live host other than its peer's and must rejoin as standby;
//! - cooldown: no second automatic failover of a site within `cooldown_ms` of a promotion,
//!   unless the active's host is down;
//! - planned switchover; restart mid-failover re-issues in-flight actions.
//!
//! Layout: [`config`] (timings), [`model`] (the configured cluster), [`state`] (the persisted
//! memory), [`io`] (inputs, actions), [`events`] (the timeline), `machine` (the entry points),
//! `observe` (recording probes), `rules` (decisions), `results` (action answers).

pub mod config;
pub mod events;
pub mod io;
mod machine;
pub mod model;
mod observe;
mod results;
mod rules;
pub mod state;

#[cfg(test)]
mod tests;

pub use config::{ConfigError, FailoverConfig};
pub use events::{Event, EventKind, FenceMethod, FencePurpose};
pub use io::{Action, ActionKind, HaState, Input, NnProbe, Outcome, Output};
pub use machine::{Machine, SetupError};
pub use model::{ClusterSpec, MIN_HOSTS, ModelError, NamenodeSpec, SiteSpec};
pub use state::MachineState;
