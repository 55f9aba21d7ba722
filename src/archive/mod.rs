//! The archive core: the ingest pipeline with its durability contract, and reconciliation at
//! start. The only caller of [`crate::index`] and [`crate::storage`]; it knows nothing of DIMSE
//! (its input is an object plus the AE that sent it).

mod committer;
mod error;
mod ingest;
mod query;
mod reconcile;
mod retrieve;
mod spool;
mod structure;
#[cfg(test)]
mod tests;
mod uid_lock;

pub use error::IngestError;
pub use ingest::IngestOutcome;
pub use reconcile::{MissingObjects, ReconcileReport};
pub use retrieve::{DatasetStream, RetrieveError, RetrieveItem};
pub use spool::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, IngestRequest, Spool};
pub use structure::{DEFAULT_MAX_SEQUENCE_DEPTH, check_dataset_bytes};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::config::{Config, DuplicatePolicy};
use crate::index::{Index, IndexError, Totals};
use crate::storage::{LocalStore, ObjectStore, StorageError};

/// Errors opening the archive.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the index at {0} is in use (is a MIFAS server running on this data directory?) or unreadable: {1}"
    )]
    Index(PathBuf, IndexError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("reconciliation failed: {0}")]
    Reconcile(String),
}

/// Cheap to clone: everything lives behind one `Arc`.
#[derive(Debug, Clone)]
pub struct Archive {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    index: Arc<Index>,
    store: Arc<dyn ObjectStore>,
    spool_dir: PathBuf,
    quota_bytes: u64,
    duplicate_policy: DuplicatePolicy,
    /// Bytes of objects accepted for storage but not yet committed, so concurrent stores
    /// cannot together overrun the quota.
    reserved_bytes: AtomicU64,
    committer: committer::CommitterHandle,
    /// Serialises stores of the same SOP Instance UID.
    uid_locks: uid_lock::UidLocks,
    /// `dicom.max_sequence_depth`, for the structure walk of every object.
    max_sequence_depth: usize,
}

impl Archive {
    /// Open the archive under `config.storage.data_dir`, creating it if needed, and reconcile
    /// what a crash may have left (DESIGN.md §3.5).
    pub async fn open(config: &Config) -> Result<(Archive, ReconcileReport), OpenError> {
        let data_dir = &config.storage.data_dir;
        let spool_dir = data_dir.join("spool");
        for dir in [data_dir.as_path(), spool_dir.as_path()] {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let index_dir = data_dir.join("index");
        let index = Index::open(&index_dir).map_err(|e| OpenError::Index(index_dir.clone(), e))?;
        let index = Arc::new(index);
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(&data_dir.join("objects"))?);
        let committer = committer::spawn(&index, store.clone(), config.storage.group_commit_max);
        let archive = Archive {
            inner: Arc::new(Inner {
                index,
                store,
                spool_dir,
                quota_bytes: config.storage.quota_bytes,
                duplicate_policy: config.storage.duplicate_policy,
                reserved_bytes: AtomicU64::new(0),
                committer,
                uid_locks: uid_lock::UidLocks::default(),
                max_sequence_depth: config.dicom.max_sequence_depth,
            }),
        };
        let report = archive.reconcile().await?;
        Ok((archive, report))
    }

    /// Start receiving an object: checks what the sender announced, then opens a spool file.
    pub async fn begin(&self, request: IngestRequest) -> Result<Spool, IngestError> {
        ingest::check_request(&request)?;
        Spool::create(
            &self.inner.spool_dir,
            request,
            self.inner.max_sequence_depth,
        )
        .await
    }

    /// Counts and bytes of everything indexed.
    pub fn totals(&self) -> Result<Totals, IndexError> {
        self.inner.index.totals()
    }

    /// Flush the index; called at shutdown after the last association ended.
    pub async fn close(&self) -> Result<(), IndexError> {
        self.inner.index.flush().await
    }

    pub fn spool_dir(&self) -> &Path {
        &self.inner.spool_dir
    }
}
