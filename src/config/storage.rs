//! `[storage]`: the local store or the replicated sites, co-allocated reads, site health.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};

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

impl StorageConfig {
    /// The checks of `[storage]` that serde cannot express.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_object_bytes != 0 && self.max_object_bytes < 1024 {
            // The preamble and file meta group alone take about 300 bytes: such a limit would
            // refuse every object, which is a typo rather than a policy.
            return invalid(
                "storage.max_object_bytes",
                "must be 0 (no limit) or at least 1024",
            );
        }
        if !(16..=1 << 20).contains(&self.index_cache_mb) {
            return invalid("storage.index_cache_mb", "must be between 16 and 1048576");
        }
        if self.group_commit_max == 0 {
            return invalid("storage.group_commit_max", "must be at least 1");
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("storage.data_dir", "must not be empty");
        }
        if !(0.0..=1.0).contains(&self.repair_sha256_sample) {
            return invalid(
                "storage.repair_sha256_sample",
                "must be between 0.0 and 1.0",
            );
        }
        for (i, site) in self.sites.iter().enumerate() {
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
            if self.sites[..i].iter().any(|s| s.name == site.name) {
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
        Ok(())
    }
}
