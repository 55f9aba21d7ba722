//! `mifas import PATH...`: bulk import through the same ingest pipeline as C-STORE, `--jobs`
//! files at a time so group commit amortises fsyncs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::{CliError, init_logging};
use crate::archive::{Archive, CharsetNotice, IngestOutcome};
use crate::config::Config;

pub async fn run(config: Config, paths: Vec<PathBuf>, jobs: usize) -> Result<ExitCode, CliError> {
    init_logging(&config);
    let (archive, _report) = Archive::open(&config).await?;
    let files: Vec<PathBuf> = paths
        .iter()
        .flat_map(|p| walkdir::WalkDir::new(p).follow_links(true).into_iter())
        .filter_map(|entry| match entry {
            Ok(e) if e.file_type().is_file() => Some(e.into_path()),
            Ok(_) => None,
            Err(e) => {
                eprintln!("warning: {e}");
                None
            }
        })
        .collect();
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let accept_unknown = config.dicom.accept_unknown_storage;
    let archive = Arc::new(archive);
    // One notice for the whole run: the default character set is logged once, not per file.
    let charset_notice = CharsetNotice::default();
    let (mut imported, mut duplicates) = (0u64, 0u64);
    let mut rejected: Vec<(PathBuf, String)> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut pending = files.into_iter();
    let started = std::time::Instant::now();
    loop {
        while tasks.len() < jobs {
            let Some(path) = pending.next() else { break };
            let archive = archive.clone();
            let notice = charset_notice.clone();
            tasks.spawn(async move {
                let result = archive
                    .import_file_noting(&path, accept_unknown, &notice)
                    .await
                    .map(|(outcome, _)| outcome);
                (path, result)
            });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        bar.inc(1);
        match done {
            Ok((_, Ok(IngestOutcome::Stored | IngestOutcome::Replaced))) => imported += 1,
            Ok((_, Ok(IngestOutcome::DuplicateIgnored))) => duplicates += 1,
            Ok((path, Err(e))) => rejected.push((path, e.to_string())),
            Err(e) => rejected.push((PathBuf::from("?"), format!("import task failed: {e}"))),
        }
    }
    bar.finish_and_clear();
    archive
        .close()
        .await
        .map_err(|e| CliError::Other(format!("final index flush failed: {e}")))?;
    let seconds = started.elapsed().as_secs_f64();
    println!("imported: {imported}");
    println!("duplicates: {duplicates}");
    println!("rejected: {}", rejected.len());
    // Import phase only (after start-up reconciliation), final flush included.
    println!("seconds: {seconds:.3}");
    println!(
        "files_per_second: {:.1}",
        (imported + duplicates + rejected.len() as u64) as f64 / seconds.max(1e-9)
    );
    for (path, reason) in &rejected {
        println!("rejected {}: {reason}", path.display());
    }
    Ok(if rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
