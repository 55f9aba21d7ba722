//! Disaster recovery (`mifas reindex`): a whole index rebuilt from the objects one site holds,
//! through the ingest's own indexing (`parse_and_validate` → `InstanceEntry` → `Index::apply`),
//! into a fresh index the caller then swaps in.
//!
//! Per SOP Instance UID the newest generation on the site is indexed; older generations and
//! further copies (a pack group written twice after a failed write, compaction copies) are
//! tried only when the newest cannot be read. An object that cannot be read, whose SHA-256
//! differs from the one its pack record holds, or whose data set names another instance than
//! its key is listed as corrupt and left out; it never stops the rebuild.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::IngestError;
use super::ingest::parse_and_validate;
use super::reconcile::{read_part10_meta, request_from_meta};
use super::spool::{SpoolFileGuard, Spooled};
use crate::index::{CarriedOver, Index, IndexError, InstanceEntry, Placement, PlacementState};
use crate::query::charset::dataset::DefaultCharacterSet;
use crate::storage::{ListedObject, Site, StorageError};

/// Objects fetched from a site that keeps no plain files are copied in chunks this large.
const COPY_CHUNK: u64 = 4 << 20;
/// Index entries applied (and counted) together.
const APPLY_BATCH: usize = 512;
/// Listing page size.
const LIST_PAGE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    #[error("cannot list the objects of site {site}: {source}")]
    List { site: String, source: StorageError },
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("cannot use the work directory {path}: {source}")]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("background task failed: {0}")]
    Task(String),
}

/// How to read the objects: the same rules as ingest.
#[derive(Debug, Clone)]
pub struct ReindexOptions {
    /// Objects read and parsed at once.
    pub jobs: usize,
    pub max_sequence_depth: usize,
    pub default_charset: DefaultCharacterSet,
    /// Where objects of sites without plain files are copied to be parsed (emptied after).
    pub work_dir: PathBuf,
    /// The other configured sites: without an old index to say which copies they hold, each
    /// instance is queued for replication to them (copies they already have become garbage
    /// for compaction; no instance is left with fewer copies than the policy wants).
    pub other_sites: Vec<String>,
}

/// What a rebuild did.
#[derive(Debug, Default, Clone)]
pub struct ReindexReport {
    /// Objects the site listed (every generation and copy).
    pub listed: u64,
    /// Instances indexed.
    pub indexed: u64,
    /// Older generations and further copies of indexed instances, left out.
    pub superseded: u64,
    /// Objects that could not be indexed: (site locator, reason).
    pub corrupt: Vec<(String, String)>,
    /// Records taken over from the old index (zero when there was none or it was unreadable).
    pub carried: CarriedOver,
    pub seconds: f64,
}

/// Progress callback: (instances done, instances to do).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Rebuild `new` (empty) from what `site` holds; take over from `old` what no object holds.
pub async fn rebuild(
    site: Arc<dyn Site>,
    new: Arc<Index>,
    old: Option<Arc<Index>>,
    options: &ReindexOptions,
    progress: Progress<'_>,
) -> Result<ReindexReport, ReindexError> {
    let started = std::time::Instant::now();
    let mut report = ReindexReport::default();
    let site_name = site.name().to_string();
    std::fs::create_dir_all(&options.work_dir).map_err(|source| ReindexError::WorkDir {
        path: options.work_dir.clone(),
        source,
    })?;

    // Every listed copy, newest generation first per instance.
    let mut by_uid: BTreeMap<String, Vec<ListedObject>> = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = site
            .list(cursor, LIST_PAGE)
            .await
            .map_err(|source| ReindexError::List {
                site: site_name.clone(),
                source,
            })?;
        report.listed += page.objects.len() as u64;
        for object in page.objects {
            by_uid
                .entry(object.key.sop_instance_uid().to_string())
                .or_default()
                .push(object);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for copies in by_uid.values_mut() {
        // Stable: copies of one generation keep the site's order (the older pack first).
        copies.sort_by_key(|c| std::cmp::Reverse(c.key.generation()));
    }
    let total = by_uid.len() as u64;
    progress(0, total);

    let mut pending = by_uid.into_iter();
    let mut tasks = JoinSet::new();
    let mut batch: Vec<InstanceEntry> = Vec::with_capacity(APPLY_BATCH);
    let mut done = 0u64;
    let mut sequence = 0u64;
    let jobs = options.jobs.max(1);
    loop {
        while tasks.len() < jobs {
            let Some((_, copies)) = pending.next() else {
                break;
            };
            sequence += 1;
            let (site, options) = (site.clone(), options.clone());
            let scratch = options.work_dir.join(format!("{sequence}.dcm"));
            tasks.spawn(async move { index_one(site, copies, &options, scratch).await });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let outcome = joined.map_err(|e| ReindexError::Task(e.to_string()))?;
        done += 1;
        report.superseded += outcome.superseded;
        report.corrupt.extend(outcome.corrupt);
        if let Some(mut entry) = outcome.entry {
            if old.is_none() {
                entry.replicate_to = options.other_sites.clone();
            }
            batch.push(entry);
        }
        if batch.len() >= APPLY_BATCH {
            report.indexed += apply(&new, std::mem::take(&mut batch), old.clone()).await?;
        }
        if done.is_multiple_of(256) || done == total {
            progress(done, total);
        }
    }
    if !batch.is_empty() {
        report.indexed += apply(&new, batch, old.clone()).await?;
    }
    if let Some(old) = old {
        let (new, site_name) = (new.clone(), site_name.clone());
        let (records, placements) = tokio::task::spawn_blocking(move || {
            let records = new.carry_over_records(&old)?;
            let mut placements = 0;
            for uid in new.instance_uids() {
                placements += new.carry_over_placements(&old, &uid?, &site_name)?;
            }
            Ok::<_, IndexError>((records, placements))
        })
        .await
        .map_err(|e| ReindexError::Task(e.to_string()))??;
        report.carried = CarriedOver {
            placements,
            ..records
        };
    }
    new.flush().await?;
    let _ = std::fs::remove_dir_all(&options.work_dir);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Apply one batch of entries to the new index, with the received time and sender the old
/// index knew for the same object (no object holds it). Returns how many were indexed.
async fn apply(
    new: &Arc<Index>,
    mut entries: Vec<InstanceEntry>,
    old: Option<Arc<Index>>,
) -> Result<u64, ReindexError> {
    let new = new.clone();
    tokio::task::spawn_blocking(move || {
        if let Some(old) = &old {
            for entry in &mut entries {
                if let Ok(Some(before)) = old.instance(&entry.instance.sop_instance_uid)
                    && before.object_key == entry.instance.object_key
                {
                    entry.instance.received_at = before.received_at;
                }
            }
        }
        let (applied, _undo) = new.apply(entries)?;
        Ok::<_, IndexError>(applied.len() as u64)
    })
    .await
    .map_err(|e| ReindexError::Task(e.to_string()))?
    .map_err(ReindexError::from)
}

struct Outcome {
    entry: Option<InstanceEntry>,
    superseded: u64,
    corrupt: Vec<(String, String)>,
}

/// Index the newest readable copy of one instance.
async fn index_one(
    site: Arc<dyn Site>,
    copies: Vec<ListedObject>,
    options: &ReindexOptions,
    scratch: PathBuf,
) -> Outcome {
    let mut outcome = Outcome {
        entry: None,
        superseded: 0,
        corrupt: Vec::new(),
    };
    let count = copies.len() as u64;
    for copy in copies {
        match read_copy(&*site, &copy, options, &scratch).await {
            Ok(entry) => {
                outcome.entry = Some(entry);
                break;
            }
            Err(reason) => outcome.corrupt.push((copy.locator.0.clone(), reason)),
        }
    }
    if outcome.entry.is_some() {
        outcome.superseded = count - 1 - outcome.corrupt.len() as u64;
    }
    let _ = std::fs::remove_file(&scratch);
    outcome
}

/// One copy as an index entry, or why it cannot be one.
async fn read_copy(
    site: &dyn Site,
    copy: &ListedObject,
    options: &ReindexOptions,
    scratch: &Path,
) -> Result<InstanceEntry, String> {
    let path = match site.local_path(&copy.locator) {
        Some(path) => path,
        None => {
            fetch(site, copy, scratch).await?;
            scratch.to_path_buf()
        }
    };
    let (copy, options) = (copy.clone(), options.clone());
    let now = super::unix_now();
    let site_name = site.name().to_string();
    tokio::task::spawn_blocking(move || {
        let mut entry = parse_file(&path, &copy, &options).map_err(|e| e.to_string())?;
        entry.instance.object_key = copy.key.to_string();
        entry.placements = vec![(
            site_name,
            Placement {
                generation: copy.key.generation(),
                locator: copy.locator.0.clone(),
                state: PlacementState::Held,
                stored_at: now,
                // Checked against the site's own SHA-256 just now, when it keeps one.
                verified_at: if copy.sha256.is_some() { now } else { 0 },
            },
        )];
        Ok(entry)
    })
    .await
    .map_err(|e| format!("task failed: {e}"))?
}

/// Copy an object out of a site that keeps no plain files, in chunks.
async fn fetch(site: &dyn Site, copy: &ListedObject, scratch: &Path) -> Result<(), String> {
    let mut file = std::fs::File::create(scratch).map_err(|e| format!("scratch file: {e}"))?;
    let mut offset = 0;
    while offset < copy.size {
        let bytes = site
            .read_at(&copy.locator, offset, COPY_CHUNK.min(copy.size - offset))
            .await
            .map_err(|e| e.to_string())?;
        if bytes.is_empty() {
            return Err(format!("short read at {offset} of {} bytes", copy.size));
        }
        file.write_all(&bytes)
            .map_err(|e| format!("scratch file: {e}"))?;
        offset += bytes.len() as u64;
    }
    Ok(())
}

/// The ingest's checks and index entry for a stored Part-10 file.
fn parse_file(
    path: &Path,
    copy: &ListedObject,
    options: &ReindexOptions,
) -> Result<InstanceEntry, IngestError> {
    let mut file = std::fs::File::open(path).map_err(IngestError::spool)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(IngestError::spool)?;
    let sha256: [u8; 32] = hasher.finalize().into();
    if let Some(expected) = copy.sha256
        && expected != sha256
    {
        return Err(IngestError::Unreadable(format!(
            "SHA-256 {} differs from the {} the site recorded",
            hex::encode(sha256),
            hex::encode(expected)
        )));
    }
    file.seek(SeekFrom::Start(0)).map_err(IngestError::spool)?;
    let (meta, dataset_offset) = read_part10_meta(&mut file)?;
    let request = request_from_meta(&meta, "");
    if request.sop_instance_uid != copy.key.sop_instance_uid() {
        return Err(IngestError::Unreadable(format!(
            "stored as {} but its meta group names {}",
            copy.key.sop_instance_uid(),
            request.sop_instance_uid
        )));
    }
    let spooled = Spooled {
        request,
        guard: SpoolFileGuard::keep(path.to_path_buf()),
        file,
        sha256,
        size,
        dataset_offset,
        structure: None,
        reservation: None,
    };
    let (entry, _) = parse_and_validate(
        &spooled,
        options.max_sequence_depth,
        &options.default_charset,
    )?;
    Ok(entry)
}
