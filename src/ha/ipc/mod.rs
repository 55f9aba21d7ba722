//! A small Hadoop IPC client for `HAServiceProtocol`, the protocol `hdfs haadmin` and the ZKFC use
//! to ask a namenode its HA state and health and to move it between active and standby.
//! hdfs-native does not expose it and no Rust crate speaks it, so the messages are written here
//! from the wire format ([`messages`]), framed by [`wire`] and driven by [`client`].
//!
//! Only SIMPLE authentication (no SASL, no Kerberos): the monitor runs beside test and lab
//! clusters. Every call has a deadline; errors say whether the namenode could not be reached,
//! did not answer in time, refused, or spoke something else ([`IpcError`]).

pub mod client;
pub mod messages;
pub mod wire;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use client::{HaServiceClient, ServiceStatus};

/// The protocol name a namenode registers HAServiceProtocol under (connection context and every
/// request header).
pub const HA_SERVICE_PROTOCOL: &str = "org.apache.hadoop.ha.HAServiceProtocol";

/// The exception class `monitorHealth` throws for an unhealthy service.
pub const HEALTH_CHECK_FAILED: &str = "org.apache.hadoop.ha.HealthCheckFailedException";

/// Timeouts and identity of a client. Transitions take their timeout per call (a graceful fence
/// and a promotion want different ones). The defaults suit the failover machine's probe
/// timeout of 400 ms (DESIGN.md §7); ZKFC's equivalents are 20 s connect and 45 s RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcConfig {
    /// Connecting (TCP handshake) to the namenode's RPC port. A live host whose namenode is down
    /// refuses at once; only a dead host, a cut network or a full accept queue wait this long.
    pub connect_timeout: Duration,
    /// `getServiceStatus` and `monitorHealth`, connecting included. A namenode answers them in
    /// about a millisecond without its namesystem lock; a paused (GC, SIGSTOP) or wedged one
    /// does not answer at all, and this is how long it takes to notice.
    pub call_timeout: Duration,
    /// The user named in the connection context. None: `HADOOP_USER_NAME`, else the process user
    /// (`USER`/`LOGNAME`). With permissions on, transitions need the namenode's superuser.
    pub user: Option<String>,
}

impl Default for IpcConfig {
    fn default() -> Self {
        IpcConfig {
            connect_timeout: Duration::from_millis(300),
            call_timeout: Duration::from_millis(400),
            user: None,
        }
    }
}

impl IpcConfig {
    /// The effective user sent to the namenode.
    pub fn effective_user(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("HADOOP_USER_NAME").ok())
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "mifas".to_string())
    }
}

/// What went wrong with a call. [`IpcError::is_unreachable`] separates "no answer" (the
/// namenode may be dead or paused: fence before promoting another) from answers that refused.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The TCP connection could not be made (refused, no route, reset during set-up).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// No answer within the deadline: connecting (a dead host) or waiting for the response (a
    /// paused or wedged process whose kernel still accepts connections).
    #[error("{addr}: {op} timed out after {} ms", after.as_millis())]
    Timeout {
        addr: String,
        op: &'static str,
        after: Duration,
    },
    /// The connection broke after it was made (the server closed it or the process died).
    #[error("connection to {addr} lost during {op}: {source}")]
    Disconnected {
        addr: String,
        op: &'static str,
        source: std::io::Error,
    },
    /// `monitorHealth` answered that the service is unhealthy (`HealthCheckFailedException`).
    #[error("{addr} is unhealthy: {message}")]
    HealthCheckFailed { addr: String, message: String },
    /// The namenode answered with an exception (ERROR or FATAL status): a refused transition
    /// (`AccessControlException`, `ServiceFailedException`), a namenode still starting
    /// (`RetriableException`), an unknown protocol. `message` is the server's whole text, often
    /// with a Java stack trace; the error displays only its first line.
    #[error("{addr}: {op} failed: {class}: {}", first_line(message))]
    Remote {
        addr: String,
        op: &'static str,
        class: String,
        message: String,
    },
    /// The peer sent something that is not a well-formed answer to our call.
    #[error("{addr}: protocol error in {op}: {detail}")]
    Protocol {
        addr: String,
        op: &'static str,
        detail: String,
    },
}

/// The message proper of a Java exception text, without the stack trace after it.
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

impl IpcError {
    /// No answer from the process: it is dead, unreachable or paused. A refusal or an unhealthy
    /// verdict means the process runs and answers.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            IpcError::Connect { .. } | IpcError::Timeout { .. } | IpcError::Disconnected { .. }
        )
    }

    /// A short name of the variant, for `key: value` output and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            IpcError::Connect { .. } => "connect",
            IpcError::Timeout { .. } => "timeout",
            IpcError::Disconnected { .. } => "disconnected",
            IpcError::HealthCheckFailed { .. } => "unhealthy",
            IpcError::Remote { .. } => "remote",
            IpcError::Protocol { .. } => "protocol",
        }
    }
}

/// The HA state of a namenode, as HAServiceProtocol and the JMX `NameNodeStatus` bean name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HaState {
    Initializing,
    Active,
    Standby,
    Observer,
}

impl HaState {
    pub fn as_str(self) -> &'static str {
        match self {
            HaState::Initializing => "initializing",
            HaState::Active => "active",
            HaState::Standby => "standby",
            HaState::Observer => "observer",
        }
    }
}

impl fmt::Display for HaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HaState {
    type Err = String;

    /// Case-insensitive: JMX says `active`, Java's enum names say `ACTIVE`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "initializing" => Ok(HaState::Initializing),
            "active" => Ok(HaState::Active),
            "standby" => Ok(HaState::Standby),
            "observer" => Ok(HaState::Observer),
            _ => Err(format!("unknown HA state {s:?}")),
        }
    }
}

/// Who asks for a transition (`HARequestSource`). A namenode with automatic failover off (no
/// ZKFC, our case) accepts `User` and `UserForced` and refuses `Zkfc`; with it on, the reverse
/// for `User`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestSource {
    User,
    UserForced,
    Zkfc,
}

impl FromStr for RequestSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "user" => Ok(RequestSource::User),
            "forced" | "user-forced" => Ok(RequestSource::UserForced),
            "zkfc" => Ok(RequestSource::Zkfc),
            _ => Err(format!("unknown request source {s:?} (user, forced, zkfc)")),
        }
    }
}
