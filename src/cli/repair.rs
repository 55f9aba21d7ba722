//! `mifas repair`: check every copy on every site (sizes always, SHA-256 on a sample), copy
//! what is missing or corrupt again from a good site, drain the replication queue, and print
//! one line per site. Works with the server stopped (it opens the index like `serve`).

use std::process::ExitCode;

use super::{CliError, init_logging};
use crate::archive::Archive;
use crate::config::Config;

pub async fn run(config: Config, sha256_sample: Option<f64>) -> Result<ExitCode, CliError> {
    init_logging(&config);
    let sample = sha256_sample.unwrap_or(config.storage.repair_sha256_sample);
    if !(0.0..=1.0).contains(&sample) {
        return Err(CliError::Other(
            "--sha256-sample must be between 0 and 1".into(),
        ));
    }
    let (archive, _report) = Archive::open(&config).await?;
    // Copies owed from before (a site that was down) go first: they are not "missing".
    let drained = archive
        .replicate_once()
        .await
        .map_err(|e| CliError::Other(format!("replication: {e}")))?;
    let report = archive
        .repair(sample)
        .await
        .map_err(|e| CliError::Other(format!("repair: {e}")))?;
    // With every copy checked, packs that are mostly garbage can be rewritten safely.
    let compacted = archive
        .compact(crate::archive::MAX_LIVE_RATIO)
        .await
        .map_err(|e| CliError::Other(format!("compaction: {e}")))?;
    archive
        .close()
        .await
        .map_err(|e| CliError::Other(format!("index flush failed: {e}")))?;
    println!(
        "instances: {}  elapsed_ms: {}  queue_copied: {}  queue_remaining: {}",
        report.instances,
        report.elapsed.as_millis(),
        drained.copied,
        archive.replication_backlog()
    );
    let mut failed = false;
    for site in &report.sites {
        println!(
            "site {}: checked {} missing {} corrupt {} repaired {} unreachable {} queued {}",
            site.site,
            site.checked,
            site.missing,
            site.corrupt,
            site.repaired,
            site.unreachable,
            site.queued
        );
        failed |= site.repaired < site.missing + site.corrupt;
    }
    for site in compacted.iter().filter(|c| c.packs_checked > 0) {
        println!(
            "compaction {}: packs {} removed {} objects_moved {} bytes_freed {}",
            site.site, site.packs_checked, site.packs_removed, site.objects_moved, site.bytes_freed
        );
    }
    // Non-zero when something found could not be repaired (an operator must look).
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
