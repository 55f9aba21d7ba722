//! The information service: what we know about each site's health, shared by everything that
//! talks to sites (the co-allocator reads it to choose sites, the replication and repair paths
//! feed it, `/metrics` and later the portal show it).
//!
//! Per site: probe latency (last and moving average), throughput measured on real transfers
//! (exponentially weighted moving average), error rate (moving average of call outcomes),
//! counters, and a state Up / Degraded / Down with hysteresis so one lost packet does not flap a
//! site. It owns no I/O except the prober task, which only calls `Site::probe`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Site;
use crate::config::HealthConfig;

/// Weight of the newest sample in the error-rate moving average: about the last 10 calls count.
const ERROR_RATE_ALPHA: f64 = 0.1;
/// Weight of the newest probe in the latency moving average: probes are rare (every few seconds),
/// so the average follows within a handful of them.
const LATENCY_ALPHA: f64 = 0.3;
/// Weight of a transfer of [`THROUGHPUT_FULL_WEIGHT_BYTES`] or more in the throughput average;
/// smaller transfers weigh proportionally less because their time is mostly latency, not rate.
const THROUGHPUT_ALPHA: f64 = 0.3;
const THROUGHPUT_FULL_WEIGHT_BYTES: f64 = 1024.0 * 1024.0;
/// A smaller weight is still some information; below this floor a stream of tiny reads would
/// never move the estimate at all.
const THROUGHPUT_MIN_ALPHA: f64 = 0.02;
/// Throughput assumed for a site before any transfer when no other site has been measured
/// either: only the ratio between sites matters to the co-allocator, and equal priors mean equal
/// first shares, corrected by the first real transfers.
const DEFAULT_THROUGHPUT: f64 = 64.0 * 1024.0 * 1024.0;
/// A degraded site is up again only when its error rate and latency are below this fraction of
/// the thresholds (hysteresis: a site hovering at the threshold does not flap).
const RECOVER_FRACTION: f64 = 0.5;

/// The state of a site as the co-allocator and the operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteState {
    Up,
    /// Answers, but slowly or with errors: used after the up sites.
    Degraded,
    /// Not answering: used only when nothing else holds the object.
    Down,
}

impl SiteState {
    pub const ALL: [SiteState; 3] = [SiteState::Up, SiteState::Degraded, SiteState::Down];

    pub fn as_str(self) -> &'static str {
        match self {
            SiteState::Up => "up",
            SiteState::Degraded => "degraded",
            SiteState::Down => "down",
        }
    }
}

/// A copy of one site's figures at one moment (for the portal and tests).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SiteSnapshot {
    pub site: String,
    pub state: SiteState,
    pub probe_latency_last: Option<Duration>,
    pub probe_latency_avg: Option<Duration>,
    /// Measured bytes/s, `None` before the first transfer.
    pub throughput: Option<f64>,
    pub error_rate: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub calls: u64,
    pub errors: u64,
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    state: SiteState,
    consecutive_failures: u32,
    consecutive_probe_ok: u32,
    probe_latency_last: Option<f64>,
    probe_latency_avg: Option<f64>,
    throughput: Option<f64>,
    error_rate: f64,
    bytes_read: u64,
    bytes_written: u64,
    calls: u64,
    errors: u64,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            state: SiteState::Up,
            consecutive_failures: 0,
            consecutive_probe_ok: 0,
            probe_latency_last: None,
            probe_latency_avg: None,
            throughput: None,
            error_rate: 0.0,
            bytes_read: 0,
            bytes_written: 0,
            calls: 0,
            errors: 0,
        }
    }
}

fn ewma(old: Option<f64>, sample: f64, alpha: f64) -> f64 {
    match old {
        Some(old) => old + alpha * (sample - old),
        None => sample,
    }
}

/// The registry; share it as `Arc<SiteHealth>`. The lock is a plain mutex held for a few field
/// updates, never across an await.
#[derive(Debug)]
pub struct SiteHealth {
    config: HealthConfig,
    sites: Mutex<BTreeMap<String, Entry>>,
}

impl SiteHealth {
    pub fn new(config: HealthConfig) -> SiteHealth {
        SiteHealth {
            config,
            sites: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.sites.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, site: &str, f: impl FnOnce(&mut Entry, &HealthConfig)) {
        let mut sites = self.lock();
        let entry = match sites.get_mut(site) {
            Some(entry) => entry,
            None => sites.entry(site.to_string()).or_default(),
        };
        f(entry, &self.config);
    }

    /// Make the site known (so `/metrics` lists it before its first call).
    pub fn register(&self, site: &str) {
        self.update(site, |_, _| {});
    }

    /// A call to the site succeeded.
    pub fn record_ok(&self, site: &str) {
        self.update(site, |e, c| {
            e.calls += 1;
            e.error_rate = ewma(Some(e.error_rate), 0.0, ERROR_RATE_ALPHA);
            e.consecutive_failures = 0;
            reevaluate(e, c);
        });
    }

    /// A call to the site failed (error, timeout, corrupt answer).
    pub fn record_error(&self, site: &str) {
        self.update(site, |e, c| {
            e.calls += 1;
            e.errors += 1;
            e.error_rate = ewma(Some(e.error_rate), 1.0, ERROR_RATE_ALPHA);
            fail(e, c);
        });
    }

    /// `bytes` were read from the site in `elapsed` (one real transfer).
    pub fn record_transfer(&self, site: &str, bytes: u64, elapsed: Duration) {
        // A zero elapsed time (a paused clock, a cached answer) says nothing about the rate.
        let secs = elapsed.as_secs_f64();
        self.update(site, |e, _| {
            e.bytes_read += bytes;
            if bytes > 0 && secs > 0.0 {
                let weight = (bytes as f64 / THROUGHPUT_FULL_WEIGHT_BYTES).min(1.0);
                let alpha = (THROUGHPUT_ALPHA * weight).max(THROUGHPUT_MIN_ALPHA);
                e.throughput = Some(ewma(e.throughput, bytes as f64 / secs, alpha));
            }
        });
    }

    /// `bytes` were written to the site (replication, ingest).
    pub fn record_written(&self, site: &str, bytes: u64) {
        self.update(site, |e, _| e.bytes_written += bytes);
    }

    /// A probe answered in `latency`.
    pub fn record_probe_ok(&self, site: &str, latency: Duration) {
        let secs = latency.as_secs_f64();
        self.update(site, |e, c| {
            e.probe_latency_last = Some(secs);
            e.probe_latency_avg = Some(ewma(e.probe_latency_avg, secs, LATENCY_ALPHA));
            e.consecutive_failures = 0;
            e.consecutive_probe_ok = e.consecutive_probe_ok.saturating_add(1);
            if e.state == SiteState::Down && e.consecutive_probe_ok >= c.up_after.max(1) {
                // Back from down: the failures that took it down are history, not a rate.
                e.state = SiteState::Up;
                e.error_rate = 0.0;
            }
            reevaluate(e, c);
        });
    }

    /// A probe failed or timed out.
    pub fn record_probe_error(&self, site: &str) {
        self.update(site, fail);
    }

    pub fn state(&self, site: &str) -> SiteState {
        self.lock().get(site).map_or(SiteState::Up, |e| e.state)
    }

    /// Expected bytes/s of one transfer from the site: the measured average, else the mean of
    /// the measured sites (an unmeasured site is assumed average), else a default.
    pub fn throughput(&self, site: &str) -> f64 {
        let sites = self.lock();
        if let Some(t) = sites.get(site).and_then(|e| e.throughput) {
            return t;
        }
        let measured: Vec<f64> = sites.values().filter_map(|e| e.throughput).collect();
        if measured.is_empty() {
            DEFAULT_THROUGHPUT
        } else {
            measured.iter().sum::<f64>() / measured.len() as f64
        }
    }

    /// Average probe latency, `None` before the first probe.
    pub fn probe_latency(&self, site: &str) -> Option<Duration> {
        self.lock()
            .get(site)
            .and_then(|e| e.probe_latency_avg)
            .map(Duration::from_secs_f64)
    }

    pub fn snapshot(&self) -> Vec<SiteSnapshot> {
        self.lock()
            .iter()
            .map(|(name, e)| SiteSnapshot {
                site: name.clone(),
                state: e.state,
                probe_latency_last: e.probe_latency_last.map(Duration::from_secs_f64),
                probe_latency_avg: e.probe_latency_avg.map(Duration::from_secs_f64),
                throughput: e.throughput,
                error_rate: e.error_rate,
                bytes_read: e.bytes_read,
                bytes_written: e.bytes_written,
                calls: e.calls,
                errors: e.errors,
                consecutive_failures: e.consecutive_failures,
            })
            .collect()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let snapshot = self.snapshot();
        let mut out = String::new();
        let mut family =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(&SiteSnapshot) -> Option<f64>| {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                for s in &snapshot {
                    if let Some(v) = value(s) {
                        let _ = writeln!(
                            out,
                            "{name}{{site=\"{}\"}} {}",
                            escape_label(&s.site),
                            number(v)
                        );
                    }
                }
            };
        family(
            "mifas_site_up",
            "gauge",
            "1 if the site is up or degraded, 0 if down.",
            &|s| Some(if s.state == SiteState::Down { 0.0 } else { 1.0 }),
        );
        family(
            "mifas_site_probe_latency_seconds",
            "gauge",
            "Moving average of the site's probe round trip.",
            &|s| s.probe_latency_avg.map(|d| d.as_secs_f64()),
        );
        family(
            "mifas_site_throughput_bytes_per_second",
            "gauge",
            "Moving average of the rate of real reads from the site.",
            &|s| s.throughput,
        );
        family(
            "mifas_site_error_rate",
            "gauge",
            "Moving average of failed calls to the site (0..1).",
            &|s| Some(s.error_rate),
        );
        family(
            "mifas_site_bytes_read_total",
            "counter",
            "Bytes read from the site.",
            &|s| Some(s.bytes_read as f64),
        );
        family(
            "mifas_site_bytes_written_total",
            "counter",
            "Bytes written to the site.",
            &|s| Some(s.bytes_written as f64),
        );
        family(
            "mifas_site_calls_total",
            "counter",
            "Calls to the site (reads, writes, probes excluded).",
            &|s| Some(s.calls as f64),
        );
        family(
            "mifas_site_errors_total",
            "counter",
            "Failed calls to the site.",
            &|s| Some(s.errors as f64),
        );
        let name = "mifas_site_state";
        let _ = writeln!(
            out,
            "# HELP {name} The site's state, one-hot over up/degraded/down."
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in &snapshot {
            for state in SiteState::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{site=\"{}\",state=\"{}\"}} {}",
                    escape_label(&s.site),
                    state.as_str(),
                    u8::from(s.state == state)
                );
            }
        }
        out
    }

    /// Probe every site every `probe_interval_secs` until `cancel`; each site in its own task so
    /// a hanging site delays no other. A probe that has not answered within the interval (at
    /// least one second) counts as failed.
    pub fn spawn_prober(
        self: &Arc<Self>,
        sites: Vec<Arc<dyn Site>>,
        cancel: CancellationToken,
    ) -> JoinHandle<()> {
        let interval = Duration::from_secs(self.config.probe_interval_secs.max(1));
        let timeout = interval.max(Duration::from_secs(1));
        let mut tasks = tokio::task::JoinSet::new();
        for site in sites {
            self.register(site.name());
            let health = Arc::clone(self);
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = ticks.tick() => {}
                    }
                    let started = tokio::time::Instant::now();
                    let outcome = tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = tokio::time::timeout(timeout, site.probe()) => r,
                    };
                    match outcome {
                        Ok(Ok(())) => health.record_probe_ok(site.name(), started.elapsed()),
                        Ok(Err(e)) => {
                            tracing::debug!(site = site.name(), error = %e, "probe failed");
                            health.record_probe_error(site.name());
                        }
                        Err(_) => {
                            tracing::debug!(site = site.name(), "probe timed out");
                            health.record_probe_error(site.name());
                        }
                    }
                }
            });
        }
        tokio::spawn(async move { while tasks.join_next().await.is_some() {} })
    }
}

/// One more failure (call or probe): down after `down_after` in a row.
fn fail(e: &mut Entry, c: &HealthConfig) {
    e.consecutive_failures = e.consecutive_failures.saturating_add(1);
    e.consecutive_probe_ok = 0;
    if e.consecutive_failures >= c.down_after.max(1) {
        e.state = SiteState::Down;
    } else {
        reevaluate(e, c);
    }
}

/// Up ↔ Degraded from the moving averages, with a recovery margin. Down is left only by probes.
fn reevaluate(e: &mut Entry, c: &HealthConfig) {
    let latency_limit = c.degraded_latency_ms as f64 / 1000.0;
    let latency = e.probe_latency_avg.unwrap_or(0.0);
    match e.state {
        SiteState::Up => {
            if e.error_rate > c.degraded_error_rate || latency > latency_limit {
                e.state = SiteState::Degraded;
            }
        }
        SiteState::Degraded => {
            if e.error_rate <= c.degraded_error_rate * RECOVER_FRACTION
                && latency <= latency_limit * RECOVER_FRACTION
            {
                e.state = SiteState::Up;
            }
        }
        SiteState::Down => {}
    }
}

/// Label values escape backslash, double quote and newline (exposition format 0.0.4).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests;
