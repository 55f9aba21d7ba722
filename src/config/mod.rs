//! One TOML file → typed configuration with defaults. Every key is documented in
//! `mifas.example.toml`; unknown keys are errors so a typo never silently falls back to a default.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod audit;
mod dicomweb;
pub mod ha;
mod security;

pub use audit::AuditConfig;
pub use dicomweb::DicomWebConfig;
pub use ha::HaConfig;
pub use security::{DicomTlsConfig, HttpTlsConfig, Service, UnknownAeConfig};

/// A configuration problem, always naming the key (or the file) so the operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config key {key}: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub dicom: DicomConfig,
    pub query: QueryConfig,
    pub storage: StorageConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub retrieve: RetrieveConfig,
    /// Storage Commitment (PS3.4 Annex J): what a commitment promises and how reports go out.
    pub commitment: CommitmentConfig,
    /// Remote AEs we send to (C-MOVE destinations).
    pub remote_ae: Vec<RemoteAe>,
    /// DICOMweb (PS3.18) under `/dicom-web` on the HTTP port.
    pub dicomweb: DicomWebConfig,
    /// The HA monitor of the HDFS namenode VMs; off unless the table is present.
    pub ha: Option<HaConfig>,
    /// The IHE ATNA audit trail (`[audit]`, off by default).
    pub audit: AuditConfig,
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub quota_bytes: u64,
    /// Largest object (stored Part-10 file) accepted, in bytes; 0 = no limit. Checked while the
    /// data arrives: a larger object is refused with 0xA700 without being spooled whole.
    pub max_object_bytes: u64,
    pub duplicate_policy: DuplicatePolicy,
    pub group_commit_max: usize,
    /// Memory the index keeps of its pages (sled's cache), MiB: the larger part of MIFAS's
    /// resident memory once the archive is bigger than this.
    pub index_cache_mb: u64,
    /// How many sites must hold an object durably before it is acknowledged.
    pub ack: AckPolicy,
    /// Replicated storage sites; empty = the embedded local store under `data_dir/objects`.
    pub sites: Vec<SiteConfig>,
    /// Seconds between background repair passes in `serve` (0 = never).
    pub repair_interval_secs: u64,
    /// Fraction (0.0..=1.0) of the placements whose SHA-256 a repair pass re-reads and checks;
    /// every placement's size is always checked.
    pub repair_sha256_sample: f64,
    /// Co-allocated reads (`[storage.coalloc]`).
    pub coalloc: CoallocConfig,
    /// The information service (`[storage.health]`).
    pub health: HealthConfig,
}

/// `[storage.coalloc]`: how reads are spread over the sites holding copies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoallocConfig {
    /// Objects at least this large (MiB) are read as byte ranges from several sites at once;
    /// smaller ones come whole from one site.
    pub min_object_mb: u64,
    /// Size of one range, in MiB (at least 1).
    pub range_mb: u64,
    /// Bytes read ahead of the consumer, in MiB (bounds memory per read).
    pub buffer_mb: u64,
    /// Objects of a multi-object retrieve fetched at once.
    pub objects_in_flight: usize,
    /// A range outstanding this many times longer than the site's expected time is re-requested
    /// from another site (endgame; first answer wins).
    pub straggler_factor: f64,
}

impl Default for CoallocConfig {
    fn default() -> Self {
        CoallocConfig {
            min_object_mb: 4,
            range_mb: 1,
            buffer_mb: 32,
            objects_in_flight: 8,
            straggler_factor: 3.0,
        }
    }
}

/// `[storage.health]`: probes and states of the sites.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Seconds between latency probes of each site.
    pub probe_interval_secs: u64,
    /// Consecutive failed calls/probes before a site is marked down.
    pub down_after: u32,
    /// Consecutive successful probes before a down site is up again.
    pub up_after: u32,
    /// Error rate (moving average, 0..1) above which an up site is degraded.
    pub degraded_error_rate: f64,
    /// Probe latency in milliseconds above which an up site is degraded.
    pub degraded_latency_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            probe_interval_secs: 5,
            down_after: 3,
            up_after: 2,
            degraded_error_rate: 0.2,
            degraded_latency_ms: 1000,
        }
    }
}

/// `[storage] ack`: "1", "quorum" (a majority of the sites) or "all".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AckPolicy {
    #[serde(rename = "1")]
    One,
    #[serde(rename = "quorum")]
    Quorum,
    #[serde(rename = "all")]
    All,
}

impl AckPolicy {
    /// Sites that must hold an object before it is acknowledged, out of `sites`.
    pub fn required(self, sites: usize) -> usize {
        match self {
            AckPolicy::One => 1.min(sites),
            AckPolicy::Quorum => sites / 2 + 1,
            AckPolicy::All => sites,
        }
    }
}

/// One `[[storage.sites]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Short name shown in logs, metrics and the portal; letters, digits, '-' and '_'.
    pub name: String,
    /// `hdfs://host:port`, `hdfs://nameservice` (with `namenodes`), or `file:///dir`.
    pub url: String,
    /// For an HA nameservice: its namenodes' RPC addresses, `host:port`.
    #[serde(default)]
    pub namenodes: Vec<String>,
    /// HDFS replication factor of the files we write (0 = the cluster's default).
    #[serde(default)]
    pub replication: u32,
    /// HDFS block size of the files we write, in MiB (0 = the cluster's default).
    #[serde(default)]
    pub block_size_mb: u64,
    /// Directory on the site under which MIFAS keeps its files.
    #[serde(default = "default_site_root")]
    pub root: String,
    /// HDFS user name (default: the user running MIFAS).
    #[serde(default)]
    pub user: Option<String>,
    /// A pack file is sealed and a new one started past this size, in MiB.
    #[serde(default = "default_pack_max_mb")]
    pub pack_max_mb: u64,
    /// Seconds one call to the site may take before the site counts as failing.
    #[serde(default = "default_site_timeout")]
    pub timeout_secs: u64,
    /// Namenode failover attempts of the HDFS client per call (hdfs-native's default, 15,
    /// takes minutes to give up on a dead namenode).
    #[serde(default = "default_failover_attempts")]
    pub failover_attempts: u32,
    /// Extra Hadoop client settings for this site only (e.g. "dfs.client.use.datanode.hostname").
    #[serde(default)]
    pub hadoop: std::collections::BTreeMap<String, String>,
}

fn default_site_root() -> String {
    "/mifas".into()
}
fn default_pack_max_mb() -> u64 {
    1024
}
fn default_site_timeout() -> u64 {
    30
}
fn default_failover_attempts() -> u32 {
    2
}

/// What to do when a SOP Instance UID that is already stored arrives again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicatePolicy {
    /// Keep the stored object, answer success (re-sends after a lost response are harmless).
    Ignore,
    /// Store the new object in place of the old one.
    Replace,
    /// Refuse with status 0x0111 (Duplicate SOP Instance).
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub port: u16,
    /// A portal session ends after this long without a request.
    pub session_idle_secs: u64,
    /// Failed logins allowed per account and per client address within `login_window_secs`
    /// before further attempts are refused (HTTP 429) until the window has passed.
    pub login_max_failures: u32,
    pub login_window_secs: u64,
    /// Largest upload request (all files together), in MiB.
    pub upload_max_mb: u64,
    /// Threads rendering previews and thumbnails (a burst of previews waits for these, it
    /// never takes the threads DICOM associations need).
    pub render_threads: usize,
    /// Bytes of rendered thumbnails and previews kept in memory, in MiB.
    pub render_cache_mb: u64,
    /// `[http.tls]`: HTTPS on this port.
    pub tls: HttpTlsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
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

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./mifas-data"),
            quota_bytes: 0,
            max_object_bytes: 0,
            duplicate_policy: DuplicatePolicy::Ignore,
            group_commit_max: 128,
            index_cache_mb: 1024,
            ack: AckPolicy::Quorum,
            sites: Vec::new(),
            repair_interval_secs: 3600,
            repair_sha256_sample: 0.01,
            coalloc: CoallocConfig::default(),
            health: HealthConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            port: 8080,
            session_idle_secs: 8 * 3600,
            login_max_failures: 5,
            login_window_secs: 300,
            upload_max_mb: 2048,
            render_threads: 2,
            render_cache_mb: 64,
            tls: HttpTlsConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub dicom_port: Option<u16>,
    pub aet: Option<String>,
    pub http_port: Option<u16>,
}

impl Config {
    /// Load the file (if any), apply overrides, validate.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::parse(&text)?
            }
            None => Config::default(),
        };
        if let Some(dir) = &overrides.data_dir {
            config.storage.data_dir = dir.clone();
        }
        if let Some(port) = overrides.dicom_port {
            config.dicom.port = port;
        }
        if let Some(aet) = &overrides.aet {
            config.dicom.aet = aet.clone();
        }
        if let Some(port) = overrides.http_port {
            config.http.port = port;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parse TOML text; the error names the offending key.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = err.path().to_string();
            let inner = err.into_inner();
            ConfigError::Invalid {
                key: if key == "." { "(file)".into() } else { key },
                message: inner.message().trim().to_string(),
            }
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        };
        if !is_valid_ae_title(&self.dicom.aet) {
            return invalid(
                "dicom.aet",
                "must be 1-16 printable ASCII characters, not only spaces, without backslash",
            );
        }
        self.dicomweb.validate()?;
        self.audit.validate()?;
        self.dicom.tls.validate(&self.remote_ae, self.dicom.port)?;
        self.http.tls.validate()?;
        if let Some(ha) = &self.ha {
            ha.validate()?;
        }
        if self.commitment.timeout_secs == 0 {
            return invalid("commitment.timeout_secs", "must be at least 1");
        }
        if self.commitment.retry_initial_secs == 0
            || self.commitment.retry_max_secs < self.commitment.retry_initial_secs
        {
            return invalid(
                "commitment.retry_initial_secs",
                "must be at least 1 and at most commitment.retry_max_secs",
            );
        }
        for (i, caller) in self.dicom.allowed_calling.iter().enumerate() {
            if !is_valid_ae_title(&caller.aet) {
                return invalid(
                    &format!("dicom.allowed_calling[{i}].aet"),
                    "must be 1-16 printable ASCII characters without backslash",
                );
            }
        }
        for (i, remote) in self.remote_ae.iter().enumerate() {
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
            if self.remote_ae[..i]
                .iter()
                .any(|r| r.aet.trim() == remote.aet.trim())
            {
                return invalid(
                    &format!("remote_ae[{i}].aet"),
                    "the same AE title is listed twice",
                );
            }
        }
        if self.retrieve.max_outgoing_associations == 0 {
            return invalid("retrieve.max_outgoing_associations", "must be at least 1");
        }
        if self.retrieve.connect_timeout_secs == 0 {
            return invalid("retrieve.connect_timeout_secs", "must be at least 1");
        }
        if self.retrieve.queue_timeout_secs == 0 {
            return invalid("retrieve.queue_timeout_secs", "must be at least 1");
        }
        if self.retrieve.response_timeout_secs == 0 {
            return invalid("retrieve.response_timeout_secs", "must be at least 1");
        }
        if self.dicom.max_associations == 0 {
            return invalid("dicom.max_associations", "must be at least 1");
        }
        // PS3.8 9.3.1: a receiver must accept at least the minimum; dicom-ul refuses smaller values.
        if !(1024..=16 * 1024 * 1024).contains(&self.dicom.max_pdu) {
            return invalid("dicom.max_pdu", "must be between 1024 and 16777216 bytes");
        }
        if self.dicom.artim_timeout_secs == 0 {
            return invalid("dicom.artim_timeout_secs", "must be at least 1");
        }
        if !(1..=1024).contains(&self.dicom.max_sequence_depth) {
            return invalid("dicom.max_sequence_depth", "must be between 1 and 1024");
        }
        if self.dicom.write_timeout_secs == 0 {
            return invalid("dicom.write_timeout_secs", "must be at least 1");
        }
        if let Err(message) = crate::query::charset::dataset::DefaultCharacterSet::parse(
            &self.dicom.default_character_set,
        ) {
            return invalid("dicom.default_character_set", &message);
        }
        if self.dicom.idle_timeout_secs == 0 {
            return invalid("dicom.idle_timeout_secs", "must be at least 1");
        }
        if self.storage.max_object_bytes != 0 && self.storage.max_object_bytes < 1024 {
            // The preamble and file meta group alone take about 300 bytes: such a limit would
            // refuse every object, which is a typo rather than a policy.
            return invalid(
                "storage.max_object_bytes",
                "must be 0 (no limit) or at least 1024",
            );
        }
        if !(16..=1 << 20).contains(&self.storage.index_cache_mb) {
            return invalid("storage.index_cache_mb", "must be between 16 and 1048576");
        }
        if self.storage.group_commit_max == 0 {
            return invalid("storage.group_commit_max", "must be at least 1");
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return invalid("storage.data_dir", "must not be empty");
        }
        if !(0.0..=1.0).contains(&self.storage.repair_sha256_sample) {
            return invalid(
                "storage.repair_sha256_sample",
                "must be between 0.0 and 1.0",
            );
        }
        for (i, site) in self.storage.sites.iter().enumerate() {
            let key = |k: &str| format!("storage.sites[{i}].{k}");
            let name_ok = !site.name.is_empty()
                && site.name.len() <= 32
                && site
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return invalid(&key("name"), "must be 1-32 letters, digits, '-' or '_'");
            }
            if self.storage.sites[..i].iter().any(|s| s.name == site.name) {
                return invalid(&key("name"), "the same site name is listed twice");
            }
            if let Err(message) = crate::storage::SiteUrl::parse(&site.url, &site.namenodes) {
                return invalid(&key("url"), &message);
            }
            if site.timeout_secs == 0 {
                return invalid(&key("timeout_secs"), "must be at least 1");
            }
            if site.pack_max_mb == 0 {
                return invalid(&key("pack_max_mb"), "must be at least 1");
            }
            if !site.root.starts_with('/') || site.root.contains("..") {
                return invalid(&key("root"), "must be an absolute path without '..'");
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid(
                "log.level",
                "not a valid level or filter (e.g. info, debug)",
            );
        }
        Ok(())
    }

    pub fn artim_timeout(&self) -> Duration {
        Duration::from_secs(self.dicom.artim_timeout_secs)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.dicom.write_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.dicom.idle_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.dicom.shutdown_grace_secs)
    }

    /// The remote AE with this title (AE titles compare without padding spaces).
    pub fn remote_ae(&self, aet: &str) -> Option<&RemoteAe> {
        self.remote_ae.iter().find(|r| r.aet.trim() == aet.trim())
    }
}

/// PS3.5 6.2: AE is up to 16 characters of the default repertoire, no backslash or control
/// characters; leading/trailing spaces are not significant.
pub fn is_valid_ae_title(aet: &str) -> bool {
    let trimmed = aet.trim();
    !trimmed.is_empty()
        && aet.len() <= 16
        && aet.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file() {
        let config = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(config.dicom.aet, "MIFAS");
        assert_eq!(config.dicom.port, 11112);
        assert_eq!(config.storage.data_dir, PathBuf::from("./mifas-data"));
        assert_eq!(config.storage.duplicate_policy, DuplicatePolicy::Ignore);
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = Config::parse("[dicom]\nmax_associations = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("dicom.max_associations"), "{err}");
    }

    #[test]
    fn max_object_bytes_is_zero_or_sane() {
        let err = Config::parse("[storage]\nmax_object_bytes = 10\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.to_string().contains("storage.max_object_bytes"),
            "{err}"
        );
        let config = Config::parse("[storage]\nmax_object_bytes = 1048576\n").unwrap();
        config.validate().unwrap();
        assert_eq!(config.storage.max_object_bytes, 1 << 20);
        assert_eq!(Config::default().storage.max_object_bytes, 0);
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = Config::parse("[storage]\nquota = 5\n").unwrap_err();
        assert!(err.to_string().contains("storage"), "{err}");
    }

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let text = include_str!("../../mifas.example.toml");
        let config = Config::parse(text).unwrap();
        let default = Config::default();
        assert_eq!(config.dicom.port, default.dicom.port);
        assert_eq!(config.dicom.max_pdu, default.dicom.max_pdu);
        assert_eq!(
            config.dicom.max_associations,
            default.dicom.max_associations
        );
        assert_eq!(config.storage.quota_bytes, default.storage.quota_bytes);
        assert_eq!(config.audit, default.audit);
    }

    /// The commented `[ha]` example of mifas.example.toml is a valid configuration.
    #[test]
    fn ha_example_parses() {
        let text = include_str!("../../mifas.example.toml");
        let block: String = text
            .lines()
            .skip_while(|l| !l.contains("BEGIN HA EXAMPLE"))
            .skip(1)
            .take_while(|l| !l.contains("END HA EXAMPLE"))
            .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&block).unwrap();
        config.validate().unwrap();
        let ha = config.ha.unwrap();
        assert_eq!(ha.hosts.len(), 3);
        assert_eq!(ha.sites[0].namenodes[1].vm, "nn-b2");
        assert_eq!(ha.timing, crate::ha::failover::FailoverConfig::default());
        assert!(ha.driver.templates().unwrap().restart.contains("{on_host}"));
        // fewer than three hosts is refused, naming the rule
        let two = block.replacen(
            "[[ha.host]]\nname = \"host-c\"\nprobe = \"10.0.0.13:22\"",
            "",
            1,
        );
        assert_ne!(two, block);
        let err = Config::parse(&two).unwrap().validate().unwrap_err();
        assert!(err.to_string().contains("at least 3"), "{err}");
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            aet: Some("OTHER".into()),
            dicom_port: Some(0),
            ..Default::default()
        };
        let config = Config::load(None, &o).unwrap();
        assert_eq!(config.dicom.aet, "OTHER");
        assert_eq!(config.dicom.port, 0);
    }

    #[test]
    fn ae_title_rules() {
        assert!(is_valid_ae_title("MIFAS"));
        assert!(!is_valid_ae_title(""));
        assert!(!is_valid_ae_title("A\\B"));
        assert!(!is_valid_ae_title("12345678901234567"));
    }
}
