//! Group commit: objects that became ready while the previous commit ran are made durable
//! together — one fsync pass and one index write + flush for the whole group — so concurrent
//! associations share the cost of durability.

use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};

use super::IngestError;
use crate::index::{Applied, Index, InstanceEntry};
use crate::storage::{ObjectKey, ObjectStore};

struct CommitRequest {
    key: ObjectKey,
    entry: InstanceEntry,
    reply: oneshot::Sender<Result<Applied, String>>,
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
    /// Make an object already moved into the store durable and indexed.
    pub(crate) async fn commit(
        &self,
        key: ObjectKey,
        entry: InstanceEntry,
    ) -> Result<Applied, IngestError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(CommitRequest { key, entry, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        match rx.await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(message)) => Err(IngestError::Index(crate::index::IndexError::Write(message))),
            Err(_) => Err(IngestError::ShuttingDown),
        }
    }
}

/// A group whose objects are durable, waiting for its index write.
struct SyncedGroup {
    keys: Vec<ObjectKey>,
    entries: Vec<InstanceEntry>,
    replies: Vec<oneshot::Sender<Result<Applied, String>>>,
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
            fail_group(store.as_ref(), &keys, replies, e.to_string()).await;
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
        let result = tokio::task::spawn_blocking(move || {
            let applied = index.apply(entries)?;
            index.flush_blocking()?;
            Ok::<_, crate::index::IndexError>(applied)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
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
            Err(message) => fail_group(store.as_ref(), &keys, replies, message).await,
        }
    }
}

/// Refuse every object of a group and remove what was moved into the store.
async fn fail_group(
    store: &dyn ObjectStore,
    keys: &[ObjectKey],
    replies: Vec<oneshot::Sender<Result<Applied, String>>>,
    message: String,
) {
    tracing::error!(size = keys.len(), error = %message, "group commit failed; objects of the group are refused");
    for key in keys {
        let _ = store.delete(key).await;
    }
    for reply in replies {
        let _ = reply.send(Err(message.clone()));
    }
}
