//! Group commit: objects that became ready while the previous commit ran are made durable
//! together — one fsync pass and one index write + flush for the whole group — so concurrent
//! associations share the cost of durability.

use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};

use super::IngestError;
use crate::index::{Applied, Index, IndexError, InstanceEntry};
use crate::storage::{ObjectKey, ObjectStore};

struct CommitRequest {
    key: ObjectKey,
    entry: InstanceEntry,
    reply: oneshot::Sender<Result<Applied, CommitFailure>>,
}

/// Why a group was refused; shared by every object of the group, so cheap to clone.
#[derive(Debug, Clone)]
pub(crate) enum CommitFailure {
    /// ENOSPC/EDQUOT while making the objects or the index durable.
    OutOfResources(String),
    Storage(String),
    Index(String),
}

impl CommitFailure {
    fn from_storage(err: &crate::storage::StorageError) -> CommitFailure {
        match err {
            crate::storage::StorageError::Full { .. } => {
                CommitFailure::OutOfResources(err.to_string())
            }
            other => CommitFailure::Storage(other.to_string()),
        }
    }

    fn from_index(err: &IndexError) -> CommitFailure {
        let full = matches!(err,
            IndexError::Flush(sled::Error::Io(io)) | IndexError::Read(sled::Error::Io(io))
                if crate::storage::is_disk_full(io));
        if full {
            CommitFailure::OutOfResources(err.to_string())
        } else {
            CommitFailure::Index(err.to_string())
        }
    }

    fn message(&self) -> &str {
        match self {
            CommitFailure::OutOfResources(m)
            | CommitFailure::Storage(m)
            | CommitFailure::Index(m) => m,
        }
    }
}

impl From<CommitFailure> for IngestError {
    fn from(failure: CommitFailure) -> IngestError {
        match failure {
            CommitFailure::OutOfResources(m) => IngestError::OutOfResources(m),
            CommitFailure::Storage(m) => {
                IngestError::Storage(crate::storage::StorageError::Task(m))
            }
            CommitFailure::Index(m) => IngestError::Index(IndexError::Write(m)),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CommitterHandle {
    tx: mpsc::Sender<CommitRequest>,
}

pub(crate) fn spawn(
    index: &Arc<Index>,
    store: Arc<dyn ObjectStore>,
    max_group: usize,
) -> CommitterHandle {
    // Bounded: a stalled disk pushes back on the associations instead of queueing without end.
    let (tx, rx) = mpsc::channel(max_group * 4);
    // Weak: the archive owns the index; dropping the archive closes the database at once.
    tokio::spawn(run(rx, Arc::downgrade(index), store, max_group));
    CommitterHandle { tx }
}

impl CommitterHandle {
    /// Make an object already moved into the store durable and indexed under `key` (the
    /// record names this generation of the object).
    pub(crate) async fn commit(
        &self,
        key: ObjectKey,
        mut entry: InstanceEntry,
    ) -> Result<Applied, IngestError> {
        entry.instance.object_key = key.to_string();
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(CommitRequest { key, entry, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        match rx.await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(failure)) => Err(failure.into()),
            Err(_) => Err(IngestError::ShuttingDown),
        }
    }
}

/// A group whose objects are durable, waiting for its index write.
struct SyncedGroup {
    keys: Vec<ObjectKey>,
    entries: Vec<InstanceEntry>,
    replies: Vec<oneshot::Sender<Result<Applied, CommitFailure>>>,
}

/// Two stages: the objects of one group are fsynced while the previous group is being indexed,
/// so index cost (which grows with the archive) hides behind the disk instead of adding to it.
/// The index stage only ever sees groups whose objects are already durable.
async fn run(
    mut rx: mpsc::Receiver<CommitRequest>,
    index: Weak<Index>,
    store: Arc<dyn ObjectStore>,
    max_group: usize,
) {
    let (synced_tx, synced_rx) = mpsc::channel::<SyncedGroup>(1);
    let indexer = tokio::spawn(index_stage(synced_rx, index, store.clone()));
    let mut group = Vec::with_capacity(max_group);
    while rx.recv_many(&mut group, max_group).await > 0 {
        let keys: Vec<ObjectKey> = group.iter().map(|r| r.key.clone()).collect();
        let (entries, replies): (Vec<_>, Vec<_>) =
            group.drain(..).map(|r| (r.entry, r.reply)).unzip();
        let started = std::time::Instant::now();
        let synced = store.sync(&keys).await;
        tracing::trace!(
            size = keys.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "group durable"
        );
        if let Err(e) = synced {
            fail_group(
                store.as_ref(),
                &keys,
                replies,
                CommitFailure::from_storage(&e),
            )
            .await;
            continue;
        }
        let group = SyncedGroup {
            keys,
            entries,
            replies,
        };
        if synced_tx.send(group).await.is_err() {
            break;
        }
    }
    drop(synced_tx);
    let _ = indexer.await;
}

async fn index_stage(
    mut rx: mpsc::Receiver<SyncedGroup>,
    index: Weak<Index>,
    store: Arc<dyn ObjectStore>,
) {
    while let Some(group) = rx.recv().await {
        let Some(index) = index.upgrade() else { break };
        let SyncedGroup {
            keys,
            entries,
            replies,
        } = group;
        let size = entries.len();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || apply_durably(&index, entries))
            .await
            .map_err(|e| CommitFailure::Index(e.to_string()))
            .and_then(|r| r);
        tracing::trace!(
            size,
            elapsed_us = started.elapsed().as_micros() as u64,
            "group indexed"
        );
        match result {
            Ok(applied) => {
                for (reply, a) in replies.into_iter().zip(applied) {
                    let _ = reply.send(Ok(a));
                }
            }
            Err(failure) => fail_group(store.as_ref(), &keys, replies, failure).await,
        }
    }
}

/// Apply a group's entries and flush them. When the flush fails the applied writes are undone
/// before the group is refused: otherwise C-FIND would show instances whose objects
/// `fail_group` deletes, and sled's background flush would persist them later.
fn apply_durably(
    index: &Index,
    entries: Vec<InstanceEntry>,
) -> Result<Vec<Applied>, CommitFailure> {
    let (applied, undo) = index
        .apply(entries)
        .map_err(|e| CommitFailure::from_index(&e))?;
    if let Err(e) = index.flush_blocking() {
        let failure = CommitFailure::from_index(&e);
        if let Err(undo_err) = index.undo(undo) {
            // Nothing more we can do in place: the entries stay visible until a restart's
            // reconciliation (which never indexes over a live entry) sees them again.
            tracing::error!(error = %undo_err, "cannot undo the index writes of a group whose flush failed");
        }
        return Err(failure);
    }
    Ok(applied)
}

/// Refuse every object of a group and remove what was moved into the store.
async fn fail_group(
    store: &dyn ObjectStore,
    keys: &[ObjectKey],
    replies: Vec<oneshot::Sender<Result<Applied, CommitFailure>>>,
    failure: CommitFailure,
) {
    tracing::error!(size = keys.len(), error = %failure.message(), "group commit failed; objects of the group are refused");
    for key in keys {
        let _ = store.delete(key).await;
    }
    for reply in replies {
        let _ = reply.send(Err(failure.clone()));
    }
}

#[cfg(test)]
mod tests {
    //! The committer's ordering, with a store whose durability barrier the test controls.

    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::InMemDicomObject;
    use tokio::sync::{Notify, Semaphore};

    use super::*;
    use crate::index::ObjectFacts;
    use crate::storage::{Result as StoreResult, StorageError};

    /// `sync` waits for a permit the test hands out, or fails when told to.
    #[derive(Debug)]
    struct GatedStore {
        gate: Semaphore,
        sync_started: Notify,
        fail_sync: bool,
        deleted: Mutex<Vec<ObjectKey>>,
    }

    impl GatedStore {
        fn new(fail_sync: bool) -> GatedStore {
            GatedStore {
                gate: Semaphore::new(0),
                sync_started: Notify::new(),
                fail_sync,
                deleted: Mutex::new(Vec::new()),
            }
        }
    }

    #[async_trait]
    impl ObjectStore for GatedStore {
        async fn put_file(&self, _: &ObjectKey, _: &Path) -> StoreResult<()> {
            Ok(())
        }
        async fn sync(&self, _: &[ObjectKey]) -> StoreResult<()> {
            self.sync_started.notify_one();
            if self.fail_sync {
                return Err(StorageError::Task("disk went away".into()));
            }
            let permit = self.gate.acquire().await;
            permit
                .map(|p| p.forget())
                .map_err(|e| StorageError::Task(e.to_string()))
        }
        async fn get_range(&self, key: &ObjectKey, _: u64, _: u64) -> StoreResult<Vec<u8>> {
            Err(StorageError::NotFound(key.to_string()))
        }
        async fn size(&self, key: &ObjectKey) -> StoreResult<u64> {
            Err(StorageError::NotFound(key.to_string()))
        }
        async fn exists(&self, _: &ObjectKey) -> StoreResult<bool> {
            Ok(true)
        }
        async fn delete(&self, key: &ObjectKey) -> StoreResult<()> {
            self.deleted.lock().unwrap().push(key.clone());
            Ok(())
        }
        async fn missing(&self, _: Vec<ObjectKey>) -> StoreResult<Vec<ObjectKey>> {
            Ok(Vec::new())
        }
        async fn list(&self) -> StoreResult<Vec<ObjectKey>> {
            Ok(Vec::new())
        }
        fn local_path(&self, _: &ObjectKey) -> Option<PathBuf> {
            None
        }
    }

    fn entry(sop: &str) -> InstanceEntry {
        let mut obj = InMemDicomObject::new_empty();
        let mut put =
            |tag, vr, value: &str| obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
        put(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE);
        put(tags::SOP_INSTANCE_UID, VR::UI, sop);
        put(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.1");
        put(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.2");
        put(tags::PATIENT_ID, VR::LO, "P1");
        let facts = ObjectFacts {
            sop_class_uid: uids::CT_IMAGE_STORAGE.into(),
            sop_instance_uid: sop.into(),
            transfer_syntax: uids::EXPLICIT_VR_LITTLE_ENDIAN.into(),
            size: 10,
            sha256: [0; 32],
            object_key: ObjectKey::for_instance(sop).to_string(),
            source_aet: "TEST".into(),
            received_at: 0,
        };
        InstanceEntry::from_header(&obj, facts).unwrap()
    }

    fn setup(
        store: GatedStore,
    ) -> (
        tempfile::TempDir,
        Arc<Index>,
        Arc<GatedStore>,
        CommitterHandle,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(Index::open(&dir.path().join("index")).unwrap());
        let store = Arc::new(store);
        let committer = spawn(&index, store.clone(), 8);
        (dir, index, store, committer)
    }

    #[tokio::test]
    async fn nothing_is_indexed_before_its_object_is_durable() {
        let (_dir, index, store, committer) = setup(GatedStore::new(false));
        let key = ObjectKey::for_instance("1.2.3.1");
        let task = tokio::spawn({
            let committer = committer.clone();
            async move { committer.commit(key, entry("1.2.3.1")).await }
        });
        store.sync_started.notified().await;
        // The object's durability barrier has not returned, so its index entry must not appear.
        // Nothing signals "not indexed": watch for a while, long enough for an index write.
        for _ in 0..40 {
            assert!(!index.contains_instance("1.2.3.1").unwrap());
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        store.gate.add_permits(1);
        assert_eq!(task.await.unwrap().unwrap(), Applied::Inserted);
        assert!(index.contains_instance("1.2.3.1").unwrap());
    }

    #[tokio::test]
    async fn a_failed_sync_refuses_the_group_and_removes_its_objects() {
        let (_dir, index, store, committer) = setup(GatedStore::new(true));
        let key = ObjectKey::for_instance("1.2.3.2");
        let result = committer.commit(key.clone(), entry("1.2.3.2")).await;
        assert!(result.is_err());
        assert!(!index.contains_instance("1.2.3.2").unwrap());
        assert_eq!(*store.deleted.lock().unwrap(), vec![key]);
    }
}
