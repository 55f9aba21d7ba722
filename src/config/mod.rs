//! One TOML file → typed configuration with defaults. Every key is documented in
//! `mifas.example.toml`; unknown keys are errors so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod audit;
mod dicom;
mod dicomweb;
pub mod ha;
mod security;
mod storage;

pub use audit::AuditConfig;
pub use dicom::{
    AllowedCaller, CommitPolicy, CommitmentConfig, DicomConfig, QueryConfig, RemoteAe,
    RetrieveConfig,
};
pub use dicomweb::DicomWebConfig;
pub use ha::HaConfig;
pub use security::{DicomTlsConfig, HttpTlsConfig, Service, UnknownAeConfig};
pub use storage::{
    AckPolicy, CoallocConfig, DuplicatePolicy, HealthConfig, SiteConfig, StorageConfig,
};

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

impl LogConfig {
    /// Only levels and `target=level` directives: tracing-subscriber 0.3.23's full filter
    /// syntax panics on some non-ASCII input and compiles `{field=value}` regexes that can
    /// take seconds (both found by fuzzing the config loader). RUST_LOG still takes it all.
    fn validate(&self) -> Result<(), ConfigError> {
        if !is_plain_filter(&self.level)
            || tracing_subscriber::EnvFilter::try_new(&self.level).is_err()
        {
            return invalid(
                "log.level",
                "must be a level (error, warn, info, debug, trace, off) or comma-separated \
                 target=level directives such as \"info,mifas=debug\"; span and field \
                 filters are for RUST_LOG only",
            );
        }
        Ok(())
    }
}

/// `level` or `target=level`, separated by commas; targets are module paths. A bare word
/// that is not a level is refused: it is a typo ("verbose") far more often than a target.
fn is_plain_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let is_level = |s: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s));
    let is_target = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-' | b'.'))
    };
    filter.len() <= 1024
        && filter
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .all(|d| match d.split_once('=') {
                Some((target, level)) => is_target(target.trim()) && is_level(level.trim()),
                None => is_level(d),
            })
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
        dicom::validate(self)?;
        self.storage.validate()?;
        self.log.validate()
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

/// The error for `key`, as every check returns it.
fn invalid(key: &str, message: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    })
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
    fn log_level_takes_levels_and_target_directives_only() {
        let check = |level: &str| {
            let mut config = Config::default();
            config.log.level = level.into();
            config.validate()
        };
        for ok in [
            "info",
            "DEBUG",
            "info,mifas=debug",
            "mifas::dimse=trace, warn",
            "off",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        // The first two panicked inside tracing-subscriber, the third took 1.8 s (fuzzer finds).
        for bad in [
            "x -[v{zG =qcb_[\\[]]`_____a\u{51f}}~(",
            "x p zRort.]__--ht\u{a28a}[y{zG\t=ort",
            "x,-[v{vL =led_______.....................___a(t*!)* = true}t",
            "verbose",
            "mifas=loud",
            "[assoc]=debug",
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.to_string().contains("log.level"), "{err}");
        }
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
