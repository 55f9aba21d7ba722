//! The monitor: the loop that drives the failover machine. Every probe interval it probes all
//! hosts and namenodes at once (each probe bounded by its timeout), feeds the results to the
//! machine, executes the actions it returns (Hadoop RPC transitions, VM driver commands) as
//! tasks whose answers come back as inputs, and persists the state and events after every step.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::driver::{VmDriver, VmTarget};
use super::failover::{
    Action, ActionKind, Event, EventKind, HaState, Input, Machine, MachineState, NnProbe, Outcome,
    Output, SetupError,
};
use super::ipc::{self, HaServiceClient, IpcConfig, IpcError, RequestSource};
use super::probe::{NamenodeAddrs, NamenodeProber, ProbeConfig, ProbeResult, probe_host};
use super::status::{HaStatus, ProbeExtras, kind_name};
use super::store::{HaStore, StoreError};
use crate::config::HaConfig;

/// Events kept in memory for the status page and `mifas ha status`.
const RECENT_EVENTS: usize = 200;

#[derive(Debug, Error)]
pub enum HaError {
    #[error("ha: {0}")]
    Config(String),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ha: cannot create {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A running monitor: its status, and the way to ask for a switchover.
#[derive(Clone)]
pub struct HaHandle {
    status: Arc<RwLock<HaStatus>>,
    requests: mpsc::Sender<(String, oneshot::Sender<Result<String, String>>)>,
}

impl HaHandle {
    pub fn status(&self) -> HaStatus {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// A planned switchover of `site`: the answer is the machine's event (started, or
    /// rejected and why).
    pub async fn switchover(&self, site: &str) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((site.to_string(), tx))
            .await
            .map_err(|_| "the HA monitor has stopped".to_string())?;
        rx.await
            .map_err(|_| "the HA monitor has stopped".to_string())?
    }
}

impl crate::web::MetricsSource for HaHandle {
    fn render(&self) -> String {
        self.status().to_metrics()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where the monitor's state lives for this configuration.
pub fn state_dir(ha: &HaConfig, data_dir: &std::path::Path) -> PathBuf {
    ha.state_dir.clone().unwrap_or_else(|| data_dir.join("ha"))
}

struct Probers {
    hosts: Vec<(String, String)>,
    namenodes: Vec<NamenodeProber>,
}

struct Monitor {
    machine: Machine,
    store: HaStore,
    status: Arc<RwLock<HaStatus>>,
    extras: ProbeExtras,
    recent: VecDeque<Event>,
    driver: Arc<VmDriver>,
    rpc: IpcConfig,
    source: RequestSource,
    /// VM name → RPC address, for transitions.
    rpc_addr: std::collections::BTreeMap<String, String>,
    results: mpsc::UnboundedSender<Input>,
    running: JoinSet<()>,
}

/// Starts the monitor on the current runtime; it stops when `shutdown` is cancelled.
pub fn start(
    ha: &HaConfig,
    data_dir: &std::path::Path,
    shutdown: CancellationToken,
) -> Result<(HaHandle, tokio::task::JoinHandle<()>), HaError> {
    let dir = state_dir(ha, data_dir);
    std::fs::create_dir_all(&dir).map_err(|source| HaError::StateDir {
        path: dir.clone(),
        source,
    })?;
    let store = HaStore::open(&dir)?;
    let spec = ha.cluster();
    let timing = ha.timing.clone();
    let (machine, first) = match store.load_state()? {
        Some(saved) if same_cluster(&saved, &spec) => {
            tracing::info!(dir = %dir.display(), "HA monitor resumes from its saved state");
            Machine::resume(timing, saved, now_ms())?
        }
        Some(_) => {
            tracing::warn!(
                "the saved HA state describes other hosts or VMs than the configuration: starting fresh"
            );
            (Machine::new(timing, &spec)?, Output::default())
        }
        None => (Machine::new(timing, &spec)?, Output::default()),
    };
    let source = ha
        .request_source
        .parse::<RequestSource>()
        .map_err(HaError::Config)?;
    let templates = ha.driver.templates().map_err(HaError::Config)?;
    let probe_cfg = ProbeConfig {
        host_timeout: Duration::from_millis(ha.timing.probe_timeout_ms),
        namenode_timeout: Duration::from_millis(ha.timing.probe_timeout_ms),
        rpc: IpcConfig {
            connect_timeout: Duration::from_millis(ha.rpc_connect_timeout_ms),
            call_timeout: Duration::from_millis(ha.timing.probe_timeout_ms),
            user: ha.rpc_user.clone(),
        },
    };
    let mut extras = ProbeExtras::default();
    let mut rpc_addr = std::collections::BTreeMap::new();
    let mut namenodes = Vec::new();
    for site in &ha.sites {
        for nn in &site.namenodes {
            extras
                .nn_addrs
                .insert(nn.vm.clone(), (nn.rpc.clone(), nn.http.clone()));
            rpc_addr.insert(nn.vm.clone(), nn.rpc.clone());
            namenodes.push(NamenodeProber::new(
                NamenodeAddrs {
                    name: nn.vm.clone(),
                    rpc: nn.rpc.clone(),
                    http: nn.http.clone(),
                },
                &probe_cfg,
            ));
        }
    }
    for h in &ha.hosts {
        extras.host_probe.insert(h.name.clone(), h.probe.clone());
    }
    let probers = Probers {
        hosts: ha
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.probe.clone()))
            .collect(),
        namenodes,
    };
    let status = Arc::new(RwLock::new(HaStatus {
        running: true,
        ..HaStatus::default()
    }));
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let (req_tx, req_rx) = mpsc::channel(8);
    let recent: VecDeque<Event> = store.recent_events(RECENT_EVENTS)?.into();
    let mut monitor = Monitor {
        machine,
        store,
        status: status.clone(),
        extras,
        recent,
        driver: Arc::new(VmDriver::new(templates)),
        rpc: probe_cfg.rpc.clone(),
        source,
        rpc_addr,
        results: results_tx,
        running: JoinSet::new(),
    };
    monitor.apply(first);
    monitor.publish();
    let interval = Duration::from_millis(ha.timing.probe_interval_ms);
    tracing::info!(
        hosts = ha.hosts.len(),
        sites = ha.sites.len(),
        interval_ms = ha.timing.probe_interval_ms,
        detection_budget_ms = ha.timing.detection_budget_ms(),
        "HA monitor started"
    );
    let task = tokio::spawn(monitor.run(probers, interval, results_rx, req_rx, shutdown));
    Ok((
        HaHandle {
            status,
            requests: req_tx,
        },
        task,
    ))
}

/// A saved state belongs to this configuration when it names the same hosts, sites and VMs
/// (VMs may have moved between hosts since: the saved placement wins).
fn same_cluster(saved: &MachineState, spec: &super::failover::ClusterSpec) -> bool {
    let mut a: Vec<&String> = saved.hosts.iter().map(|h| &h.name).collect();
    let mut b: Vec<&String> = spec.hosts.iter().collect();
    a.sort();
    b.sort();
    let vms = |s: &[(String, [String; 2])]| {
        let mut v = s.to_vec();
        v.sort();
        v
    };
    let saved_sites: Vec<(String, [String; 2])> = saved
        .sites
        .iter()
        .map(|s| (s.name.clone(), [s.first.vm.clone(), s.second.vm.clone()]))
        .collect();
    let spec_sites: Vec<(String, [String; 2])> = spec
        .sites
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                [s.namenodes[0].vm.clone(), s.namenodes[1].vm.clone()],
            )
        })
        .collect();
    a == b && vms(&saved_sites) == vms(&spec_sites)
}

fn nn_probe(r: &ProbeResult) -> NnProbe {
    let state = r.state.map(|s| match s {
        ipc::HaState::Active => HaState::Active,
        ipc::HaState::Standby => HaState::Standby,
        ipc::HaState::Initializing => HaState::Initializing,
        ipc::HaState::Observer => HaState::Unknown,
    });
    match state {
        // answered over RPC (health known) or only over HTTP (then not known healthy)
        Some(state) => NnProbe::Answered {
            state,
            healthy: r.healthy,
        },
        None => NnProbe::Failed {
            error: r.error.clone().unwrap_or_else(|| "no answer".to_string()),
        },
    }
}

impl Monitor {
    async fn run(
        mut self,
        mut probers: Probers,
        interval: Duration,
        mut results: mpsc::UnboundedReceiver<Input>,
        mut requests: mpsc::Receiver<(String, oneshot::Sender<Result<String, String>>)>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {
                    self.probe_round(&mut probers).await;
                    self.publish();
                }
                Some(input) = results.recv() => {
                    self.step(input);
                    self.publish();
                }
                Some((site, reply)) = requests.recv() => {
                    let out = self.step(Input::Switchover { at_ms: now_ms(), site: site.clone() });
                    let answer = out
                        .iter()
                        .find(|e| matches!(e.kind, EventKind::SwitchoverStarted | EventKind::SwitchoverRejected))
                        .map(|e| match e.kind {
                            EventKind::SwitchoverStarted => Ok(e.reason.clone()),
                            _ => Err(e.reason.clone()),
                        })
                        .unwrap_or_else(|| Err(format!("no switchover of site {site:?} started")));
                    let _ = reply.send(answer);
                    self.publish();
                }
                Some(_) = self.running.join_next(), if !self.running.is_empty() => {}
            }
        }
        // actions in flight are abandoned with the process; a restarted monitor re-issues them
        self.running.abort_all();
        if let Err(e) = self.store.save(self.machine.state(), &[], true) {
            tracing::error!(error = %e, "HA state not saved at shutdown");
        }
        tracing::info!("HA monitor stopped");
    }

    /// Probes every host and namenode concurrently and feeds the results, then a tick.
    async fn probe_round(&mut self, probers: &mut Probers) {
        let timeout = Duration::from_millis(self.machine.config().probe_timeout_ms);
        let mut hosts = JoinSet::new();
        for (name, addr) in &probers.hosts {
            let (name, addr) = (name.clone(), addr.clone());
            hosts.spawn(async move { (name, probe_host(&addr, timeout).await) });
        }
        let mut nns = JoinSet::new();
        for mut p in probers.namenodes.drain(..) {
            nns.spawn(async move {
                let r = p.probe().await;
                (p, r)
            });
        }
        let mut host_results = Vec::new();
        while let Some(r) = hosts.join_next().await {
            if let Ok(r) = r {
                host_results.push(r);
            }
        }
        let mut nn_results = Vec::new();
        while let Some(r) = nns.join_next().await {
            match r {
                Ok((p, result)) => {
                    probers.namenodes.push(p);
                    nn_results.push(result);
                }
                Err(e) => tracing::error!(error = %e, "a namenode probe task failed"),
            }
        }
        // a fixed order, so the same round always produces the same steps
        host_results.sort_by(|a, b| a.0.cmp(&b.0));
        nn_results.sort_by(|a, b| a.namenode.cmp(&b.namenode));
        probers
            .namenodes
            .sort_by(|a, b| a.addrs().name.cmp(&b.addrs().name));
        let at_ms = now_ms();
        for (name, r) in host_results {
            self.extras.host_error.insert(name.clone(), r.error.clone());
            self.step(Input::HostProbe {
                at_ms,
                host: name,
                alive: r.reachable,
            });
        }
        for r in nn_results {
            self.extras
                .nn_latency_ms
                .insert(r.namenode.clone(), r.latency.as_secs_f64() * 1000.0);
            let result = nn_probe(&r);
            tracing::trace!(vm = %r.namenode, ?result, "namenode probe");
            self.step(Input::NamenodeProbe {
                at_ms,
                vm: r.namenode,
                result,
            });
        }
        self.step(Input::Tick { at_ms: now_ms() });
    }

    /// One input through the machine; returns its events.
    fn step(&mut self, input: Input) -> Vec<Event> {
        let out = self.machine.handle(input);
        let events = out.events.clone();
        self.apply(out);
        events
    }

    /// Logs and persists a step's events, saves the state, and starts its actions.
    fn apply(&mut self, out: Output) {
        for e in &out.events {
            let kind = kind_name(&e.kind);
            let site = e.site.as_deref().unwrap_or("-");
            let vm = e.vm.as_deref().unwrap_or("-");
            match e.kind {
                EventKind::FenceFailed { .. }
                | EventKind::NoPromotion
                | EventKind::PromoteFailed { .. }
                | EventKind::RestartFailed { .. }
                | EventKind::TwoActives { .. }
                | EventKind::NamenodeDown { .. }
                | EventKind::HostDown { .. } => {
                    tracing::warn!(seq = e.seq, site, vm, event = kind, "{}", e.reason)
                }
                _ => tracing::info!(seq = e.seq, site, vm, event = kind, "{}", e.reason),
            }
        }
        let decided = !out.events.is_empty() || !out.actions.is_empty();
        if let Err(e) = self.store.save(self.machine.state(), &out.events, decided) {
            tracing::error!(error = %e, "HA state not saved");
        }
        if let Ok(mut s) = self.status.write() {
            s.count(&out.events);
        }
        for e in out.events {
            if self.recent.len() >= RECENT_EVENTS {
                self.recent.pop_front();
            }
            self.recent.push_back(e);
        }
        for action in out.actions {
            self.execute(action);
        }
    }

    fn publish(&mut self) {
        if let Ok(mut s) = self.status.write() {
            s.refresh(self.machine.state(), &self.extras);
            s.events = self.recent.iter().cloned().collect();
        }
    }

    /// Runs an action as a task; its answer comes back as an input.
    fn execute(&mut self, action: Action) {
        let Action {
            id, site, vm, kind, ..
        } = action;
        tracing::info!(action = id, %site, %vm, ?kind, "HA action");
        let host_now = self
            .machine
            .state()
            .sites
            .iter()
            .find(|s| s.name == site)
            .and_then(|s| s.slot_of(&vm).map(|slot| s.nn(slot).host.clone()))
            .unwrap_or_default();
        let results = self.results.clone();
        let driver = self.driver.clone();
        let rpc = self.rpc.clone();
        let source = self.source;
        let addr = self.rpc_addr.get(&vm).cloned();
        let cfg = self.machine.config().clone();
        self.running.spawn(async move {
            let outcome = match kind {
                ActionKind::TransitionToStandby { timeout_ms } => {
                    transition(addr, rpc, source, timeout_ms, false).await
                }
                ActionKind::TransitionToActive { timeout_ms } => {
                    transition(addr, rpc, source, timeout_ms, true).await
                }
                ActionKind::PowerOff { host } => {
                    let target = VmTarget {
                        site: &site,
                        vm: &vm,
                        host: &host,
                        on_host: "",
                    };
                    driver
                        .power_off(&target, Duration::from_millis(cfg.power_off_timeout_ms))
                        .await
                }
                ActionKind::RestartVm { on_host } => {
                    let target = VmTarget {
                        site: &site,
                        vm: &vm,
                        host: &host_now,
                        on_host: &on_host,
                    };
                    driver
                        .restart(&target, Duration::from_millis(cfg.restart_timeout_ms))
                        .await
                }
            };
            tracing::info!(action = id, %site, %vm, ?outcome, "HA action answered");
            let _ = results.send(Input::ActionResult {
                at_ms: now_ms(),
                id,
                outcome,
            });
        });
    }
}

/// `transitionToActive` / `transitionToStandby` on a fresh connection (the prober's kept one
/// may be stuck on the very namenode being fenced).
async fn transition(
    addr: Option<String>,
    mut rpc: IpcConfig,
    source: RequestSource,
    timeout_ms: u64,
    active: bool,
) -> Outcome {
    let Some(addr) = addr else {
        return Outcome::Failed {
            error: "no RPC address configured for this VM".into(),
        };
    };
    let timeout = Duration::from_millis(timeout_ms);
    rpc.call_timeout = timeout;
    let mut client = HaServiceClient::new(addr, rpc);
    let result = if active {
        client.transition_to_active(source, timeout).await
    } else {
        client.transition_to_standby(source, timeout).await
    };
    match result {
        Ok(()) => Outcome::Ok,
        Err(IpcError::Timeout { .. }) => Outcome::TimedOut,
        Err(e) => Outcome::Failed {
            error: e.to_string(),
        },
    }
}
