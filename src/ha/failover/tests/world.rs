//! A simulated cluster: hosts, namenode VMs with an HA role, and a VM driver with injectable
//! faults. Deliberately simple and truthful unless a fault says otherwise.

use super::super::{Action, ActionKind, ClusterSpec, HaState, NnProbe, Outcome};

#[derive(Debug, Clone)]
pub struct Vm {
    pub vm: String,
    pub site: String,
    pub host: String,
    pub running: bool,
    /// SIGSTOP: the process exists (and keeps its role) but answers nothing.
    pub paused: bool,
    /// The monitor cannot reach it, though it runs (its host answers).
    pub partitioned: bool,
    pub role: HaState,
    pub healthy: bool,
    pub boot_until: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub graceful_fails: bool,
    pub power_off_fails: bool,
    /// The driver answers Ok to a power-off without doing it (a VM that resumes later).
    pub power_off_lies: bool,
    pub promote_fails: bool,
    /// transitionToActive works but its answer is lost: the driver reports a timeout.
    pub promote_answer_lost: bool,
    pub restart_fails: bool,
}

#[derive(Debug, Clone)]
pub struct World {
    pub hosts: Vec<(String, bool)>,
    pub vms: Vec<Vm>,
    pub faults: Faults,
}

/// Answer latencies of the simulated driver, ms.
const RPC_MS: u64 = 20;
const REFUSED_MS: u64 = 5;
const POWER_OFF_MS: u64 = 300;
const RESTART_MS: u64 = 1000;
const BOOT_MS: u64 = 3000;

impl World {
    /// Every host up, every VM running where configured; the first VM of each site active.
    pub fn from_spec(spec: &ClusterSpec) -> World {
        World {
            hosts: spec.hosts.iter().map(|h| (h.clone(), true)).collect(),
            vms: spec
                .sites
                .iter()
                .flat_map(|s| {
                    s.namenodes.iter().enumerate().map(|(i, n)| Vm {
                        vm: n.vm.clone(),
                        site: s.name.clone(),
                        host: n.host.clone(),
                        running: true,
                        paused: false,
                        partitioned: false,
                        role: if i == 0 {
                            HaState::Active
                        } else {
                            HaState::Standby
                        },
                        healthy: true,
                        boot_until: None,
                    })
                })
                .collect(),
            faults: Faults::default(),
        }
    }

    pub fn host_alive(&self, h: &str) -> bool {
        self.hosts.iter().any(|(n, a)| n == h && *a)
    }

    pub fn vm(&self, name: &str) -> &Vm {
        match self.vms.iter().find(|v| v.vm == name) {
            Some(v) => v,
            None => panic!("no VM {name}"),
        }
    }

    pub fn vm_mut(&mut self, name: &str) -> &mut Vm {
        match self.vms.iter_mut().find(|v| v.vm == name) {
            Some(v) => v,
            None => panic!("no VM {name}"),
        }
    }

    fn reachable(&self, v: &Vm) -> bool {
        self.host_alive(&v.host) && v.running && !v.paused && !v.partitioned
    }

    /// A host failure takes its VMs with it; they do not come back with the host.
    pub fn kill_host(&mut self, h: &str) {
        for (n, a) in &mut self.hosts {
            if n == h {
                *a = false;
            }
        }
        for v in &mut self.vms {
            if v.host == h {
                v.running = false;
            }
        }
    }

    pub fn revive_host(&mut self, h: &str) {
        for (n, a) in &mut self.hosts {
            if n == h {
                *a = true;
            }
        }
    }

    pub fn advance(&mut self, now: u64) {
        for v in &mut self.vms {
            if v.boot_until.is_some_and(|t| t <= now) {
                v.boot_until = None;
                v.role = HaState::Standby;
            }
        }
    }

    pub fn host_probes(&self) -> Vec<(String, bool)> {
        self.hosts.clone()
    }

    pub fn nn_probes(&self) -> Vec<(String, NnProbe)> {
        self.vms
            .iter()
            .map(|v| {
                let result = if self.reachable(v) {
                    NnProbe::Answered {
                        state: v.role,
                        healthy: v.healthy,
                    }
                } else if self.host_alive(&v.host) && !v.running && !v.partitioned {
                    NnProbe::Failed {
                        error: "connection refused".to_string(),
                    }
                } else {
                    NnProbe::Failed {
                        error: "timed out after 400 ms".to_string(),
                    }
                };
                (v.vm.clone(), result)
            })
            .collect()
    }

    /// Applies an action's effect now and returns when and how the driver answers.
    pub fn execute(&mut self, now: u64, a: &Action) -> (u64, Outcome) {
        let Some(v) = self.vms.iter().find(|v| v.vm == a.vm).cloned() else {
            return (
                REFUSED_MS,
                Outcome::Failed {
                    error: "unknown VM".to_string(),
                },
            );
        };
        let reachable = self.reachable(&v);
        let refused = self.host_alive(&v.host) && !v.running && !v.partitioned;
        let failed = |e: &str| Outcome::Failed {
            error: e.to_string(),
        };
        match &a.kind {
            ActionKind::TransitionToStandby { timeout_ms } => {
                if reachable && self.faults.graceful_fails {
                    (RPC_MS, failed("transitionToStandby refused"))
                } else if reachable {
                    if v.role == HaState::Active {
                        self.vm_mut(&a.vm).role = HaState::Standby;
                    }
                    (RPC_MS, Outcome::Ok)
                } else if refused {
                    (REFUSED_MS, failed("connection refused"))
                } else {
                    (*timeout_ms, Outcome::TimedOut)
                }
            }
            ActionKind::PowerOff { .. } => {
                if self.faults.power_off_fails {
                    (POWER_OFF_MS, failed("virsh destroy: failed to connect"))
                } else if self.faults.power_off_lies {
                    (POWER_OFF_MS, Outcome::Ok)
                } else {
                    let vm = self.vm_mut(&a.vm);
                    vm.running = false;
                    vm.paused = false;
                    (POWER_OFF_MS, Outcome::Ok)
                }
            }
            ActionKind::TransitionToActive { timeout_ms } => {
                if reachable && self.faults.promote_fails {
                    (RPC_MS, failed("transitionToActive refused"))
                } else if reachable {
                    self.vm_mut(&a.vm).role = HaState::Active;
                    if self.faults.promote_answer_lost {
                        (*timeout_ms, Outcome::TimedOut)
                    } else {
                        (RPC_MS, Outcome::Ok)
                    }
                } else if refused {
                    (REFUSED_MS, failed("connection refused"))
                } else {
                    (*timeout_ms, Outcome::TimedOut)
                }
            }
            ActionKind::RestartVm { on_host } => {
                if self.faults.restart_fails || !self.host_alive(on_host) {
                    (RESTART_MS, failed("could not start the VM"))
                } else {
                    let vm = self.vm_mut(&a.vm);
                    vm.host = on_host.clone();
                    vm.running = true;
                    vm.paused = false;
                    vm.partitioned = false;
                    vm.healthy = true;
                    vm.role = HaState::Initializing;
                    vm.boot_until = Some(now + BOOT_MS);
                    (RESTART_MS, Outcome::Ok)
                }
            }
        }
    }

    pub fn peer_of(&self, vm: &str) -> Option<String> {
        let site = &self.vms.iter().find(|v| v.vm == vm)?.site;
        self.vms
            .iter()
            .find(|v| &v.site == site && v.vm != vm)
            .map(|v| v.vm.clone())
    }

    pub fn sites(&self) -> Vec<String> {
        let mut s: Vec<String> = self.vms.iter().map(|v| v.site.clone()).collect();
        s.dedup();
        s
    }

    /// VMs of a site that act as active: running (a paused process keeps its role) on a live
    /// host with the Active role.
    pub fn actives(&self, site: &str) -> Vec<String> {
        self.vms
            .iter()
            .filter(|v| {
                v.site == site && v.running && self.host_alive(&v.host) && v.role == HaState::Active
            })
            .map(|v| v.vm.clone())
            .collect()
    }

    /// Running, answering namenodes of a site with their role.
    pub fn serving(&self, site: &str) -> Vec<(String, HaState, String)> {
        self.vms
            .iter()
            .filter(|v| v.site == site && self.reachable(v))
            .map(|v| (v.vm.clone(), v.role, v.host.clone()))
            .collect()
    }
}
