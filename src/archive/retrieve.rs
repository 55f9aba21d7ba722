//! The retrieval API for C-MOVE, C-GET (and later the web): which instances a query selects, and
//! their data sets, streamed in ranges from the object store (never the whole object in memory),
//! or converted to another transfer syntax when the receiver cannot take the stored one.

use std::sync::Arc;

use dicom_object::OpenFileOptions;
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::Archive;
use crate::query::{Query, QueryError};
use crate::storage::{Locator, ObjectKey, Site, StorageError};
use dicom_encoding::TransferSyntaxIndex;

/// Bytes read from the store per range request while streaming an object.
pub const RETRIEVE_CHUNK: u64 = 1 << 20;

/// Part-10 preamble and magic: 128 bytes + "DICM".
const PREAMBLE_AND_MAGIC: usize = 132;

#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("index: {0}")]
    Index(#[from] crate::index::IndexError),
    #[error("stored object {0} is not a readable DICOM file: {1}")]
    NotDicom(String, String),
    #[error("cannot convert {uid} to transfer syntax {ts}: {reason}")]
    Convert {
        uid: String,
        ts: String,
        reason: String,
    },
    #[error("background task failed: {0}")]
    Task(String),
}

/// One instance selected for retrieval.
#[derive(Debug, Clone)]
pub struct RetrieveItem {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    /// Transfer syntax of the stored data set.
    pub transfer_syntax: String,
    key: ObjectKey,
}

impl RetrieveItem {
    #[cfg(test)]
    pub fn for_test(uid: &str, sop_class_uid: &str, transfer_syntax: &str) -> RetrieveItem {
        RetrieveItem {
            sop_instance_uid: uid.into(),
            sop_class_uid: sop_class_uid.into(),
            transfer_syntax: transfer_syntax.into(),
            key: ObjectKey::for_instance(uid),
        }
    }
}

impl Archive {
    /// Every instance below the matches of `query`, in index order (series by series).
    pub async fn instances_to_retrieve(
        &self,
        query: Query,
    ) -> Result<Vec<RetrieveItem>, RetrieveError> {
        let index = self.inner.index.clone();
        tokio::task::spawn_blocking(move || {
            let mut items = Vec::new();
            index.instances_of_matches(&query, |record| {
                let key = ObjectKey::parse(&record.object_key)
                    .unwrap_or_else(|| ObjectKey::for_instance(&record.sop_instance_uid));
                items.push(RetrieveItem {
                    sop_instance_uid: record.sop_instance_uid,
                    sop_class_uid: record.sop_class_uid,
                    transfer_syntax: record.transfer_syntax,
                    key,
                });
                true
            })?;
            Ok(items)
        })
        .await
        .map_err(|e| RetrieveError::Task(e.to_string()))?
    }

    /// The copies of one generation of an instance, best site first.
    pub(crate) fn copies(
        &self,
        key: &ObjectKey,
    ) -> Result<Vec<(Arc<dyn Site>, Locator)>, RetrieveError> {
        let placements = self.inner.index.placements(key.sop_instance_uid())?;
        let mut copies = Vec::new();
        for site in self.inner.sites.ranked() {
            let held = placements.iter().find(|(name, p)| {
                name == site.name()
                    && p.generation == key.generation()
                    && p.state == crate::index::PlacementState::Held
            });
            if let Some((_, p)) = held {
                copies.push((site.clone(), Locator(p.locator.clone())));
            }
        }
        Ok(copies)
    }

    /// The first `len` bytes of a stored generation, from the first copy that answers.
    async fn read_head(
        &self,
        key: &ObjectKey,
        len: u64,
    ) -> Result<(Vec<(Arc<dyn Site>, Locator)>, bytes::Bytes), RetrieveError> {
        let mut copies = self.copies(key)?;
        let mut last = StorageError::NotFound(key.to_string());
        while !copies.is_empty() {
            let (site, locator) = copies[0].clone();
            match site.read_at(&locator, 0, len).await {
                Ok(head) => return Ok((copies, head)),
                Err(e) => {
                    tracing::warn!(site = %site.name(), object = %locator, error = %e, "copy unreadable; trying the next site");
                    last = e;
                    copies.remove(0);
                }
            }
        }
        Err(last.into())
    }

    /// Stream the stored data set of `item` (without the Part-10 file meta), as it is.
    pub async fn open_dataset(&self, item: &RetrieveItem) -> Result<DatasetStream, RetrieveError> {
        let (key, copies, first) = match self.read_head(&item.key, RETRIEVE_CHUNK).await {
            Ok((copies, first)) => (item.key.clone(), copies, first),
            // Replaced since the query selected it (duplicate_policy = replace writes a new
            // generation and removes the old one): read the generation the index names now.
            Err(RetrieveError::Storage(StorageError::NotFound(missing))) => {
                match self.current_key(item)? {
                    Some(current) if current != item.key => {
                        let (copies, first) = self.read_head(&current, RETRIEVE_CHUNK).await?;
                        (current, copies, first)
                    }
                    _ => return Err(StorageError::NotFound(missing).into()),
                }
            }
            Err(e) => return Err(e),
        };
        let start = dataset_offset(&first)
            .ok_or_else(|| RetrieveError::NotDicom(key.to_string(), "no file meta".into()))?;
        // A first read shorter than asked is the whole object; only larger ones need their size.
        let size = if (first.len() as u64) < RETRIEVE_CHUNK {
            first.len() as u64
        } else {
            copies[0].0.size(&copies[0].1).await?
        };
        let buffered = first.get(start..).map(<[u8]>::to_vec).unwrap_or_default();
        let next = start as u64 + buffered.len() as u64;
        Ok(DatasetStream {
            copies,
            key,
            pending: Some(buffered).filter(|b| !b.is_empty()),
            next,
            end: size,
        })
    }

    /// The object generation the index names for `item` now (`None`: no longer indexed).
    fn current_key(&self, item: &RetrieveItem) -> Result<Option<ObjectKey>, RetrieveError> {
        let record = self.inner.index.instance(&item.sop_instance_uid)?;
        Ok(record.and_then(|r| ObjectKey::parse(&r.object_key)))
    }

    /// The data set of `item` in transfer syntax `ts_uid`, decoding compressed pixel data when
    /// needed. Holds the whole object in memory: used only when the receiver cannot take the
    /// stored transfer syntax.
    pub async fn converted_dataset(
        &self,
        item: &RetrieveItem,
        ts_uid: &str,
    ) -> Result<Vec<u8>, RetrieveError> {
        // read_at clamps to the object's end.
        let bytes = match self.read_head(&item.key, u64::MAX).await {
            Err(RetrieveError::Storage(StorageError::NotFound(missing))) => {
                match self.current_key(item)? {
                    // replaced since the query: the generation the index names now
                    Some(current) if current != item.key => {
                        self.read_head(&current, u64::MAX).await?.1
                    }
                    _ => return Err(StorageError::NotFound(missing).into()),
                }
            }
            other => other?.1,
        };
        let (uid, ts_uid) = (item.sop_instance_uid.clone(), ts_uid.to_string());
        tokio::task::spawn_blocking(move || convert(&bytes, &uid, &ts_uid))
            .await
            .map_err(|e| RetrieveError::Task(e.to_string()))?
    }
}

fn convert(file: &[u8], uid: &str, ts_uid: &str) -> Result<Vec<u8>, RetrieveError> {
    let fail = |reason: String| RetrieveError::Convert {
        uid: uid.to_string(),
        ts: ts_uid.to_string(),
        reason,
    };
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| fail("unknown transfer syntax".into()))?;
    let body = file
        .get(128..)
        .ok_or_else(|| RetrieveError::NotDicom(uid.to_string(), "file too short".into()))?;
    let mut obj = OpenFileOptions::new()
        .from_reader(body)
        .map_err(|e| RetrieveError::NotDicom(uid.to_string(), e.to_string()))?;
    obj.transcode(ts).map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::with_capacity(file.len());
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| fail(e.to_string()))?;
    Ok(out)
}

/// Offset of the data set in a Part-10 file: after preamble, magic and the file meta group,
/// whose length (0002,0000) is its first element.
fn dataset_offset(head: &[u8]) -> Option<usize> {
    if head.get(128..PREAMBLE_AND_MAGIC)? != b"DICM" {
        return None;
    }
    // (0002,0000) UL, explicit VR little endian: tag(4) "UL" len(2) value(4).
    let element = head.get(PREAMBLE_AND_MAGIC..PREAMBLE_AND_MAGIC + 12)?;
    if element[..6] != [0x02, 0x00, 0x00, 0x00, b'U', b'L'] {
        return None;
    }
    let group_length = u32::from_le_bytes([element[8], element[9], element[10], element[11]]);
    PREAMBLE_AND_MAGIC
        .checked_add(12)?
        .checked_add(usize::try_from(group_length).ok()?)
}

/// A stored data set read range by range.
pub struct DatasetStream {
    /// The copies still believed good, the one being read first.
    copies: Vec<(Arc<dyn Site>, Locator)>,
    key: ObjectKey,
    pending: Option<Vec<u8>>,
    next: u64,
    end: u64,
}

impl DatasetStream {
    /// Whether the last chunk has been handed out.
    pub fn is_done(&self) -> bool {
        self.pending.is_none() && self.next >= self.end
    }

    /// The next bytes of the data set, `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, RetrieveError> {
        if let Some(chunk) = self.pending.take() {
            return Ok(Some(chunk));
        }
        if self.next >= self.end {
            return Ok(None);
        }
        let len = RETRIEVE_CHUNK.min(self.end - self.next);
        let chunk = loop {
            let Some((site, locator)) = self.copies.first() else {
                return Err(StorageError::NotFound(self.key.to_string()).into());
            };
            match site.read_at(locator, self.next, len).await {
                Ok(chunk) => break chunk,
                // Another site holds the same bytes: carry on from there.
                Err(e) if self.copies.len() > 1 => {
                    tracing::warn!(site = %site.name(), object = %locator, error = %e, "copy failed mid-read; going on from the next site");
                    self.copies.remove(0);
                }
                Err(e) => return Err(e.into()),
            }
        };
        if chunk.is_empty() {
            // The object shrank under us: never send a data set shorter than announced silently.
            return Err(RetrieveError::Storage(StorageError::Io {
                op: "read",
                key: self.key.to_string(),
                source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            }));
        }
        self.next += chunk.len() as u64;
        Ok(Some(chunk.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_offset_reads_the_meta_group_length() {
        let mut head = vec![0u8; 128];
        head.extend_from_slice(b"DICM");
        head.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0, 10, 0, 0, 0]);
        head.extend_from_slice(&[0u8; 10]);
        assert_eq!(dataset_offset(&head), Some(132 + 12 + 10));
        head[128] = b'X';
        assert_eq!(dataset_offset(&head), None);
        assert_eq!(dataset_offset(&[0u8; 20]), None);
    }
}
