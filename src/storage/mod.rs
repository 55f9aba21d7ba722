//! Object stores. The archive puts spooled objects in, reads them (whole or by range) back out.
//! Local disk is the embedded default; HDFS sites and replication arrive later behind the same trait.

mod local;

pub use local::LocalStore;

use std::path::Path;

use async_trait::async_trait;

/// Errors of a store, named after the operation; disk-full is its own variant because it maps to
/// "out of resources" for the peer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no space left for {key}: {source}")]
    Full { key: String, source: std::io::Error },
    #[error("cannot {op} {key}: {source}")]
    Io {
        op: &'static str,
        key: String,
        source: std::io::Error,
    },
    #[error("object {0} not found")]
    NotFound(String),
    #[error("background task failed: {0}")]
    Task(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    pub(crate) fn io(op: &'static str, key: &str, source: std::io::Error) -> StorageError {
        if is_disk_full(&source) {
            StorageError::Full {
                key: key.to_string(),
                source,
            }
        } else if source.kind() == std::io::ErrorKind::NotFound {
            StorageError::NotFound(key.to_string())
        } else {
            StorageError::Io {
                op,
                key: key.to_string(),
                source,
            }
        }
    }
}

/// ENOSPC and EDQUOT both mean "no room for this object".
pub fn is_disk_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull
            | std::io::ErrorKind::QuotaExceeded
            | std::io::ErrorKind::FileTooLarge
    )
}

/// The key of an object in every store: `<2 hex>/<SOP Instance UID>.dcm`, the prefix being the
/// first byte of SHA-256 of the UID so objects spread over 256 directories.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// The caller must have validated `sop_instance_uid` (digits and dots only).
    pub fn for_instance(sop_instance_uid: &str) -> ObjectKey {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(sop_instance_uid.as_bytes());
        ObjectKey(format!("{:02x}/{sop_instance_uid}.dcm", digest[0]))
    }

    /// Parse a stored key back (e.g. from a directory listing); `None` if it is not one of ours.
    pub fn parse(key: &str) -> Option<ObjectKey> {
        let (dir, file) = key.split_once('/')?;
        let uid = file.strip_suffix(".dcm")?;
        let ok = dir.len() == 2
            && dir.bytes().all(|b| b.is_ascii_hexdigit())
            && crate::uid::validate(uid).is_ok();
        ok.then(|| ObjectKey::for_instance(uid))
            .filter(|k| k.0 == key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn sop_instance_uid(&self) -> &str {
        let file = self.0.split_once('/').map(|(_, f)| f).unwrap_or(&self.0);
        file.strip_suffix(".dcm").unwrap_or(file)
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object store. Putting is two-phase so the archive can group durability across objects:
/// `put_file` moves a spooled file in, `sync` makes a set of puts durable.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Move a spooled file into the store under `key`, replacing any object with that key.
    /// Not durable (neither its data nor its name) until [`ObjectStore::sync`].
    async fn put_file(&self, key: &ObjectKey, spooled: &Path) -> Result<()>;
    /// Durability barrier for earlier puts of these keys: their data and their names.
    async fn sync(&self, keys: &[ObjectKey]) -> Result<()>;
    /// Bytes `[offset, offset + len)` of an object, clamped to its end.
    async fn get_range(&self, key: &ObjectKey, offset: u64, len: u64) -> Result<Vec<u8>>;
    async fn size(&self, key: &ObjectKey) -> Result<u64>;
    async fn exists(&self, key: &ObjectKey) -> Result<bool>;
    async fn delete(&self, key: &ObjectKey) -> Result<()>;
    /// Those of `keys` that the store does not hold (for reconciliation, in batches).
    async fn missing(&self, keys: Vec<ObjectKey>) -> Result<Vec<ObjectKey>>;
    /// Every key in the store (for reconciliation).
    async fn list(&self) -> Result<Vec<ObjectKey>>;
    /// The object's path when it is a file on this machine (lets reconciliation parse it in place).
    fn local_path(&self, key: &ObjectKey) -> Option<std::path::PathBuf>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let key = ObjectKey::for_instance("1.2.3.4");
        assert_eq!(key.sop_instance_uid(), "1.2.3.4");
        assert_eq!(ObjectKey::parse(key.as_str()), Some(key.clone()));
        assert!(key.as_str().ends_with("/1.2.3.4.dcm"));
        assert_eq!(ObjectKey::parse("zz/1.2.3.dcm"), None);
        assert_eq!(ObjectKey::parse("00/../x.dcm"), None);
        // a file in the wrong fan-out directory is not one of ours
        let wrong = format!(
            "{}/1.2.3.4.dcm",
            if key.as_str().starts_with("00") {
                "01"
            } else {
                "00"
            }
        );
        assert_eq!(ObjectKey::parse(&wrong), None);
    }
}
