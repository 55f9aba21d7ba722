//! The co-allocator's scheduling logic against in-memory fake sites under a paused clock:
//! the fakes model a link of a given rate (requests share it first come, first served), and
//! can fail after some bytes, hang, or corrupt what they return. Real sites (HDFS) are
//! exercised by the integration tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::Digest;
use tokio::time::Instant;

use super::*;
use crate::config::{CoallocConfig, HealthConfig};
use crate::storage::{ListPage, PutSource, Result};

const MB: u64 = 1024 * 1024;

/// Counters shared by the fakes of one test: what was asked of all sites, and what the test's
/// consumer has taken, to measure memory held between the two.
#[derive(Debug, Default)]
struct Meter {
    requested: AtomicU64,
    consumed: AtomicU64,
    peak_outstanding: AtomicU64,
}

#[derive(Debug, Default)]
struct FakeSpec {
    /// Bytes per second of the site's link; `None` = instant.
    rate: Option<f64>,
    /// Every read fails once this many bytes were served.
    fail_after: Option<u64>,
    /// Reads of ranges starting at or past this offset never answer.
    hang_from: Option<u64>,
    /// Every read hangs once this many bytes were served.
    hang_after: Option<u64>,
    /// Flip a bit in every answer.
    corrupt: bool,
}

#[derive(Debug)]
struct Fake {
    name: String,
    objects: HashMap<String, Bytes>,
    spec: FakeSpec,
    link_free_at: Mutex<Option<Instant>>,
    served: AtomicU64,
    hung: AtomicU64,
    active: AtomicU64,
    meter: Arc<Meter>,
}

/// Counts a read as active until its future completes or is dropped (cancelled).
struct Active<'a>(&'a AtomicU64);
impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Fake {
    fn new(name: &str, spec: FakeSpec, meter: &Arc<Meter>) -> Arc<Fake> {
        Arc::new(Fake {
            name: name.into(),
            objects: HashMap::new(),
            spec,
            link_free_at: Mutex::new(None),
            served: AtomicU64::new(0),
            hung: AtomicU64::new(0),
            active: AtomicU64::new(0),
            meter: Arc::clone(meter),
        })
    }

    fn holding(mut self: Arc<Self>, objects: &[(&str, &Bytes)]) -> Arc<Fake> {
        let fake = Arc::get_mut(&mut self).expect("fresh fake");
        for (key, data) in objects {
            fake.objects.insert((*key).to_string(), (*data).clone());
        }
        self
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Site for Fake {
    fn name(&self) -> &str {
        &self.name
    }
    async fn put_group(&self, _: &[PutSource]) -> Result<Vec<Locator>> {
        unreachable!("reads only")
    }
    async fn read_at(&self, locator: &Locator, offset: u64, len: u64) -> Result<Bytes> {
        self.active.fetch_add(1, Ordering::SeqCst);
        let _active = Active(&self.active);
        let m = &self.meter;
        let requested = m.requested.fetch_add(len, Ordering::SeqCst) + len;
        let outstanding = requested.saturating_sub(m.consumed.load(Ordering::SeqCst));
        m.peak_outstanding.fetch_max(outstanding, Ordering::SeqCst);

        let data = self
            .objects
            .get(&locator.0)
            .ok_or_else(|| StorageError::NotFound(locator.0.clone()))?;
        let end = (offset + len).min(data.len() as u64);
        let n = end.saturating_sub(offset);
        let served = self.served();
        if self.spec.hang_from.is_some_and(|h| offset >= h)
            || self.spec.hang_after.is_some_and(|h| served >= h)
        {
            self.hung.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        if self.spec.fail_after.is_some_and(|f| served + n > f) {
            return Err(StorageError::Unavailable {
                site: self.name.clone(),
                reason: "connection reset (fake)".into(),
            });
        }
        if let Some(rate) = self.spec.rate {
            let done_at = {
                let mut free = self.link_free_at.lock().expect("lock");
                let start = free.map_or(Instant::now(), |f| f.max(Instant::now()));
                let done = start + Duration::from_secs_f64(n as f64 / rate);
                *free = Some(done);
                done
            };
            tokio::time::sleep_until(done_at).await;
        }
        self.served.fetch_add(n, Ordering::SeqCst);
        let mut bytes = data.slice(offset as usize..end as usize);
        if self.spec.corrupt && !bytes.is_empty() {
            let mut v = bytes.to_vec();
            v[0] ^= 1;
            bytes = Bytes::from(v);
        }
        Ok(bytes)
    }
    async fn size(&self, locator: &Locator) -> Result<u64> {
        Ok(self.objects.get(&locator.0).map_or(0, |d| d.len() as u64))
    }
    async fn delete(&self, _: &Locator) -> Result<()> {
        Ok(())
    }
    async fn list(&self, _: Option<String>, _: usize) -> Result<ListPage> {
        Ok(ListPage::default())
    }
    async fn probe(&self) -> Result<()> {
        Ok(())
    }
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
fn object(size: u64, seed: u64) -> (Bytes, [u8; 32]) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(size as usize);
    while (v.len() as u64) < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size as usize);
    let sha = sha2::Sha256::digest(&v).into();
    (Bytes::from(v), sha)
}

fn config(buffer_mb: u64) -> CoallocConfig {
    CoallocConfig {
        min_object_mb: 4,
        range_mb: 1,
        buffer_mb,
        objects_in_flight: 8,
        straggler_factor: 3.0,
    }
}

fn allocator(config: &CoallocConfig) -> (CoAllocator, Arc<SiteHealth>) {
    let health = Arc::new(SiteHealth::new(HealthConfig::default()));
    (CoAllocator::new(Arc::clone(&health), config), health)
}

fn sources(fakes: &[&Arc<Fake>], key: &str) -> Vec<(Arc<dyn Site>, Locator)> {
    fakes
        .iter()
        .map(|f| (Arc::clone(f) as Arc<dyn Site>, Locator(key.into())))
        .collect()
}

/// Read everything, counting consumption in the meter; returns the bytes (if the stream
/// ended well) or the error, and the virtual time taken.
async fn drain(mut stream: ObjectStream, meter: &Meter) -> (Result<Bytes, StorageError>, Duration) {
    let started = Instant::now();
    let mut all = Vec::new();
    while let Some(chunk) = stream.next_chunk().await {
        match chunk {
            Ok(chunk) => {
                meter
                    .consumed
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                all.extend_from_slice(&chunk);
            }
            Err(e) => return (Err(e), started.elapsed()),
        }
    }
    (Ok(Bytes::from(all)), started.elapsed())
}

fn shares(fakes: &[&Arc<Fake>]) -> Vec<f64> {
    let total: u64 = fakes.iter().map(|f| f.served()).sum();
    fakes
        .iter()
        .map(|f| f.served() as f64 / total as f64)
        .collect()
}

fn rate(mb_per_s: f64) -> FakeSpec {
    FakeSpec {
        rate: Some(mb_per_s * MB as f64),
        ..FakeSpec::default()
    }
}

mod objects;
mod ranges;
