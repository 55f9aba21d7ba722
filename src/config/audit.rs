//! `[audit]`: the IHE ATNA audit trail (DICOM PS3.15 A.5 messages as RFC 5424 syslog) — to
//! which collectors (audit record repositories) and/or local file the messages go, and how a
//! collector that is down is handled. Off by default.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Emit audit messages at all. Off: no message is built, nothing is queued.
    pub enabled: bool,
    /// AuditSourceID of every message; empty: `dicom.aet`.
    pub source_id: String,
    /// AuditEnterpriseSiteID (e.g. the hospital); empty: the attribute is left out.
    pub enterprise_site_id: String,
    /// RFC 5424 APP-NAME.
    pub app_name: String,
    /// RFC 5424 HOSTNAME; empty: the system's host name.
    pub hostname: String,
    /// Messages waiting per destination; when full, new ones are dropped and counted
    /// (`mifas_audit_dropped_total`) — a DICOM operation never waits for the audit trail.
    pub queue_size: usize,
    /// Longest a connection attempt to a collector may take.
    pub connect_timeout_secs: u64,
    /// Longest one message write to a collector may take before the connection is dropped.
    pub write_timeout_secs: u64,
    /// Longest wait between reconnection attempts (the wait doubles from 1 s up to this).
    pub reconnect_max_secs: u64,
    /// Largest UDP datagram (RFC 5426); a longer message is cut at a UTF-8 boundary.
    pub udp_max_bytes: usize,
    /// Local append-only file, one RFC 5424 message per line; empty: no file.
    pub file: PathBuf,
    /// fsync the file after each batch of messages written (the queue drained), so a
    /// crash loses at most the messages of the last batch.
    pub file_fsync: bool,
    /// How long `serve` waits at shutdown for the queued messages (the Application Stop one
    /// included) to go out.
    pub shutdown_flush_secs: u64,
    /// The collectors (audit record repositories).
    pub collector: Vec<CollectorConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: false,
            source_id: String::new(),
            enterprise_site_id: String::new(),
            app_name: "MIFAS".into(),
            hostname: String::new(),
            queue_size: 10_000,
            connect_timeout_secs: 5,
            write_timeout_secs: 10,
            reconnect_max_secs: 60,
            udp_max_bytes: 8192,
            file: PathBuf::new(),
            file_fsync: true,
            shutdown_flush_secs: 5,
            collector: Vec::new(),
        }
    }
}

/// `[[audit.collector]]`: one syslog receiver.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Short name for logs and the `sink` label of the metrics.
    pub name: String,
    pub transport: AuditTransport,
    pub host: String,
    pub port: u16,
    /// `tls`: PEM file of the CA certificates the collector's certificate must chain to.
    #[serde(default)]
    pub ca_file: PathBuf,
    /// `tls`: the name the collector's certificate must carry; empty: `host`.
    #[serde(default)]
    pub server_name: String,
    /// `tls`: our client certificate chain (PEM), for collectors that authenticate nodes
    /// (IHE ATNA secure node); empty: no client certificate.
    #[serde(default)]
    pub cert_file: PathBuf,
    /// `tls`: the private key of `cert_file` (PEM).
    #[serde(default)]
    pub key_file: PathBuf,
}

/// How messages reach a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditTransport {
    /// RFC 6587 octet counting over TCP.
    Tcp,
    /// RFC 5425: TLS, octet counting.
    Tls,
    /// RFC 5426: one datagram per message.
    Udp,
}

impl AuditConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.queue_size == 0 {
            return invalid("audit.queue_size".into(), "must be at least 1");
        }
        if self.connect_timeout_secs == 0 {
            return invalid("audit.connect_timeout_secs".into(), "must be at least 1");
        }
        if self.write_timeout_secs == 0 {
            return invalid("audit.write_timeout_secs".into(), "must be at least 1");
        }
        if self.reconnect_max_secs == 0 {
            return invalid("audit.reconnect_max_secs".into(), "must be at least 1");
        }
        // RFC 5426 3.2: every receiver takes 480 bytes; fewer cannot hold a header.
        if !(480..=65_507).contains(&self.udp_max_bytes) {
            return invalid(
                "audit.udp_max_bytes".into(),
                "must be between 480 and 65507",
            );
        }
        // RFC 5424 6.2: APP-NAME and HOSTNAME are printable US-ASCII without spaces.
        let header_field =
            |s: &str, max: usize| s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b));
        if self.app_name.is_empty() || !header_field(&self.app_name, 48) {
            return invalid(
                "audit.app_name".into(),
                "must be 1-48 printable ASCII characters without spaces",
            );
        }
        if !header_field(&self.hostname, 255) {
            return invalid(
                "audit.hostname".into(),
                "must be at most 255 printable ASCII characters without spaces",
            );
        }
        for (i, c) in self.collector.iter().enumerate() {
            let key = |k: &str| format!("audit.collector[{i}].{k}");
            let name_ok = !c.name.is_empty()
                && c.name.len() <= 32
                && c.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return invalid(key("name"), "must be 1-32 letters, digits, '-' or '_'");
            }
            if c.name == "file" || self.collector[..i].iter().any(|o| o.name == c.name) {
                return invalid(
                    key("name"),
                    "must be unique and not \"file\" (the local file's name)",
                );
            }
            if c.host.trim().is_empty() {
                return invalid(key("host"), "must not be empty");
            }
            if c.port == 0 {
                return invalid(key("port"), "must be 1-65535");
            }
            if c.transport == AuditTransport::Tls && c.ca_file.as_os_str().is_empty() {
                return invalid(
                    key("ca_file"),
                    "a tls collector needs the CA file its certificate is checked against",
                );
            }
            if c.cert_file.as_os_str().is_empty() != c.key_file.as_os_str().is_empty() {
                return invalid(key("key_file"), "cert_file and key_file go together");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn off_by_default_and_collectors_parse() {
        assert!(!Config::default().audit.enabled);
        let config = Config::parse(
            "[audit]\nenabled = true\n[[audit.collector]]\nname = \"siem\"\ntransport = \"tls\"\nhost = \"arr.example\"\nport = 6514\nca_file = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        config.audit.validate().unwrap();
        assert_eq!(config.audit.collector[0].transport, AuditTransport::Tls);
        assert_eq!(config.audit.queue_size, 10_000);
    }

    #[test]
    fn a_tls_collector_needs_its_ca() {
        let config = Config::parse(
            "[audit]\n[[audit.collector]]\nname = \"siem\"\ntransport = \"tls\"\nhost = \"h\"\nport = 6514\n",
        )
        .unwrap();
        let err = config.audit.validate().unwrap_err();
        assert!(
            err.to_string().contains("audit.collector[0].ca_file"),
            "{err}"
        );
    }

    #[test]
    fn names_must_be_unique() {
        let config = Config::parse(
            "[audit]\n[[audit.collector]]\nname = \"a\"\ntransport = \"udp\"\nhost = \"h\"\nport = 514\n[[audit.collector]]\nname = \"a\"\ntransport = \"tcp\"\nhost = \"h\"\nport = 601\n",
        )
        .unwrap();
        let err = config.audit.validate().unwrap_err();
        assert!(err.to_string().contains("audit.collector[1].name"), "{err}");
    }
}
