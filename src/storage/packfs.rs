//! The file system under a pack site: what a [`super::PackSite`] needs from HDFS or from a local
//! directory. Deliberately small — create, append, make durable, positional read, rename, list,
//! delete — so both backends implement exactly the same semantics and the pack logic above is
//! tested on local disk without Java.

use async_trait::async_trait;
use bytes::Bytes;

use super::Result;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    /// Path relative to the listed directory (no leading '/').
    pub name: String,
    pub len: u64,
    pub is_dir: bool,
}

/// A file system holding pack files. Paths are absolute within the site ("/mifas/packs/…").
/// Every call is bounded in time by the implementation (a dead site answers
/// [`super::StorageError::Unavailable`], never hangs).
#[async_trait]
pub trait PackFs: Send + Sync + std::fmt::Debug {
    /// Create `path` (its parent directories too); fails if it exists.
    async fn create(&self, path: &str) -> Result<Box<dyn PackWriter>>;
    /// Open `path` for positional reads. The reader sees the file's length at open time
    /// (including everything made durable by [`PackWriter::sync`] before).
    async fn open(&self, path: &str) -> Result<Box<dyn PackReader>>;
    /// The length of `path` as visible to a new reader.
    async fn len(&self, path: &str) -> Result<u64>;
    /// Rename, failing if `to` exists.
    async fn rename(&self, from: &str, to: &str) -> Result<()>;
    /// Delete a file; deleting a missing file is not an error.
    async fn delete(&self, path: &str) -> Result<()>;
    /// The entries of a directory (not recursive); a missing directory lists empty.
    async fn list(&self, dir: &str) -> Result<Vec<FsEntry>>;
    /// Make sure a file left open by a crashed writer can be read to its synced length and
    /// is no longer held by the dead writer (HDFS lease recovery); no-op on local disk.
    async fn recover(&self, path: &str) -> Result<()>;
    /// One cheap metadata call, to measure the site's latency and see it is up.
    async fn probe(&self) -> Result<()>;
}

/// Appends to one file. Bytes written are durable and visible to new readers only after
/// [`PackWriter::sync`] returned Ok.
#[async_trait]
pub trait PackWriter: Send + Sync {
    async fn write(&mut self, bytes: Bytes) -> Result<()>;
    /// Make everything written so far durable (HDFS: `hsync`, local: `fdatasync`, plus the
    /// directory entry the first time).
    async fn sync(&mut self) -> Result<()>;
    /// Sync and close the file. Must be called (HDFS completes the file only then).
    async fn close(self: Box<Self>) -> Result<()>;
    /// Bytes written so far (synced or not).
    fn written(&self) -> u64;
}

/// Positional reads of one file.
#[async_trait]
pub trait PackReader: Send + Sync {
    /// The length this reader can read up to.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes `[offset, offset + len)`, clamped to [`PackReader::len`].
    async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes>;
}
