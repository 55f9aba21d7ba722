//! Storage Commitment transactions (PS3.4 Annex J) waiting for their N-EVENT-REPORT: one record
//! per Transaction UID, kept until the report was delivered (or expired), so a restart loses
//! none.

use serde::{Deserialize, Serialize};

use super::{Index, IndexError, Result, TreeId, decode, encode};

/// What became of one referenced instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemOutcome {
    /// Not yet durable and verified on the sites the policy names.
    Waiting,
    Committed,
    /// The Failure Reason (0008,1197) of the report.
    Failed(u16),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentItem {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub outcome: ItemOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentRecord {
    pub transaction_uid: String,
    /// The AE that asked (the report goes back to it).
    pub requester_aet: String,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// Items still waiting then fail with 0x0110.
    pub deadline_ms: u64,
    pub items: Vec<CommitmentItem>,
    /// Every item has its outcome: the report is due.
    pub decided: bool,
    /// Delivery attempts of the report so far.
    pub attempts: u32,
    /// Not before this time (ms) is the report tried again.
    pub next_attempt_ms: u64,
    pub last_error: String,
}

impl Index {
    /// Store (or replace) a transaction and flush: the N-ACTION-RSP that follows promises it
    /// survives a crash.
    pub async fn put_commitment(&self, record: &CommitmentRecord) -> Result<()> {
        self.tree(TreeId::Commitments)
            .insert(record.transaction_uid.as_bytes(), encode(record)?)
            .map_err(|e| IndexError::Write(e.to_string()))?;
        self.flush().await
    }

    /// Update a transaction without flushing (its outcomes can be worked out again).
    pub fn update_commitment(&self, record: &CommitmentRecord) -> Result<()> {
        self.tree(TreeId::Commitments)
            .insert(record.transaction_uid.as_bytes(), encode(record)?)
            .map_err(|e| IndexError::Write(e.to_string()))?;
        Ok(())
    }

    /// Drop a transaction whose report was delivered (or expired).
    pub fn remove_commitment(&self, transaction_uid: &str) -> Result<()> {
        self.tree(TreeId::Commitments)
            .remove(transaction_uid.as_bytes())
            .map_err(|e| IndexError::Write(e.to_string()))?;
        Ok(())
    }

    pub fn commitment(&self, transaction_uid: &str) -> Result<Option<CommitmentRecord>> {
        self.tree(TreeId::Commitments)
            .get(transaction_uid.as_bytes())
            .map_err(IndexError::Read)?
            .map(|v| decode(TreeId::Commitments, &v))
            .transpose()
    }

    /// Every open transaction, by Transaction UID.
    pub fn commitments(&self) -> Result<Vec<CommitmentRecord>> {
        self.tree(TreeId::Commitments)
            .iter()
            .map(|item| {
                let (_, v) = item.map_err(IndexError::Read)?;
                decode(TreeId::Commitments, &v)
            })
            .collect()
    }

    pub fn commitments_len(&self) -> usize {
        self.tree(TreeId::Commitments).len()
    }
}
