//! Storage Commitment, the archive's side (PS3.4 Annex J; the DIMSE side is
//! `dimse::stgcmt`): a request is kept in the index until its report is delivered; each
//! referenced instance is committed once it is indexed and durable on the sites the policy
//! names, with its SHA-256 read back and verified on each of them. A copy that fails the check
//! turns into a failure reason (and is queued for repair), never into a promise.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::repair::{Check, check_copy};
use super::replication::CopyJob;
use super::{Archive, now_ms, unix_now};
use crate::config::CommitmentConfig;
use crate::index::{
    CommitmentItem, CommitmentRecord, IndexError, ItemOutcome, PlacementState, ReplicationTask,
};
use crate::storage::{ObjectKey, Site};

/// Failure Reasons (0008,1197) of a commitment report (PS3.4 J.3.2.1.1.2).
pub mod failure_reason {
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    pub const NO_SUCH_OBJECT_INSTANCE: u16 = 0x0112;
    pub const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;
}

/// Items whose copies are checked at once (each reads its object once per site).
const VERIFY_CONCURRENCY: usize = 8;

/// A commitment request as the network layer hands it over.
#[derive(Debug, Clone)]
pub struct CommitmentRequest {
    pub transaction_uid: String,
    pub requester_aet: String,
    /// (SOP Class UID, SOP Instance UID) of each Referenced SOP Sequence item.
    pub items: Vec<(String, String)>,
}

impl Archive {
    /// Accept a request: stored durably before this returns (the N-ACTION-RSP promises it).
    /// A request reusing an open Transaction UID replaces it.
    pub async fn request_commitment(&self, request: CommitmentRequest) -> Result<(), IndexError> {
        let now = now_ms();
        let record = CommitmentRecord {
            transaction_uid: request.transaction_uid,
            requester_aet: request.requester_aet,
            received_at_ms: now,
            deadline_ms: now.saturating_add(self.inner.commitment.deadline_secs * 1000),
            items: request
                .items
                .into_iter()
                .map(|(sop_class_uid, sop_instance_uid)| CommitmentItem {
                    sop_class_uid,
                    sop_instance_uid,
                    outcome: ItemOutcome::Waiting,
                })
                .collect(),
            decided: false,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: String::new(),
        };
        self.inner.index.put_commitment(&record).await?;
        tracing::info!(
            transaction_uid = %record.transaction_uid,
            requester = %record.requester_aet,
            instances = record.items.len(),
            "storage commitment requested"
        );
        self.inner.commitment_wake.notify_one();
        Ok(())
    }

    /// Wakes whoever delivers reports: a request arrived or copies were made.
    pub fn commitment_wake(&self) -> Arc<tokio::sync::Notify> {
        self.inner.commitment_wake.clone()
    }

    pub fn commitment_config(&self) -> &CommitmentConfig {
        &self.inner.commitment
    }

    /// Work out what can be decided now, and return the transactions whose report is due
    /// (decided, and not waiting for a retry).
    pub async fn due_commitments(&self) -> Result<Vec<CommitmentRecord>, IndexError> {
        let index = self.inner.index.clone();
        let records = tokio::task::spawn_blocking(move || index.commitments())
            .await
            .map_err(|e| IndexError::Write(format!("background task failed: {e}")))??;
        let mut due = Vec::new();
        for mut record in records {
            if !record.decided {
                self.evaluate(&mut record).await?;
            }
            if record.decided && record.next_attempt_ms <= now_ms() {
                due.push(record);
            }
        }
        Ok(due)
    }

    pub fn open_commitments_len(&self) -> usize {
        self.inner.index.commitments_len()
    }

    /// Every open transaction (the status view).
    pub fn open_commitments(&self) -> Result<Vec<CommitmentRecord>, IndexError> {
        self.inner.index.commitments()
    }

    /// The report of `transaction_uid` reached its requester: forget the transaction.
    pub async fn commitment_delivered(&self, transaction_uid: &str) -> Result<(), IndexError> {
        self.inner.index.remove_commitment(transaction_uid)?;
        self.inner.index.flush().await
    }

    /// The report could not be delivered: try again later (backoff), or drop it once expired.
    /// Returns the wait before the next attempt, `None` when the transaction was dropped.
    pub async fn commitment_undelivered(
        &self,
        transaction_uid: &str,
        error: &str,
    ) -> Result<Option<std::time::Duration>, IndexError> {
        let Some(mut record) = self.inner.index.commitment(transaction_uid)? else {
            return Ok(None);
        };
        let cfg = &self.inner.commitment;
        let now = now_ms();
        let due_since = record.deadline_ms.min(now);
        if now.saturating_sub(due_since.max(record.received_at_ms))
            > cfg.expiry_hours.saturating_mul(3_600_000)
        {
            tracing::error!(
                transaction_uid,
                requester = %record.requester_aet,
                attempts = record.attempts,
                error,
                "storage commitment report expired undelivered; dropped"
            );
            self.inner.index.remove_commitment(transaction_uid)?;
            self.inner.index.flush().await?;
            return Ok(None);
        }
        record.attempts += 1;
        let shift = record.attempts.saturating_sub(1).min(20);
        let wait_secs = cfg
            .retry_initial_secs
            .saturating_mul(1u64 << shift)
            .min(cfg.retry_max_secs);
        record.next_attempt_ms = now + wait_secs * 1000;
        record.last_error = error.to_string();
        self.inner.index.update_commitment(&record)?;
        self.inner.index.flush().await?;
        Ok(Some(std::time::Duration::from_secs(wait_secs)))
    }

    /// Decide what can be decided of one transaction and store it.
    async fn evaluate(&self, record: &mut CommitmentRecord) -> Result<(), IndexError> {
        let sites: Vec<Arc<dyn Site>> = self.inner.sites.all().to_vec();
        let required = self.inner.commitment.policy.required(sites.len()).max(1);
        let waiting: Vec<usize> = (0..record.items.len())
            .filter(|&i| record.items[i].outcome == ItemOutcome::Waiting)
            .collect();
        let mut changed = false;
        for chunk in waiting.chunks(VERIFY_CONCURRENCY) {
            let mut checks = JoinSet::new();
            for &i in chunk {
                let archive = self.clone();
                let item = record.items[i].clone();
                let sites = sites.clone();
                checks
                    .spawn(async move { (i, archive.item_outcome(&item, &sites, required).await) });
            }
            while let Some(done) = checks.join_next().await {
                let (i, outcome) =
                    done.map_err(|e| IndexError::Write(format!("background task failed: {e}")))?;
                let outcome = outcome?;
                if outcome != ItemOutcome::Waiting {
                    record.items[i].outcome = outcome;
                    changed = true;
                }
            }
        }
        let past_deadline = now_ms() >= record.deadline_ms;
        if past_deadline {
            for item in &mut record.items {
                if item.outcome == ItemOutcome::Waiting {
                    tracing::warn!(
                        transaction_uid = %record.transaction_uid,
                        sop_instance_uid = %item.sop_instance_uid,
                        "not durable on the committed sites by the deadline: commitment fails"
                    );
                    item.outcome = ItemOutcome::Failed(failure_reason::PROCESSING_FAILURE);
                    changed = true;
                }
            }
        }
        if record
            .items
            .iter()
            .all(|i| i.outcome != ItemOutcome::Waiting)
        {
            record.decided = true;
            changed = true;
            let failed = record
                .items
                .iter()
                .filter(|i| matches!(i.outcome, ItemOutcome::Failed(_)))
                .count();
            tracing::info!(
                transaction_uid = %record.transaction_uid,
                committed = record.items.len() - failed,
                failed,
                "storage commitment decided"
            );
        }
        if changed {
            self.inner.index.update_commitment(record)?;
        }
        Ok(())
    }

    /// Whether one referenced instance is committed now, still waiting, or failed.
    async fn item_outcome(
        &self,
        item: &CommitmentItem,
        sites: &[Arc<dyn Site>],
        required: usize,
    ) -> Result<ItemOutcome, IndexError> {
        let index = &self.inner.index;
        let uid = &item.sop_instance_uid;
        let Some(record) = index.instance(uid)? else {
            return Ok(ItemOutcome::Failed(failure_reason::NO_SUCH_OBJECT_INSTANCE));
        };
        if record.sop_class_uid != item.sop_class_uid {
            return Ok(ItemOutcome::Failed(failure_reason::CLASS_INSTANCE_CONFLICT));
        }
        let key =
            ObjectKey::parse(&record.object_key).unwrap_or_else(|| ObjectKey::for_instance(uid));
        let placements = index.placements(uid)?;
        let job = CopyJob {
            task_id: None,
            key: key.clone(),
            size: record.size,
            sha256: record.sha256,
        };
        let mut verified = 0;
        for site in sites {
            let Some((_, p)) = placements.iter().find(|(name, p)| {
                name == site.name()
                    && p.generation == key.generation()
                    && p.state == PlacementState::Held
            }) else {
                continue;
            };
            if p.verified_at > 0 && p.verified_at >= p.stored_at {
                verified += 1;
                continue;
            }
            match check_copy(site.as_ref(), p, &job, true).await {
                Check::Good => {
                    index.update_placement(uid, site.name(), &p.locator, |p| {
                        p.verified_at = unix_now().max(p.stored_at)
                    })?;
                    verified += 1;
                }
                Check::Unreachable(why) => {
                    tracing::debug!(site = %site.name(), sop_instance_uid = %uid, error = %why, "copy not verified yet: site unreachable");
                }
                Check::Missing(why) | Check::Corrupt(why) => {
                    tracing::error!(site = %site.name(), sop_instance_uid = %uid, reason = %why, "copy failed verification: no commitment for this instance; copy queued for repair");
                    index.update_placement(uid, site.name(), &p.locator, |p| {
                        p.state = PlacementState::Lost
                    })?;
                    index.enqueue_replication(&[ReplicationTask {
                        sop_instance_uid: uid.clone(),
                        generation: key.generation(),
                        site: site.name().to_string(),
                        attempts: 0,
                        not_before_ms: 0,
                        last_error: format!("failed verification: {why}"),
                    }])?;
                    self.inner.replication.notify_one();
                    return Ok(ItemOutcome::Failed(failure_reason::PROCESSING_FAILURE));
                }
            }
        }
        Ok(if verified >= required {
            ItemOutcome::Committed
        } else {
            ItemOutcome::Waiting
        })
    }
}
