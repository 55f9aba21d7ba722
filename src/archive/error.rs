//! Why an object was not stored. The DIMSE layer maps each variant to a C-STORE status in one
//! place (`dimse::status::for_ingest_error`).

use crate::index::IndexError;
use crate::storage::StorageError;
use crate::uid::UidError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Disk full or quota reached.
    #[error("out of resources: {0}")]
    OutOfResources(String),
    /// The data set's SOP Class/Instance UID differs from what the command announced.
    #[error("data set does not match the command: {0}")]
    DatasetMismatch(String),
    /// The data set cannot be parsed (truncated, malformed).
    #[error("data set cannot be read: {0}")]
    Unreadable(String),
    #[error("invalid {attribute} {value:?}: {reason}")]
    InvalidUid {
        attribute: &'static str,
        value: String,
        reason: UidError,
    },
    #[error("required attribute {0} is missing")]
    MissingAttribute(&'static str),
    /// Only with the `reject` duplicate policy.
    #[error("SOP instance {0} is already stored")]
    Duplicate(String),
    #[error("storage failed: {0}")]
    Storage(StorageError),
    #[error("index failed: {0}")]
    Index(#[from] IndexError),
    #[error("spool failed: {0}")]
    Spool(std::io::Error),
    #[error("archive is shutting down")]
    ShuttingDown,
}

impl From<StorageError> for IngestError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Full { .. } => IngestError::OutOfResources(err.to_string()),
            other => IngestError::Storage(other),
        }
    }
}

impl IngestError {
    /// Disk full or quota reached, whichever layer noticed it (ENOSPC/EDQUOT at the spool, the
    /// object fsync or the index flush): the peer is told "Refused: Out of Resources".
    pub fn is_out_of_resources(&self) -> bool {
        match self {
            IngestError::OutOfResources(_) => true,
            IngestError::Storage(StorageError::Full { .. }) => true,
            IngestError::Spool(e) => crate::storage::is_disk_full(e),
            IngestError::Index(IndexError::Flush(sled::Error::Io(e)))
            | IngestError::Index(IndexError::Read(sled::Error::Io(e)))
            | IngestError::Index(IndexError::Open {
                source: sled::Error::Io(e),
                ..
            }) => crate::storage::is_disk_full(e),
            _ => false,
        }
    }

    pub(crate) fn spool(err: std::io::Error) -> IngestError {
        if crate::storage::is_disk_full(&err) {
            IngestError::OutOfResources(format!("no space left on the spool device: {err}"))
        } else {
            IngestError::Spool(err)
        }
    }
}
