//! Probes of hosts and namenodes, turned into plain data ([`ProbeResult`], [`HostProbe`]) for
//! the failover state machine: it never sees a socket, only what a probe found and how long it
//! took.
//!
//! A namenode probe asks over Hadoop RPC (`getServiceStatus`, then `monitorHealth`, on a kept
//! connection) and, when an HTTP address is known, over HTTP at the same time (`/isActive` and
//! the JMX `NameNodeStatus` bean): the RPC answer is authoritative, the HTTP one is a second
//! opinion through another listener and thread pool of the same process.
//!
//! Every probe has its own timeout; [`ProbeConfig::check_budget`] lets the monitor check them
//! against its detection budget.

pub mod http;

use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;

use crate::ha::ipc::{HaServiceClient, HaState, IpcConfig, IpcError};

/// Probe timeouts. The defaults match the failover machine's (probe every 500 ms, a probe
/// failed after 400 ms, down after 3 failures: detection well under 3 s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Host liveness: the TCP connect to the host's probe port. A live host answers a connect
    /// in well under a millisecond on a LAN, refusal included. Default 400 ms.
    pub host_timeout: Duration,
    /// A whole namenode probe: `getServiceStatus` then `monitorHealth` over RPC, with the HTTP
    /// GETs running beside them, all within this. Default 400 ms: shorter than the probe
    /// interval, so a hung namenode costs one timeout per round and rounds never overlap.
    pub namenode_timeout: Duration,
    /// The RPC client (connect and per-call timeouts, user); its call timeout only matters
    /// when it is shorter than `namenode_timeout`.
    pub rpc: IpcConfig,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            host_timeout: Duration::from_millis(400),
            namenode_timeout: Duration::from_millis(400),
            rpc: IpcConfig::default(),
        }
    }
}

impl ProbeConfig {
    /// The longest any one probe (host or namenode) can take.
    pub fn longest_probe(&self) -> Duration {
        self.host_timeout.max(self.namenode_timeout)
    }

    /// Refuses timeouts that could not detect a failure within `budget` (each probe must end,
    /// failed, before the budget is spent).
    pub fn check_budget(&self, budget: Duration) -> Result<(), String> {
        let longest = self.longest_probe();
        if longest >= budget {
            return Err(format!(
                "a probe may take {} ms, not shorter than the detection budget of {} ms",
                longest.as_millis(),
                budget.as_millis()
            ));
        }
        Ok(())
    }
}

/// Where a namenode answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamenodeAddrs {
    /// The name the monitor's configuration gives it (e.g. `nn0`).
    pub name: String,
    /// RPC address, `host:port` (HAServiceProtocol is served there).
    pub rpc: String,
    /// HTTP address, `host:port`; None skips the HTTP probes.
    pub http: Option<String>,
}

/// What kind of failure a probe met: the state machine fences differently for a process that
/// is gone (refused) than for one that hangs (timeout: it may come back and must be fenced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFailure {
    /// Connection refused or reset: nothing listens (process dead, host up).
    Refused,
    /// No answer in time: host down, network cut, or the process paused.
    Timeout,
    /// The namenode answered that it is unhealthy (`monitorHealth`).
    Unhealthy,
    /// The namenode answered with an error (e.g. still starting).
    Remote,
    /// The answer was not the protocol.
    Protocol,
}

impl ProbeFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeFailure::Refused => "refused",
            ProbeFailure::Timeout => "timeout",
            ProbeFailure::Unhealthy => "unhealthy",
            ProbeFailure::Remote => "remote",
            ProbeFailure::Protocol => "protocol",
        }
    }

    fn of_ipc(e: &IpcError) -> Self {
        match e {
            IpcError::Connect { .. } | IpcError::Disconnected { .. } => ProbeFailure::Refused,
            IpcError::Timeout { .. } => ProbeFailure::Timeout,
            IpcError::HealthCheckFailed { .. } => ProbeFailure::Unhealthy,
            IpcError::Remote { .. } => ProbeFailure::Remote,
            IpcError::Protocol { .. } => ProbeFailure::Protocol,
        }
    }
}

/// One probe of one namenode.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// [`NamenodeAddrs::name`].
    pub namenode: String,
    /// When the probe started (wall clock, for status pages and events).
    pub at: SystemTime,
    /// The process answered on RPC or HTTP.
    pub reachable: bool,
    /// The HA state: from RPC, else from JMX when only HTTP answered.
    pub state: Option<HaState>,
    /// `monitorHealth` said healthy.
    pub healthy: bool,
    /// From `getServiceStatus`: a standby could become active now.
    pub ready_to_become_active: Option<bool>,
    /// `/isActive` (None: not probed or no answer).
    pub http_active: Option<bool>,
    /// JMX `NameNodeStatus.State` (None: not probed, no answer, or the bean describes another
    /// namenode, see [`http::JmxStatus::host_and_port`]).
    pub jmx_state: Option<HaState>,
    /// Time the whole probe took.
    pub latency: Duration,
    /// Time `getServiceStatus` took, when it answered.
    pub rpc_latency: Option<Duration>,
    /// The RPC failure, if any (the one the state machine acts on).
    pub failure: Option<ProbeFailure>,
    /// Every failure met, as text (RPC and HTTP), for events and status output.
    pub error: Option<String>,
}

impl ProbeResult {
    /// RPC and HTTP tell the same story about being active (when HTTP answered at all). They
    /// may differ for a moment during a transition; a lasting difference is worth an event.
    pub fn consistent(&self) -> bool {
        let rpc_active = self.state.map(|s| s == HaState::Active);
        let http = [
            self.http_active,
            self.jmx_state.map(|s| s == HaState::Active),
        ];
        http.iter()
            .flatten()
            .all(|h| rpc_active.is_none_or(|r| r == *h))
    }
}

/// Probes one namenode, keeping its RPC connection between probes.
#[derive(Debug)]
pub struct NamenodeProber {
    addrs: NamenodeAddrs,
    /// [`ProbeConfig::namenode_timeout`].
    timeout: Duration,
    client: HaServiceClient,
}

impl NamenodeProber {
    pub fn new(addrs: NamenodeAddrs, config: &ProbeConfig) -> Self {
        let client = HaServiceClient::new(addrs.rpc.clone(), config.rpc.clone());
        NamenodeProber {
            addrs,
            timeout: config.namenode_timeout,
            client,
        }
    }

    pub fn addrs(&self) -> &NamenodeAddrs {
        &self.addrs
    }

    /// The RPC client, for the transitions of a failover (same connection as the probes).
    pub fn client(&mut self) -> &mut HaServiceClient {
        &mut self.client
    }

    /// One probe: RPC status and health, and the HTTP views beside them, within the probe
    /// timeout. Never fails: every failure is in the result.
    pub async fn probe(&mut self) -> ProbeResult {
        let at = SystemTime::now();
        let started = Instant::now();
        let timeout = self.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let http_addr = self.addrs.http.clone();
        let http = async move {
            match http_addr {
                Some(a) => {
                    let (active, jmx) =
                        tokio::join!(http::is_active(&a, timeout), http::jmx_status(&a, timeout));
                    (Some(active), Some(jmx))
                }
                None => (None, None),
            }
        };
        let client = &mut self.client;
        let rpc = async move {
            // both calls share the probe's deadline; a call cut short by it leaves the client
            // without a connection (it reconnects next time), never with a half-read one
            let addr = client.addr().to_string();
            let late = |op| IpcError::Timeout {
                addr: addr.clone(),
                op,
                after: started.elapsed(),
            };
            let t = Instant::now();
            let status = tokio::time::timeout_at(deadline, client.get_service_status())
                .await
                .unwrap_or_else(|_| Err(late("getServiceStatus")));
            let status_latency = t.elapsed();
            // no health call to a process that did not answer the first: it would only spend
            // the rest of the deadline
            let health = match &status {
                Ok(_) => Some(
                    tokio::time::timeout_at(deadline, client.monitor_health())
                        .await
                        .unwrap_or_else(|_| Err(late("monitorHealth"))),
                ),
                Err(_) => None,
            };
            (status, status_latency, health)
        };
        let ((status, status_latency, health), (http_active, jmx)) = tokio::join!(rpc, http);

        let mut errors = Vec::new();
        let mut failure = None;
        let (state, ready, rpc_latency) = match status {
            Ok(s) => (
                Some(s.state),
                Some(s.ready_to_become_active),
                Some(status_latency),
            ),
            Err(e) => {
                failure = Some(ProbeFailure::of_ipc(&e));
                errors.push(e.to_string());
                (None, None, None)
            }
        };
        let healthy = match health {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                failure = Some(ProbeFailure::of_ipc(&e));
                errors.push(e.to_string());
                false
            }
            None => false,
        };
        let http_active = http_active.and_then(|r| r.map_err(|e| errors.push(e.to_string())).ok());
        let jmx = jmx.and_then(|r| r.map_err(|e| errors.push(e.to_string())).ok());
        // a bean describing another namenode (two namenodes in one JVM, or an HTTP address
        // that belongs to the other namenode) says nothing about this one
        let jmx_state = match jmx {
            Some(j) if j.describes(&self.addrs.rpc) => Some(j.state),
            Some(j) => {
                errors.push(format!(
                    "JMX at {} describes the namenode at {}, not {}",
                    self.addrs.http.as_deref().unwrap_or("-"),
                    j.host_and_port.as_deref().unwrap_or("-"),
                    self.addrs.rpc
                ));
                None
            }
            None => None,
        };
        let reachable = state.is_some() || http_active.is_some() || jmx_state.is_some();
        ProbeResult {
            namenode: self.addrs.name.clone(),
            at,
            reachable,
            state: state.or(jmx_state),
            healthy,
            ready_to_become_active: ready,
            http_active,
            jmx_state,
            latency: started.elapsed(),
            rpc_latency,
            failure,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }
}

/// One host liveness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProbe {
    /// The probed address (`host:port`).
    pub addr: String,
    /// The host's kernel answered: the connect succeeded or was refused.
    pub reachable: bool,
    pub latency: Duration,
    /// Why the host counts as down.
    pub error: Option<String>,
}

/// Host liveness by a TCP connect to `addr` (`host:port`, e.g. its SSH port). A refusal counts
/// as alive: only a running kernel sends it. Down is a timeout, no route, or unreachable — what
/// ICMP echo would tell, without needing raw sockets.
pub async fn probe_host(addr: &str, timeout: Duration) -> HostProbe {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
    let (reachable, error) = match outcome {
        Ok(Ok(_)) => (true, None),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => (true, None),
        Ok(Err(e)) => (false, Some(format!("connect to {addr}: {e}"))),
        Err(_) => (
            false,
            Some(format!(
                "connect to {addr}: no answer within {} ms",
                timeout.as_millis()
            )),
        ),
    };
    HostProbe {
        addr: addr.to_string(),
        reachable,
        latency: started.elapsed(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(state: Option<HaState>, http: Option<bool>, jmx: Option<HaState>) -> ProbeResult {
        ProbeResult {
            namenode: "nn0".into(),
            at: SystemTime::UNIX_EPOCH,
            reachable: true,
            state,
            healthy: true,
            ready_to_become_active: None,
            http_active: http,
            jmx_state: jmx,
            latency: Duration::ZERO,
            rpc_latency: None,
            failure: None,
            error: None,
        }
    }

    #[test]
    fn consistency_compares_only_the_views_that_answered() {
        use HaState::*;
        assert!(result(Some(Active), Some(true), Some(Active)).consistent());
        assert!(result(Some(Standby), Some(false), None).consistent());
        assert!(result(None, Some(true), Some(Standby)).consistent());
        assert!(!result(Some(Active), Some(false), None).consistent());
        assert!(!result(Some(Standby), None, Some(Active)).consistent());
    }

    #[test]
    fn budget_must_exceed_the_longest_probe() {
        let mut c = ProbeConfig::default();
        assert_eq!(c.longest_probe(), Duration::from_millis(400));
        assert!(c.check_budget(Duration::from_millis(1500)).is_ok());
        c.host_timeout = Duration::from_secs(2);
        assert!(c.check_budget(Duration::from_millis(1500)).is_err());
    }
}
