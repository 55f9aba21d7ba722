//! The monitor's memory on disk (sled, `<state_dir>/db`): the failover machine's state after
//! every step and the event timeline, so a restarted monitor resumes mid-failover
//! ([`super::failover::Machine::resume`]) and `mifas ha status` shows the history. A database of
//! its own, apart from the archive's index: the monitor also runs alone (`mifas ha-monitor`).

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::failover::{Event, MachineState};

/// Events kept; older ones are dropped as new ones arrive.
pub const MAX_EVENTS: u64 = 10_000;

const STATE_KEY: &[u8] = b"machine";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("HA state database {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("HA state database: {0}")]
    Db(#[from] sled::Error),
    #[error("HA state database holds an unreadable {what}: {message}")]
    Decode { what: &'static str, message: String },
}

#[derive(Clone)]
pub struct HaStore {
    db: sled::Db,
    state: sled::Tree,
    events: sled::Tree,
}

impl HaStore {
    pub fn open(state_dir: &Path) -> Result<HaStore, StoreError> {
        let path = state_dir.join("db");
        let db = sled::Config::new()
            .path(&path)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        Ok(HaStore {
            state: db.open_tree("state")?,
            events: db.open_tree("events")?,
            db,
        })
    }

    pub fn load_state(&self) -> Result<Option<MachineState>, StoreError> {
        match self.state.get(STATE_KEY)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Decode {
                        what: "machine state",
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Saves the state and appends the events of one step. `durable`: flush to disk before
    /// returning (after a step that decided something; plain probe bookkeeping is flushed by
    /// sled's own timer).
    pub fn save(
        &self,
        state: &MachineState,
        events: &[Event],
        durable: bool,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(state).map_err(|e| StoreError::Decode {
            what: "machine state",
            message: e.to_string(),
        })?;
        self.state.insert(STATE_KEY, bytes)?;
        for e in events {
            let bytes = serde_json::to_vec(e).map_err(|err| StoreError::Decode {
                what: "event",
                message: err.to_string(),
            })?;
            self.events.insert(e.seq.to_be_bytes(), bytes)?;
            if e.seq >= MAX_EVENTS {
                self.events.remove((e.seq - MAX_EVENTS).to_be_bytes())?;
            }
        }
        if durable {
            self.db.flush()?;
        }
        Ok(())
    }

    /// The newest `n` events, oldest first.
    pub fn recent_events(&self, n: usize) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::with_capacity(n);
        for item in self.events.iter().rev().take(n) {
            let (_, v) = item?;
            out.push(serde_json::from_slice(&v).map_err(|e| StoreError::Decode {
                what: "event",
                message: e.to_string(),
            })?);
        }
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::failover::{
        ActionKind, ClusterSpec, EventKind, FailoverConfig, HaState, Input, Machine, NamenodeSpec,
        NnProbe, SiteSpec,
    };

    fn spec() -> ClusterSpec {
        ClusterSpec {
            hosts: vec!["a".into(), "b".into(), "c".into()],
            sites: vec![SiteSpec {
                name: "east".into(),
                namenodes: [
                    NamenodeSpec {
                        vm: "nn0".into(),
                        host: "a".into(),
                    },
                    NamenodeSpec {
                        vm: "nn1".into(),
                        host: "b".into(),
                    },
                ],
                believed_active: None,
            }],
        }
    }

    fn probe(vm: &str, at_ms: u64, result: NnProbe) -> Input {
        Input::NamenodeProbe {
            at_ms,
            vm: vm.into(),
            result,
        }
    }

    /// A monitor killed mid-fence resumes from what the store kept: the fence is issued again
    /// (never skipped), and the timeline continues where it stopped.
    #[test]
    fn a_restarted_monitor_resumes_mid_failover_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaStore::open(dir.path()).unwrap();
        let cfg = FailoverConfig::default();
        let mut m = Machine::new(cfg.clone(), &spec()).unwrap();
        let mut t = 0;
        let mut fence = None;
        let mut last_seq = 0;
        let answered = |state| NnProbe::Answered {
            state,
            healthy: true,
        };
        for input in [
            probe("nn0", 0, answered(HaState::Active)),
            probe("nn1", 0, answered(HaState::Standby)),
        ] {
            let out = m.handle(input);
            store.save(m.state(), &out.events, true).unwrap();
        }
        while fence.is_none() && t < 10_000 {
            t += 500;
            let failed = NnProbe::Failed {
                error: "refused".into(),
            };
            let out = m.handle(probe("nn0", t, failed));
            if let Some(e) = out.events.last() {
                last_seq = e.seq;
            }
            store.save(m.state(), &out.events, true).unwrap();
            fence = out
                .actions
                .into_iter()
                .find(|a| matches!(a.kind, ActionKind::TransitionToStandby { .. }));
        }
        let fence = fence.expect("a fence after k failed probes");
        drop(store);
        drop(m);

        let store = HaStore::open(dir.path()).unwrap();
        let saved = store.load_state().unwrap().expect("saved state");
        let (_, out) = Machine::resume(cfg, saved, t + 100).unwrap();
        let again = out
            .actions
            .iter()
            .find(|a| a.vm == "nn0" && matches!(a.kind, ActionKind::TransitionToStandby { .. }))
            .expect("the fence is issued again");
        assert!(again.id > fence.id, "action ids never repeat");
        assert!(out.events.iter().any(|e| e.kind == EventKind::Resumed));
        assert!(out.events.iter().all(|e| e.seq > last_seq));
        let events = store.recent_events(100).unwrap();
        assert_eq!(events.last().map(|e| e.seq), Some(last_seq));
        assert!(
            events
                .iter()
                .any(|e| matches!(e.kind, EventKind::NamenodeDown { .. }))
        );
    }
}
