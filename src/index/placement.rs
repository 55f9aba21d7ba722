//! Placements (which sites hold a copy of each instance, where, and when it was last verified)
//! and the replication queue (copies still owed to sites). Per-object replication state is
//! derived from these two trees, never stored a second time.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{Index, IndexError, Result, TreeId, compound_key, decode, encode};

/// One copy of one instance on one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The object generation this copy is of (the instance record's `object_key` names the
    /// live one); a copy of an older generation is garbage.
    pub generation: u64,
    /// Where the site keeps it (its own spelling, see `storage::Locator`).
    pub locator: String,
    pub state: PlacementState,
    /// Seconds since the Unix epoch when the copy was written.
    pub stored_at: u64,
    /// Seconds since the Unix epoch when a repair pass last found it intact (0: never).
    pub verified_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementState {
    /// Written durably and, as far as we know, intact.
    Held,
    /// A repair pass found it missing or corrupt; a new copy is queued.
    Lost,
}

/// A copy owed to a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationTask {
    pub sop_instance_uid: String,
    pub generation: u64,
    pub site: String,
    pub attempts: u32,
    /// Milliseconds since the Unix epoch before which the task is not retried.
    pub not_before_ms: u64,
    pub last_error: String,
}

pub(crate) fn placement_key(uid: &str, site: &str) -> Vec<u8> {
    compound_key(uid, site)
}

/// The generation an instance record's object key names (`<uid>.g<N>.dcm`).
pub(crate) fn live_generation(index: &Index, uid: &str) -> Result<Option<u64>> {
    Ok(index.instance(uid)?.map(|r| {
        crate::storage::ObjectKey::parse(&r.object_key)
            .map(|k| k.generation())
            .unwrap_or(0)
    }))
}

impl Index {
    /// Every placement of an instance, by site name.
    pub fn placements(&self, uid: &str) -> Result<Vec<(String, Placement)>> {
        let prefix = compound_key(uid, "");
        self.tree(TreeId::Placements)
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, v) = item.map_err(IndexError::Read)?;
                let site = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                Ok((site, decode(TreeId::Placements, &v)?))
            })
            .collect()
    }

    /// Every placement, in instance order: (SOP Instance UID, site, placement).
    pub fn all_placements(&self) -> impl Iterator<Item = Result<(String, String, Placement)>> + '_ {
        self.tree(TreeId::Placements).iter().map(|item| {
            let (k, v) = item.map_err(IndexError::Read)?;
            let split = k.iter().position(|b| *b == 0).unwrap_or(k.len());
            let uid = String::from_utf8_lossy(&k[..split]).into_owned();
            let site = String::from_utf8_lossy(k.get(split + 1..).unwrap_or_default()).into_owned();
            Ok((uid, site, decode(TreeId::Placements, &v)?))
        })
    }

    /// Tasks of the replication queue in the order they were queued, at most `limit`.
    pub fn replication_tasks(&self, limit: usize) -> Result<Vec<(u64, ReplicationTask)>> {
        self.tree(TreeId::Replication)
            .iter()
            .take(limit)
            .map(|item| {
                let (k, v) = item.map_err(IndexError::Read)?;
                let id = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
                Ok((id, decode(TreeId::Replication, &v)?))
            })
            .collect()
    }

    pub fn replication_queue_len(&self) -> usize {
        self.tree(TreeId::Replication).len()
    }

    /// Queue copies (not flushed).
    pub fn enqueue_replication(&self, tasks: &[ReplicationTask]) -> Result<()> {
        for task in tasks {
            let id = self.next_header_id()?;
            self.tree(TreeId::Replication)
                .insert(id.to_be_bytes(), encode(task)?)
                .map_err(|e| IndexError::Write(e.to_string()))?;
        }
        Ok(())
    }

    /// Put a task back with its new attempt count and time (not flushed).
    pub fn retry_replication(&self, id: u64, task: &ReplicationTask) -> Result<()> {
        self.tree(TreeId::Replication)
            .insert(id.to_be_bytes(), encode(task)?)
            .map_err(|e| IndexError::Write(e.to_string()))?;
        Ok(())
    }

    /// Drop a task (not flushed).
    pub fn drop_replication(&self, id: u64) -> Result<()> {
        self.tree(TreeId::Replication)
            .remove(id.to_be_bytes())
            .map_err(|e| IndexError::Write(e.to_string()))?;
        Ok(())
    }

    /// Record a copy written to `site` (and drop the task `task_id` that asked for it) in one
    /// transaction, if `placement.generation` is still the instance's live generation.
    /// Returns false (and only drops the task) when the instance was replaced or deleted
    /// meanwhile: the caller then removes the now useless copy.
    pub fn record_placement(
        &self,
        uid: &str,
        site: &str,
        placement: &Placement,
        task_id: Option<u64>,
    ) -> Result<bool> {
        // The writer lock orders this against `apply`, which replaces placements with the
        // instance: a copy of an old generation must never be recorded over a new one.
        let _writer = self
            .writer
            .lock()
            .map_err(|_| IndexError::Write("index writer lock poisoned".into()))?;
        let live = live_generation(self, uid)? == Some(placement.generation);
        let key = placement_key(uid, site);
        let value = encode(placement)?;
        let trees = [
            self.tree(TreeId::Placements),
            self.tree(TreeId::Replication),
        ];
        trees
            .as_slice()
            .transaction(|t| {
                if live {
                    t[0].insert(key.as_slice(), value.as_slice())?;
                }
                if let Some(id) = task_id {
                    t[1].remove(&id.to_be_bytes())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| IndexError::Write(format!("{e:?}")))?;
        Ok(live)
    }

    /// Update one placement's state or verification time, if it still names `locator`.
    pub fn update_placement(
        &self,
        uid: &str,
        site: &str,
        locator: &str,
        update: impl Fn(&mut Placement),
    ) -> Result<()> {
        let _writer = self
            .writer
            .lock()
            .map_err(|_| IndexError::Write("index writer lock poisoned".into()))?;
        let key = placement_key(uid, site);
        let tree = self.tree(TreeId::Placements);
        if let Some(bytes) = tree.get(&key).map_err(IndexError::Read)? {
            let mut placement: Placement = decode(TreeId::Placements, &bytes)?;
            if placement.locator == locator {
                update(&mut placement);
                tree.insert(key, encode(&placement)?)
                    .map_err(|e| IndexError::Write(e.to_string()))?;
            }
        }
        Ok(())
    }
}
