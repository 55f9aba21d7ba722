//! `mifas reindex`: rebuild the whole index from the stored objects of one site (disaster
//! recovery, Conformance Statement 7.5), into a fresh index swapped in when it is complete.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CliError, init_logging};
use crate::archive::reindex::{ReindexOptions, ReindexReport, rebuild};
use crate::config::Config;
use crate::index::Index;
use crate::storage::{LOCAL_SITE, LocalStore, Site, fsync_dir};

/// How often progress is printed when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub async fn run(
    config: Config,
    site: Option<String>,
    jobs: usize,
    keep_old_index: bool,
) -> Result<ExitCode, CliError> {
    init_logging(&config);
    let data_dir = config.storage.data_dir.clone();
    let index_dir = data_dir.join("index");
    let rebuild_dir = data_dir.join("index.rebuild");
    refuse_if_served(&index_dir)?;

    let source = open_source(&config, site.as_deref()).await?;
    let old = if index_dir.join("db").exists() {
        match Index::open(&index_dir) {
            Ok(index) => Some(Arc::new(index)),
            Err(e) => {
                eprintln!(
                    "warning: the old index cannot be read ({e}): portal users, open storage \
                     commitment transactions and copies on other sites cannot be carried over \
                     (every instance is queued for replication to the other sites)"
                );
                None
            }
        }
    } else {
        eprintln!(
            "note: no old index at {}: portal users, open storage commitment transactions and \
             copies on other sites cannot be carried over (every instance is queued for \
             replication to the other sites)",
            index_dir.display()
        );
        None
    };
    // A leftover of an interrupted run is never a good start.
    if rebuild_dir.exists() {
        std::fs::remove_dir_all(&rebuild_dir).map_err(|e| {
            CliError::Other(format!("cannot remove {}: {e}", rebuild_dir.display()))
        })?;
    }
    let new = Arc::new(
        Index::open(&rebuild_dir)
            .map_err(|e| CliError::Other(format!("cannot create the new index: {e}")))?,
    );
    let options = ReindexOptions {
        jobs,
        max_sequence_depth: config.dicom.max_sequence_depth,
        default_charset: config.dicom.default_charset(),
        work_dir: data_dir.join("reindex-work"),
        other_sites: config
            .storage
            .sites
            .iter()
            .map(|s| s.name.clone())
            .filter(|name| name != source.name())
            .collect(),
    };
    let progress = Progress::new();
    let report = rebuild(
        source.clone(),
        new.clone(),
        old.clone(),
        &options,
        &|done, total| progress.show(done, total),
    )
    .await
    .map_err(|e| CliError::Other(format!("reindex failed, the old index is unchanged: {e}")))?;
    progress.finish();
    // Both databases must be closed before their directories move.
    drop(new);
    drop(old);
    let backup = swap_in(&data_dir, &rebuild_dir, &index_dir)?;
    if let Some(backup) = &backup
        && !keep_old_index
    {
        std::fs::remove_dir_all(backup).map_err(|e| {
            CliError::Other(format!(
                "the new index is in place; the old one could not be removed from {}: {e}",
                backup.display()
            ))
        })?;
    }
    print_report(source.name(), &report, backup.filter(|_| keep_old_index));
    Ok(ExitCode::SUCCESS)
}

/// `mifas serve` holds sled's exclusive lock on `index/db` while it runs; so does any other
/// command that opened the index.
fn refuse_if_served(index_dir: &Path) -> Result<(), CliError> {
    let db = index_dir.join("db");
    let Ok(file) = std::fs::File::open(&db) else {
        return Ok(());
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(CliError::InUse(format!(
            "the index at {} is in use: stop `mifas serve` (or the other mifas command) on this \
             data directory first",
            index_dir.display()
        ))),
        Err(e) => Err(CliError::Other(format!(
            "cannot lock {}: {e}",
            db.display()
        ))),
    }
}

/// The site to read: `--site NAME` among the configured ones, or the embedded local store when
/// none is configured.
async fn open_source(config: &Config, name: Option<&str>) -> Result<Arc<dyn Site>, CliError> {
    let sites = &config.storage.sites;
    if sites.is_empty() {
        if name.is_some_and(|n| n != LOCAL_SITE) {
            return Err(CliError::Usage(format!(
                "--site: no storage sites are configured; the objects are in the local store \
                 ({LOCAL_SITE})"
            )));
        }
        let objects = config.storage.data_dir.join("objects");
        if !objects.is_dir() {
            return Err(CliError::Other(format!(
                "no local store at {}: nothing to rebuild from",
                objects.display()
            )));
        }
        let store = LocalStore::open(&objects).map_err(|e| CliError::Other(e.to_string()))?;
        return Ok(Arc::new(store));
    }
    let names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
    let Some(name) = name else {
        return Err(CliError::Usage(format!(
            "name the site to read with --site (one of: {})",
            names.join(", ")
        )));
    };
    let Some(site) = sites.iter().find(|s| s.name == name) else {
        return Err(CliError::Usage(format!(
            "--site {name}: not a configured site (one of: {})",
            names.join(", ")
        )));
    };
    crate::storage::open_site(site)
        .await
        .map_err(|e| CliError::Other(format!("cannot open site {name}: {e}")))
}

/// Put the new index in place of the old one in one step (the two directories are exchanged,
/// so `index/` is always a whole index, old or new); the old one moves to a backup directory,
/// returned.
fn swap_in(
    data_dir: &Path,
    rebuild_dir: &Path,
    index_dir: &Path,
) -> Result<Option<PathBuf>, CliError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        CliError::Other(format!(
            "{what}: {e}; the rebuilt index is complete in {}",
            rebuild_dir.display()
        ))
    };
    let backup = if index_dir.exists() {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            rebuild_dir,
            rustix::fs::CWD,
            index_dir,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| failed("cannot swap the new index in", &e))?;
        let backup = data_dir.join(format!("index.before-reindex-{}", crate::archive::now_ms()));
        std::fs::rename(rebuild_dir, &backup)
            .map_err(|e| failed("cannot move the old index aside", &e))?;
        Some(backup)
    } else {
        std::fs::rename(rebuild_dir, index_dir)
            .map_err(|e| failed("cannot move the new index in place", &e))?;
        None
    };
    fsync_dir(data_dir).map_err(|e| failed("cannot sync the data directory", &e))?;
    Ok(backup)
}

fn print_report(site: &str, report: &ReindexReport, backup: Option<PathBuf>) {
    let rate = report.indexed as f64 / report.seconds.max(1e-9);
    println!("site: {site}");
    println!("listed: {}", report.listed);
    println!("indexed: {}", report.indexed);
    println!("superseded: {}", report.superseded);
    println!("corrupt: {}", report.corrupt.len());
    println!("users_kept: {}", report.carried.users);
    println!("commitments_kept: {}", report.carried.commitments);
    println!("placements_kept: {}", report.carried.placements);
    println!("seconds: {:.3}", report.seconds);
    println!("instances_per_second: {rate:.1}");
    if let Some(backup) = backup {
        println!("old_index: {}", backup.display());
    }
    for (locator, reason) in &report.corrupt {
        println!("corrupt {locator}: {reason}");
    }
}

/// A progress bar on a terminal; otherwise a plain line every few seconds (logs, CI).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} instances {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            started: now,
            last_line: std::sync::Mutex::new(now),
        }
    }

    fn show(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        let Ok(mut last) = self.last_line.lock() else {
            return;
        };
        if last.elapsed() >= PLAIN_PROGRESS_EVERY || (done == total && done > 0) {
            *last = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            eprintln!("reindex: {done}/{total} instances, {rate:.0} instances/s");
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
