//! The Replication Location Service's asynchronous half: copies owed to sites (queued in the
//! index with the instance that needs them) are made from a site that holds the object, with
//! retries and backoff, surviving restarts and site outages. Repair uses the same copy path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{Archive, now_ms};
use crate::index::{IndexError, Placement, PlacementState, ReplicationTask};
use crate::storage::{ObjectKey, ObjectStream, PutSource, Site, StorageError};

/// Tasks looked at per pass.
const PASS_TASKS: usize = 512;
/// Objects (and bytes) written to a site in one group.
const COPY_GROUP: usize = 64;
const COPY_GROUP_BYTES: u64 = 256 << 20;
/// Longest wait between attempts of one task.
const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("no site holds a good copy of {0}")]
    NoSource(String),
    #[error("{0}")]
    Local(String),
}

/// What one pass over the queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationPass {
    pub copied: u64,
    pub failed: u64,
    /// Tasks dropped because the instance was replaced or deleted, or the site already held it.
    pub dropped: u64,
    /// Tasks left in the queue after the pass.
    pub remaining: u64,
    /// Milliseconds until the earliest task not yet due (0: none waiting).
    pub next_due_ms: u64,
}

/// One object to copy to one site.
#[derive(Debug, Clone)]
pub(crate) struct CopyJob {
    pub(crate) task_id: Option<u64>,
    pub(crate) key: ObjectKey,
    pub(crate) size: u64,
    pub(crate) sha256: [u8; 32],
}

impl Archive {
    /// Drain the replication queue until `cancel`: a pass whenever copies were queued, a
    /// retry is due, or every few seconds.
    pub async fn run_replication(&self, cancel: CancellationToken) {
        loop {
            let wait = match self.replicate_once().await {
                Ok(pass) => {
                    if pass.copied > 0 {
                        // Commitments waiting for these copies can be decided now.
                        self.inner.commitment_wake.notify_one();
                    }
                    if pass.copied + pass.failed + pass.dropped > 0 {
                        tracing::info!(
                            copied = pass.copied,
                            failed = pass.failed,
                            dropped = pass.dropped,
                            remaining = pass.remaining,
                            "replication pass"
                        );
                    }
                    if pass.copied > 0 && pass.remaining > 0 && pass.next_due_ms == 0 {
                        Duration::ZERO
                    } else if pass.next_due_ms > 0 {
                        Duration::from_millis(pass.next_due_ms.min(5_000))
                    } else {
                        Duration::from_secs(5)
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "replication pass failed");
                    Duration::from_secs(5)
                }
            };
            if wait.is_zero() {
                if cancel.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.inner.replication.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Copies still owed to sites.
    pub fn replication_backlog(&self) -> usize {
        self.inner.index.replication_queue_len()
    }

    /// One pass over the due tasks of the queue, site by site, sites in parallel.
    pub async fn replicate_once(&self) -> Result<ReplicationPass, ReplicationError> {
        let index = self.inner.index.clone();
        let tasks = tokio::task::spawn_blocking(move || index.replication_tasks(PASS_TASKS))
            .await
            .map_err(|e| ReplicationError::Local(e.to_string()))??;
        let now = now_ms();
        let mut pass = ReplicationPass::default();
        let mut per_site: BTreeMap<String, Vec<(u64, ReplicationTask)>> = BTreeMap::new();
        for (id, task) in tasks {
            if task.not_before_ms > now {
                let wait = task.not_before_ms - now;
                pass.next_due_ms = if pass.next_due_ms == 0 {
                    wait
                } else {
                    pass.next_due_ms.min(wait)
                };
                continue;
            }
            per_site
                .entry(task.site.clone())
                .or_default()
                .push((id, task));
        }
        let mut runs = tokio::task::JoinSet::new();
        for (site_name, tasks) in per_site {
            let archive = self.clone();
            runs.spawn(async move { archive.replicate_to_site(&site_name, tasks).await });
        }
        while let Some(done) = runs.join_next().await {
            match done {
                Ok(Ok(p)) => {
                    pass.copied += p.copied;
                    pass.failed += p.failed;
                    pass.dropped += p.dropped;
                }
                Ok(Err(e)) => tracing::error!(error = %e, "replication to a site failed"),
                Err(e) => tracing::error!(error = %e, "replication task panicked"),
            }
        }
        self.inner.index.flush().await?;
        pass.remaining = self.inner.index.replication_queue_len() as u64;
        Ok(pass)
    }

    async fn replicate_to_site(
        &self,
        site_name: &str,
        tasks: Vec<(u64, ReplicationTask)>,
    ) -> Result<ReplicationPass, ReplicationError> {
        let mut pass = ReplicationPass::default();
        let index = &self.inner.index;
        let Some(site) = self.inner.sites.get(site_name).cloned() else {
            // A site that left the configuration is owed nothing.
            for (id, _) in &tasks {
                index.drop_replication(*id)?;
                pass.dropped += 1;
            }
            return Ok(pass);
        };
        let mut jobs = Vec::new();
        let mut failed_tasks = Vec::new();
        for (id, task) in tasks {
            let record = index.instance(&task.sop_instance_uid)?;
            let live = record
                .as_ref()
                .and_then(|r| ObjectKey::parse(&r.object_key));
            let (Some(record), Some(key)) = (record, live) else {
                index.drop_replication(id)?;
                pass.dropped += 1;
                continue;
            };
            if key.generation() != task.generation {
                index.drop_replication(id)?;
                pass.dropped += 1;
                continue;
            }
            let held = index
                .placements(&task.sop_instance_uid)?
                .into_iter()
                .any(|(s, p)| {
                    s == site_name
                        && p.generation == task.generation
                        && p.state == PlacementState::Held
                });
            if held {
                index.drop_replication(id)?;
                pass.dropped += 1;
                continue;
            }
            jobs.push((
                task,
                CopyJob {
                    task_id: Some(id),
                    key,
                    size: record.size,
                    sha256: record.sha256,
                },
            ));
        }
        for chunk in group_jobs(jobs) {
            let (tasks, jobs): (Vec<_>, Vec<_>) = chunk.into_iter().unzip();
            let ids: Vec<Option<u64>> = jobs.iter().map(|j| j.task_id).collect();
            let results = self.copy_to_site(&site, jobs, false).await;
            for ((task, id), result) in tasks.into_iter().zip(ids).zip(results) {
                match result {
                    Ok(true) => pass.copied += 1,
                    Ok(false) => pass.dropped += 1,
                    Err(e) => {
                        pass.failed += 1;
                        if let Some(id) = id {
                            failed_tasks.push((id, task, e.to_string()));
                        }
                    }
                }
            }
        }
        for (id, mut task, error) in failed_tasks {
            task.attempts += 1;
            let backoff = (1000u64 << task.attempts.min(16)).min(MAX_BACKOFF_MS);
            task.not_before_ms = now_ms() + backoff;
            task.last_error = error.chars().take(300).collect();
            tracing::warn!(site = %site_name, sop_instance_uid = %task.sop_instance_uid, attempts = task.attempts, retry_in_ms = backoff, error = %task.last_error, "copy to site failed; will retry");
            index.retry_replication(id, &task)?;
        }
        Ok(pass)
    }

    /// Copy objects to `site` in one group: each is read from a site holding a good copy into a
    /// local file (SHA-256 checked), the group is stored, and each placement recorded (with
    /// its queue task dropped). Ok(false): the instance changed meanwhile, the copy was removed.
    pub(crate) async fn copy_to_site(
        &self,
        site: &Arc<dyn Site>,
        jobs: Vec<CopyJob>,
        read_from_target: bool,
    ) -> Vec<Result<bool, ReplicationError>> {
        // Compaction rewrites copies within a site: the site's own copy is a fine source.
        let exclude = if read_from_target { "" } else { site.name() };
        let mut results: Vec<Option<Result<bool, ReplicationError>>> =
            (0..jobs.len()).map(|_| None).collect();
        let mut sources = Vec::new();
        let mut staged = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            match self.fetch_to_spool(job, exclude).await {
                Ok(path) => {
                    sources.push(PutSource {
                        key: job.key.clone(),
                        path: path.clone(),
                        size: job.size,
                        sha256: job.sha256,
                        hold: None,
                    });
                    staged.push((i, path));
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !sources.is_empty() {
            match self.inner.sites.put_on(site, &sources).await {
                Ok(locators) => {
                    let now = super::unix_now();
                    for ((i, _), locator) in staged.iter().zip(locators) {
                        let job = &jobs[*i];
                        let placement = Placement {
                            generation: job.key.generation(),
                            locator: locator.0.clone(),
                            state: PlacementState::Held,
                            stored_at: now,
                            // Not read back yet (see the committer).
                            verified_at: 0,
                        };
                        let recorded = self.inner.index.record_placement(
                            job.key.sop_instance_uid(),
                            site.name(),
                            &placement,
                            job.task_id,
                        );
                        if let Ok(false) = recorded {
                            let _ = site.delete(&locator).await;
                        }
                        results[*i] = Some(recorded.map_err(ReplicationError::from));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for (i, _) in &staged {
                        results[*i] = Some(Err(ReplicationError::Local(message.clone())));
                    }
                }
            }
        }
        for (_, path) in staged {
            let _ = tokio::fs::remove_file(&path).await;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ReplicationError::Local("not attempted".into()))))
            .collect()
    }

    /// Read a good copy of `job` (from the sites but `exclude`, co-allocated, SHA-256 checked)
    /// into a spool file.
    async fn fetch_to_spool(
        &self,
        job: &CopyJob,
        exclude: &str,
    ) -> Result<PathBuf, ReplicationError> {
        let copies: Vec<_> = self
            .copies(&job.key)
            .map_err(|e| ReplicationError::Local(e.to_string()))?
            .into_iter()
            .filter(|(s, _)| s.name() != exclude)
            .collect();
        if copies.is_empty() {
            return Err(ReplicationError::NoSource(job.key.to_string()));
        }
        let path = self.inner.spool_dir.join(format!(
            "replica-{}-{}.tmp",
            job.key.sop_instance_uid(),
            rand::random::<u64>()
        ));
        let object = self.inner.coalloc.read_object(copies, job.size, job.sha256);
        let written = write_object(object, &path).await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
        }
        written.map(|()| path)
    }
}

/// Stream an object into a new file; the co-allocator has checked its digest when it ends.
async fn write_object(mut object: ObjectStream, path: &PathBuf) -> Result<(), ReplicationError> {
    let local = |e: std::io::Error| ReplicationError::Local(format!("{}: {e}", path.display()));
    let mut file = tokio::fs::File::create(path).await.map_err(local)?;
    while let Some(chunk) = object.next_chunk().await {
        file.write_all(&chunk?).await.map_err(local)?;
    }
    file.flush().await.map_err(local)?;
    Ok(())
}

/// Cut jobs into groups of at most COPY_GROUP objects and COPY_GROUP_BYTES bytes.
fn group_jobs<T>(jobs: Vec<(T, CopyJob)>) -> Vec<Vec<(T, CopyJob)>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0u64;
    for job in jobs {
        if !current.is_empty()
            && (current.len() == COPY_GROUP || bytes + job.1.size > COPY_GROUP_BYTES)
        {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += job.1.size;
        current.push(job);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}
