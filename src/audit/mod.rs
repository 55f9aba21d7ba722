//! The audit trail (IHE ATNA): DICOM PS3.15 A.5 audit messages ([`message`], [`events`]) sent as
//! RFC 5424 syslog ([`syslog`]) to collectors over TCP, TLS ([`tls`]) or UDP and/or appended to a
//! local file ([`sink`]).
//!
//! The network layers (DIMSE, web) hold an [`Audit`] handle and report what happened, in their
//! own terms ([`Actor`], [`Study`]); this module knows nothing of them. Reporting never waits
//! and never fails: a message that cannot be queued is dropped and counted on `/metrics`.

pub mod events;
pub mod message;
mod recent;
pub mod sink;
pub mod syslog;
pub mod time;
pub mod tls;
mod transfers;
pub mod xml;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use events::{Actor, Study};
pub use message::{Action, AuditMessage, Outcome};
pub use transfers::Received;

use crate::config::AuditConfig;
use crate::config::audit::AuditTransport;
use message::AuditSource;
use sink::{Done, Sink, SinkCounters, WorkerSettings};

/// Why the audit trail could not start (a configuration the operator must fix).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit collector {collector}: {message}")]
    Tls { collector: String, message: String },
    #[error("cannot open the audit file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads one count of a destination (a metric family's value).
type Counter = fn(&SinkCounters) -> u64;

/// The handle every network layer reports through. Cheap to clone; [`Audit::disabled`] does
/// nothing at all.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    source: AuditSource,
    header: syslog::Header,
    /// The archive as a participant (its AE title at this host).
    archive: Actor,
    /// The queues; emptied at shutdown, which closes them so the workers finish.
    sinks: RwLock<Vec<Sink>>,
    /// The counts stay readable after shutdown.
    counters: Vec<Arc<SinkCounters>>,
    done: std::sync::Mutex<Vec<Done>>,
    /// Studies each user viewed lately (one Instances Accessed per user, study and minute).
    recent: recent::RecentAccess,
}

impl Audit {
    /// A handle that reports nothing (`[audit] enabled = false`, and tests).
    pub fn disabled() -> Audit {
        Audit { inner: None }
    }

    /// Start the workers of every configured destination. Must run inside the tokio runtime.
    pub fn start(config: &AuditConfig, aet: &str) -> Result<Audit, AuditError> {
        if !config.enabled {
            return Ok(Audit::disabled());
        }
        let settings = WorkerSettings {
            queue_size: config.queue_size,
            connect_timeout: Duration::from_secs(config.connect_timeout_secs),
            write_timeout: Duration::from_secs(config.write_timeout_secs),
            reconnect_max: Duration::from_secs(config.reconnect_max_secs),
            udp_max_bytes: config.udp_max_bytes,
        };
        let mut sinks = Vec::new();
        let mut done = Vec::new();
        for collector in &config.collector {
            let tls = match collector.transport {
                AuditTransport::Tls => Some(tls::client(collector)?),
                _ => None,
            };
            let (s, d) = sink::spawn_collector(collector, tls, settings);
            sinks.push(s);
            done.push(d);
        }
        if !config.file.as_os_str().is_empty() {
            let (s, d) = sink::spawn_file(&config.file, config.file_fsync, settings)?;
            sinks.push(s);
            done.push(d);
        }
        let hostname = if config.hostname.is_empty() {
            syslog::system_hostname()
        } else {
            config.hostname.clone()
        };
        let source_id = if config.source_id.is_empty() {
            aet.trim().to_string()
        } else {
            config.source_id.clone()
        };
        Ok(Audit {
            inner: Some(Arc::new(Inner {
                source: AuditSource {
                    source_id,
                    enterprise_site_id: config.enterprise_site_id.clone(),
                },
                header: syslog::Header {
                    hostname: hostname.clone(),
                    app_name: config.app_name.clone(),
                    proc_id: std::process::id().to_string(),
                },
                archive: Actor::node(aet, &hostname),
                counters: sinks.iter().map(|s| s.counters.clone()).collect(),
                sinks: RwLock::new(sinks),
                done: std::sync::Mutex::new(done),
                recent: recent::RecentAccess::default(),
            })),
        })
    }

    /// Whether messages are built at all: callers skip collecting what only an audit message
    /// would need (index look-ups) when not.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The archive as a participant (its AE title at this host).
    pub fn archive(&self) -> Option<&Actor> {
        self.inner.as_ref().map(|i| &i.archive)
    }

    /// Queue `message` for every destination; never waits.
    pub fn emit(&self, message: AuditMessage) {
        let Some(inner) = &self.inner else { return };
        let xml = message.to_xml(&inner.source);
        let line: Arc<str> = Arc::from(inner.header.format(message.time, &xml));
        if let Ok(sinks) = inner.sinks.read() {
            for s in sinks.iter() {
                s.offer(line.clone());
            }
        }
    }

    /// Build a message about the archive only when enabled.
    fn with_archive(&self, build: impl FnOnce(&Actor) -> AuditMessage) {
        if let Some(inner) = &self.inner {
            self.emit(build(&inner.archive));
        }
    }

    /// Application Start / Stop.
    pub fn application_activity(&self, started: bool) {
        let launcher = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                use std::os::unix::fs::MetadataExt;
                let uid = std::fs::metadata("/proc/self").map(|m| m.uid());
                uid.map_or_else(|_| "unknown".into(), |u| format!("uid:{u}"))
            });
        self.with_archive(|archive| events::application_activity(archive, &launcher, started));
    }

    /// Security Alert: an association from `caller` was refused for `reason`.
    pub fn association_refused(&self, caller: &Actor, reason: &str) {
        self.with_archive(|archive| events::association_refused(archive, caller, reason));
    }

    /// DICOM Instances Transferred (`Create`): `source` stored these studies' instances. One
    /// message per study (A.5.3.5 names exactly one patient per message).
    pub fn instances_stored(&self, source: &Actor, studies: &[Study], outcome: Outcome) {
        for study in studies {
            self.with_archive(|archive| {
                events::instances_transferred(
                    Action::Create,
                    source,
                    archive,
                    None,
                    true,
                    std::slice::from_ref(study),
                    outcome,
                )
            });
        }
    }

    /// DICOM Instances Transferred (`Read`): the archive sent instances to `destination` at
    /// the request of `requestor` (`None`: the destination asked itself — C-GET, downloads).
    pub fn instances_sent(
        &self,
        destination: &Actor,
        requestor: Option<&Actor>,
        studies: &[Study],
        outcome: Outcome,
    ) {
        for study in studies {
            self.with_archive(|archive| {
                events::instances_transferred(
                    Action::Read,
                    archive,
                    destination,
                    requestor,
                    false,
                    std::slice::from_ref(study),
                    outcome,
                )
            });
        }
    }

    /// Query: `requestor` searched with `query` (C-FIND identifier or QIDO-RS query string) in
    /// the information model `sop_class`; `detail` is how the query is encoded
    /// (`("TransferSyntax", uid)` or `("QueryEncoding", "UTF-8")`).
    pub fn query(
        &self,
        requestor: &Actor,
        sop_class: &str,
        query: &[u8],
        detail: (&'static str, &str),
        outcome: Outcome,
    ) {
        self.with_archive(|archive| {
            events::query(requestor, archive, sop_class, query, detail, outcome)
        });
    }

    /// User Authentication: a login of `user`, successful or not.
    pub fn login(&self, user: &Actor, success: bool) {
        self.with_archive(|archive| events::user_authentication(user, archive, success));
    }

    /// DICOM Instances Accessed: `user` viewed these studies' instances. A study this user
    /// viewed within the last minute is not reported again.
    pub fn instances_accessed(&self, user: &Actor, studies: &[Study]) {
        let Some(inner) = &self.inner else { return };
        let now = std::time::Instant::now();
        for study in studies {
            if inner.recent.is_new(&user.id, &study.study_uid, now) {
                self.with_archive(|archive| {
                    events::instances_accessed(user, archive, std::slice::from_ref(study))
                });
            }
        }
    }

    /// Whether `user`'s access to `study_uid` would be reported now (callers skip the index
    /// look-ups of an access that would not be).
    pub fn access_is_due(&self, user: &Actor, study_uid: &str) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        inner
            .recent
            .would_be_new(&user.id, study_uid, std::time::Instant::now())
    }

    /// Stop accepting messages and wait, at most `grace`, for the queued ones to be written.
    pub async fn shutdown(&self, grace: Duration) {
        let Some(inner) = &self.inner else { return };
        if let Ok(mut sinks) = inner.sinks.write() {
            sinks.clear();
        }
        let done: Vec<Done> = inner
            .done
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        let all = async {
            for d in done {
                let _ = d.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("audit messages still queued at shutdown were not all delivered");
        }
    }

    /// The Prometheus families of the audit trail (empty when disabled).
    pub fn render_prometheus(&self) -> String {
        let Some(inner) = &self.inner else {
            return String::new();
        };
        let mut out = String::new();
        let families: [(&str, &str, Counter); 3] = [
            (
                "mifas_audit_messages_total",
                "Audit messages written to the destination.",
                |c| c.sent.load(Ordering::Relaxed),
            ),
            (
                "mifas_audit_dropped_total",
                "Audit messages lost: queue full, or a failed datagram or file write.",
                |c| c.dropped.load(Ordering::Relaxed),
            ),
            (
                "mifas_audit_failures_total",
                "Failed connection attempts and writes to the destination (each retried).",
                |c| c.failures.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for c in &inner.counters {
                out.push_str(&format!("{name}{{sink=\"{}\"}} {}\n", c.name, value(c)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_file_gets_one_rfc5424_line_per_message_and_metrics_count_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let config = AuditConfig {
            enabled: true,
            file: path.clone(),
            hostname: "pacs1".into(),
            ..AuditConfig::default()
        };
        let audit = Audit::start(&config, "MIFAS").unwrap();
        assert!(audit.is_enabled());
        audit.application_activity(true);
        audit.login(&Actor::user("line\nbreak", "192.0.2.1"), false);
        audit.shutdown(Duration::from_secs(5)).await;
        // After shutdown nothing more is queued.
        audit.application_activity(false);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let pid = std::process::id();
        for line in &lines {
            assert!(line.starts_with("<85>1 "), "{line}");
            assert!(
                line.contains(&format!(" pacs1 MIFAS {pid} IHE+RFC-3881 - \u{FEFF}<?xml")),
                "{line}"
            );
        }
        assert!(
            lines[1].contains("UserID=\"line&#10;break\""),
            "{}",
            lines[1]
        );
        let metrics = audit.render_prometheus();
        assert!(
            metrics.contains("mifas_audit_messages_total{sink=\"file\"} 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("mifas_audit_dropped_total{sink=\"file\"} 0"),
            "{metrics}"
        );
    }

    #[test]
    fn disabled_builds_nothing() {
        let audit = Audit::disabled();
        assert!(!audit.is_enabled());
        audit.login(&Actor::user("x", "192.0.2.1"), true);
        assert_eq!(audit.render_prometheus(), "");
        let off = Audit::start(&AuditConfig::default(), "MIFAS").unwrap();
        assert!(!off.is_enabled());
    }
}
