//! Group commit: objects that became ready while the previous commit ran are made durable
//! together — one directory-fsync pass and one index write + flush for the whole group — so
//! concurrent associations share the cost of durability.

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

async fn run(
    mut rx: mpsc::Receiver<CommitRequest>,
    index: Weak<Index>,
    store: Arc<dyn ObjectStore>,
    max_group: usize,
) {
    let mut group = Vec::with_capacity(max_group);
    while rx.recv_many(&mut group, max_group).await > 0 {
        let Some(index) = index.upgrade() else { break };
        let keys: Vec<ObjectKey> = group.iter().map(|r| r.key.clone()).collect();
        let (entries, replies): (Vec<_>, Vec<_>) =
            group.drain(..).map(|r| (r.entry, r.reply)).unzip();
        let size = entries.len();
        let started = std::time::Instant::now();
        let result = commit_group(&index, store.as_ref(), &keys, entries).await;
        tracing::trace!(
            size,
            elapsed_us = started.elapsed().as_micros() as u64,
            "group commit"
        );
        match result {
            Ok(applied) => {
                for (reply, a) in replies.into_iter().zip(applied) {
                    let _ = reply.send(Ok(a));
                }
            }
            Err(message) => {
                tracing::error!(size, error = %message, "group commit failed; objects of the group are refused");
                for key in &keys {
                    let _ = store.delete(key).await;
                }
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}

async fn commit_group(
    index: &Arc<Index>,
    store: &dyn ObjectStore,
    keys: &[ObjectKey],
    entries: Vec<InstanceEntry>,
) -> Result<Vec<Applied>, String> {
    // Objects first (file and directory fsync), then the index: an index entry never points at
    // an object a crash could still lose.
    store.sync(keys).await.map_err(|e| e.to_string())?;
    let index = index.clone();
    tokio::task::spawn_blocking(move || {
        let applied = index.apply(entries)?;
        index.flush_blocking()?;
        Ok::<_, crate::index::IndexError>(applied)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}
