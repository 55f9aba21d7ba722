//! The command line: `serve`, `import`, `stats`, `repair`, `reindex`, `user`. Each subcommand lives in its own file.

mod ha;
mod import;
mod reindex;
mod repair;
mod serve;
mod stats;
mod stgcmt;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::archive::OpenError;
use crate::config::{Config, ConfigError, Overrides};

#[derive(Debug, Parser)]
#[command(name = "mifas", version, about = "MIFAS DICOM archive")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the archive (DICOM listener). Without --config: the embedded default on local disk.
    Serve(CommonArgs),
    /// Import DICOM Part-10 files and folders through the ingest pipeline (server stopped).
    Import {
        #[command(flatten)]
        common: CommonArgs,
        /// Files or folders (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Files imported at once; their objects are made durable together (group commit).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
        jobs: u16,
    },
    /// Print archive counts (server stopped; reconciles first, like a start).
    Stats(CommonArgs),
    /// Find missing or corrupt copies on the storage sites and copy them again (server
    /// stopped); prints per site: checked, missing, corrupt, repaired.
    Repair {
        #[command(flatten)]
        common: CommonArgs,
        /// Share of copies whose SHA-256 is re-read and checked (0..1); sizes are always
        /// checked. Default: storage.repair_sha256_sample.
        #[arg(long)]
        sha256_sample: Option<f64>,
    },
    /// Rebuild the whole index from the stored objects alone (disaster recovery; server
    /// stopped). Reads the local store, or with --site one configured storage site (an HDFS
    /// site's packs), indexes each instance's newest readable copy through the ingest's own
    /// checks into a fresh index, and swaps it in only when complete. Corrupt objects are
    /// listed and left out. No object holds the portal users, open storage commitment
    /// transactions or the copies on other sites: they are taken over from the old index when
    /// it can be read; otherwise users must be added again and every instance is queued for
    /// replication to the other sites. The replication queue is not kept: `mifas repair` makes
    /// the copies it owed.
    Reindex {
        #[command(flatten)]
        common: CommonArgs,
        /// The storage site to read (a `[[storage.sites]]` name); needed when sites are
        /// configured, the local store otherwise.
        #[arg(long)]
        site: Option<String>,
        /// Objects read and parsed at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
        jobs: u16,
        /// Keep the old index as `index.before-reindex-<ms>` instead of removing it after the
        /// swap.
        #[arg(long)]
        keep_old_index: bool,
    },
    /// Portal users (works with the server running or stopped).
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// The HA monitor of the HDFS namenode VMs alone (no archive): `[ha]` of the config file.
    HaMonitor(CommonArgs),
    /// HA monitor: `status` (one `key: value` per line), `switchover SITE`.
    Ha {
        #[command(subcommand)]
        command: HaCommand,
    },
    /// Storage Commitment: `status` lists the open transactions (server stopped).
    Stgcmt {
        #[command(subcommand)]
        command: StgcmtCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum StgcmtCommand {
    /// Open transactions: requester, counts committed / failed / waiting, delivery attempts.
    Status(CommonArgs),
}

#[derive(Debug, Subcommand)]
pub enum HaCommand {
    /// Hosts, sites, namenodes, roles, last probes, the last event (from the running monitor,
    /// else its saved state).
    Status(CommonArgs),
    /// Planned switchover: fence the active namenode of SITE gracefully, promote the standby.
    Switchover {
        #[command(flatten)]
        common: CommonArgs,
        site: String,
    },
}

#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// TOML configuration file (see mifas.example.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (index, objects, spool); overrides storage.data_dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// DICOM port; overrides dicom.port (0 picks a free port).
    #[arg(long)]
    pub dicom_port: Option<u16>,
    /// Our AE title; overrides dicom.aet.
    #[arg(long)]
    pub aet: Option<String>,
    /// Web portal port; overrides http.port (reserved).
    #[arg(long)]
    pub http_port: Option<u16>,
}

impl CommonArgs {
    fn load(&self) -> Result<Config, CliError> {
        let overrides = Overrides {
            data_dir: self.data_dir.clone(),
            dicom_port: self.dicom_port,
            aet: self.aet.clone(),
            http_port: self.http_port,
        };
        Ok(Config::load(self.config.as_deref(), &overrides)?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Open(#[from] OpenError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// The index is held by a running server or another command.
    #[error("{0}")]
    InUse(String),
    /// A command-line argument the operator must change.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// 2 for what the operator must fix in the configuration or the invocation.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_)
            | CliError::Open(OpenError::Index(..))
            | CliError::InUse(_)
            | CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(args.load()?).await,
        Command::Import {
            common,
            paths,
            jobs,
        } => import::run(common.load()?, paths, usize::from(jobs)).await,
        Command::Stats(args) => stats::run(args.load()?).await,
        Command::Reindex {
            common,
            site,
            jobs,
            keep_old_index,
        } => reindex::run(common.load()?, site, usize::from(jobs), keep_old_index).await,
        Command::Repair {
            common,
            sha256_sample,
        } => repair::run(common.load()?, sha256_sample).await,
        Command::User { command } => user::run(command).await,
        Command::Stgcmt {
            command: StgcmtCommand::Status(args),
        } => stgcmt::status(args.load()?).await,
        Command::HaMonitor(args) => ha::monitor(args.load()?).await,
        Command::Ha {
            command: HaCommand::Status(args),
        } => ha::status(args.load()?).await,
        Command::Ha {
            command: HaCommand::Switchover { common, site },
        } => ha::switchover(common.load()?, &site).await,
    }
}
