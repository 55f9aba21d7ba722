//! Co-allocated retrieval: read one object, or the objects of a retrieve, from every site that
//! holds a copy at once, in proportion to what each site delivers, and hand the bytes to the
//! consumer in order through a bounded buffer.
//!
//! Two units of work (DESIGN.md §5):
//! - byte ranges of one large object ([`ranges`]): an object of at least `min_object_mb` is cut
//!   into ranges of `range_mb`, dealt to the sites in proportion to their measured throughput,
//!   then stolen by whichever site is free; at the end (or when the reassembly window is full) a
//!   range outstanding far longer than expected is requested again elsewhere, first answer wins.
//! - whole objects of a multi-object retrieve ([`objects`]): each object comes from the site
//!   that would finish it soonest given its throughput and current load; stragglers are
//!   re-requested the same way; objects come out in the caller's order.
//!
//! Everything read is checked against the SHA-256 recorded at ingest, and every transfer feeds
//! [`SiteHealth`]. This module decides *which site reads what*; it never writes and never
//! touches the index (the caller passes the placements in).

mod objects;
mod ranges;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::Digest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::health::{SiteHealth, SiteState};
use super::{Locator, Site, StorageError};
use crate::config::CoallocConfig;

use stream::Msg;
pub use stream::{ObjectStream, ObjectsStream};

const MIB: u64 = 1024 * 1024;
/// A request is never called a straggler before this long: below it, scheduling noise and
/// connection setup dominate and a duplicate would only waste a link.
const MIN_STRAGGLER_WAIT: Duration = Duration::from_millis(250);
/// Hard limit of one read call, whatever the estimates say: a site that has not answered by
/// then is failed and its work goes elsewhere. Stragglers are usually overtaken much earlier by
/// their duplicate; this catches a site that hangs while every other site is busy.
const MIN_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The hard limit is this many straggler waits when that is longer than [`MIN_CALL_TIMEOUT`]
/// (a large range on a slow link).
const CALL_TIMEOUT_STRAGGLER_WAITS: u32 = 4;

/// The copies of one object: where they are, and what the object must be.
#[derive(Debug, Clone)]
pub struct ObjectSources {
    /// Each site holding a copy with its locator there (any order; health decides).
    pub sources: Vec<(Arc<dyn Site>, Locator)>,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Reads through the sites. Cheap to clone; one per archive.
#[derive(Debug, Clone)]
pub struct CoAllocator {
    health: Arc<SiteHealth>,
    limits: Limits,
}

/// `CoallocConfig` in bytes, with the floors that keep it sane.
#[derive(Debug, Clone, Copy)]
struct Limits {
    range: u64,
    buffer: u64,
    /// Objects of at least this size are read by ranges.
    min_ranged: u64,
    objects_in_flight: usize,
    straggler_factor: f64,
}

impl Limits {
    fn from_config(config: &CoallocConfig) -> Limits {
        let range = config.range_mb.max(1) * MIB;
        Limits {
            range,
            // the window must hold at least one range or nothing could ever be admitted
            buffer: (config.buffer_mb * MIB).max(range),
            min_ranged: config.min_object_mb * MIB,
            objects_in_flight: config.objects_in_flight.max(1),
            straggler_factor: if config.straggler_factor.is_finite() {
                config.straggler_factor.max(1.0)
            } else {
                CoallocConfig::default().straggler_factor
            },
        }
    }

    /// How long a read of `bytes` from `site` should take, by its measured throughput.
    fn expected(&self, health: &SiteHealth, site: &str, bytes: u64) -> Duration {
        let rate = health.throughput(site).max(1.0);
        Duration::from_secs_f64((bytes as f64 / rate).min(1e6))
    }

    /// After this long, a read of `bytes` from `site` is a straggler.
    fn straggler_after(&self, health: &SiteHealth, site: &str, bytes: u64) -> Duration {
        self.expected(health, site, bytes)
            .mul_f64(self.straggler_factor)
            .max(MIN_STRAGGLER_WAIT)
    }

    fn call_timeout(&self, health: &SiteHealth, site: &str, bytes: u64) -> Duration {
        (self.straggler_after(health, site, bytes) * CALL_TIMEOUT_STRAGGLER_WAITS)
            .max(MIN_CALL_TIMEOUT)
    }
}

impl CoAllocator {
    pub fn new(health: Arc<SiteHealth>, config: &CoallocConfig) -> CoAllocator {
        CoAllocator {
            health,
            limits: Limits::from_config(config),
        }
    }

    pub fn health(&self) -> &Arc<SiteHealth> {
        &self.health
    }

    /// Read one object. Smaller than `min_object_mb`: whole from the best site, then the next
    /// on error. Larger: by ranges from all sites. The stream yields the bytes in order and
    /// ends with `None` only after the SHA-256 matched; dropping it cancels every read.
    pub fn read_object(
        &self,
        sources: Vec<(Arc<dyn Site>, Locator)>,
        size: u64,
        sha256: [u8; 32],
    ) -> ObjectStream {
        let item = ObjectSources {
            sources,
            size,
            sha256,
        };
        if size >= self.limits.min_ranged && size > 0 {
            self.read_ranged(item, None)
        } else {
            self.read_whole(item)
        }
    }

    /// Read the objects of a retrieve, several at once from different sites. The result yields
    /// one [`ObjectStream`] per item, in the order of `items`, as soon as that object's bytes
    /// are ready (a small object is fetched and verified whole; a large one streams through
    /// its own ranged read). Send object i while i+1.. are fetched. At most
    /// `objects_in_flight` small objects are held (fetching, fetched, or yielded and not yet
    /// dropped), and one large object at a time: drop each stream when done with it.
    pub fn read_objects(&self, items: Vec<ObjectSources>) -> ObjectsStream {
        let total = items.len();
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let job = objects::Job::new(self.clone(), items);
        tokio::spawn(job.run(tx, cancel.clone()));
        ObjectsStream::new(rx, total, cancel.drop_guard())
    }

    fn read_ranged(
        &self,
        item: ObjectSources,
        permit: Option<OwnedSemaphorePermit>,
    ) -> ObjectStream {
        let budget = Arc::new(Semaphore::new(
            usize::try_from(self.limits.buffer).unwrap_or(usize::MAX >> 4),
        ));
        let cancel = CancellationToken::new();
        let (tx, stream) = ObjectStream::channel(
            item.size,
            Some(Arc::clone(&budget)),
            Some(cancel.clone().drop_guard()),
            permit,
        );
        let job = ranges::Job::new(Arc::clone(&self.health), self.limits, item);
        tokio::spawn(job.run(tx, budget, cancel));
        stream
    }

    fn read_whole(&self, item: ObjectSources) -> ObjectStream {
        let cancel = CancellationToken::new();
        let (tx, stream) =
            ObjectStream::channel(item.size, None, Some(cancel.clone().drop_guard()), None);
        let health = Arc::clone(&self.health);
        let limits = self.limits;
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                msg = fetch_whole_with_fallback(&health, &limits, item) => {
                    match msg {
                        Ok(bytes) => {
                            if !bytes.is_empty() {
                                let _ = tx.send(Msg::Chunk(bytes));
                            }
                            let _ = tx.send(Msg::Verified);
                        }
                        Err(e) => {
                            let _ = tx.send(Msg::Failed(e));
                        }
                    }
                }
            }
        });
        stream
    }
}

/// Try the copies best site first, until one reads whole and verifies. A copy that fails
/// passes the turn to the next; one that is still outstanding past its straggler time gets the
/// next copy read beside it (a hedge; first good answer wins, the rest are dropped), so a hung
/// site costs a straggler wait, not the hard call timeout.
async fn fetch_whole_with_fallback(
    health: &SiteHealth,
    limits: &Limits,
    item: ObjectSources,
) -> Result<Bytes, StorageError> {
    let mut sources = item.sources;
    sources.sort_by(|(a, _), (b, _)| {
        rank(health, a.name())
            .partial_cmp(&rank(health, b.name()))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut next = sources.into_iter();
    let mut running: tokio::task::JoinSet<(String, Locator, Instant, Result<Bytes, StorageError>)> =
        tokio::task::JoinSet::new();
    let mut failures = Failures::default();
    let mut start_next = |running: &mut tokio::task::JoinSet<_>| -> Option<Instant> {
        let (site, locator) = next.next()?;
        let name = site.name().to_string();
        let timeout = limits.call_timeout(health, &name, item.size);
        let started = Instant::now();
        let straggler_at = started + limits.straggler_after(health, &name, item.size);
        let (size, sha256) = (item.size, item.sha256);
        running.spawn(async move {
            let result = read_verified(site, locator.clone(), size, sha256, timeout).await;
            (name, locator, started, result)
        });
        Some(straggler_at)
    };
    // when to hedge: the straggler time of the newest read
    let mut hedge_at = start_next(&mut running);
    loop {
        if running.is_empty() {
            return Err(failures.into_error()); // every copy tried
        }
        let joined = tokio::select! {
            joined = running.join_next(), if !running.is_empty() => joined,
            _ = tokio::time::sleep_until(hedge_at.unwrap_or_else(Instant::now)), if hedge_at.is_some() => {
                hedge_at = start_next(&mut running);
                continue;
            }
        };
        let Some(joined) = joined else {
            continue; // (not reached: the branch runs only with reads in flight)
        };
        match joined {
            Ok((name, _, started, Ok(bytes))) => {
                health.record_ok(&name);
                health.record_transfer(&name, item.size, started.elapsed());
                return Ok(bytes);
            }
            Ok((name, locator, _, Err(e))) => {
                tracing::warn!(site = %name, %locator, error = %e, "read failed, trying the next copy");
                health.record_error(&name);
                failures.push(&name, &locator, e);
                if let Some(at) = start_next(&mut running) {
                    hedge_at = Some(at);
                }
            }
            Err(e) => {
                // a read task panicked: its site is unknown here, so only the reason is kept
                failures.reasons.push(format!("read task: {e}"));
                if let Some(at) = start_next(&mut running) {
                    hedge_at = Some(at);
                }
            }
        }
    }
}

/// Lower is better: up before degraded before down, then the faster.
fn rank(health: &SiteHealth, site: &str) -> (SiteState, f64) {
    (health.state(site), -health.throughput(site))
}

/// `[offset, offset + len)` of the object, or an error naming the site: a timeout is
/// `Unavailable`, a short answer is `Corrupt`.
async fn read_exact(
    site: &dyn Site,
    locator: &Locator,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> Result<Bytes, StorageError> {
    let bytes = match tokio::time::timeout(timeout, site.read_at(locator, offset, len)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(StorageError::Unavailable {
                site: site.name().to_string(),
                reason: format!("no answer within {timeout:?}"),
            });
        }
    };
    if bytes.len() as u64 != len {
        return Err(StorageError::Corrupt {
            site: site.name().to_string(),
            locator: locator.to_string(),
            reason: format!(
                "read of {len} bytes at {offset} returned {} bytes",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

/// The whole object, checked against its SHA-256.
async fn read_verified(
    site: Arc<dyn Site>,
    locator: Locator,
    size: u64,
    sha256: [u8; 32],
    timeout: Duration,
) -> Result<Bytes, StorageError> {
    let bytes = read_exact(site.as_ref(), &locator, 0, size, timeout).await?;
    let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    if digest != sha256 {
        return Err(StorageError::Corrupt {
            site: site.name().to_string(),
            locator: locator.to_string(),
            reason: format!(
                "SHA-256 is {}, expected {}",
                hex::encode(digest),
                hex::encode(sha256)
            ),
        });
    }
    Ok(bytes)
}

/// A wrong object (not found, corrupt) is the copy's fault; anything else (timeout, refused,
/// I/O) is the site's, and its other work goes elsewhere too.
fn is_site_failure(e: &StorageError) -> bool {
    !matches!(e, StorageError::NotFound(_) | StorageError::Corrupt { .. })
}

/// What went wrong with each copy, for the error that ends a read when none is left.
#[derive(Debug, Default)]
struct Failures {
    sites: Vec<String>,
    reasons: Vec<String>,
    all_corrupt: bool,
    locator: Option<String>,
}

impl Failures {
    fn push(&mut self, site: &str, locator: &Locator, e: StorageError) {
        let corrupt = matches!(e, StorageError::Corrupt { .. });
        self.all_corrupt = if self.sites.is_empty() {
            corrupt
        } else {
            self.all_corrupt && corrupt
        };
        if !self.sites.iter().any(|s| s == site) {
            self.sites.push(site.to_string());
        }
        self.reasons.push(format!("{site}: {e}"));
        self.locator.get_or_insert_with(|| locator.to_string());
    }

    fn into_error(self) -> StorageError {
        let site = if self.sites.is_empty() {
            "(no site holds a copy)".to_string()
        } else {
            self.sites.join(", ")
        };
        let reason = if self.reasons.is_empty() {
            "no copy to read".to_string()
        } else {
            self.reasons.join("; ")
        };
        if self.all_corrupt {
            StorageError::Corrupt {
                site,
                locator: self.locator.unwrap_or_default(),
                reason,
            }
        } else {
            StorageError::Unavailable {
                site,
                reason: format!("every copy failed: {reason}"),
            }
        }
    }
}
