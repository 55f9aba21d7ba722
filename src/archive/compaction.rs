//! Pack compaction: a sealed pack whose live objects take less than half of it (the rest being
//! replaced generations, re-copied repairs, groups that were refused) has its live objects
//! appended to the site's current pack again and is then removed. Only the archive knows which
//! copies are live (the placements), so the pass lives here, not in the site.

use std::collections::HashMap;

use super::Archive;
use super::replication::{CopyJob, ReplicationError};
use crate::index::PlacementState;
use crate::storage::{Locator, ObjectKey};

/// A pack is rewritten when its live bytes are at most this share of it.
pub const MAX_LIVE_RATIO: f64 = 0.5;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SiteCompaction {
    pub site: String,
    pub packs_checked: u64,
    pub packs_removed: u64,
    pub objects_moved: u64,
    pub bytes_freed: u64,
}

impl Archive {
    /// One compaction pass over every site.
    pub async fn compact(
        &self,
        max_live_ratio: f64,
    ) -> Result<Vec<SiteCompaction>, ReplicationError> {
        let mut report = Vec::new();
        for site in self.inner.sites.all().to_vec() {
            let mut done = SiteCompaction {
                site: site.name().to_string(),
                ..SiteCompaction::default()
            };
            let containers = match site.compactable().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(site = %site.name(), error = %e, "cannot list packs for compaction");
                    report.push(done);
                    continue;
                }
            };
            if containers.is_empty() {
                report.push(done);
                continue;
            }
            // Live bytes and copies per pack, from the placements of live generations.
            let mut live: HashMap<String, (u64, Vec<CopyJob>)> = HashMap::new();
            for placement in self.inner.index.all_placements() {
                let (uid, name, p) = placement?;
                if name != site.name() || p.state != PlacementState::Held {
                    continue;
                }
                let Some((pack, bytes)) = site.container_of(&Locator(p.locator.clone())) else {
                    continue;
                };
                let Some(record) = self.inner.index.instance(&uid)? else {
                    continue;
                };
                let key = ObjectKey::parse(&record.object_key)
                    .unwrap_or_else(|| ObjectKey::for_instance(&uid));
                if key.generation() != p.generation {
                    continue;
                }
                let entry = live.entry(pack).or_default();
                entry.0 += bytes;
                entry.1.push(CopyJob {
                    task_id: None,
                    key,
                    size: record.size,
                    sha256: record.sha256,
                });
            }
            for (pack, total) in containers {
                done.packs_checked += 1;
                let (bytes, jobs) = live.remove(&pack).unwrap_or_default();
                if total > 0 && bytes as f64 > total as f64 * max_live_ratio {
                    continue;
                }
                let moved = jobs.len() as u64;
                let mut all_moved = true;
                for chunk in jobs.chunks(64) {
                    let results = self.copy_to_site(&site, chunk.to_vec(), true).await;
                    all_moved &= results.iter().all(|r| r.is_ok());
                }
                if !all_moved {
                    tracing::warn!(site = %site.name(), pack = %pack, "compaction could not move every live object; pack kept");
                    continue;
                }
                match site.remove_container(&pack).await {
                    Ok(()) => {
                        done.packs_removed += 1;
                        done.objects_moved += moved;
                        done.bytes_freed += total.saturating_sub(bytes);
                        tracing::info!(site = %site.name(), pack = %pack, moved, bytes = total, "pack compacted");
                    }
                    Err(e) => {
                        tracing::warn!(site = %site.name(), pack = %pack, error = %e, "cannot remove a compacted pack")
                    }
                }
            }
            report.push(done);
        }
        self.inner.index.flush().await?;
        Ok(report)
    }
}
