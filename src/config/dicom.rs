//! `[dicom]`, `[[remote_ae]]`, `[retrieve]`, `[commitment]` and `[query]`: the DICOM side of
//! the configuration.

use std::net::IpAddr;

use serde::Deserialize;

use super::security::{self, DicomTlsConfig, Service, UnknownAeConfig};
use super::{Config, ConfigError, invalid, is_valid_ae_title};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DicomConfig {
    pub aet: String,
    pub bind: IpAddr,
    pub port: u16,
    pub max_associations: usize,
    pub max_pdu: u32,
    pub artim_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub check_called_aet: bool,
    pub accept_unknown_storage: bool,
    pub shutdown_grace_secs: u64,
    pub allowed_calling: Vec<AllowedCaller>,
    /// Deepest nesting of sequences accepted in a data set, identifier or command set; the
    /// element walk refuses deeper ones before any recursive parser sees them.
    pub max_sequence_depth: usize,
    /// Longest a single write to a peer may block (a peer that stops reading).
    pub write_timeout_secs: u64,
    /// `[dicom.tls]`: the DICOM TLS listener and our certificate for outgoing TLS.
    pub tls: DicomTlsConfig,
    /// `[dicom.unknown_ae]`: what AEs no `[[remote_ae]]` entry names may do.
    pub unknown_ae: UnknownAeConfig,
    /// The character set the index reads text in when a data set has bytes beyond ASCII but no
    /// Specific Character Set (0008,0005); a defined term such as `ISO_IR 100`.
    pub default_character_set: String,
}

impl DicomConfig {
    /// `default_character_set`, parsed (checked when the configuration is loaded).
    pub fn default_charset(&self) -> crate::query::charset::dataset::DefaultCharacterSet {
        crate::query::charset::dataset::DefaultCharacterSet::parse(&self.default_character_set)
            .unwrap_or_default()
    }
}

/// One entry of the calling-AE allow-list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedCaller {
    pub aet: String,
    #[serde(default)]
    pub hosts: Vec<IpAddr>,
}

/// A remote Application Entity MIFAS may open associations to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteAe {
    pub aet: String,
    pub host: String,
    pub port: u16,
    /// Whether a C-MOVE may name it as Move Destination.
    #[serde(default = "default_true")]
    pub move_destination: bool,
    /// Services this AE may use when it calls us (default: all).
    #[serde(default = "security::all_services")]
    pub services: Vec<Service>,
    /// Addresses this AE may call us from; empty = any.
    #[serde(default)]
    pub hosts: Vec<IpAddr>,
    /// Open our associations to it (C-MOVE sub-operations, commitment reports) over TLS,
    /// verifying its certificate against `dicom.tls.ca` for the name in `host`.
    #[serde(default)]
    pub tls: bool,
    /// When it calls us: it must come over TLS with a client certificate whose subject
    /// common name, or one of whose DNS subject alternative names, is this value.
    #[serde(default)]
    pub tls_subject: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrieveConfig {
    /// C-STORE sub-operation associations open at once, over all C-MOVEs.
    pub max_outgoing_associations: usize,
    pub connect_timeout_secs: u64,
    pub response_timeout_secs: u64,
    /// How long a C-MOVE may wait for a free outgoing association before it fails (0xA702).
    pub queue_timeout_secs: u64,
}

/// `[commitment] policy`: on which sites an instance must be durable and verified before the
/// archive commits to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CommitPolicy {
    /// Every configured site.
    #[serde(rename = "all")]
    All,
    /// A majority of the configured sites.
    #[serde(rename = "quorum")]
    Quorum,
}

impl CommitPolicy {
    /// Sites that must hold a verified copy, out of `sites`.
    pub fn required(self, sites: usize) -> usize {
        match self {
            CommitPolicy::All => sites,
            CommitPolicy::Quorum => sites / 2 + 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommitmentConfig {
    pub policy: CommitPolicy,
    /// An instance still not durable on the sites the policy names this long after the request
    /// is reported as failed (0x0110).
    pub deadline_secs: u64,
    /// First wait before a report that could not be delivered is tried again; doubled after
    /// every failure up to `retry_max_secs`.
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    /// A report still undelivered this long after it was due is dropped (logged as an error).
    pub expiry_hours: u64,
    /// Seconds to connect to the requester, and to wait for its N-EVENT-REPORT-RSP.
    pub timeout_secs: u64,
}

impl Default for CommitmentConfig {
    fn default() -> Self {
        CommitmentConfig {
            policy: CommitPolicy::All,
            deadline_secs: 3600,
            retry_initial_secs: 5,
            retry_max_secs: 300,
            expiry_hours: 72,
            timeout_secs: 30,
        }
    }
}

impl Default for RetrieveConfig {
    fn default() -> Self {
        RetrieveConfig {
            max_outgoing_associations: 8,
            connect_timeout_secs: 10,
            response_timeout_secs: 60,
            queue_timeout_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    pub case_insensitive_names: bool,
    pub max_results: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            case_insensitive_names: true,
            max_results: 10000,
        }
    }
}

impl Default for DicomConfig {
    fn default() -> Self {
        DicomConfig {
            aet: "MIFAS".into(),
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 11112,
            max_associations: 64,
            max_pdu: 65536,
            artim_timeout_secs: 30,
            idle_timeout_secs: 300,
            check_called_aet: true,
            accept_unknown_storage: false,
            shutdown_grace_secs: 30,
            allowed_calling: Vec::new(),
            max_sequence_depth: crate::archive::DEFAULT_MAX_SEQUENCE_DEPTH,
            write_timeout_secs: 30,
            tls: DicomTlsConfig::default(),
            unknown_ae: UnknownAeConfig::default(),
            default_character_set: "ISO_IR 100".into(),
        }
    }
}

/// The checks of these sections that serde cannot express.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    if config.commitment.timeout_secs == 0 {
        return invalid("commitment.timeout_secs", "must be at least 1");
    }
    if config.commitment.retry_initial_secs == 0
        || config.commitment.retry_max_secs < config.commitment.retry_initial_secs
    {
        return invalid(
            "commitment.retry_initial_secs",
            "must be at least 1 and at most commitment.retry_max_secs",
        );
    }
    for (i, caller) in config.dicom.allowed_calling.iter().enumerate() {
        if !is_valid_ae_title(&caller.aet) {
            return invalid(
                &format!("dicom.allowed_calling[{i}].aet"),
                "must be 1-16 printable ASCII characters without backslash",
            );
        }
    }
    for (i, remote) in config.remote_ae.iter().enumerate() {
        if !is_valid_ae_title(&remote.aet) {
            return invalid(
                &format!("remote_ae[{i}].aet"),
                "must be 1-16 printable ASCII characters without backslash",
            );
        }
        if remote.host.trim().is_empty() {
            return invalid(&format!("remote_ae[{i}].host"), "must not be empty");
        }
        if remote.port == 0 {
            return invalid(&format!("remote_ae[{i}].port"), "must be 1-65535");
        }
        if config.remote_ae[..i]
            .iter()
            .any(|r| r.aet.trim() == remote.aet.trim())
        {
            return invalid(
                &format!("remote_ae[{i}].aet"),
                "the same AE title is listed twice",
            );
        }
    }
    if config.retrieve.max_outgoing_associations == 0 {
        return invalid("retrieve.max_outgoing_associations", "must be at least 1");
    }
    if config.retrieve.connect_timeout_secs == 0 {
        return invalid("retrieve.connect_timeout_secs", "must be at least 1");
    }
    if config.retrieve.queue_timeout_secs == 0 {
        return invalid("retrieve.queue_timeout_secs", "must be at least 1");
    }
    if config.retrieve.response_timeout_secs == 0 {
        return invalid("retrieve.response_timeout_secs", "must be at least 1");
    }
    if config.dicom.max_associations == 0 {
        return invalid("dicom.max_associations", "must be at least 1");
    }
    // PS3.8 9.3.1: a receiver must accept at least the minimum; dicom-ul refuses smaller values.
    if !(1024..=16 * 1024 * 1024).contains(&config.dicom.max_pdu) {
        return invalid("dicom.max_pdu", "must be between 1024 and 16777216 bytes");
    }
    if config.dicom.artim_timeout_secs == 0 {
        return invalid("dicom.artim_timeout_secs", "must be at least 1");
    }
    if !(1..=1024).contains(&config.dicom.max_sequence_depth) {
        return invalid("dicom.max_sequence_depth", "must be between 1 and 1024");
    }
    if config.dicom.write_timeout_secs == 0 {
        return invalid("dicom.write_timeout_secs", "must be at least 1");
    }
    if let Err(message) = crate::query::charset::dataset::DefaultCharacterSet::parse(
        &config.dicom.default_character_set,
    ) {
        return invalid("dicom.default_character_set", &message);
    }
    if config.dicom.idle_timeout_secs == 0 {
        return invalid("dicom.idle_timeout_secs", "must be at least 1");
    }
    Ok(())
}
