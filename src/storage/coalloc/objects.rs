//! The objects of one retrieve (a C-MOVE or C-GET of a study), fetched whole from different
//! sites at once and handed out in the caller's order.
//!
//! Objects are bound to a site only when a slot is free (`objects_in_flight`), to the site
//! that would finish it soonest given its throughput and the fetches it already has: a fast
//! site that is done takes the next object, which is work stealing without queues to steal
//! from. A slot stays with its object until the consumer drops its stream, so memory is
//! bounded by slots × `min_object_mb` (plus one endgame duplicate); objects of
//! `min_object_mb` or more take no slot but stream one at a time through the ranged path.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{CoAllocator, Failures, ObjectSources, ObjectStream, is_site_failure, read_verified};
use crate::storage::StorageError;
use crate::storage::health::SiteState;

#[derive(Debug)]
enum Status {
    Waiting,
    Fetched(Bytes),
    Failed(StorageError),
    Yielded,
}

#[derive(Debug)]
struct Obj {
    status: Status,
    running: u8,
    slot: Option<OwnedSemaphorePermit>,
    /// Sites whose copy of this object is bad (not found, corrupt).
    excluded: Vec<usize>,
    failures: Failures,
}

#[derive(Debug)]
struct SiteRun {
    name: String,
    load: usize,
    failed: bool,
}

#[derive(Debug)]
struct Request {
    obj: usize,
    site: usize,
    straggler_at: Instant,
    duplicate: bool,
    abort: AbortHandle,
}

type Outcome = (Result<Bytes, StorageError>, std::time::Duration);

pub(super) struct Job {
    alloc: CoAllocator,
    items: Vec<ObjectSources>,
    /// Per item, per source: index into `sites`.
    item_sites: Vec<Vec<usize>>,
    objs: Vec<Obj>,
    sites: Vec<SiteRun>,
    requests: HashMap<tokio::task::Id, Request>,
    tasks: JoinSet<Outcome>,
    next_yield: usize,
    /// First small object never dispatched.
    next_new: usize,
    /// Objects to fetch again (their site failed); they keep their slot.
    requeued: BTreeSet<usize>,
    slots: Arc<Semaphore>,
    /// One large object streams at a time.
    large: Arc<Semaphore>,
    large_permit: Option<OwnedSemaphorePermit>,
}

impl Job {
    pub(super) fn new(alloc: CoAllocator, items: Vec<ObjectSources>) -> Job {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut sites = Vec::new();
        let item_sites = items
            .iter()
            .map(|item| {
                item.sources
                    .iter()
                    .map(|(site, _)| {
                        *index.entry(site.name().to_string()).or_insert_with(|| {
                            sites.push(SiteRun {
                                name: site.name().to_string(),
                                load: 0,
                                failed: false,
                            });
                            sites.len() - 1
                        })
                    })
                    .collect()
            })
            .collect();
        let objs = items
            .iter()
            .map(|_| Obj {
                status: Status::Waiting,
                running: 0,
                slot: None,
                excluded: Vec::new(),
                failures: Failures::default(),
            })
            .collect();
        let slots = Arc::new(Semaphore::new(alloc.limits.objects_in_flight));
        Job {
            alloc,
            items,
            item_sites,
            objs,
            sites,
            requests: HashMap::new(),
            tasks: JoinSet::new(),
            next_yield: 0,
            next_new: 0,
            requeued: BTreeSet::new(),
            slots,
            large: Arc::new(Semaphore::new(1)),
            large_permit: None,
        }
    }

    fn is_large(&self, i: usize) -> bool {
        let size = self.items[i].size;
        size > 0 && size >= self.alloc.limits.min_ranged
    }

    pub(super) async fn run(
        mut self,
        tx: mpsc::UnboundedSender<(usize, ObjectStream)>,
        cancel: CancellationToken,
    ) {
        loop {
            if !self.hand_out(&tx) {
                return;
            }
            if self.next_yield == self.items.len() {
                return;
            }
            self.dispatch();
            // Dispatch fails an object whose every copy is known bad without starting a fetch:
            // hand it out now, or nothing may be left to wake the select below.
            if !self.hand_out(&tx) || self.next_yield == self.items.len() {
                return;
            }
            let wake_at = self.endgame();
            let need_slot = self.next_new < self.items.len();
            let need_large = self.is_large(self.next_yield) && self.large_permit.is_none();
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    match joined {
                        Ok((id, outcome)) => self.finished(id, outcome),
                        Err(e) => {
                            let outcome = (Err(StorageError::Task(e.to_string())), Default::default());
                            self.finished(e.id(), outcome);
                        }
                    }
                }
                permit = Arc::clone(&self.slots).acquire_owned(), if need_slot => {
                    if let (Ok(permit), Some(obj)) = (permit, self.objs.get_mut(self.next_new)) {
                        obj.slot = Some(permit);
                    }
                }
                permit = Arc::clone(&self.large).acquire_owned(), if need_large => {
                    self.large_permit = permit.ok();
                }
                _ = tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {}
            }
        }
    }

    /// Hand out, in order, every object that is ready. False when the consumer is gone.
    fn hand_out(&mut self, tx: &mpsc::UnboundedSender<(usize, ObjectStream)>) -> bool {
        while self.next_yield < self.items.len() {
            let i = self.next_yield;
            let stream = if self.is_large(i) {
                let permit = match self.large_permit.take() {
                    Some(p) => p,
                    None => match Arc::clone(&self.large).try_acquire_owned() {
                        Ok(p) => p,
                        Err(_) => return true,
                    },
                };
                self.alloc.read_ranged(self.items[i].clone(), Some(permit))
            } else {
                let obj = &mut self.objs[i];
                match std::mem::replace(&mut obj.status, Status::Yielded) {
                    Status::Fetched(bytes) => ObjectStream::ready(bytes, obj.slot.take()),
                    Status::Failed(e) => {
                        obj.slot = None;
                        ObjectStream::failed(self.items[i].size, e)
                    }
                    other => {
                        obj.status = other;
                        return true;
                    }
                }
            };
            self.objs[i].status = Status::Yielded;
            if tx.send((i, stream)).is_err() {
                return false;
            }
            self.next_yield += 1;
        }
        true
    }

    fn dispatch(&mut self) {
        let retries: Vec<usize> = self.requeued.iter().copied().collect();
        for i in retries {
            if self.objs[i].running == 0 && matches!(self.objs[i].status, Status::Waiting) {
                self.start(i);
            }
            self.requeued.remove(&i);
        }
        while self.next_new < self.items.len() {
            let i = self.next_new;
            if self.is_large(i) {
                self.next_new += 1;
                continue;
            }
            if self.objs[i].slot.is_none() {
                match Arc::clone(&self.slots).try_acquire_owned() {
                    Ok(permit) => self.objs[i].slot = Some(permit),
                    Err(_) => return,
                }
            }
            self.start(i);
            self.next_new += 1;
        }
    }

    /// Fetch object `i` from its best site, or fail it when no copy is left.
    fn start(&mut self, i: usize) {
        match self.choose(i, None, false) {
            Some(k) => self.spawn(i, k, false),
            None => {
                let obj = &mut self.objs[i];
                for (k, &s) in self.item_sites[i].iter().enumerate() {
                    let site = &self.sites[s];
                    if site.failed && !obj.failures.sites.contains(&site.name) {
                        let e = StorageError::Unavailable {
                            site: site.name.clone(),
                            reason: "failed earlier in this retrieve".into(),
                        };
                        obj.failures
                            .push(&site.name, &self.items[i].sources[k].1, e);
                    }
                }
                let failures = std::mem::take(&mut obj.failures);
                obj.status = Status::Failed(failures.into_error());
            }
        }
    }

    fn rate(&self, s: usize) -> f64 {
        self.alloc.health.throughput(&self.sites[s].name).max(1.0)
    }

    /// The source (index into the item's sources) that would finish object `i` soonest:
    /// fewest (load + 1) / throughput, among copies not known bad, on sites not failed here and
    /// not down (unless only down ones are left). `idle_only` for endgame duplicates.
    fn choose(&self, i: usize, not: Option<usize>, idle_only: bool) -> Option<usize> {
        let health = &self.alloc.health;
        let candidates: Vec<(usize, usize)> = self.item_sites[i]
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, s)| {
                !self.sites[s].failed
                    && !self.objs[i].excluded.contains(&s)
                    && Some(s) != not
                    && (!idle_only || self.sites[s].load == 0)
            })
            .collect();
        let up: Vec<(usize, usize)> = candidates
            .iter()
            .copied()
            .filter(|&(_, s)| health.state(&self.sites[s].name) != SiteState::Down)
            .collect();
        let pool = if up.is_empty() { candidates } else { up };
        pool.into_iter()
            .min_by(|&(_, a), &(_, b)| {
                let cost = |s: usize| (self.sites[s].load + 1) as f64 / self.rate(s);
                cost(a).total_cmp(&cost(b))
            })
            .map(|(k, _)| k)
    }

    fn spawn(&mut self, i: usize, k: usize, duplicate: bool) {
        let s = self.item_sites[i][k];
        let (site, locator) = self.items[i].sources[k].clone();
        let (size, sha256) = (self.items[i].size, self.items[i].sha256);
        let limits = &self.alloc.limits;
        let health = &self.alloc.health;
        let timeout = limits.call_timeout(health, site.name(), size);
        let straggler_at = Instant::now() + limits.straggler_after(health, site.name(), size);
        self.objs[i].running += 1;
        self.sites[s].load += 1;
        let abort = self.tasks.spawn(async move {
            let started = Instant::now();
            let result = read_verified(site, locator, size, sha256, timeout).await;
            (result, started.elapsed())
        });
        self.requests.insert(
            abort.id(),
            Request {
                obj: i,
                site: s,
                straggler_at,
                duplicate,
                abort,
            },
        );
    }

    fn finished(&mut self, id: tokio::task::Id, (result, elapsed): Outcome) {
        let Some(req) = self.requests.remove(&id) else {
            return;
        };
        let (i, s) = (req.obj, req.site);
        self.sites[s].load -= 1;
        self.objs[i].running -= 1;
        let name = self.sites[s].name.clone();
        let health = Arc::clone(&self.alloc.health);
        match result {
            Ok(bytes) => {
                health.record_ok(&name);
                health.record_transfer(&name, bytes.len() as u64, elapsed);
                if matches!(self.objs[i].status, Status::Waiting) {
                    self.objs[i].status = Status::Fetched(bytes);
                    self.cancel_others(i);
                }
            }
            Err(e) => {
                health.record_error(&name);
                let site_failed = is_site_failure(&e);
                tracing::warn!(site = %name, object = i, error = %e, site_failed, "object read failed");
                let locator = self.items[i].sources[self.source_of(i, s)].1.clone();
                self.objs[i].failures.push(&name, &locator, e);
                if site_failed {
                    self.fail_site(s);
                } else {
                    self.objs[i].excluded.push(s);
                }
                if self.objs[i].running == 0 && matches!(self.objs[i].status, Status::Waiting) {
                    self.requeued.insert(i);
                }
            }
        }
    }

    fn source_of(&self, i: usize, s: usize) -> usize {
        self.item_sites[i].iter().position(|&x| x == s).unwrap_or(0)
    }

    /// Object `i` arrived: drop its other request; an overtaken straggler counts as a failed
    /// call of its site.
    fn cancel_others(&mut self, i: usize) {
        let now = Instant::now();
        let losers: Vec<tokio::task::Id> = self
            .requests
            .iter()
            .filter(|(_, q)| q.obj == i)
            .map(|(id, _)| *id)
            .collect();
        for id in losers {
            if let Some(q) = self.requests.remove(&id) {
                q.abort.abort();
                self.sites[q.site].load -= 1;
                self.objs[i].running -= 1;
                if now >= q.straggler_at {
                    tracing::debug!(site = %self.sites[q.site].name, object = i, "straggler overtaken by its duplicate");
                    self.alloc.health.record_error(&self.sites[q.site].name);
                }
            }
        }
    }

    /// The site is out of this retrieve: its fetches are aborted and fetched again elsewhere.
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
                self.sites[s].load -= 1;
                let obj = &mut self.objs[q.obj];
                obj.running -= 1;
                if obj.running == 0 && matches!(obj.status, Status::Waiting) {
                    self.requeued.insert(q.obj);
                }
            }
        }
    }

    /// When nothing new can start (all dispatched, or every slot taken) re-request the
    /// oldest straggler from an idle site holding a copy; first answer wins. One duplicate at
    /// a time. Returns when to look again.
    fn endgame(&mut self) -> Option<Instant> {
        let can_start = !self.requeued.is_empty()
            || (self.next_new < self.items.len() && self.slots.available_permits() > 0);
        if can_start || self.requests.values().any(|q| q.duplicate) {
            return None;
        }
        let now = Instant::now();
        let mut stragglers: Vec<(usize, usize, Instant)> = self
            .requests
            .values()
            .filter(|q| self.objs[q.obj].running == 1)
            .map(|q| (q.obj, q.site, q.straggler_at))
            .collect();
        stragglers.sort();
        let mut wake: Option<Instant> = None;
        for (i, s, at) in stragglers {
            if at > now {
                wake = Some(wake.map_or(at, |w| w.min(at)));
                continue;
            }
            if let Some(k) = self.choose(i, Some(s), true) {
                tracing::debug!(object = i, helper = %self.sites[self.item_sites[i][k]].name, "endgame: duplicate request");
                self.spawn(i, k, true);
                return None;
            }
        }
        wake
    }
}
