//! The spool: an incoming object is written to a temporary Part-10 file as its data arrives, so
//! memory stays bounded whatever the object's size. The file is our file meta group followed by
//! the data set exactly as received; SHA-256 is computed on the way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dicom_object::meta::FileMetaTableBuilder;
use sha2::{Digest, Sha256};

use super::IngestError;
use super::structure::StructureCheck;
use crate::index::Index;

/// Our Implementation Class UID (PS3.7 D.3.3.2), a UUID-derived UID (PS3.5 B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.152222047896201545135955840025211326814";
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("MIFAS_", env!("CARGO_PKG_VERSION"));

/// Data is handed to a blocking write (and hashed there) once this much has accumulated:
/// small enough that little is left to write when the last fragment arrives, large enough
/// that the hand-off costs nothing.
const WRITE_CHUNK: usize = 256 * 1024;

/// Ask the kernel to start writing a just-written range to disk now (POSIX_FADV_DONTNEED
/// starts asynchronous writeback of dirty pages; pages under writeback stay cached). The disk
/// then works while the rest of the object is still arriving, and the final fsync has little
/// left to wait for. Advisory: a failure changes nothing but speed.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    if let Some(len) = std::num::NonZeroU64::new(len) {
        let _ = rustix::fs::fadvise(file, offset, Some(len), rustix::fs::Advice::DontNeed);
    }
}

/// What the sender announced about an incoming object (from the C-STORE command and the
/// presentation context, or from a file's meta group on import).
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    pub source_aet: String,
    /// Shared by the objects of one association (one import run, one STOW request): the use of
    /// `dicom.default_character_set` is logged once per holder, not once per object.
    pub charset_notice: CharsetNotice,
}

/// Whether the default character set was already reported to the log (see
/// [`IngestRequest::charset_notice`]). Cheap to clone; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CharsetNotice(Arc<std::sync::atomic::AtomicBool>);

impl CharsetNotice {
    /// True the first time only.
    pub(crate) fn first(&self) -> bool {
        !self.0.swap(true, std::sync::atomic::Ordering::Relaxed)
    }
}

/// What an incoming object may take, checked as its bytes arrive (not after the whole object was
/// spooled): past either limit the spool file is removed at once, further data is dropped, and
/// the store is refused with "out of resources" when the data set ends.
#[derive(Debug, Clone)]
pub(crate) struct SpoolLimits {
    /// Largest stored object (Part-10 file) in bytes; 0 = no limit (`storage.max_object_bytes`).
    pub(crate) max_object_bytes: u64,
    /// Bytes stored plus reserved may not exceed this; 0 = no quota (`storage.quota_bytes`).
    pub(crate) quota_bytes: u64,
    /// Bytes spooled by objects not yet counted in the index totals, shared by all spools so
    /// concurrent stores cannot together overrun the quota.
    pub(crate) reserved: Arc<AtomicU64>,
    pub(crate) index: Arc<Index>,
}

/// Quota bytes held by one object from spooling until its commit counted them; released on drop
/// whatever the outcome.
#[derive(Debug)]
pub(crate) struct Reservation {
    reserved: Arc<AtomicU64>,
    bytes: u64,
}

impl Reservation {
    /// Reserve `more` bytes; returns the bytes reserved by everyone before this call.
    fn grow(&mut self, more: u64) -> u64 {
        self.bytes += more;
        self.reserved.fetch_add(more, Ordering::SeqCst)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reserved.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Removes the file on drop unless disarmed: an aborted or rejected object never stays behind.
#[derive(Debug)]
pub(crate) struct SpoolFileGuard {
    pub(crate) path: PathBuf,
    armed: bool,
}

impl SpoolFileGuard {
    /// A guard that never deletes (for files that are already stored objects).
    pub(crate) fn keep(path: PathBuf) -> SpoolFileGuard {
        SpoolFileGuard { path, armed: false }
    }

    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for SpoolFileGuard {
    fn drop(&mut self) {
        if self.armed {
            // Unlinking one file is quick enough to do inline even on a runtime thread.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An object being received.
#[derive(Debug)]
pub struct Spool {
    pub(crate) request: IngestRequest,
    guard: SpoolFileGuard,
    file: Option<std::fs::File>,
    hasher: Option<Sha256>,
    /// Element structure checked as the data arrives (`None` for deflated data sets).
    structure: Option<StructureCheck>,
    buf: Vec<u8>,
    /// Bytes before the data set (preamble, magic, meta group).
    pub(crate) dataset_offset: u64,
    size: u64,
    failed: Option<IngestError>,
    limits: SpoolLimits,
    reservation: Reservation,
}

/// A complete spooled object, not yet durable.
#[derive(Debug)]
pub(crate) struct Spooled {
    pub(crate) request: IngestRequest,
    pub(crate) guard: SpoolFileGuard,
    pub(crate) file: std::fs::File,
    pub(crate) sha256: [u8; 32],
    pub(crate) size: u64,
    pub(crate) dataset_offset: u64,
    /// The structure walk done while spooling; `None` when it must be done from the file.
    pub(crate) structure: Option<StructureCheck>,
    /// Quota bytes this object holds (`None` for objects found in the store).
    pub(crate) reservation: Option<Reservation>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, IngestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IngestError::Spool(std::io::Error::other(e.to_string())))
}

/// Preamble, `DICM` and a file meta group describing the object.
pub(crate) fn part10_header(request: &IngestRequest) -> Result<Vec<u8>, IngestError> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(request.sop_class_uid.as_str())
        .media_storage_sop_instance_uid(request.sop_instance_uid.as_str())
        .transfer_syntax(request.transfer_syntax.as_str())
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .source_application_entity_title(request.source_aet.as_str())
        .build()
        .map_err(|e| IngestError::Unreadable(format!("cannot build file meta group: {e}")))?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| IngestError::Unreadable(format!("cannot encode file meta group: {e}")))?;
    Ok(out)
}

impl Spool {
    pub(crate) async fn create(
        dir: &Path,
        request: IngestRequest,
        limits: SpoolLimits,
        max_sequence_depth: usize,
    ) -> Result<Spool, IngestError> {
        let header = part10_header(&request)?;
        let structure = super::ingest::dataset_encoding(&request.transfer_syntax)?
            .map(|encoding| StructureCheck::new(encoding, max_sequence_depth));
        let path = dir.join(format!("{:016x}.part", rand::random::<u64>()));
        let p = path.clone();
        let file = blocking(move || std::fs::File::create_new(&p))
            .await?
            .map_err(IngestError::spool)?;
        let dataset_offset = header.len() as u64;
        let mut buf = Vec::with_capacity(WRITE_CHUNK + 128 * 1024);
        buf.extend_from_slice(&header);
        Ok(Spool {
            request,
            guard: SpoolFileGuard { path, armed: true },
            file: Some(file),
            hasher: Some(Sha256::new()),
            structure,
            buf,
            dataset_offset,
            size: 0,
            failed: None,
            reservation: Reservation {
                reserved: limits.reserved.clone(),
                bytes: 0,
            },
            limits,
        })
    }

    pub fn request(&self) -> &IngestRequest {
        &self.request
    }

    /// Append received data-set bytes. After a failure (e.g. disk full) further data is
    /// discarded; the failure is reported by [`Spool::finish`].
    pub async fn write(&mut self, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let max = self.limits.max_object_bytes;
        let total = self.size + (self.buf.len() + data.len()) as u64;
        if max > 0 && total > max {
            self.fail(IngestError::OutOfResources(format!(
                // The key first: the peer's ErrorComment keeps only 64 characters.
                "object exceeds storage.max_object_bytes ({max} bytes)"
            )));
            return;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_CHUNK {
            self.write_out().await;
        }
    }

    /// Reserve quota for the bytes about to be written; fails the spool when they do not fit.
    fn reserve_buffered(&mut self) -> bool {
        let bytes = self.buf.len() as u64;
        let before = self.reservation.grow(bytes);
        let quota = self.limits.quota_bytes;
        if quota == 0 {
            return true;
        }
        let stored = match self.limits.index.totals() {
            Ok(totals) => totals.bytes,
            Err(e) => {
                self.fail(IngestError::Index(e));
                return false;
            }
        };
        if stored + before + bytes > quota {
            let so_far = self.size + bytes;
            self.fail(IngestError::OutOfResources(format!(
                "storage quota of {quota} bytes reached ({stored} bytes stored, {before} reserved by objects being received, this object {so_far} bytes so far)"
            )));
            return false;
        }
        true
    }

    async fn write_out(&mut self) {
        if !self.reserve_buffered() {
            return;
        }
        let (Some(mut file), Some(mut hasher)) = (self.file.take(), self.hasher.take()) else {
            return;
        };
        let buf = std::mem::take(&mut self.buf);
        let offset = self.size;
        let mut structure = self.structure.take();
        // The first chunk starts with our preamble and meta group: not part of the data set.
        let dataset_start = usize::try_from(self.dataset_offset.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let result = blocking(move || {
            hasher.update(&buf);
            if let Some(check) = structure.as_mut() {
                check.feed(&buf[dataset_start..]);
            }
            let res = file.write_all(&buf);
            if res.is_ok() {
                start_writeback(&file, offset, buf.len() as u64);
            }
            (file, hasher, structure, buf, res)
        })
        .await;
        match result {
            Ok((file, hasher, structure, mut buf, res)) => {
                self.structure = structure;
                self.size += buf.len() as u64;
                buf.clear();
                self.buf = buf;
                self.file = Some(file);
                self.hasher = Some(hasher);
                if let Err(e) = res {
                    self.fail(IngestError::spool(e));
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, err: IngestError) {
        self.buf = Vec::new();
        self.file = None;
        let _ = std::fs::remove_file(&self.guard.path);
        self.failed = Some(err);
    }

    /// All data received: write the rest out and hand over the complete file.
    pub(crate) async fn finish(mut self) -> Result<Spooled, IngestError> {
        if self.failed.is_none() && !self.buf.is_empty() {
            self.write_out().await;
        }
        if let Some(err) = self.failed.take() {
            return Err(err);
        }
        let (Some(file), Some(hasher)) = (self.file.take(), self.hasher.take()) else {
            return Err(IngestError::Spool(std::io::Error::other("spool file lost")));
        };
        Ok(Spooled {
            request: self.request.clone(),
            guard: SpoolFileGuard {
                path: self.guard.path.clone(),
                armed: true,
            },
            file,
            sha256: hasher.finalize().into(),
            size: self.size,
            dataset_offset: self.dataset_offset,
            structure: self.structure.take(),
            reservation: Some(std::mem::replace(
                &mut self.reservation,
                Reservation {
                    reserved: self.limits.reserved.clone(),
                    bytes: 0,
                },
            )),
        })
        .inspect(|_| self.guard.disarm())
    }
}
