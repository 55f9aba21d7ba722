//! Single-object access for the web layers (portal, renderer, later DICOMweb): one instance by
//! its UID, as the whole stored Part-10 file, and where its copies are.

use super::Archive;
use super::retrieve::RetrieveError;
use crate::index::PlacementState;
use crate::storage::{ObjectKey, ObjectStream, StorageError};

/// Where the copies of one instance are (the portal's file-status view).
#[derive(Debug, Clone)]
pub struct FileStatus {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub size: u64,
    pub sha256: [u8; 32],
    /// One entry per configured site, in configuration order.
    pub sites: Vec<SiteCopy>,
}

#[derive(Debug, Clone)]
pub struct SiteCopy {
    pub site: String,
    /// Held: the site has the live generation. Lost: a repair found it missing or corrupt.
    /// None: no copy there yet (queued for replication, or never written).
    pub state: Option<PlacementState>,
    /// Seconds since the Unix epoch (0: unknown / never).
    pub stored_at: u64,
    pub verified_at: u64,
}

impl Archive {
    /// Size, digest and the copies of one instance; `None` when it is not in the archive.
    pub async fn file_status(&self, uid: &str) -> Result<Option<FileStatus>, RetrieveError> {
        let index = self.inner.index.clone();
        let sites: Vec<String> = self
            .inner
            .sites
            .all()
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        let uid = uid.to_string();
        tokio::task::spawn_blocking(move || {
            let Some(record) = index.instance(&uid)? else {
                return Ok(None);
            };
            let generation = ObjectKey::parse(&record.object_key).map(|k| k.generation());
            let placements = index.placements(&uid)?;
            let sites = sites
                .into_iter()
                .map(|site| {
                    let p = placements
                        .iter()
                        .find(|(name, p)| *name == site && Some(p.generation) == generation)
                        .map(|(_, p)| p);
                    SiteCopy {
                        site,
                        state: p.map(|p| p.state),
                        stored_at: p.map_or(0, |p| p.stored_at),
                        verified_at: p.map_or(0, |p| p.verified_at),
                    }
                })
                .collect();
            Ok(Some(FileStatus {
                sop_instance_uid: record.sop_instance_uid,
                sop_class_uid: record.sop_class_uid,
                transfer_syntax: record.transfer_syntax,
                size: record.size,
                sha256: record.sha256,
                sites,
            }))
        })
        .await
        .map_err(|e| RetrieveError::Task(e.to_string()))?
    }

    /// Whether instance `uid` is in the archive (one index lookup; the image routes answer 404
    /// before rendering, so a missing object never looks like a placeholder).
    pub async fn has_instance(&self, uid: &str) -> Result<bool, RetrieveError> {
        let index = self.inner.index.clone();
        let uid = uid.to_string();
        let record = tokio::task::spawn_blocking(move || index.instance(&uid))
            .await
            .map_err(|e| RetrieveError::Task(e.to_string()))??;
        Ok(record.is_some())
    }

    /// The whole stored Part-10 file of one instance, streamed from every site holding a copy
    /// (co-allocated) and checked against its SHA-256; `None` when it is not in the archive.
    pub async fn open_object(&self, uid: &str) -> Result<Option<ObjectStream>, RetrieveError> {
        let index = self.inner.index.clone();
        let owned = uid.to_string();
        let record = tokio::task::spawn_blocking(move || index.instance(&owned))
            .await
            .map_err(|e| RetrieveError::Task(e.to_string()))??;
        let Some(record) = record else {
            return Ok(None);
        };
        let key = ObjectKey::parse(&record.object_key)
            .unwrap_or_else(|| ObjectKey::for_instance(&record.sop_instance_uid));
        let copies = self.copies(&key)?;
        if copies.is_empty() {
            return Err(StorageError::NotFound(key.to_string()).into());
        }
        Ok(Some(self.inner.coalloc.read_object(
            copies,
            record.size,
            record.sha256,
        )))
    }

    /// The whole Part-10 file of one instance in memory (the renderer's input); `None` when it
    /// is not in the archive.
    pub async fn read_object(&self, uid: &str) -> Result<Option<bytes::Bytes>, RetrieveError> {
        match self.open_object(uid).await? {
            Some(object) => Ok(Some(object.read_all().await?)),
            None => Ok(None),
        }
    }
}
