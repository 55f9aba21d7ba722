//! Tests of the failover machine against a simulated world (hosts, namenode VMs, a VM driver)
//! on a simulated clock. The world executes the machine's actions the way the real driver
//! would (effects at once, answers after a latency), is probed every probe interval, and an
//! invariant checker looks at every output.

mod faults;
mod property;
mod restart;
mod scenarios;
mod world;

use super::*;
use std::collections::BTreeMap;
use world::World;

/// Hosts h1..hN; sites given as (name, (vm, host), (vm, host)); the first VM believed active.
/// (site, (vm, host), (vm, host)).
pub(super) type SiteLayout<'a> = (&'a str, (&'a str, &'a str), (&'a str, &'a str));

pub(super) fn spec(hosts: usize, sites: &[SiteLayout<'_>]) -> ClusterSpec {
    ClusterSpec {
        hosts: (1..=hosts).map(|i| format!("h{i}")).collect(),
        sites: sites
            .iter()
            .map(|(name, a, b)| SiteSpec {
                name: name.to_string(),
                namenodes: [
                    NamenodeSpec {
                        vm: a.0.to_string(),
                        host: a.1.to_string(),
                    },
                    NamenodeSpec {
                        vm: b.0.to_string(),
                        host: b.1.to_string(),
                    },
                ],
                believed_active: Some(a.0.to_string()),
            })
            .collect(),
    }
}

/// The usual layout: three hosts, one site, s1-a active on h1, s1-b standby on h2.
pub(super) fn one_site() -> ClusterSpec {
    spec(3, &[("s1", ("s1-a", "h1"), ("s1-b", "h2"))])
}

/// What the checker knows about one namenode from the inputs alone (independently of the
/// machine's own bookkeeping): when it was last seen or made active, and last seen safe.
#[derive(Default, Clone)]
struct Seen {
    active: Option<u64>,
    safe: Option<u64>,
}

/// The simulation: machine + world + clock + in-flight answers + invariant checks.
pub(super) struct Sim {
    pub m: Machine,
    pub cfg: FailoverConfig,
    pub now: u64,
    pub world: World,
    /// (due time, action id, outcome)
    inflight: Vec<(u64, u64, Outcome)>,
    pub events: Vec<Event>,
    pub actions: Vec<Action>,
    next_probe: u64,
    /// Restart the monitor (serialise, deserialise, resume) before this input number.
    pub restart_before_input: Option<usize>,
    pub inputs: usize,
    seen: BTreeMap<String, Seen>,
    input_no: u64,
    /// The world may hold two actives only while a test makes the driver lie.
    pub allow_world_two_actives: bool,
}

impl Sim {
    pub fn new(spec: &ClusterSpec, world: World) -> Sim {
        Sim::with_config(spec, world, FailoverConfig::default())
    }

    pub fn with_config(spec: &ClusterSpec, world: World, cfg: FailoverConfig) -> Sim {
        let m = match Machine::new(cfg.clone(), spec) {
            Ok(m) => m,
            Err(e) => panic!("valid spec refused: {e}"),
        };
        Sim {
            m,
            cfg,
            now: 0,
            world,
            inflight: Vec::new(),
            events: Vec::new(),
            actions: Vec::new(),
            next_probe: 0,
            restart_before_input: None,
            inputs: 0,
            seen: BTreeMap::new(),
            input_no: 0,
            allow_world_two_actives: false,
        }
    }

    /// Advances the simulated clock to `until`, in 50 ms steps: due answers first, then a
    /// probe round when one is due, then a tick.
    pub fn run_until(&mut self, until: u64) {
        while self.now < until {
            self.now += 50;
            self.world.advance(self.now);
            let mut due: Vec<(u64, u64, Outcome)> = Vec::new();
            self.inflight.retain(|r| {
                if r.0 <= self.now {
                    due.push(r.clone());
                    false
                } else {
                    true
                }
            });
            due.sort_by_key(|r| (r.0, r.1));
            for (_, id, outcome) in due {
                self.feed(Input::ActionResult {
                    at_ms: self.now,
                    id,
                    outcome,
                });
            }
            if self.now >= self.next_probe {
                self.next_probe = self.now + self.cfg.probe_interval_ms;
                for (host, alive) in self.world.host_probes() {
                    self.feed(Input::HostProbe {
                        at_ms: self.now,
                        host,
                        alive,
                    });
                }
                for (vm, result) in self.world.nn_probes() {
                    self.feed(Input::NamenodeProbe {
                        at_ms: self.now,
                        vm,
                        result,
                    });
                }
            }
            self.feed(Input::Tick { at_ms: self.now });
        }
    }

    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    pub fn switchover(&mut self, site: &str) {
        self.feed(Input::Switchover {
            at_ms: self.now,
            site: site.to_string(),
        });
    }

    /// Feeds one input (restarting the monitor first if this is the chosen input), checks the
    /// invariants on the output and executes its actions in the world.
    pub fn feed(&mut self, input: Input) {
        self.inputs += 1;
        if self.restart_before_input == Some(self.inputs) {
            self.restart_monitor();
        }
        self.input_no += 1;
        self.note_input(&input);
        let out = self.m.handle(input);
        self.absorb(out);
    }

    /// A monitor restart: the state goes through serialisation (both JSON and postcard, the
    /// candidates for sled) and answers to in-flight actions are lost with the old process.
    pub fn restart_monitor(&mut self) {
        let json = serde_json::to_string(self.m.state()).unwrap();
        let state: MachineState = serde_json::from_str(&json).unwrap();
        let bytes = postcard::to_stdvec(self.m.state()).unwrap();
        let via_postcard: MachineState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(&state, self.m.state());
        assert_eq!(&via_postcard, self.m.state());
        self.inflight.clear();
        let (m, out) = match Machine::resume(self.cfg.clone(), state, self.now) {
            Ok(r) => r,
            Err(e) => panic!("resume refused: {e}"),
        };
        self.m = m;
        self.absorb(out);
    }

    fn note_input(&mut self, input: &Input) {
        let n = self.input_no;
        match input {
            Input::NamenodeProbe {
                vm,
                result: NnProbe::Answered { state, .. },
                ..
            } => {
                let seen = self.seen.entry(vm.clone()).or_default();
                match state {
                    HaState::Active => seen.active = Some(n),
                    HaState::Standby => seen.safe = Some(n),
                    _ => {}
                }
            }
            Input::ActionResult {
                id,
                outcome: Outcome::Ok,
                ..
            } => {
                let Some(a) = self.actions.iter().find(|a| a.id == *id) else {
                    return;
                };
                let seen = self.seen.entry(a.vm.clone()).or_default();
                match a.kind {
                    ActionKind::TransitionToActive { .. } => seen.active = Some(n),
                    ActionKind::TransitionToStandby { .. } | ActionKind::PowerOff { .. } => {
                        seen.safe = Some(n)
                    }
                    ActionKind::RestartVm { .. } => {}
                }
            }
            _ => {}
        }
    }

    fn absorb(&mut self, out: Output) {
        self.events.extend(out.events.iter().cloned());
        for a in &out.actions {
            self.check_action(a);
            self.actions.push(a.clone());
            let (delay, outcome) = self.world.execute(self.now, a);
            self.inflight.push((self.now + delay, a.id, outcome));
        }
        self.check_world();
    }

    /// Every action has a cause in the timeline about the same VM, and a promotion needs its
    /// peer seen safe (standby, or a confirmed fence) after it was last seen or made active.
    fn check_action(&self, a: &Action) {
        let cause = self.events.iter().find(|e| e.seq == a.cause);
        assert!(
            cause.is_some_and(|e| e.vm.as_deref() == Some(a.vm.as_str())
                && e.site.as_deref() == Some(a.site.as_str())),
            "action {a:?} is not justified by an event about {} (cause {cause:?})",
            a.vm
        );
        if let ActionKind::TransitionToActive { .. } = a.kind {
            let Some(peer) = self.world.peer_of(&a.vm) else {
                panic!("no peer for {}", a.vm)
            };
            let seen = self.seen.get(&peer).cloned().unwrap_or_default();
            let ok = match (seen.active, seen.safe) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(x), Some(s)) => s > x,
            };
            assert!(
                ok,
                "promotion of {} while its peer {peer} is not known fenced/standby since it \
                 was last active (active input {:?}, safe input {:?})\nevents: {:#?}",
                a.vm,
                seen.active,
                seen.safe,
                self.events.iter().rev().take(12).collect::<Vec<_>>()
            );
        }
    }

    fn check_world(&self) {
        if self.allow_world_two_actives {
            return;
        }
        for site in self.world.sites() {
            let n = self.world.actives(&site).len();
            assert!(n <= 1, "site {site} has {n} actives at {} ms", self.now);
        }
    }

    pub fn has_event(&self, f: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(f)
    }

    pub fn count_actions(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.actions.iter().filter(|a| f(a)).count()
    }

    /// The machine's active for a site, as a VM name.
    pub fn machine_active(&self, site: &str) -> Option<String> {
        let s = self.m.state().sites.iter().find(|s| s.name == site)?;
        s.active.map(|slot| s.nn(slot).vm.clone())
    }

    pub fn site_state(&self, site: &str) -> &state::SiteState {
        match self.m.state().sites.iter().find(|s| s.name == site) {
            Some(s) => s,
            None => panic!("no site {site}"),
        }
    }
}

/// Actions as short (verb, vm) pairs, for asserting on sequences.
pub(super) fn verbs(actions: &[Action]) -> Vec<(&'static str, String)> {
    actions
        .iter()
        .map(|a| {
            let verb = match a.kind {
                ActionKind::TransitionToStandby { .. } => "standby",
                ActionKind::PowerOff { .. } => "power-off",
                ActionKind::TransitionToActive { .. } => "active",
                ActionKind::RestartVm { .. } => "restart",
            };
            (verb, a.vm.clone())
        })
        .collect()
}

/// `(verb, vm)` for building expected sequences.
pub(super) fn v(verb: &'static str, vm: &str) -> (&'static str, String) {
    (verb, vm.to_string())
}

/// One site, started: the machine has adopted s1-a as the active.
pub(super) fn started() -> Sim {
    let spec = one_site();
    let mut sim = Sim::new(&spec, World::from_spec(&spec));
    sim.run_for(2000);
    assert_eq!(sim.machine_active("s1").as_deref(), Some("s1-a"));
    assert!(
        sim.actions.is_empty(),
        "no action in a healthy cluster: {:?}",
        sim.actions
    );
    sim
}
