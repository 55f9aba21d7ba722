//! Group commit: objects that became ready while the previous commit ran are made durable
//! together — one store pass on the sites the ack policy requires and one index write + flush
//! for the whole group — so concurrent associations share the cost of durability.

use std::sync::{Arc, Weak};

use tokio::sync::{Notify, mpsc, oneshot};

use super::IngestError;
use crate::index::{Applied, Index, IndexError, InstanceEntry, Placement, PlacementState};
use crate::storage::{GroupPut, PutSource, Sites, StorageError};

/// How long the replication queue leaves a copy to a write that was still running when its
/// group was acknowledged.
const LATE_WRITE_GRACE_MS: u64 = 10_000;

struct CommitRequest {
    source: PutSource,
    entry: InstanceEntry,
    reply: oneshot::Sender<Result<Applied, CommitFailure>>,
}

/// Why a group was refused; shared by every object of the group, so cheap to clone.
#[derive(Debug, Clone)]
pub(crate) enum CommitFailure {
    /// ENOSPC/EDQUOT while making the objects or the index durable, or too few sites could
    /// take the group (the ack policy cannot be met).
    OutOfResources(String),
    Storage(String),
    Index(String),
}

impl CommitFailure {
    fn from_storage(err: &StorageError) -> CommitFailure {
        match err {
            StorageError::Full { .. } | StorageError::AckNotMet(_) => {
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
            CommitFailure::Storage(m) => IngestError::Storage(StorageError::Task(m)),
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
    sites: Arc<Sites>,
    max_group: usize,
    replication: Arc<Notify>,
) -> CommitterHandle {
    // Bounded: a stalled disk pushes back on the associations instead of queueing without end.
    let (tx, rx) = mpsc::channel(max_group * 4);
    // Weak: the archive owns the index; dropping the archive closes the database at once.
    tokio::spawn(run(
        rx,
        Arc::downgrade(index),
        sites,
        max_group,
        replication,
    ));
    CommitterHandle { tx }
}

impl CommitterHandle {
    /// Store the spooled object on the sites, durably, and index it under `source.key` (the
    /// record names this generation of the object).
    pub(crate) async fn commit(
        &self,
        source: PutSource,
        mut entry: InstanceEntry,
    ) -> Result<Applied, IngestError> {
        entry.instance.object_key = source.key.to_string();
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(CommitRequest {
                source,
                entry,
                reply,
            })
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
    put: GroupPut,
    entries: Vec<InstanceEntry>,
    replies: Vec<oneshot::Sender<Result<Applied, CommitFailure>>>,
}

/// Two stages: the objects of one group are stored while the previous group is being indexed,
/// so index cost (which grows with the archive) hides behind the storage instead of adding to
/// it. The index stage only ever sees groups whose objects are already durable.
async fn run(
    mut rx: mpsc::Receiver<CommitRequest>,
    index: Weak<Index>,
    sites: Arc<Sites>,
    max_group: usize,
    replication: Arc<Notify>,
) {
    let (synced_tx, synced_rx) = mpsc::channel::<SyncedGroup>(1);
    let indexer = tokio::spawn(index_stage(synced_rx, index, sites.clone(), replication));
    let mut group = Vec::with_capacity(max_group);
    while rx.recv_many(&mut group, max_group).await > 0 {
        let mut sources = Vec::with_capacity(group.len());
        let mut entries = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        for r in group.drain(..) {
            sources.push(r.source);
            entries.push(r.entry);
            replies.push(r.reply);
        }
        let started = std::time::Instant::now();
        let stored = sites.put_group(&sources).await;
        tracing::trace!(
            size = sources.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "group durable"
        );
        let put = match stored {
            Ok(put) => put,
            Err(e) => {
                tracing::error!(size = sources.len(), error = %e, "group could not be stored; objects of the group are refused");
                for reply in replies {
                    let _ = reply.send(Err(CommitFailure::from_storage(&e)));
                }
                continue;
            }
        };
        let group = SyncedGroup {
            put,
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
    sites: Arc<Sites>,
    replication: Arc<Notify>,
) {
    while let Some(group) = rx.recv().await {
        let Some(index) = index.upgrade() else { break };
        let SyncedGroup {
            mut put,
            mut entries,
            replies,
        } = group;
        let late = put.late.take();
        // Copies still being written get a head start before the queue makes them itself.
        let not_before_ms = if late.is_some() {
            super::unix_now().saturating_mul(1000) + LATE_WRITE_GRACE_MS
        } else {
            0
        };
        let keys: Vec<(String, u64, u64)> = entries
            .iter()
            .map(|e| {
                let generation = crate::storage::ObjectKey::parse(&e.instance.object_key)
                    .map(|k| k.generation())
                    .unwrap_or(0);
                (
                    e.instance.sop_instance_uid.clone(),
                    generation,
                    e.instance.size,
                )
            })
            .collect();
        let now = super::unix_now();
        for (i, entry) in entries.iter_mut().enumerate() {
            let generation = keys[i].1;
            entry.placements = put
                .held
                .iter()
                .filter_map(|(site, locators)| {
                    Some((site.clone(), held(generation, locators.get(i)?, now)))
                })
                .collect();
            entry.replicate_to = put.pending.clone();
            entry.replicate_not_before_ms = not_before_ms;
        }
        let size = entries.len();
        let started = std::time::Instant::now();
        let applying = index.clone();
        let result = tokio::task::spawn_blocking(move || apply_durably(&applying, entries))
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
                match late {
                    Some(late) => {
                        tokio::spawn(record_late(
                            late,
                            keys,
                            index,
                            sites.clone(),
                            replication.clone(),
                        ));
                    }
                    None if !put.pending.is_empty() => replication.notify_one(),
                    None => {}
                }
            }
            Err(failure) => fail_group(&sites, &put, replies, failure).await,
        }
    }
}

/// Copies to further sites that were still being written when the group was acknowledged:
/// record each that lands (its queue task is then dropped by the worker as already held), and
/// only then wake the replication worker for whatever did not land. A copy of a generation that
/// was replaced meanwhile is removed.
async fn record_late(
    mut late: crate::storage::LateWrites,
    keys: Vec<(String, u64, u64)>,
    index: Arc<Index>,
    sites: Arc<Sites>,
    replication: Arc<Notify>,
) {
    let bytes: u64 = keys.iter().map(|k| k.2).sum();
    while let Some(joined) = late.join_next().await {
        let Ok((name, result)) = joined else { continue };
        sites.record(&name, bytes, result.is_ok());
        let locators = match result {
            Ok(locators) => locators,
            Err(e) => {
                tracing::warn!(site = %name, error = %e, "copy to a further site failed; the replication queue will make it");
                continue;
            }
        };
        let now = super::unix_now();
        // One blocking call per site's copies, not one per object.
        let recorded = {
            let (index, keys, name) = (index.clone(), keys.clone(), name.clone());
            let locators = locators.clone();
            tokio::task::spawn_blocking(move || {
                keys.iter()
                    .zip(&locators)
                    .map(|((uid, generation, _), locator)| {
                        let placement = held(*generation, locator, now);
                        matches!(
                            index.record_placement(uid, &name, &placement, None),
                            Ok(true)
                        )
                    })
                    .collect::<Vec<bool>>()
            })
            .await
            .unwrap_or_default()
        };
        let Some(site) = sites.get(&name) else {
            continue;
        };
        for (i, locator) in locators.iter().enumerate() {
            if !recorded.get(i).copied().unwrap_or(false) {
                let _ = site.delete(locator).await;
            }
        }
    }
    replication.notify_one();
}

/// A copy of `generation` just written at `locator`.
fn held(generation: u64, locator: &crate::storage::Locator, now: u64) -> Placement {
    Placement {
        generation,
        locator: locator.0.clone(),
        state: PlacementState::Held,
        stored_at: now,
        // Written, not yet read back: a storage commitment verifies it first.
        verified_at: 0,
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

/// Refuse every object of a group and remove the copies the sites made of it.
async fn fail_group(
    sites: &Sites,
    put: &GroupPut,
    replies: Vec<oneshot::Sender<Result<Applied, CommitFailure>>>,
    failure: CommitFailure,
) {
    tracing::error!(size = replies.len(), error = %failure.message(), "group commit failed; objects of the group are refused");
    for (name, locators) in &put.held {
        if let Some(site) = sites.get(name) {
            for locator in locators {
                let _ = site.delete(locator).await;
            }
        }
    }
    for reply in replies {
        let _ = reply.send(Err(failure.clone()));
    }
}

#[cfg(test)]
mod tests {
    //! The committer's ordering, with a store whose durability barrier the test controls.

    use std::path::PathBuf;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::InMemDicomObject;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::index::ObjectFacts;
    use crate::storage::{ListPage, Locator, ObjectKey, Result as StoreResult, Site};

    /// `sync` waits for a permit the test hands out, or fails when told to.
    #[derive(Debug)]
    struct GatedStore {
        gate: Semaphore,
        sync_started: Notify,
        fail_sync: bool,
        deleted: Mutex<Vec<Locator>>,
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
    impl Site for GatedStore {
        fn name(&self) -> &str {
            "gated"
        }
        async fn put_group(&self, objects: &[PutSource]) -> StoreResult<Vec<Locator>> {
            self.sync_started.notify_one();
            if self.fail_sync {
                return Err(StorageError::Task("disk went away".into()));
            }
            let permit = self.gate.acquire().await;
            permit
                .map(|p| p.forget())
                .map_err(|e| StorageError::Task(e.to_string()))?;
            Ok(objects.iter().map(|o| Locator(o.key.to_string())).collect())
        }
        async fn read_at(&self, l: &Locator, _: u64, _: u64) -> StoreResult<bytes::Bytes> {
            Err(StorageError::NotFound(l.to_string()))
        }
        async fn size(&self, l: &Locator) -> StoreResult<u64> {
            Err(StorageError::NotFound(l.to_string()))
        }
        async fn delete(&self, l: &Locator) -> StoreResult<()> {
            self.deleted.lock().unwrap().push(l.clone());
            Ok(())
        }
        async fn list(&self, _: Option<String>, _: usize) -> StoreResult<ListPage> {
            Ok(ListPage::default())
        }
        async fn probe(&self) -> StoreResult<()> {
            Ok(())
        }
    }

    fn source(sop: &str) -> PutSource {
        PutSource {
            key: ObjectKey::for_instance(sop),
            path: PathBuf::from("/nonexistent"),
            size: 10,
            sha256: [0; 32],
            hold: None,
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
        InstanceEntry::from_header(&obj, facts, &Default::default()).unwrap()
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
        let sites = Arc::new(Sites::new(
            vec![store.clone() as Arc<dyn Site>],
            crate::config::AckPolicy::Quorum,
        ));
        let committer = spawn(&index, sites, 8, Arc::new(Notify::new()));
        (dir, index, store, committer)
    }

    #[tokio::test]
    async fn nothing_is_indexed_before_its_object_is_durable() {
        let (_dir, index, store, committer) = setup(GatedStore::new(false));
        let task = tokio::spawn({
            let committer = committer.clone();
            async move { committer.commit(source("1.2.3.1"), entry("1.2.3.1")).await }
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
    async fn a_failed_store_refuses_the_group() {
        let (_dir, index, _store, committer) = setup(GatedStore::new(true));
        let result = committer.commit(source("1.2.3.2"), entry("1.2.3.2")).await;
        assert!(result.is_err());
        assert!(!index.contains_instance("1.2.3.2").unwrap());
    }

    #[tokio::test]
    async fn a_failed_index_flush_removes_the_stored_copies() {
        let (_dir, index, store, committer) = setup(GatedStore::new(false));
        store.gate.add_permits(1);
        index
            .fail_flushes
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let result = committer.commit(source("1.2.3.3"), entry("1.2.3.3")).await;
        assert!(result.is_err());
        assert!(!index.contains_instance("1.2.3.3").unwrap());
        let key = ObjectKey::for_instance("1.2.3.3");
        assert_eq!(
            *store.deleted.lock().unwrap(),
            vec![Locator(key.to_string())]
        );
    }
}
