//! The machine: one input in, events and actions out. Every input goes through the same three
//! stages: record it (observe / results), expire overdue actions, then re-evaluate every site
//! (rules). Decisions are only taken in the last stage, so the order in which probes and
//! results arrive within one step cannot change them.

use super::config::{ConfigError, FailoverConfig};
use super::events::{Event, EventKind};
use super::io::{Action, ActionKind, Input, Output};
use super::model::{ClusterSpec, ModelError};
use super::state::{Counters, MachineState, RestartPhase, Workflow};
use super::{observe, results, rules};
use thiserror::Error;

/// Why a machine could not be built or resumed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The failover state machine of all sites. Pure: no I/O, no clock of its own.
#[derive(Debug, Clone)]
pub struct Machine {
    cfg: FailoverConfig,
    state: MachineState,
}

/// The step being computed: the time and mark of the input, and where its output goes.
pub(crate) struct Tx<'a> {
    pub now: u64,
    pub mark: u64,
    counters: &'a mut Counters,
    out: &'a mut Output,
}

impl Tx<'_> {
    /// Appends an event to the timeline and returns its sequence number (an action's cause).
    pub fn event(&mut self, site: &str, vm: Option<&str>, kind: EventKind, reason: String) -> u64 {
        let seq = self.counters.next_event_seq;
        self.counters.next_event_seq += 1;
        self.out.events.push(Event {
            seq,
            at_ms: self.now,
            site: (!site.is_empty()).then(|| site.to_string()),
            vm: vm.map(str::to_string),
            kind,
            reason,
        });
        seq
    }

    /// Asks the driver for an action and returns its id.
    pub fn action(&mut self, cause: u64, site: &str, vm: &str, kind: ActionKind) -> u64 {
        let id = self.counters.next_action_id;
        self.counters.next_action_id += 1;
        self.out.actions.push(Action {
            id,
            cause,
            site: site.to_string(),
            vm: vm.to_string(),
            kind,
        });
        id
    }
}

impl Machine {
    /// A machine for a fresh cluster; refuses fewer than three hosts and other bad layouts.
    pub fn new(cfg: FailoverConfig, spec: &ClusterSpec) -> Result<Machine, SetupError> {
        cfg.validate()?;
        let state = MachineState::from_spec(spec)?;
        Ok(Machine { cfg, state })
    }

    /// A restarted monitor: continues from a persisted state. Any action that was in flight
    /// has lost its answer with the old process, so it is issued again — never skipped: a
    /// fence in progress is fenced again, and a promotion is re-issued only if its safety rule
    /// still holds on the saved evidence, else abandoned.
    pub fn resume(
        cfg: FailoverConfig,
        state: MachineState,
        now_ms: u64,
    ) -> Result<(Machine, Output), SetupError> {
        cfg.validate()?;
        state.current_spec().validate()?;
        let mut m = Machine { cfg, state };
        let mut out = Output::default();
        let MachineState {
            hosts: _,
            sites,
            counters,
        } = &mut m.state;
        counters.now_ms = counters.now_ms.max(now_ms);
        counters.mark += 1;
        let mut tx = Tx {
            now: counters.now_ms,
            mark: counters.mark,
            counters,
            out: &mut out,
        };
        for site in sites.iter_mut() {
            results::reissue(&m.cfg, site, &mut tx);
        }
        m.evaluate(&mut out);
        Ok((m, out))
    }

    /// Feeds one input and returns what it caused.
    pub fn handle(&mut self, input: Input) -> Output {
        let mut out = Output::default();
        let counters = &mut self.state.counters;
        counters.now_ms = counters.now_ms.max(input.at_ms());
        counters.mark += 1;
        let MachineState {
            hosts,
            sites,
            counters,
        } = &mut self.state;
        let mut tx = Tx {
            now: counters.now_ms,
            mark: counters.mark,
            counters,
            out: &mut out,
        };
        match input {
            Input::HostProbe { host, alive, .. } => {
                observe::host_probe(&self.cfg, hosts, sites, &mut tx, &host, alive)
            }
            Input::NamenodeProbe { vm, result, .. } => {
                observe::nn_probe(&self.cfg, sites, &mut tx, &vm, result)
            }
            Input::ActionResult { id, outcome, .. } => {
                results::action_result(&self.cfg, sites, &mut tx, id, outcome)
            }
            Input::Switchover { site, .. } => {
                rules::switchover(&self.cfg, hosts, sites, &mut tx, &site)
            }
            Input::Tick { .. } => {}
        }
        results::expire(&self.cfg, sites, &mut tx);
        self.evaluate(&mut out);
        out
    }

    fn evaluate(&mut self, out: &mut Output) {
        let MachineState {
            hosts,
            sites,
            counters,
        } = &mut self.state;
        let mut tx = Tx {
            now: counters.now_ms,
            mark: counters.mark,
            counters,
            out,
        };
        rules::evaluate(&self.cfg, hosts, sites, &mut tx);
    }

    pub fn state(&self) -> &MachineState {
        &self.state
    }

    pub fn config(&self) -> &FailoverConfig {
        &self.cfg
    }

    /// The earliest action or rejoin deadline, for a driver that wants to tick exactly then.
    /// Cooldowns and backoffs are checked on every input, so ticking once per probe interval
    /// is enough for them.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let mut best: Option<u64> = None;
        let mut consider = |t: u64| best = Some(best.map_or(t, |b| b.min(t)));
        for site in &self.state.sites {
            match &site.workflow {
                Workflow::Idle => {}
                Workflow::Fencing { deadline_ms, .. } | Workflow::Promoting { deadline_ms, .. } => {
                    consider(*deadline_ms)
                }
            }
            for nn in [&site.first, &site.second] {
                match &nn.restart {
                    None => {}
                    Some(RestartPhase::Restarting { deadline_ms, .. })
                    | Some(RestartPhase::Rejoining { deadline_ms }) => consider(*deadline_ms),
                }
            }
        }
        best
    }
}
