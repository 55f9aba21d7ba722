//! `mifas stats`: reconcile like a start, then print counts as `key: value` lines.

use std::process::ExitCode;

use super::{CliError, init_logging};
use crate::archive::Archive;
use crate::config::Config;

pub async fn run(config: Config) -> Result<ExitCode, CliError> {
    init_logging(&config);
    let (archive, _report) = Archive::open(&config).await?;
    archive.verify_objects().await?;
    let totals = archive
        .totals()
        .map_err(|e| CliError::Other(format!("cannot read the index: {e}")))?;
    archive
        .close()
        .await
        .map_err(|e| CliError::Other(format!("index flush failed: {e}")))?;
    println!("patients: {}", totals.patients);
    println!("studies: {}", totals.studies);
    println!("series: {}", totals.series);
    println!("instances: {}", totals.instances);
    println!("bytes: {}", totals.bytes);
    Ok(ExitCode::SUCCESS)
}
