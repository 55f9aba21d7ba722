//! The archive core: the ingest pipeline with its durability contract, and reconciliation at
//! start. The only caller of [`crate::index`] and [`crate::storage`]; it knows nothing of DIMSE
//! (its input is an object plus the AE that sent it).

mod audit_subjects;
mod commitment;
mod committer;
mod compaction;
mod dicomweb_queries;
#[cfg(test)]
mod durability_tests;
mod error;
pub mod frames;
mod ingest;
mod object_access;
mod portal_queries;
mod query;
mod reconcile;
pub mod reindex;
mod repair;
mod replication;
mod retrieve;
mod spool;
pub(crate) mod structure;
#[cfg(test)]
mod tests;
mod uid_lock;
mod users;

pub use commitment::{CommitmentRequest, failure_reason};
pub use compaction::{MAX_LIVE_RATIO, SiteCompaction};
pub use dicomweb_queries::{HeadersError, InstanceHeader, MatchWindow};
pub use error::IngestError;
pub use ingest::IngestOutcome;
pub use object_access::{FileStatus, SiteCopy};
pub use portal_queries::StudyPage;
pub use reconcile::{MissingObjects, ReconcileReport};
pub use repair::{RepairReport, SiteRepair};
pub use replication::{ReplicationError, ReplicationPass};
pub use retrieve::{DatasetQueue, DatasetStream, RetrieveError, RetrieveItem, convert_object};
pub use spool::{
    CharsetNotice, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, IngestRequest, Spool,
};
pub use structure::{DEFAULT_MAX_SEQUENCE_DEPTH, check_dataset_bytes};
pub use users::{
    UserError, UserInfo, Users, validate_name as users_validate_name,
    validate_password as users_validate_password,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::query::charset::dataset::DefaultCharacterSet;
use crate::storage::fsync_dir;

use crate::config::{Config, DuplicatePolicy};
use crate::index::{Index, IndexError, Totals};
use crate::storage::{CoAllocator, LocalStore, Site, SiteHealth, Sites, StorageError};

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

/// Milliseconds since the Unix epoch (queue and commitment deadlines).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The sites of the configuration; with none, the embedded local store under `objects/`.
async fn open_sites(
    config: &Config,
    data_dir: &Path,
    health: &Arc<SiteHealth>,
) -> Result<(Arc<Sites>, Option<Arc<LocalStore>>), OpenError> {
    if config.storage.sites.is_empty() {
        let local = Arc::new(LocalStore::open(&data_dir.join("objects"))?);
        let sites = Sites::new(vec![local.clone() as Arc<dyn Site>], config.storage.ack)
            .with_health(health.clone());
        return Ok((Arc::new(sites), Some(local)));
    }
    let mut sites: Vec<Arc<dyn Site>> = Vec::new();
    for site in &config.storage.sites {
        sites.push(crate::storage::open_site(site).await?);
    }
    let sites = Sites::new(sites, config.storage.ack).with_health(health.clone());
    Ok((Arc::new(sites), None))
}

/// Cheap to clone: everything lives behind one `Arc`.
#[derive(Debug, Clone)]
pub struct Archive {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    index: Arc<Index>,
    /// Every site objects are stored on, with the ack policy.
    sites: Arc<Sites>,
    /// The embedded local store when it is the only site (reconciliation walks its files).
    local: Option<Arc<LocalStore>>,
    /// Wakes the replication worker when copies were queued.
    replication: Arc<tokio::sync::Notify>,
    /// The information service (site states, throughput, errors) and the co-allocated reader
    /// that uses it.
    health: Arc<SiteHealth>,
    coalloc: CoAllocator,
    spool_dir: PathBuf,
    /// Quota and object size limits, checked by each spool as its data arrives.
    spool_limits: spool::SpoolLimits,
    duplicate_policy: DuplicatePolicy,
    committer: committer::CommitterHandle,
    /// Serialises stores of the same SOP Instance UID.
    uid_locks: uid_lock::UidLocks,
    /// `dicom.max_sequence_depth`, for the structure walk of every object.
    max_sequence_depth: usize,
    /// `dicom.default_character_set`: how the index reads text of data sets that declare none.
    default_charset: DefaultCharacterSet,
    /// What a storage commitment promises, and its deadlines.
    commitment: crate::config::CommitmentConfig,
    /// Wakes the commitment reporter (a request arrived, copies were made).
    commitment_wake: Arc<tokio::sync::Notify>,
}

impl Archive {
    /// Open the archive under `config.storage.data_dir`, creating it if needed, and reconcile
    /// what a crash may have left (DESIGN.md §3.5).
    pub async fn open(config: &Config) -> Result<(Archive, ReconcileReport), OpenError> {
        let data_dir = &config.storage.data_dir;
        let spool_dir = data_dir.join("spool");
        // The directories this start creates, outermost first: their names must be made
        // durable in their parents, or a power cut can take the whole data directory along.
        let created: Vec<PathBuf> = data_dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_owned)
            .collect();
        for dir in [data_dir.as_path(), spool_dir.as_path()] {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let index_dir = data_dir.join("index");
        let index = Index::open_with_cache(&index_dir, config.storage.index_cache_mb << 20)
            .map_err(|e| OpenError::Index(index_dir.clone(), e))?;
        let index = Arc::new(index);
        let health = Arc::new(SiteHealth::new(config.storage.health.clone()));
        let (sites, local) = open_sites(config, data_dir, &health).await?;
        let coalloc = CoAllocator::new(health.clone(), &config.storage.coalloc);
        // The names of index/, objects/ and spool/ (perhaps just created) must survive a power
        // cut like everything below them.
        // a relative `data` has the parent "" (the working directory), which is "."
        let parents = created.iter().rev().filter_map(|d| d.parent()).map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
        for dir in parents.chain([data_dir.as_path()]) {
            fsync_dir(dir).map_err(|source| OpenError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let replication = Arc::new(tokio::sync::Notify::new());
        let committer = committer::spawn(
            &index,
            sites.clone(),
            config.storage.group_commit_max,
            replication.clone(),
        );
        let spool_limits = spool::SpoolLimits {
            max_object_bytes: config.storage.max_object_bytes,
            quota_bytes: config.storage.quota_bytes,
            reserved: Arc::new(AtomicU64::new(0)),
            index: index.clone(),
        };
        let archive = Archive {
            inner: Arc::new(Inner {
                index,
                sites,
                local,
                replication,
                health,
                coalloc,
                spool_dir,
                spool_limits,
                duplicate_policy: config.storage.duplicate_policy,
                committer,
                uid_locks: uid_lock::UidLocks::default(),
                max_sequence_depth: config.dicom.max_sequence_depth,
                default_charset: config.dicom.default_charset(),
                commitment: config.commitment.clone(),
                commitment_wake: Arc::new(tokio::sync::Notify::new()),
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
            self.inner.spool_limits.clone(),
            self.inner.max_sequence_depth,
        )
        .await
    }

    /// Counts and bytes of everything indexed.
    pub fn totals(&self) -> Result<Totals, IndexError> {
        self.inner.index.totals()
    }

    /// Seal the sites' open packs and flush the index; called at shutdown after the last
    /// association ended.
    pub async fn close(&self) -> Result<(), IndexError> {
        for site in self.inner.sites.all() {
            if let Err(e) = site.close().await {
                tracing::warn!(site = %site.name(), error = %e, "cannot close the site's open pack");
            }
        }
        self.inner.index.flush().await
    }

    /// The information service of the storage sites (for the prober and /metrics).
    pub fn health(&self) -> &Arc<SiteHealth> {
        &self.inner.health
    }

    /// The storage sites (the embedded local store when none is configured).
    pub fn sites(&self) -> Vec<Arc<dyn Site>> {
        self.inner.sites.all().to_vec()
    }

    /// Prometheus text of the archive's own gauges (the sites' are [`SiteHealth`]'s).
    pub fn metrics_text(&self) -> String {
        format!(
            "# HELP mifas_replication_queue Copies owed to storage sites, waiting in the replication queue.\n\
             # TYPE mifas_replication_queue gauge\n\
             mifas_replication_queue {}\n\
             # HELP mifas_stgcmt_open Storage commitment transactions whose report is not delivered yet.\n\
             # TYPE mifas_stgcmt_open gauge\n\
             mifas_stgcmt_open {}\n",
            self.replication_backlog(),
            self.open_commitments_len()
        )
    }

    pub fn spool_dir(&self) -> &Path {
        &self.inner.spool_dir
    }
}
