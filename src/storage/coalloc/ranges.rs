//! One large object read as byte ranges from several sites at once.
//!
//! The coordinator owns all state (no locks); each range read is a task in a `JoinSet` so one
//! can be aborted when its duplicate wins or its site fails. Memory: a range is *admitted*
//! only once `len` permits of the byte budget (`buffer_mb`) are taken, in range order, and the
//! permits come back when the consumer takes the range's bytes from the [`ObjectStream`]; so
//! fetched-but-unconsumed bytes never exceed the budget, a fast site waits for the window
//! instead of running ahead, and only endgame duplicates (one at a time) come on top.
//!
//! [`ObjectStream`]: super::ObjectStream

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use sha2::Digest;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Failures, Limits, Msg, ObjectSources, read_exact};
use crate::storage::health::{SiteHealth, SiteState};
use crate::storage::{Locator, Site, StorageError};

/// Ranges in flight per site: two keep a link busy across the gap between one answer and the
/// next request, without parking many ranges on a slow site near the head of the window.
const DEPTH: usize = 2;

#[derive(Debug)]
enum Status {
    Open,
    Done(Bytes),
    Emitted,
}

#[derive(Debug)]
struct Range {
    offset: u64,
    len: u64,
    /// Preferred site (initial proportional assignment); others may steal it.
    owner: usize,
    status: Status,
    /// Requests in flight for this range (2 during an endgame duplicate).
    running: u8,
}

impl Range {
    /// Open and nobody reading it.
    fn waiting(&self) -> bool {
        matches!(self.status, Status::Open) && self.running == 0
    }
}

#[derive(Debug)]
struct SiteRun {
    site: Arc<dyn Site>,
    locator: Locator,
    in_flight: usize,
    /// Why this site is out of this read.
    failed: bool,
}

#[derive(Debug)]
struct Request {
    range: usize,
    site: usize,
    straggler_at: Instant,
    duplicate: bool,
    abort: AbortHandle,
}

type Outcome = (Result<Bytes, StorageError>, std::time::Duration);

pub(super) struct Job {
    health: Arc<SiteHealth>,
    limits: Limits,
    size: u64,
    sha256: [u8; 32],
    ranges: Vec<Range>,
    sites: Vec<SiteRun>,
    requests: HashMap<tokio::task::Id, Request>,
    tasks: JoinSet<Outcome>,
    /// Ranges `[0, admitted)` hold budget permits.
    admitted: usize,
    /// Ranges `[0, emitted)` went to the consumer.
    emitted: usize,
    failures: Failures,
}

impl Job {
    pub(super) fn new(health: Arc<SiteHealth>, limits: Limits, item: ObjectSources) -> Job {
        let sites: Vec<SiteRun> = item
            .sources
            .into_iter()
            .map(|(site, locator)| SiteRun {
                site,
                locator,
                in_flight: 0,
                failed: false,
            })
            .collect();
        let count = item.size.div_ceil(limits.range);
        let ranges = (0..count)
            .map(|i| {
                let offset = i * limits.range;
                Range {
                    offset,
                    len: limits.range.min(item.size - offset),
                    owner: 0,
                    status: Status::Open,
                    running: 0,
                }
            })
            .collect();
        let mut job = Job {
            health,
            limits,
            size: item.size,
            sha256: item.sha256,
            ranges,
            sites,
            requests: HashMap::new(),
            tasks: JoinSet::new(),
            admitted: 0,
            emitted: 0,
            failures: Failures::default(),
        };
        let all: Vec<usize> = (0..job.ranges.len()).collect();
        job.assign_owners(&all);
        job
    }

    pub(super) async fn run(
        mut self,
        tx: mpsc::UnboundedSender<Msg>,
        budget: Arc<Semaphore>,
        cancel: CancellationToken,
    ) {
        let mut hasher = sha2::Sha256::new();
        loop {
            // hand out, in order, what has arrived
            while let Some(range) = self.ranges.get_mut(self.emitted) {
                if !matches!(range.status, Status::Done(_)) {
                    break;
                }
                if let Status::Done(bytes) = std::mem::replace(&mut range.status, Status::Emitted) {
                    hasher.update(&bytes);
                    if tx.send(Msg::Chunk(bytes)).is_err() {
                        return; // the consumer is gone
                    }
                }
                self.emitted += 1;
            }
            if self.emitted == self.ranges.len() {
                let digest: [u8; 32] = hasher.finalize().into();
                let _ = tx.send(self.verdict(digest));
                return;
            }
            if self.sites.iter().all(|s| s.failed) {
                let failures = std::mem::take(&mut self.failures);
                let _ = tx.send(Msg::Failed(failures.into_error()));
                return;
            }
            // admit what the budget allows without waiting
            while let Some(range) = self.ranges.get(self.admitted) {
                match budget.try_acquire_many(permits(range.len)) {
                    Ok(permit) => {
                        permit.forget();
                        self.admitted += 1;
                    }
                    Err(_) => break,
                }
            }
            self.dispatch();
            let wake_at = self.endgame();
            let next_len = self.ranges.get(self.admitted).map(|r| permits(r.len));
            tokio::select! {
                _ = cancel.cancelled() => return,
                permit = budget.acquire_many(next_len.unwrap_or(0)), if next_len.is_some() => {
                    if let Ok(permit) = permit {
                        permit.forget();
                        self.admitted += 1;
                    }
                }
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    match joined {
                        Ok((id, outcome)) => self.finished(id, outcome),
                        Err(e) => {
                            let outcome = (Err(StorageError::Task(e.to_string())), Default::default());
                            self.finished(e.id(), outcome);
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {}
            }
        }
    }

    fn verdict(&self, digest: [u8; 32]) -> Msg {
        if digest == self.sha256 {
            return Msg::Verified;
        }
        let names: Vec<&str> = self.sites.iter().map(|s| s.site.name()).collect();
        Msg::Failed(StorageError::Corrupt {
            site: names.join(", "),
            locator: self
                .sites
                .first()
                .map(|s| s.locator.to_string())
                .unwrap_or_default(),
            reason: format!(
                "SHA-256 of the {} reassembled bytes is {}, expected {}",
                self.size,
                hex::encode(digest),
                hex::encode(self.sha256)
            ),
        })
    }

    /// Sites that may get work: not failed in this read, and not down by the health service
    /// unless every remaining site is down (a last resort beats no answer).
    fn usable(&self) -> Vec<bool> {
        let live: Vec<bool> = self.sites.iter().map(|s| !s.failed).collect();
        let up: Vec<bool> = self
            .sites
            .iter()
            .zip(&live)
            .map(|(s, &l)| l && self.health.state(s.site.name()) != SiteState::Down)
            .collect();
        if up.iter().any(|&u| u) { up } else { live }
    }

    fn rate(&self, site: usize) -> f64 {
        self.health
            .throughput(self.sites[site].site.name())
            .max(1.0)
    }

    /// Deal `which` ranges to the usable sites in proportion to their throughput, interleaved
    /// (smooth weighted round robin) so every site's share is spread over the whole object and
    /// the in-order window keeps moving.
    fn assign_owners(&mut self, which: &[usize]) {
        let usable = self.usable();
        let weights: Vec<f64> = (0..self.sites.len())
            .map(|s| if usable[s] { self.rate(s) } else { 0.0 })
            .collect();
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return;
        }
        let mut credit = vec![0.0; weights.len()];
        for &r in which {
            for (c, w) in credit.iter_mut().zip(&weights) {
                *c += w;
            }
            let best = (0..credit.len())
                .filter(|&s| usable[s])
                .max_by(|&a, &b| credit[a].total_cmp(&credit[b]))
                .unwrap_or(0);
            credit[best] -= total;
            self.ranges[r].owner = best;
        }
    }

    /// Fill every usable site up to [`DEPTH`] requests: its own open ranges first (lowest
    /// first), else steal the lowest open range of a site that would not get to it sooner.
    fn dispatch(&mut self) {
        let usable = self.usable();
        let mut order: Vec<usize> = (0..self.sites.len()).filter(|&s| usable[s]).collect();
        // fast sites choose first: near the head of the window the faster hands matter most
        order.sort_by(|&a, &b| self.rate(b).total_cmp(&self.rate(a)));
        loop {
            let mut progress = false;
            for &s in &order {
                if self.sites[s].in_flight >= DEPTH {
                    continue;
                }
                if let Some(r) = self.pick(s, &usable) {
                    self.spawn(r, s, false);
                    progress = true;
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn pick(&self, s: usize, usable: &[bool]) -> Option<usize> {
        let window = self.emitted..self.admitted;
        if let Some(r) = window
            .clone()
            .find(|&r| self.ranges[r].waiting() && self.ranges[r].owner == s)
        {
            return Some(r);
        }
        window.into_iter().find(|&r| {
            let range = &self.ranges[r];
            if !range.waiting() {
                return false;
            }
            let owner = range.owner;
            // steal only if we would finish it no later than its owner, who first has its
            // requests in flight to finish
            !usable[owner]
                || self.rate(s) * (1 + self.sites[owner].in_flight) as f64 >= self.rate(owner)
        })
    }

    fn spawn(&mut self, r: usize, s: usize, duplicate: bool) {
        let range = &mut self.ranges[r];
        range.running += 1;
        let (offset, len) = (range.offset, range.len);
        let site_run = &mut self.sites[s];
        site_run.in_flight += 1;
        let site = Arc::clone(&site_run.site);
        let locator = site_run.locator.clone();
        let name = site.name().to_string();
        let timeout = self.limits.call_timeout(&self.health, &name, len);
        let straggler_at = Instant::now() + self.limits.straggler_after(&self.health, &name, len);
        let abort = self.tasks.spawn(async move {
            let started = Instant::now();
            let result = read_exact(site.as_ref(), &locator, offset, len, timeout).await;
            (result, started.elapsed())
        });
        self.requests.insert(
            abort.id(),
            Request {
                range: r,
                site: s,
                straggler_at,
                duplicate,
                abort,
            },
        );
    }

    fn finished(&mut self, id: tokio::task::Id, (result, elapsed): Outcome) {
        let Some(req) = self.requests.remove(&id) else {
            return; // aborted earlier: already accounted for
        };
        self.sites[req.site].in_flight -= 1;
        self.ranges[req.range].running -= 1;
        let name = self.sites[req.site].site.name().to_string();
        match result {
            Ok(bytes) => {
                self.health.record_ok(&name);
                self.health
                    .record_transfer(&name, bytes.len() as u64, elapsed);
                let range = &mut self.ranges[req.range];
                if matches!(range.status, Status::Open) {
                    range.status = Status::Done(bytes);
                    self.cancel_others(req.range);
                }
            }
            Err(e) => {
                tracing::warn!(site = %name, range = req.range, error = %e, "range read failed; its ranges go to the other sites");
                self.health.record_error(&name);
                let locator = self.sites[req.site].locator.clone();
                self.failures.push(&name, &locator, e);
                self.fail_site(req.site);
            }
        }
    }

    /// The range is done: drop the other request for it. A loser that was already a straggler
    /// counts as a failed call of its site (it was overtaken, not merely slower).
    fn cancel_others(&mut self, r: usize) {
        let now = Instant::now();
        let losers: Vec<tokio::task::Id> = self
            .requests
            .iter()
            .filter(|(_, q)| q.range == r)
            .map(|(id, _)| *id)
            .collect();
        for id in losers {
            if let Some(q) = self.requests.remove(&id) {
                q.abort.abort();
                self.sites[q.site].in_flight -= 1;
                self.ranges[r].running -= 1;
                if now >= q.straggler_at {
                    let name = self.sites[q.site].site.name();
                    tracing::debug!(
                        site = name,
                        range = r,
                        "straggler overtaken by its duplicate"
                    );
                    self.health.record_error(name);
                }
            }
        }
    }

    /// The site is out of this read: abort its requests; its open ranges get new owners.
    fn fail_site(&mut self, s: usize) {
        self.sites[s].failed = true;
        let mine: Vec<tokio::task::Id> = self
            .requests
            .iter()
            .filter(|(_, q)| q.site == s)
            .map(|(id, _)| *id)
            .collect();
        for id in mine {
            if let Some(q) = self.requests.remove(&id) {
                q.abort.abort();
                self.sites[s].in_flight -= 1;
                self.ranges[q.range].running -= 1;
            }
        }
        let orphans: Vec<usize> = (self.emitted..self.ranges.len())
            .filter(|&r| self.ranges[r].owner == s && matches!(self.ranges[r].status, Status::Open))
            .collect();
        self.assign_owners(&orphans);
    }

    /// When nothing is left to hand out (every range admitted, or the window full) and a
    /// site has room, re-request the oldest straggler from it; first answer wins. One
    /// duplicate at a time bounds the extra memory to one range. Returns when to look again.
    fn endgame(&mut self) -> Option<Instant> {
        let window_open = (self.emitted..self.admitted).any(|r| self.ranges[r].waiting());
        if window_open || self.requests.values().any(|q| q.duplicate) {
            return None;
        }
        let now = Instant::now();
        let usable = self.usable();
        let mut wake: Option<Instant> = None;
        let mut stragglers: Vec<&Request> = self
            .requests
            .values()
            .filter(|q| self.ranges[q.range].running == 1)
            .collect();
        stragglers.sort_by_key(|q| q.range);
        let mut chosen = None;
        for q in stragglers {
            if q.straggler_at > now {
                wake = Some(wake.map_or(q.straggler_at, |w| w.min(q.straggler_at)));
                continue;
            }
            let helper = (0..self.sites.len())
                .filter(|&s| s != q.site && usable[s] && self.sites[s].in_flight < DEPTH)
                .max_by(|&a, &b| self.rate(a).total_cmp(&self.rate(b)));
            if let Some(h) = helper {
                chosen = Some((q.range, h));
                break;
            }
        }
        match chosen {
            Some((r, h)) => {
                tracing::debug!(
                    range = r,
                    helper = self.sites[h].site.name(),
                    "endgame: duplicate request"
                );
                self.spawn(r, h, true);
                None
            }
            None => wake,
        }
    }
}

/// Budget permits for a range (ranges are at most a few MiB, far below u32::MAX).
fn permits(len: u64) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}
