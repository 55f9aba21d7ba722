//! The retrieval API for C-MOVE, C-GET (and later the web): which instances a query selects, and
//! their data sets, streamed in ranges from the object store (never the whole object in memory),
//! or converted to another transfer syntax when the receiver cannot take the stored one.

use std::sync::Arc;

use dicom_object::OpenFileOptions;
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::Archive;
use crate::query::{Query, QueryError};
use bytes::Bytes;

use crate::storage::{
    Locator, ObjectKey, ObjectSources, ObjectStream, ObjectsStream, Site, StorageError,
};
use dicom_encoding::TransferSyntaxIndex;

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
    #[error("no copy to read: {0}")]
    NoCopy(String),
}

/// The copies of an object: each site holding one, with its locator there.
pub(crate) type Copies = Vec<(Arc<dyn Site>, Locator)>;

/// One instance selected for retrieval.
#[derive(Debug, Clone)]
pub struct RetrieveItem {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    /// Transfer syntax of the stored data set.
    pub transfer_syntax: String,
    key: ObjectKey,
    size: u64,
    sha256: [u8; 32],
}

impl RetrieveItem {
    #[cfg(test)]
    pub fn for_test(uid: &str, sop_class_uid: &str, transfer_syntax: &str) -> RetrieveItem {
        RetrieveItem {
            sop_instance_uid: uid.into(),
            sop_class_uid: sop_class_uid.into(),
            transfer_syntax: transfer_syntax.into(),
            key: ObjectKey::for_instance(uid),
            size: 0,
            sha256: [0; 32],
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
                    size: record.size,
                    sha256: record.sha256,
                });
                true
            })?;
            Ok(items)
        })
        .await
        .map_err(|e| RetrieveError::Task(e.to_string()))?
    }

    /// The copies of one generation of an instance, best site first.
    pub(crate) fn copies(&self, key: &ObjectKey) -> Result<Copies, RetrieveError> {
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

    /// Where to read `item` from: the copies of its generation, or, when it was replaced since
    /// the query selected it (duplicate_policy = replace), those of the generation the index
    /// names now, with that generation's size and digest.
    fn sources(&self, item: &RetrieveItem) -> Result<ObjectSources, RetrieveError> {
        let copies = self.copies(&item.key)?;
        if !copies.is_empty() {
            return Ok(ObjectSources {
                sources: copies,
                size: item.size,
                sha256: item.sha256,
            });
        }
        let record = self.inner.index.instance(&item.sop_instance_uid)?;
        if let Some(record) = record
            && let Some(current) = ObjectKey::parse(&record.object_key)
            && current != item.key
        {
            return Ok(ObjectSources {
                sources: self.copies(&current)?,
                size: record.size,
                sha256: record.sha256,
            });
        }
        Err(StorageError::NotFound(item.key.to_string()).into())
    }

    /// Stream the stored data set of `item` (without the Part-10 file meta), as it is, read
    /// from every site holding a copy (co-allocated) and checked against its SHA-256.
    pub async fn open_dataset(&self, item: &RetrieveItem) -> Result<DatasetStream, RetrieveError> {
        let sources = self.sources(item)?;
        let object = self
            .inner
            .coalloc
            .read_object(sources.sources, sources.size, sources.sha256);
        DatasetStream::open(item.key.clone(), object).await
    }

    /// The data sets of several instances, fetched ahead from all sites at once (different
    /// instances from different sites) and handed out in the order of `items`.
    pub fn open_datasets(&self, items: &[RetrieveItem]) -> DatasetQueue {
        let mut failed = Vec::new();
        let mut sources = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match self.sources(item) {
                Ok(s) => sources.push(s),
                Err(e) => {
                    // An empty source list makes the co-allocator answer an error in this
                    // item's place; the reason is kept for the sub-operation's report.
                    failed.push((i, e.to_string()));
                    sources.push(ObjectSources {
                        sources: Vec::new(),
                        size: item.size,
                        sha256: item.sha256,
                    });
                }
            }
        }
        DatasetQueue {
            objects: self.inner.coalloc.read_objects(sources),
            keys: items.iter().map(|i| i.key.clone()).collect(),
            failed,
        }
    }

    /// The data set of `item` in transfer syntax `ts_uid`, decoding compressed pixel data when
    /// needed. Holds the whole object in memory: used only when the receiver cannot take the
    /// stored transfer syntax.
    pub async fn converted_dataset(
        &self,
        item: &RetrieveItem,
        ts_uid: &str,
    ) -> Result<Vec<u8>, RetrieveError> {
        let sources = self.sources(item)?;
        let object = self
            .inner
            .coalloc
            .read_object(sources.sources, sources.size, sources.sha256);
        convert_object(object, &item.sop_instance_uid, ts_uid).await
    }
}

/// Convert a whole object read through the co-allocator (see [`Archive::converted_dataset`]).
pub async fn convert_object(
    object: ObjectStream,
    uid: &str,
    ts_uid: &str,
) -> Result<Vec<u8>, RetrieveError> {
    let bytes = object.read_all().await?;
    let (uid, ts_uid) = (uid.to_string(), ts_uid.to_string());
    tokio::task::spawn_blocking(move || convert(&bytes, &uid, &ts_uid))
        .await
        .map_err(|e| RetrieveError::Task(e.to_string()))?
}

/// The objects of a retrieve being fetched ahead, taken in order.
pub struct DatasetQueue {
    objects: ObjectsStream,
    keys: Vec<ObjectKey>,
    /// Items that had no copy to read from, with the reason.
    failed: Vec<(usize, String)>,
}

impl DatasetQueue {
    /// The next object in the order of the items (`None` after the last).
    pub async fn next_object(&mut self) -> Option<(usize, Result<ObjectStream, RetrieveError>)> {
        let (i, object) = self.objects.next_object().await?;
        if let Some((_, reason)) = self.failed.iter().find(|(f, _)| *f == i) {
            return Some((i, Err(RetrieveError::NoCopy(reason.clone()))));
        }
        Some((i, Ok(object)))
    }

    /// Open the data set of an object taken from the queue.
    pub async fn open(
        &self,
        index: usize,
        object: ObjectStream,
    ) -> Result<DatasetStream, RetrieveError> {
        let key =
            self.keys.get(index).cloned().ok_or_else(|| {
                RetrieveError::NoCopy(format!("no item {index} in this retrieve"))
            })?;
        DatasetStream::open(key, object).await
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

/// A stored data set read chunk by chunk through the co-allocator. One chunk is held back
/// until the next one (or the verified end) has arrived, so the last fragment of a data set is
/// only sent once the whole object matched its SHA-256: a corrupt copy fails the transfer
/// instead of reaching the receiver complete.
pub struct DatasetStream {
    key: ObjectKey,
    object: ObjectStream,
    held: Option<Bytes>,
    /// The object stream has ended with its digest verified.
    verified: bool,
}

impl DatasetStream {
    async fn open(
        key: ObjectKey,
        mut object: ObjectStream,
    ) -> Result<DatasetStream, RetrieveError> {
        // Read until the file meta group's length is known and passed.
        let mut head = bytes::BytesMut::new();
        let mut verified = false;
        let start = loop {
            if let Some(start) = dataset_offset(&head) {
                if head.len() >= start {
                    break start;
                }
            } else if head.len() >= PREAMBLE_AND_MAGIC + 12 {
                return Err(RetrieveError::NotDicom(
                    key.to_string(),
                    "no file meta".into(),
                ));
            }
            match object.next_chunk().await {
                Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(e.into()),
                None => {
                    verified = true;
                    match dataset_offset(&head) {
                        Some(start) if head.len() >= start => break start,
                        _ => {
                            return Err(RetrieveError::NotDicom(
                                key.to_string(),
                                "no file meta".into(),
                            ));
                        }
                    }
                }
            }
        };
        let first = head.freeze().slice(start..);
        let mut stream = DatasetStream {
            key,
            object,
            held: None,
            verified,
        };
        if first.is_empty() {
            stream.advance().await?;
        } else {
            stream.held = Some(first);
        }
        if stream.held.is_none() {
            return Err(RetrieveError::NotDicom(
                stream.key.to_string(),
                "empty data set".into(),
            ));
        }
        Ok(stream)
    }

    /// Fetch the next non-empty chunk into `held`, or note the verified end.
    async fn advance(&mut self) -> Result<(), RetrieveError> {
        while !self.verified {
            match self.object.next_chunk().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => {
                    self.held = Some(chunk);
                    return Ok(());
                }
                Some(Err(e)) => return Err(e.into()),
                None => self.verified = true,
            }
        }
        Ok(())
    }

    /// Whether the last chunk has been handed out.
    pub fn is_done(&self) -> bool {
        self.held.is_none() && self.verified
    }

    /// The next bytes of the data set, `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, RetrieveError> {
        let Some(current) = self.held.take() else {
            return Ok(None);
        };
        self.advance().await?;
        Ok(Some(current.to_vec()))
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
