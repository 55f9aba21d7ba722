//! Repair: find copies that are missing or corrupt on a site and copy them again from a good
//! one. Sizes are always checked (the record in front of a packed object, the file of the
//! local store); SHA-256 on a sample, since it reads every byte.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use super::Archive;
use super::replication::{CopyJob, ReplicationError};
use crate::index::{Placement, PlacementState};
use crate::storage::{Locator, ObjectKey, Site, StorageError};

/// Bytes read per call while checking a digest.
const VERIFY_CHUNK: u64 = 4 << 20;

/// What a repair pass found and did on one site.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SiteRepair {
    pub site: String,
    /// Copies that should be on the site (placements of live generations, plus owed ones).
    pub checked: u64,
    pub missing: u64,
    pub corrupt: u64,
    pub repaired: u64,
    /// Copies not checked because the site did not answer.
    pub unreachable: u64,
    /// Copies owed to the site and still queued (not counted as missing).
    pub queued: u64,
}

#[derive(Debug, Default, Clone)]
pub struct RepairReport {
    pub sites: Vec<SiteRepair>,
    pub instances: u64,
    pub elapsed: std::time::Duration,
}

pub(super) enum Check {
    Good,
    Missing(String),
    Corrupt(String),
    Unreachable(String),
}

impl Archive {
    /// Check every live copy on every site; copy what is missing or corrupt again.
    /// `sha256_sample` (0..=1) is the share of copies whose digest is re-read and checked.
    pub async fn repair(&self, sha256_sample: f64) -> Result<RepairReport, ReplicationError> {
        let started = std::time::Instant::now();
        let sites = self.inner.sites.all().to_vec();
        let mut report: BTreeMap<String, SiteRepair> = sites
            .iter()
            .map(|s| {
                (
                    s.name().to_string(),
                    SiteRepair {
                        site: s.name().to_string(),
                        ..SiteRepair::default()
                    },
                )
            })
            .collect();
        let index = self.inner.index.clone();
        // Copies owed and queued are not missing: the queue will bring them.
        let queued: HashSet<(String, String)> = index
            .replication_tasks(usize::MAX)?
            .into_iter()
            .map(|(_, t)| (t.sop_instance_uid, t.site))
            .collect();
        let mut to_copy: BTreeMap<String, Vec<CopyJob>> = BTreeMap::new();
        let mut instances = 0u64;
        let uids: Vec<String> = index.instance_uids().collect::<Result<_, _>>()?;
        for uid in uids {
            let Some(record) = index.instance(&uid)? else {
                continue;
            };
            instances += 1;
            let key = ObjectKey::parse(&record.object_key)
                .unwrap_or_else(|| ObjectKey::for_instance(&uid));
            let placements = index.placements(&uid)?;
            for site in &sites {
                let name = site.name().to_string();
                let Some(entry) = report.get_mut(&name) else {
                    continue;
                };
                entry.checked += 1;
                let placement = placements
                    .iter()
                    .find(|(s, p)| *s == name && p.generation == key.generation());
                let job = CopyJob {
                    task_id: None,
                    key: key.clone(),
                    size: record.size,
                    sha256: record.sha256,
                };
                let mut sampled = false;
                let check = match placement {
                    None if queued.contains(&(uid.clone(), name.clone())) => {
                        entry.queued += 1;
                        continue;
                    }
                    None => Check::Missing("no placement".into()),
                    Some((_, p)) if p.state == PlacementState::Lost => {
                        Check::Missing("marked lost".into())
                    }
                    Some((_, p)) => {
                        sampled = rand::random::<f64>() < sha256_sample;
                        check_copy(site.as_ref(), p, &job, sampled).await
                    }
                };
                match check {
                    Check::Good => {
                        // verified_at means the digest was read back and matched (a storage
                        // commitment relies on it); a size check alone does not set it.
                        if let Some((_, p)) = placement.filter(|_| sampled) {
                            index.update_placement(&uid, &name, &p.locator, |p| {
                                p.verified_at = super::unix_now()
                            })?;
                        }
                        continue;
                    }
                    Check::Unreachable(why) => {
                        entry.unreachable += 1;
                        tracing::debug!(site = %name, sop_instance_uid = %uid, error = %why, "copy not checked: site unreachable");
                        continue;
                    }
                    Check::Missing(why) => {
                        entry.missing += 1;
                        tracing::warn!(site = %name, sop_instance_uid = %uid, reason = %why, "copy missing");
                    }
                    Check::Corrupt(why) => {
                        entry.corrupt += 1;
                        tracing::warn!(site = %name, sop_instance_uid = %uid, reason = %why, "copy corrupt");
                    }
                }
                if let Some((_, p)) = placement {
                    index.update_placement(&uid, &name, &p.locator, |p| {
                        p.state = PlacementState::Lost
                    })?;
                }
                to_copy.entry(name).or_default().push(job);
            }
        }
        for (name, jobs) in to_copy {
            let Some(site) = self.inner.sites.get(&name).cloned() else {
                continue;
            };
            for chunk in jobs.chunks(64) {
                let results = self.copy_to_site(&site, chunk.to_vec(), false).await;
                for (job, result) in chunk.iter().zip(results) {
                    match result {
                        Ok(_) => {
                            if let Some(entry) = report.get_mut(&name) {
                                entry.repaired += 1;
                            }
                        }
                        Err(e) => {
                            tracing::error!(site = %name, object = %job.key, error = %e, "repair copy failed; queued for retry");
                            index.enqueue_replication(&[crate::index::ReplicationTask {
                                sop_instance_uid: job.key.sop_instance_uid().to_string(),
                                generation: job.key.generation(),
                                site: name.clone(),
                                attempts: 1,
                                not_before_ms: 0,
                                last_error: e.to_string(),
                            }])?;
                        }
                    }
                }
            }
        }
        index.flush().await?;
        let report = RepairReport {
            sites: report.into_values().collect(),
            instances,
            elapsed: started.elapsed(),
        };
        for site in &report.sites {
            tracing::info!(
                site = %site.site,
                checked = site.checked,
                missing = site.missing,
                corrupt = site.corrupt,
                repaired = site.repaired,
                unreachable = site.unreachable,
                queued = site.queued,
                "repair pass"
            );
        }
        Ok(report)
    }
}

/// Size always (the site checks its record or file), the digest when sampled.
pub(super) async fn check_copy(
    site: &dyn Site,
    placement: &Placement,
    job: &CopyJob,
    sample: bool,
) -> Check {
    let locator = Locator(placement.locator.clone());
    match site.size(&locator).await {
        Ok(size) if size == job.size => {}
        Ok(size) => return Check::Corrupt(format!("{size} bytes, expected {}", job.size)),
        Err(StorageError::NotFound(what)) => return Check::Missing(what),
        Err(StorageError::Corrupt { reason, .. }) => return Check::Corrupt(reason),
        Err(e @ StorageError::Unavailable { .. }) => return unreadable(site, e).await,
        Err(e) => return Check::Corrupt(e.to_string()),
    }
    if !sample {
        return Check::Good;
    }
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < job.size {
        match site
            .read_at(&locator, offset, VERIFY_CHUNK.min(job.size - offset))
            .await
        {
            Ok(chunk) if chunk.is_empty() => break,
            Ok(chunk) => {
                hasher.update(&chunk);
                offset += chunk.len() as u64;
            }
            Err(e @ StorageError::Unavailable { .. }) => return unreadable(site, e).await,
            Err(e) => return Check::Corrupt(e.to_string()),
        }
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if offset == job.size && digest == job.sha256 {
        Check::Good
    } else {
        Check::Corrupt("SHA-256 differs".into())
    }
}

/// A read failed as if the site were away. If the site answers a probe, it is this copy that
/// cannot be read (HDFS: every replica of a block fails its checksum): corrupt, not unreachable.
async fn unreadable(site: &dyn Site, error: StorageError) -> Check {
    match site.probe().await {
        Ok(()) => Check::Corrupt(format!("unreadable while the site answers: {error}")),
        Err(_) => Check::Unreachable(error.to_string()),
    }
}
