//! Start-up reconciliation (DESIGN.md §3.5): spool leftovers are removed, stored objects missing
//! from the index are indexed, index entries without an object are reported. Also the import
//! path, which shares the "index an existing Part-10 file" logic.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use dicom_object::meta::FileMetaTable;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::ingest::{IngestOutcome, parse_and_validate};
use super::spool::{SpoolFileGuard, Spooled};
use super::{Archive, CharsetNotice, IngestError, IngestRequest, OpenError};
use crate::storage::ObjectKey;

/// How many missing objects reconciliation names individually.
pub const REPORT_NAMED: usize = 100;

/// What reconciliation found; logged at start and printed by `mifas stats`.
#[derive(Debug, Default, Clone)]
pub struct ReconcileReport {
    pub spool_files_removed: usize,
    pub objects_indexed: usize,
    /// Un-indexed generations of indexed instances (unacknowledged or replaced copies), removed.
    pub stale_generations_removed: usize,
    /// Object files that cannot be indexed (left in place for an operator).
    pub unreadable_objects: Vec<String>,
}

/// Index entries without an object file, from [`Archive::verify_objects`].
#[derive(Debug, Default, Clone)]
pub struct MissingObjects {
    /// How many.
    pub count: u64,
    /// SOP Instance UIDs of the first [`REPORT_NAMED`].
    pub first: Vec<String>,
}

/// A Part-10 file's meta group and where its data set starts.
pub(crate) fn read_part10_meta(
    file: &mut std::fs::File,
) -> Result<(FileMetaTable, u64), IngestError> {
    let mut head = [0u8; 132];
    let n = read_up_to(file, &mut head).map_err(IngestError::spool)?;
    let magic_at = if n >= 132 && &head[128..132] == b"DICM" {
        128
    } else if n >= 4 && &head[0..4] == b"DICM" {
        0
    } else {
        return Err(IngestError::Unreadable(
            "not a DICOM Part-10 file (no DICM magic code)".into(),
        ));
    };
    file.seek(SeekFrom::Start(magic_at))
        .map_err(IngestError::spool)?;
    let meta = FileMetaTable::from_reader(&mut *file)
        .map_err(|e| IngestError::Unreadable(format!("bad file meta group: {e}")))?;
    // DICM + the (0002,0000) element (12 bytes) + the group it measures.
    let dataset_offset = magic_at + 4 + 12 + u64::from(meta.information_group_length);
    Ok((meta, dataset_offset))
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

pub(super) fn request_from_meta(meta: &FileMetaTable, default_aet: &str) -> IngestRequest {
    let trim = |s: &str| crate::uid::trim(s).to_string();
    IngestRequest {
        sop_class_uid: trim(meta.media_storage_sop_class_uid()),
        sop_instance_uid: trim(meta.media_storage_sop_instance_uid()),
        transfer_syntax: trim(meta.transfer_syntax()),
        source_aet: meta
            .source_application_entity_title
            .as_deref()
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default_aet.to_string()),
        charset_notice: CharsetNotice::default(),
    }
}

impl Archive {
    pub(crate) async fn reconcile(&self) -> Result<ReconcileReport, OpenError> {
        let started = std::time::Instant::now();
        let mut report = ReconcileReport::default();
        let spool_dir = self.inner.spool_dir.clone();
        report.spool_files_removed = tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for entry in std::fs::read_dir(&spool_dir)?.flatten() {
                if std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
            Ok::<_, std::io::Error>(removed)
        })
        .await
        .map_err(|e| OpenError::Reconcile(e.to_string()))?
        .map_err(|e| OpenError::Reconcile(format!("cannot clean the spool: {e}")))?;

        let index = &self.inner.index;
        // Pack sites never expose an object before the group holding it is durable and its
        // locators are indexed: what they hold beyond the index is unacknowledged garbage
        // for compaction, and missing copies are repair's business. Only the embedded store
        // has files to walk.
        let keys = match &self.inner.local {
            Some(store) => store.list_keys().await?,
            None => Vec::new(),
        };
        let reconcile_err = |e: crate::index::IndexError| OpenError::Reconcile(e.to_string());
        // Listed in key order, every generation of one instance is adjacent; the newest is
        // tried first so that, with no index entry at all, the latest complete copy is indexed.
        let mut keys = keys;
        keys.sort_by(|a, b| {
            (a.sop_instance_uid(), std::cmp::Reverse(a.generation()))
                .cmp(&(b.sop_instance_uid(), std::cmp::Reverse(b.generation())))
        });
        for key in keys {
            let uid = key.sop_instance_uid().to_string();
            if let Some(record) = index.instance(&uid).map_err(reconcile_err)? {
                if record.object_key != key.as_str() {
                    // Another generation of an indexed instance: a replacement that was never
                    // acknowledged (crash before its index switch) or a replaced copy whose
                    // removal was lost. Never indexed over the live one.
                    let deleted = match &self.inner.local {
                        Some(store) => store.delete_key(&key).await,
                        None => Ok(()),
                    };
                    match deleted {
                        Ok(()) => {
                            tracing::warn!(object = %key, live = %record.object_key, "removed an un-indexed generation of an indexed instance");
                            report.stale_generations_removed += 1;
                        }
                        Err(e) => {
                            tracing::error!(object = %key, error = %e, "cannot remove an un-indexed generation")
                        }
                    }
                }
                continue;
            }
            match self.index_stored_object(&key).await {
                Ok(()) => {
                    tracing::warn!(object = %key, "stored object was missing from the index; indexed");
                    report.objects_indexed += 1;
                }
                Err(e) => {
                    // Objects are fsynced before they are renamed into the store, so this is
                    // not a torn write: a file put there by hand, or damaged since. Kept aside
                    // for an operator.
                    let moved = self.quarantine(&key);
                    tracing::error!(object = %key, error = %e, quarantined = %moved, "stored object cannot be indexed");
                    report.unreadable_objects.push(key.to_string());
                }
            }
        }
        index
            .flush()
            .await
            .map_err(|e| OpenError::Reconcile(e.to_string()))?;
        tracing::info!(
            spool_files_removed = report.spool_files_removed,
            objects_indexed = report.objects_indexed,
            stale_generations_removed = report.stale_generations_removed,
            unreadable = report.unreadable_objects.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "reconciliation done"
        );
        Ok(report)
    }

    /// Report index entries whose object is missing (DESIGN.md §3.5). Reads only the index keys
    /// and asks the store in batches; at a million instances it takes seconds, so `serve` runs
    /// it in the background after start and `mifas stats` before printing.
    pub async fn verify_objects(&self) -> Result<MissingObjects, OpenError> {
        const BATCH: usize = 10_000;
        // Sites are checked by the repair pass, which also re-copies what is missing.
        let Some(store) = self.inner.local.clone() else {
            return Ok(MissingObjects::default());
        };
        let started = std::time::Instant::now();
        let mut missing = MissingObjects::default();
        let mut checked = 0u64;
        let mut batch = Vec::with_capacity(BATCH);
        let mut records = self.inner.index.instances();
        loop {
            let next = records
                .next()
                .transpose()
                .map_err(|e| OpenError::Reconcile(e.to_string()))?;
            let done = next.is_none();
            if let Some(record) = next {
                // The generation the record points at, not the UID's generation 0.
                batch.push(
                    ObjectKey::parse(&record.object_key)
                        .unwrap_or_else(|| ObjectKey::for_instance(&record.sop_instance_uid)),
                );
            }
            if batch.len() == BATCH || (done && !batch.is_empty()) {
                checked += batch.len() as u64;
                for key in store.missing(std::mem::take(&mut batch)).await? {
                    missing.count += 1;
                    // Name the first ones; a lost volume must not flood the log.
                    if missing.first.len() < REPORT_NAMED {
                        tracing::error!(sop_instance_uid = %key.sop_instance_uid(), object = %key, "indexed instance has no object file");
                        missing.first.push(key.sop_instance_uid().to_string());
                    }
                }
            }
            if done {
                break;
            }
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if missing.count > 0 {
            tracing::error!(
                checked,
                missing = missing.count,
                elapsed_ms,
                "object check done: indexed instances without object files"
            );
        } else {
            tracing::info!(
                checked,
                elapsed_ms,
                "object check done: every indexed instance has its object"
            );
        }
        Ok(missing)
    }

    /// Move an object file out of the store into `quarantine/`; returns where it went.
    fn quarantine(&self, key: &ObjectKey) -> String {
        let Some(path) = self.inner.local.as_ref().map(|s| s.path(key)) else {
            return "not local; left in place".into();
        };
        let dir = self.inner.spool_dir.with_file_name("quarantine");
        let target = dir.join(key.as_str().replace('/', "_"));
        match std::fs::create_dir_all(&dir).and_then(|_| std::fs::rename(&path, &target)) {
            Ok(()) => target.display().to_string(),
            Err(e) => format!("left in place ({e})"),
        }
    }

    /// Index an object file already in the store (found without an index entry).
    async fn index_stored_object(&self, key: &ObjectKey) -> Result<(), IngestError> {
        let Some(path) = self.inner.local.as_ref().map(|s| s.path(key)) else {
            return Err(IngestError::Unreadable(
                "object is not on local disk".into(),
            ));
        };
        let source_path = path.clone();
        let max_depth = self.inner.max_sequence_depth;
        let default_charset = self.inner.default_charset.clone();
        let entry = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(&path).map_err(IngestError::spool)?;
            let (meta, dataset_offset) = read_part10_meta(&mut file)?;
            let mut hasher = Sha256::new();
            file.seek(SeekFrom::Start(0)).map_err(IngestError::spool)?;
            let size = std::io::copy(&mut file, &mut hasher).map_err(IngestError::spool)?;
            let spooled = Spooled {
                request: request_from_meta(&meta, ""),
                guard: SpoolFileGuard::keep(path),
                file,
                sha256: hasher.finalize().into(),
                size,
                dataset_offset,
                structure: None,
                reservation: None,
            };
            let (entry, _) = parse_and_validate(&spooled, max_depth, &default_charset)?;
            Ok::<_, IngestError>((entry, spooled.size, spooled.sha256))
        })
        .await
        .map_err(|e| IngestError::Spool(std::io::Error::other(e.to_string())))??;
        let (entry, size, sha256) = entry;
        let source = crate::storage::PutSource {
            key: key.clone(),
            path: source_path,
            size,
            sha256,
            hold: None,
        };
        self.inner.committer.commit(source, entry).await.map(|_| ())
    }

    /// Import one Part-10 file through the same pipeline as C-STORE.
    pub async fn import_file(
        &self,
        path: &Path,
        accept_unknown_storage: bool,
    ) -> Result<IngestOutcome, IngestError> {
        self.import_file_with_uid(path, accept_unknown_storage)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Archive::import_file`], also answering the SOP Instance UID (a portal upload reports
    /// it to the audit trail with the user who sent it). The stored file meta group keeps the
    /// file's own Source AE Title, else "IMPORT": a user name is no AE title.
    pub async fn import_file_with_uid(
        &self,
        path: &Path,
        accept_unknown_storage: bool,
    ) -> Result<(IngestOutcome, String), IngestError> {
        self.import_file_noting(path, accept_unknown_storage, &CharsetNotice::default())
            .await
    }

    /// [`Archive::import_file_with_uid`], one of several files that share `charset_notice` (one
    /// import run logs the default character set once).
    pub async fn import_file_noting(
        &self,
        path: &Path,
        accept_unknown_storage: bool,
        charset_notice: &CharsetNotice,
    ) -> Result<(IngestOutcome, String), IngestError> {
        let p = path.to_owned();
        let (request, dataset_offset) = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(&p).map_err(IngestError::spool)?;
            let (meta, offset) = read_part10_meta(&mut file)?;
            Ok::<_, IngestError>((request_from_meta(&meta, "IMPORT"), offset))
        })
        .await
        .map_err(|e| IngestError::Spool(std::io::Error::other(e.to_string())))??;
        let request = IngestRequest {
            charset_notice: charset_notice.clone(),
            ..request
        };
        if !accept_unknown_storage
            && crate::dictionary::storage_sop_class(&request.sop_class_uid).is_none()
        {
            return Err(IngestError::Unreadable(format!(
                "SOP class {} is not a storage SOP class we accept",
                request.sop_class_uid
            )));
        }
        let uid = request.sop_instance_uid.clone();
        let mut spool = self.begin(request).await?;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(IngestError::spool)?;
        file.seek(SeekFrom::Start(dataset_offset))
            .await
            .map_err(IngestError::spool)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).await.map_err(IngestError::spool)?;
            if n == 0 {
                break;
            }
            spool.write(&buf[..n]).await;
        }
        self.commit(spool).await.map(|outcome| (outcome, uid))
    }
}
