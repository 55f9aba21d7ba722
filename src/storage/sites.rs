//! The configured sites and the ack policy (the thesis' Replication Location Service, its
//! synchronous half): a group of objects is written to as many sites as the policy requires,
//! the others are named so the archive queues their copies.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::{Locator, PutSource, Result, Site, SiteHealth, SiteState, StorageError};
use crate::config::AckPolicy;

/// Why a group could not be stored on enough sites.
#[derive(Debug, Clone)]
pub struct AckFailure {
    pub needed: usize,
    pub stored_on: Vec<String>,
    /// (site, error) for every site that failed.
    pub failures: Vec<(String, String)>,
}

impl std::fmt::Display for AckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names first: a DICOM ErrorComment keeps only 64 characters.
        let names: Vec<&str> = self.failures.iter().map(|(s, _)| s.as_str()).collect();
        write!(
            f,
            "sites failed: {} (stored on {} of {} needed)",
            names.join(", "),
            self.stored_on.len(),
            self.needed
        )?;
        for (site, error) in &self.failures {
            write!(f, "; {site}: {error}")?;
        }
        Ok(())
    }
}

/// A copy to one more site, still being written when the group was acknowledged.
pub type LateWrites = JoinSet<(String, Result<Vec<Locator>>)>;

/// Where a group went: every object of the group is on each site of `held`.
#[derive(Debug)]
pub struct GroupPut {
    /// (site name, one locator per object of the group, in order).
    pub held: Vec<(String, Vec<Locator>)>,
    /// Sites that still need a copy of every object of the group (queued with the group; some
    /// may be among `late`).
    pub pending: Vec<String>,
    /// Writes to further sites started with the group and not finished when enough sites held
    /// it: their results let the caller record those copies without the queue's second pass.
    /// Dropping this aborts them (the queue then makes the copies).
    pub late: Option<LateWrites>,
}

#[derive(Debug)]
pub struct Sites {
    sites: Vec<Arc<dyn Site>>,
    ack: AckPolicy,
    /// The information service: orders the sites and hears how each write went.
    health: Option<Arc<SiteHealth>>,
}

impl Sites {
    pub fn new(sites: Vec<Arc<dyn Site>>, ack: AckPolicy) -> Sites {
        Sites {
            sites,
            ack,
            health: None,
        }
    }

    pub fn with_health(mut self, health: Arc<SiteHealth>) -> Sites {
        for site in &self.sites {
            health.register(site.name());
        }
        self.health = Some(health);
        self
    }

    pub fn all(&self) -> &[Arc<dyn Site>] {
        &self.sites
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Site>> {
        self.sites.iter().find(|s| s.name() == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.sites.iter().map(|s| s.name().to_string()).collect()
    }

    /// How many sites must hold an object before it is acknowledged.
    pub fn required(&self) -> usize {
        self.ack.required(self.sites.len())
    }

    /// The sites in the order to try them: up, then degraded, then down (the information
    /// service's state), in configuration order within each state.
    pub fn ranked(&self) -> Vec<Arc<dyn Site>> {
        let mut sites = self.sites.clone();
        if let Some(health) = &self.health {
            sites.sort_by_key(|s| match health.state(s.name()) {
                SiteState::Up => 0,
                SiteState::Degraded => 1,
                SiteState::Down => 2,
            });
        }
        sites
    }

    /// Tell the information service how a write to `site` went.
    pub fn record(&self, site: &str, bytes: u64, ok: bool) {
        if let Some(health) = &self.health {
            if ok {
                health.record_ok(site);
                health.record_written(site, bytes);
            } else {
                health.record_error(site);
            }
        }
    }

    /// Store a group on one site, telling the information service how it went.
    pub async fn put_on(
        &self,
        site: &Arc<dyn Site>,
        objects: &[PutSource],
    ) -> Result<Vec<Locator>> {
        let result = site.put_group(objects).await;
        let bytes = objects.iter().map(|o| o.size).sum();
        self.record(site.name(), bytes, result.is_ok());
        result
    }

    /// Let every site prepare an object as soon as it is spooled (see [`Site::prepare`]).
    pub async fn prepare(&self, source: &PutSource) -> Result<()> {
        for site in &self.sites {
            site.prepare(source).await?;
        }
        Ok(())
    }

    /// Store a group on as many sites as the ack policy requires, trying the next site when
    /// one fails. With a single site its own error is returned unchanged (disk full stays
    /// disk full).
    pub async fn put_group(&self, objects: &[PutSource]) -> Result<GroupPut> {
        let needed = self.required();
        if self.sites.len() == 1 {
            let site = &self.sites[0];
            let locators = self.put_on(site, objects).await?;
            return Ok(GroupPut {
                held: vec![(site.name().to_string(), locators)],
                pending: Vec::new(),
                late: None,
            });
        }
        // Every site that is not down gets the group at once; the answer waits only for as
        // many as the policy requires. Down sites are tried only to make up the number.
        let ranked = self.ranked();
        let (eager, fallback): (Vec<_>, Vec<_>) = ranked.into_iter().partition(|s| {
            self.health
                .as_ref()
                .is_none_or(|h| h.state(s.name()) != SiteState::Down)
        });
        let mut fallback = fallback.into_iter();
        let mut held: Vec<(String, Vec<Locator>)> = Vec::new();
        let mut failures: Vec<(String, String)> = Vec::new();
        let mut full: Option<StorageError> = None;
        let mut running: LateWrites = JoinSet::new();
        let shared: Arc<Vec<PutSource>> = Arc::new(objects.to_vec());
        let bytes: u64 = objects.iter().map(|o| o.size).sum();
        let spawn = |running: &mut LateWrites, site: Arc<dyn Site>| {
            let objects = shared.clone();
            running.spawn(async move {
                let result = site.put_group(&objects).await;
                (site.name().to_string(), result)
            });
        };
        for site in eager {
            spawn(&mut running, site);
        }
        while held.len() < needed {
            while held.len() + running.len() < needed {
                let Some(site) = fallback.next() else { break };
                spawn(&mut running, site);
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            match joined {
                Ok((name, Ok(locators))) => {
                    self.record(&name, bytes, true);
                    held.push((name, locators));
                }
                Ok((name, Err(e))) => {
                    self.record(&name, bytes, false);
                    tracing::warn!(site = %name, error = %e, objects = objects.len(), "site could not store a group; trying another");
                    failures.push((name, e.to_string()));
                    if matches!(e, StorageError::Full { .. }) {
                        full = Some(e);
                    }
                }
                Err(e) => failures.push(("?".into(), e.to_string())),
            }
        }
        if held.len() < needed {
            // Copies that did land are unreferenced: a pack site reclaims them at compaction.
            for (name, locators) in &held {
                if let Some(site) = self.get(name) {
                    for locator in locators {
                        let _ = site.delete(locator).await;
                    }
                }
            }
            let failure = AckFailure {
                needed,
                stored_on: held.into_iter().map(|(n, _)| n).collect(),
                failures,
            };
            if let (Some(full), true) = (full, failure.failures.len() == self.sites.len()) {
                // Every site is full: that is out of resources, whatever else they said.
                tracing::error!(%failure, "no site can store the group");
                return Err(full);
            }
            return Err(StorageError::AckNotMet(failure));
        }
        let pending = self
            .sites
            .iter()
            .map(|s| s.name().to_string())
            .filter(|n| !held.iter().any(|(h, _)| h == n))
            .collect();
        let late = (!running.is_empty()).then_some(running);
        Ok(GroupPut {
            held,
            pending,
            late,
        })
    }
}
