//! Timing knobs of the failover state machine. The lead maps these to the `[ha]` TOML table;
//! every field is a plain number of milliseconds or a count so the mapping is one line each.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Timing and thresholds of detection, fencing, promotion and restart.
///
/// The defaults detect a dead active in under 2 s (see [`FailoverConfig::detection_budget_ms`]):
/// ZKFC needs at least its ZooKeeper session timeout (10 s) for the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// Time between two probe rounds (hosts and namenodes), ms. Default 500.
    pub probe_interval_ms: u64,
    /// Longest a single probe may take before it counts as failed, ms. Must be shorter than
    /// the interval so rounds never overlap and a hung namenode costs one timeout per round.
    /// Default 400.
    pub probe_timeout_ms: u64,
    /// Consecutive failed probes before a host or a namenode is declared down. One lost packet
    /// must not cause a failover, so the default is 3.
    pub failure_threshold: u32,
    /// Timeout the driver gives the graceful `transitionToStandby` of the active being fenced,
    /// ms. Short: a namenode that does not answer is powered off next. Default 1000.
    pub graceful_fence_timeout_ms: u64,
    /// How long the machine waits for the VM driver's power-off answer before counting the
    /// power-off as failed, ms. Default 15000.
    pub power_off_timeout_ms: u64,
    /// Timeout the driver gives `transitionToActive`, ms. Default 5000.
    pub promote_timeout_ms: u64,
    /// How long the machine waits for the VM driver's restart answer, ms. Default 60000.
    pub restart_timeout_ms: u64,
    /// After a restart, how long the VM has to answer as a healthy standby before it is
    /// restarted again, ms. A namenode loads its fsimage and edits first. Default 120000.
    pub rejoin_timeout_ms: u64,
    /// After a promotion, no second automatic failover of the same site for this long, ms,
    /// unless the new active's host is declared dead (a dead host is not a flap: its VMs cannot
    /// come back by themselves). A failure inside the window is held and failed over when the
    /// window ends if the active is still down. Planned switchovers are not held. Default 30000.
    pub cooldown_ms: u64,
    /// Wait before retrying a failed fence, promotion or restart, ms. Default 5000.
    pub retry_backoff_ms: u64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            probe_interval_ms: 500,
            probe_timeout_ms: 400,
            failure_threshold: 3,
            graceful_fence_timeout_ms: 1000,
            power_off_timeout_ms: 15_000,
            promote_timeout_ms: 5_000,
            restart_timeout_ms: 60_000,
            rejoin_timeout_ms: 120_000,
            cooldown_ms: 30_000,
            retry_backoff_ms: 5_000,
        }
    }
}

/// A configuration the machine refuses to run with, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("ha: {key} must be greater than 0")]
    Zero { key: &'static str },
    #[error(
        "ha: probe_timeout_ms ({timeout}) must be shorter than probe_interval_ms ({interval}), \
         or probe rounds overlap"
    )]
    ProbeTimeoutTooLong { timeout: u64, interval: u64 },
}

impl FailoverConfig {
    /// Refuses zero thresholds and timeouts, and a probe timeout not shorter than the interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero: [(&'static str, u64); 9] = [
            ("probe_interval_ms", self.probe_interval_ms),
            ("probe_timeout_ms", self.probe_timeout_ms),
            ("failure_threshold", u64::from(self.failure_threshold)),
            ("graceful_fence_timeout_ms", self.graceful_fence_timeout_ms),
            ("power_off_timeout_ms", self.power_off_timeout_ms),
            ("promote_timeout_ms", self.promote_timeout_ms),
            ("restart_timeout_ms", self.restart_timeout_ms),
            ("rejoin_timeout_ms", self.rejoin_timeout_ms),
            ("retry_backoff_ms", self.retry_backoff_ms),
        ];
        if let Some((key, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero { key });
        }
        if self.probe_timeout_ms >= self.probe_interval_ms {
            return Err(ConfigError::ProbeTimeoutTooLong {
                timeout: self.probe_timeout_ms,
                interval: self.probe_interval_ms,
            });
        }
        Ok(())
    }

    /// Worst-case time from a failure to its detection: the first failed probe starts at most
    /// one interval after the failure, the k-th one `k - 1` intervals later, and it fails at
    /// the latest after its timeout. With the defaults: 3 × 500 + 400 = 1900 ms.
    pub fn detection_budget_ms(&self) -> u64 {
        u64::from(self.failure_threshold)
            .saturating_mul(self.probe_interval_ms)
            .saturating_add(self.probe_timeout_ms)
    }

    /// How long the machine itself waits for an action's answer before treating it as timed
    /// out: the driver's own timeout plus one probe interval of slack, so a driver answering
    /// `TimedOut` at its deadline is normally heard first.
    pub(crate) fn answer_deadline(&self, driver_timeout_ms: u64) -> u64 {
        driver_timeout_ms.saturating_add(self.probe_interval_ms)
    }
}
