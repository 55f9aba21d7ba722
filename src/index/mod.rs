//! The archive's index on sled: one tree per level keyed by the level's unique key, secondary
//! trees for the keys clients query by, and the whole header of every instance.
//!
//! The only module that opens sled. Writes go through [`Index::apply`], called by one writer at a
//! time (the archive's group committer), so incremental counts never race.

pub mod commitment;
mod dicomweb;
mod entry;
mod find;
#[cfg(test)]
mod find_tests;
pub mod placement;
mod portal;
mod rebuild;
mod record;
mod users;
mod writer;

pub use commitment::{CommitmentItem, CommitmentRecord, ItemOutcome};
pub use dicomweb::Missing;
pub use entry::{EntryError, InstanceEntry, ObjectFacts, text};
pub use placement::{Placement, PlacementState, ReplicationTask};
pub use rebuild::CarriedOver;
pub use record::{
    InstanceRecord, PatientRecord, SeriesRecord, StudyRecord, Totals, fold_case, name_index_keys,
    patient_key,
};
pub use users::UserRecord;
pub use writer::Undo;

use std::path::Path;
use std::sync::Mutex;

/// Errors of the index, named after the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot open the index at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("index read failed: {0}")]
    Read(sled::Error),
    #[error("index write failed: {0}")]
    Write(String),
    #[error("index flush failed: {0}")]
    Flush(sled::Error),
    #[error("corrupt index record in tree {tree}: {message}")]
    Decode { tree: &'static str, message: String },
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// The trees of the index. The discriminant is the position in [`Index::trees`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeId {
    Instances,
    Series,
    Studies,
    Patients,
    /// study UID \0 series UID
    SeriesByStudy,
    /// series UID \0 SOP instance UID
    InstancesBySeries,
    /// patient key \0 study UID
    StudiesByPatient,
    /// case-folded patient name, name group or name component \0 patient key
    PatientName,
    /// patient ID \0 patient key
    PatientId,
    /// study date \0 study UID
    StudyDate,
    /// accession number \0 study UID
    Accession,
    /// modality \0 series UID
    Modality,
    /// archive-wide values (totals)
    Meta,
    /// header id (u64, big endian) → header data set
    Headers,
    /// SOP Instance UID \0 site → placement
    Placements,
    /// queue id (u64, big endian) → replication task
    Replication,
    /// Transaction UID → Storage Commitment transaction awaiting its report
    Commitments,
    /// portal user name → user record
    Users,
}

impl TreeId {
    pub(crate) const ALL: [TreeId; 18] = [
        TreeId::Instances,
        TreeId::Series,
        TreeId::Studies,
        TreeId::Patients,
        TreeId::SeriesByStudy,
        TreeId::InstancesBySeries,
        TreeId::StudiesByPatient,
        TreeId::PatientName,
        TreeId::PatientId,
        TreeId::StudyDate,
        TreeId::Accession,
        TreeId::Modality,
        TreeId::Meta,
        TreeId::Headers,
        TreeId::Placements,
        TreeId::Replication,
        TreeId::Commitments,
        TreeId::Users,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            TreeId::Instances => "instances",
            TreeId::Series => "series",
            TreeId::Studies => "studies",
            TreeId::Patients => "patients",
            TreeId::SeriesByStudy => "series_by_study",
            TreeId::InstancesBySeries => "instances_by_series",
            TreeId::StudiesByPatient => "studies_by_patient",
            TreeId::PatientName => "idx_patient_name",
            TreeId::PatientId => "idx_patient_id",
            TreeId::StudyDate => "idx_study_date",
            TreeId::Accession => "idx_accession",
            TreeId::Modality => "idx_modality",
            TreeId::Meta => "meta",
            TreeId::Headers => "headers",
            TreeId::Placements => "placements",
            TreeId::Replication => "replication_queue",
            TreeId::Commitments => "stgcmt_transactions",
            TreeId::Users => "users",
        }
    }
}

const TOTALS_KEY: &[u8] = b"totals";

/// A secondary-index key: the value, a 0 separator, then the referenced unique key.
pub(crate) fn compound_key(value: &str, unique: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(value.len() + unique.len() + 1);
    key.extend_from_slice(value.as_bytes());
    key.push(0);
    key.extend_from_slice(unique.as_bytes());
    key
}

pub struct Index {
    db: sled::Db,
    /// sled's own flush is not enough to survive a power cut: see [`DurableFiles`].
    files: std::sync::Arc<DurableFiles>,
    trees: Vec<sled::Tree>,
    /// Serialises writers: counts are read-modify-write.
    writer: Mutex<()>,
    /// Tests make flushes fail to exercise the committer's failure path.
    #[cfg(test)]
    pub(crate) fail_flushes: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

/// What [`Index::apply`] did with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Inserted,
    /// An instance with the same SOP Instance UID was replaced.
    Replaced,
}

impl Index {
    pub fn open(path: &Path) -> Result<Index> {
        Index::open_with_cache(path, 1 << 30)
    }

    /// `cache_bytes`: what sled keeps of the index's pages in memory.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Index> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // Durability comes from our explicit flushes (group commit), not the timer.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|source| IndexError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let trees = TreeId::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| IndexError::Open {
                path: path.display().to_string(),
                source,
            })?;
        // sled creates its files here; their names are durable only once the directory is
        // fsynced (a power cut could otherwise lose the whole index, not just its tail).
        crate::storage::fsync_dir(path).map_err(|source| IndexError::Open {
            path: path.display().to_string(),
            source: sled::Error::Io(source),
        })?;
        let files = DurableFiles::open(path).map_err(|source| IndexError::Open {
            path: path.display().to_string(),
            source: sled::Error::Io(source),
        })?;
        Ok(Index {
            db,
            files: std::sync::Arc::new(files),
            trees,
            writer: Mutex::new(()),
            #[cfg(test)]
            fail_flushes: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn tree(&self, id: TreeId) -> &sled::Tree {
        &self.trees[id as usize]
    }

    fn get<T: serde::de::DeserializeOwned>(&self, id: TreeId, key: &str) -> Result<Option<T>> {
        match self
            .tree(id)
            .get(key.as_bytes())
            .map_err(IndexError::Read)?
        {
            Some(bytes) => decode(id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>> {
        self.get(TreeId::Instances, sop_instance_uid)
    }

    /// The stored header (Explicit VR Little Endian bytes) of an instance record.
    pub fn header_bytes(&self, record: &InstanceRecord) -> Result<Option<sled::IVec>> {
        self.tree(TreeId::Headers)
            .get(record.header_id.to_be_bytes())
            .map_err(IndexError::Read)
    }

    pub(crate) fn next_header_id(&self) -> Result<u64> {
        self.db
            .generate_id()
            .map_err(|e| IndexError::Write(e.to_string()))
    }

    pub fn contains_instance(&self, sop_instance_uid: &str) -> Result<bool> {
        self.tree(TreeId::Instances)
            .contains_key(sop_instance_uid.as_bytes())
            .map_err(IndexError::Read)
    }

    pub fn series(&self, series_uid: &str) -> Result<Option<SeriesRecord>> {
        self.get(TreeId::Series, series_uid)
    }

    pub fn study(&self, study_uid: &str) -> Result<Option<StudyRecord>> {
        self.get(TreeId::Studies, study_uid)
    }

    pub fn patient(&self, patient_key: &str) -> Result<Option<PatientRecord>> {
        self.get(TreeId::Patients, patient_key)
    }

    pub fn totals(&self) -> Result<Totals> {
        match self
            .tree(TreeId::Meta)
            .get(TOTALS_KEY)
            .map_err(IndexError::Read)?
        {
            Some(bytes) => decode(TreeId::Meta, &bytes),
            None => Ok(Totals::default()),
        }
    }

    /// Every instance record, in SOP Instance UID order (for reconciliation and audits).
    pub fn instances(&self) -> impl Iterator<Item = Result<InstanceRecord>> + '_ {
        self.tree(TreeId::Instances).iter().map(|item| {
            let (_, value) = item.map_err(IndexError::Read)?;
            decode(TreeId::Instances, &value)
        })
    }

    /// Every SOP Instance UID, in order, without decoding the records.
    pub fn instance_uids(&self) -> impl Iterator<Item = Result<String>> + '_ {
        self.tree(TreeId::Instances)
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k.map_err(IndexError::Read)?).into_owned()))
    }

    /// SOP Instance UIDs of one series, from the secondary tree.
    pub fn instance_uids_of_series(&self, series_uid: &str) -> Result<Vec<String>> {
        self.children(TreeId::InstancesBySeries, series_uid)
    }

    /// The child UIDs a secondary tree keys under `parent` (`compound_key(parent, child)`), in
    /// UID order.
    pub(crate) fn children(&self, tree: TreeId, parent: &str) -> Result<Vec<String>> {
        let prefix = compound_key(parent, "");
        self.tree(tree)
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k.map_err(IndexError::Read)?;
                Ok(String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            })
            .collect()
    }

    /// Make every write so far durable.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await.map_err(IndexError::Flush)?;
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || files.sync())
            .await
            .map_err(|e| IndexError::Flush(sled::Error::Io(std::io::Error::other(e))))?
            .map_err(|e| IndexError::Flush(sled::Error::Io(e)))
    }

    pub fn flush_blocking(&self) -> Result<()> {
        #[cfg(test)]
        if self.fail_flushes.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(IndexError::Flush(sled::Error::Io(std::io::Error::from(
                std::io::ErrorKind::StorageFull,
            ))));
        }
        self.db.flush().map_err(IndexError::Flush)?;
        self.files
            .sync()
            .map_err(|e| IndexError::Flush(sled::Error::Io(e)))
    }

    pub fn size_on_disk(&self) -> Result<u64> {
        self.db.size_on_disk().map_err(IndexError::Read)
    }
}

/// The files sled's flush leaves short of durable. sled 0.34 ends a flush with
/// `sync_file_range(2)` on its log file (Linux), which writes the data pages but commits neither
/// the file's size nor its new blocks and does not flush the device's write cache: appended log
/// records can vanish in a power cut (found with tests/powercut). It writes large pages as files
/// under `blobs/` without any fsync. After each flush we fdatasync the log and fsync the blobs
/// that appeared since the last one, and their directory.
struct DurableFiles {
    log: std::fs::File,
    blobs: std::path::PathBuf,
    synced_blobs: Mutex<std::collections::HashSet<std::ffi::OsString>>,
}

impl DurableFiles {
    fn open(index_dir: &Path) -> std::io::Result<DurableFiles> {
        Ok(DurableFiles {
            log: std::fs::File::open(index_dir.join("db"))?,
            blobs: index_dir.join("blobs"),
            synced_blobs: Mutex::new(std::collections::HashSet::new()),
        })
    }

    fn sync(&self) -> std::io::Result<()> {
        self.log.sync_data()?;
        let Ok(listing) = std::fs::read_dir(&self.blobs) else {
            return Ok(());
        };
        let mut synced = self
            .synced_blobs
            .lock()
            .map_err(|_| std::io::Error::other("blob list lock poisoned"))?;
        let mut present = std::collections::HashSet::new();
        let mut new = false;
        for entry in listing {
            let name = entry?.file_name();
            if !synced.contains(&name) {
                match std::fs::File::open(self.blobs.join(&name)) {
                    Ok(f) => f.sync_all()?,
                    // removed by sled's blob collection meanwhile
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            crate::storage::fsync_dir(&self.blobs)?;
        }
        // Forget collected blobs so the set stays as small as the directory.
        *synced = present;
        Ok(())
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(id: TreeId, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| IndexError::Decode {
        tree: id.name(),
        message: e.to_string(),
    })
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| IndexError::Write(e.to_string()))
}
