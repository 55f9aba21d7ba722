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

#[tokio::test(start_paused = true)]
async fn equal_sites_all_contribute() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(48 * MB, 1);
    let fakes: Vec<Arc<Fake>> = ["a", "b", "c"]
        .iter()
        .map(|n| Fake::new(n, rate(20.0), &meter).holding(&[("obj", &data)]))
        .collect();
    let refs: Vec<&Arc<Fake>> = fakes.iter().collect();
    let (alloc, health) = allocator(&config(16));
    let stream = alloc.read_object(sources(&refs, "obj"), data.len() as u64, sha);
    let (out, elapsed) = drain(stream, &meter).await;
    assert!(out.expect("read") == data);
    let s = shares(&refs);
    eprintln!("equal sites: shares {s:.3?} in {elapsed:?} (one site alone: 2.4 s)");
    for share in &s {
        assert!((0.25..=0.42).contains(share), "{s:?}");
    }
    // three 20 MB/s links move 48 MiB in 0.8 s; one alone would take 2.4 s
    assert!(elapsed < Duration::from_secs_f64(0.8 / 0.85), "{elapsed:?}");
    for f in &fakes {
        let snap = health
            .snapshot()
            .into_iter()
            .find(|s| s.site == f.name)
            .expect("known");
        assert_eq!(snap.bytes_read, f.served());
        assert!(snap.throughput.is_some());
    }
}

#[tokio::test(start_paused = true)]
async fn shares_follow_rates_4_2_1() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(128 * MB, 2);
    let a = Fake::new("a", rate(40.0), &meter).holding(&[("obj", &data)]);
    let b = Fake::new("b", rate(20.0), &meter).holding(&[("obj", &data)]);
    let c = Fake::new("c", rate(10.0), &meter).holding(&[("obj", &data)]);
    let (alloc, _) = allocator(&config(32));
    let stream = alloc.read_object(sources(&[&a, &b, &c], "obj"), data.len() as u64, sha);
    let (out, elapsed) = drain(stream, &meter).await;
    assert!(out.expect("read") == data);
    let s = shares(&[&a, &b, &c]);
    let ideal = 128.0 / 70.0;
    eprintln!(
        "4:2:1: shares {s:.3?} (ideal 0.571/0.286/0.143), {elapsed:?} vs ideal {ideal:.3} s = {:.2} of the sum",
        ideal / elapsed.as_secs_f64()
    );
    for (share, want) in s.iter().zip([4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0]) {
        assert!((share - want).abs() < 0.05, "{s:?}");
    }
    assert!(elapsed.as_secs_f64() < ideal / 0.9, "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn warm_health_deals_ranges_in_proportion() {
    // With throughputs already measured, the initial deal alone is proportional: a window of
    // the whole object and no stealing needed.
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(70 * MB, 3);
    let a = Fake::new("a", rate(40.0), &meter).holding(&[("obj", &data)]);
    let b = Fake::new("b", rate(20.0), &meter).holding(&[("obj", &data)]);
    let c = Fake::new("c", rate(10.0), &meter).holding(&[("obj", &data)]);
    let (alloc, health) = allocator(&config(80));
    for (name, r) in [("a", 40), ("b", 20), ("c", 10)] {
        health.record_transfer(name, r * MB, Duration::from_secs(2));
    }
    let stream = alloc.read_object(sources(&[&a, &b, &c], "obj"), data.len() as u64, sha);
    let (out, _) = drain(stream, &meter).await;
    assert!(out.expect("read") == data);
    let s = shares(&[&a, &b, &c]);
    eprintln!("warm 4:2:1: shares {s:.3?}");
    for (share, want) in s.iter().zip([4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0]) {
        assert!((share - want).abs() < 0.05, "{s:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn site_failing_mid_transfer_changes_nothing_in_the_output() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(40 * MB, 4);
    let a = Fake::new("a", rate(20.0), &meter).holding(&[("obj", &data)]);
    let failing = FakeSpec {
        fail_after: Some(5 * MB),
        ..rate(20.0)
    };
    let b = Fake::new("b", failing, &meter).holding(&[("obj", &data)]);
    let c = Fake::new("c", rate(20.0), &meter).holding(&[("obj", &data)]);
    let (alloc, health) = allocator(&config(8));
    let stream = alloc.read_object(sources(&[&a, &b, &c], "obj"), data.len() as u64, sha);
    let (out, _) = drain(stream, &meter).await;
    let out = out.expect("read despite a failing site");
    assert_eq!(
        <[u8; 32]>::from(sha2::Sha256::digest(&out)),
        sha,
        "identical bytes"
    );
    // (two requests in flight may both pass the fake's check before its limit)
    assert!(b.served() <= 7 * MB, "b stopped at its failure");
    assert!(a.served() + c.served() >= 35 * MB);
    let snap = health.snapshot();
    let b_snap = snap.iter().find(|s| s.site == "b").expect("b");
    assert!(b_snap.errors >= 1, "failure recorded: {b_snap:?}");
}

#[tokio::test(start_paused = true)]
async fn hanging_straggler_at_the_end_is_overtaken() {
    let meter = Arc::new(Meter::default());
    let size = 24 * MB;
    let (data, sha) = object(size, 5);
    let a = Fake::new("a", rate(20.0), &meter).holding(&[("obj", &data)]);
    let b = Fake::new("b", rate(20.0), &meter).holding(&[("obj", &data)]);
    // c answers everything but the last three ranges, which it never answers
    let hanging = FakeSpec {
        hang_from: Some(size - 3 * MB),
        ..rate(20.0)
    };
    let c = Fake::new("c", hanging, &meter).holding(&[("obj", &data)]);
    let (alloc, health) = allocator(&config(32));
    let stream = alloc.read_object(sources(&[&a, &b, &c], "obj"), size, sha);
    let (out, elapsed) = drain(stream, &meter).await;
    assert!(out.expect("read") == data);
    assert!(
        c.hung.load(Ordering::SeqCst) >= 1,
        "c was asked for an end range"
    );
    eprintln!("hanging straggler: done in {elapsed:?}");
    // 24 MiB over three 20 MB/s links is 0.4 s; the straggler wait is 0.25 s or 3x expected;
    // the hard call timeout (30 s) must not have been needed
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        c.active.load(Ordering::SeqCst),
        0,
        "the hung reads were cancelled"
    );
    let c_snap = health
        .snapshot()
        .into_iter()
        .find(|s| s.site == "c")
        .expect("c");
    assert!(
        c_snap.errors >= 1,
        "overtaken straggler counted: {c_snap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn site_hanging_mid_transfer_is_worked_around() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(40 * MB, 6);
    let a = Fake::new("a", rate(20.0), &meter).holding(&[("obj", &data)]);
    let b = Fake::new("b", rate(20.0), &meter).holding(&[("obj", &data)]);
    let hanging = FakeSpec {
        hang_after: Some(4 * MB),
        ..rate(20.0)
    };
    let c = Fake::new("c", hanging, &meter).holding(&[("obj", &data)]);
    let (alloc, _) = allocator(&config(8));
    let stream = alloc.read_object(sources(&[&a, &b, &c], "obj"), data.len() as u64, sha);
    let (out, elapsed) = drain(stream, &meter).await;
    assert!(out.expect("read") == data);
    eprintln!("site hanging mid-transfer: done in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn corrupt_bytes_end_the_stream_with_corrupt() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(16 * MB, 7);
    let a = Fake::new("a", rate(20.0), &meter).holding(&[("obj", &data)]);
    let bad = FakeSpec {
        corrupt: true,
        ..rate(20.0)
    };
    let b = Fake::new("b", bad, &meter).holding(&[("obj", &data)]);
    let (alloc, _) = allocator(&config(8));
    let stream = alloc.read_object(sources(&[&a, &b], "obj"), data.len() as u64, sha);
    let (out, _) = drain(stream, &meter).await;
    assert!(b.served() > 0);
    match out {
        Err(StorageError::Corrupt { reason, .. }) => {
            assert!(reason.contains("SHA-256"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn small_object_comes_whole_from_the_best_site_and_falls_back() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(MB, 8);
    let bad = FakeSpec {
        corrupt: true,
        ..rate(100.0)
    };
    let fast_bad = Fake::new("fast", bad, &meter).holding(&[("obj", &data)]);
    let slow = Fake::new("slow", rate(10.0), &meter).holding(&[("obj", &data)]);
    let (alloc, health) = allocator(&config(8));
    health.record_transfer("fast", 100 * MB, Duration::from_secs(1));
    health.record_transfer("slow", 10 * MB, Duration::from_secs(1));
    let stream = alloc.read_object(sources(&[&slow, &fast_bad], "obj"), MB, sha);
    let (out, _) = drain(stream, &meter).await;
    assert!(out.expect("good copy") == data);
    // tried the best site first, whole, then the other one, whole
    assert_eq!((fast_bad.served(), slow.served()), (MB, MB));
}

#[tokio::test(start_paused = true)]
async fn all_sites_failing_names_them() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(8 * MB, 9);
    let down = || FakeSpec {
        fail_after: Some(0),
        ..FakeSpec::default()
    };
    let a = Fake::new("east", down(), &meter).holding(&[("obj", &data)]);
    let b = Fake::new("west", down(), &meter).holding(&[("obj", &data)]);
    let (alloc, _) = allocator(&config(8));
    let (out, _) = drain(
        alloc.read_object(sources(&[&a, &b], "obj"), 8 * MB, sha),
        &meter,
    )
    .await;
    match out {
        Err(StorageError::Unavailable { site, .. }) => {
            assert!(site.contains("east") && site.contains("west"), "{site}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn memory_stays_within_the_window() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(40 * MB, 10);
    let fakes: Vec<Arc<Fake>> = ["a", "b", "c"]
        .iter()
        .map(|n| Fake::new(n, rate(100.0), &meter).holding(&[("obj", &data)]))
        .collect();
    let refs: Vec<&Arc<Fake>> = fakes.iter().collect();
    let (alloc, _) = allocator(&config(4));
    let mut stream = alloc.read_object(sources(&refs, "obj"), data.len() as u64, sha);
    // a consumer much slower than the sites: they must wait for it
    let mut got = Vec::new();
    while let Some(chunk) = stream.next_chunk().await {
        let chunk = chunk.expect("chunk");
        meter
            .consumed
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        got.extend_from_slice(&chunk);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(got == data);
    let peak = meter.peak_outstanding.load(Ordering::SeqCst);
    eprintln!(
        "memory: peak requested-but-unconsumed {} KiB (limit 4 MiB + 1 MiB)",
        peak / 1024
    );
    assert!(peak <= 5 * MB, "peak {peak}");
    assert!(peak >= 3 * MB, "the window is used: {peak}");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_cancels_the_reads() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(32 * MB, 11);
    let fakes: Vec<Arc<Fake>> = ["a", "b"]
        .iter()
        .map(|n| Fake::new(n, rate(10.0), &meter).holding(&[("obj", &data)]))
        .collect();
    let refs: Vec<&Arc<Fake>> = fakes.iter().collect();
    let (alloc, _) = allocator(&config(8));
    let mut stream = alloc.read_object(sources(&refs, "obj"), data.len() as u64, sha);
    let first = stream.next_chunk().await.expect("a chunk").expect("ok");
    assert_eq!(first.len() as u64, MB);
    assert!(fakes.iter().any(|f| f.active.load(Ordering::SeqCst) > 0));
    drop(stream);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let requested = meter.requested.load(Ordering::SeqCst);
    for f in &fakes {
        assert_eq!(
            f.active.load(Ordering::SeqCst),
            0,
            "{} still reading",
            f.name
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        meter.requested.load(Ordering::SeqCst),
        requested,
        "no new reads"
    );
}

/// Items of a retrieve: `count` objects of `size`, every one on every fake.
fn items(count: usize, size: u64, fakes: &[Arc<Fake>]) -> (Vec<ObjectSources>, Vec<Bytes>) {
    let mut items = Vec::new();
    let mut datas = Vec::new();
    for i in 0..count {
        let (data, sha) = object(size, 100 + i as u64);
        items.push(ObjectSources {
            sources: fakes
                .iter()
                .map(|f| (Arc::clone(f) as Arc<dyn Site>, Locator(format!("o{i}"))))
                .collect(),
            size,
            sha256: sha,
        });
        datas.push(data);
    }
    (items, datas)
}

fn fakes_holding(
    specs: Vec<(&str, FakeSpec)>,
    datas: &[Bytes],
    meter: &Arc<Meter>,
) -> Vec<Arc<Fake>> {
    let keys: Vec<String> = (0..datas.len()).map(|i| format!("o{i}")).collect();
    let objects: Vec<(&str, &Bytes)> = keys.iter().map(String::as_str).zip(datas).collect();
    specs
        .into_iter()
        .map(|(name, spec)| Fake::new(name, spec, meter).holding(&objects))
        .collect()
}

/// Data of `count` objects, then fakes, then the items pointing at them.
fn retrieve_setup(
    count: usize,
    size: u64,
    specs: Vec<(&str, FakeSpec)>,
) -> (Vec<Arc<Fake>>, Vec<ObjectSources>, Vec<Bytes>, Arc<Meter>) {
    let meter = Arc::new(Meter::default());
    let datas: Vec<Bytes> = (0..count).map(|i| object(size, 100 + i as u64).0).collect();
    let fakes = fakes_holding(specs, &datas, &meter);
    let (items, _) = items(count, size, &fakes);
    (fakes, items, datas, meter)
}

async fn drain_all(mut objects: ObjectsStream) -> Vec<(usize, Result<Bytes, StorageError>)> {
    let mut out = Vec::new();
    while let Some((i, stream)) = objects.next_object().await {
        out.push((i, stream.read_all().await));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn objects_come_in_order_from_several_sites() {
    let (fakes, items, datas, _) = retrieve_setup(
        60,
        512 * 1024,
        vec![("a", rate(40.0)), ("b", rate(20.0)), ("c", rate(10.0))],
    );
    let (alloc, _) = allocator(&config(32));
    let started = Instant::now();
    let out = drain_all(alloc.read_objects(items)).await;
    let elapsed = started.elapsed();
    assert_eq!(out.len(), 60);
    for (n, (i, result)) in out.into_iter().enumerate() {
        assert_eq!(i, n, "in order");
        assert!(result.expect("object") == datas[n], "object {n}");
    }
    let refs: Vec<&Arc<Fake>> = fakes.iter().collect();
    let s = shares(&refs);
    let ideal = 30.0 / 70.0;
    eprintln!("retrieve 60 x 512 KiB, 4:2:1: shares {s:.3?} in {elapsed:?} (ideal {ideal:.3} s)");
    for share in &s {
        assert!(*share > 0.05, "every site contributes: {s:?}");
    }
    assert!(s[0] > s[1] && s[1] > s[2], "faster sites take more: {s:?}");
    assert!(elapsed.as_secs_f64() < ideal / 0.75, "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn objects_survive_a_failing_and_a_hanging_site() {
    let (_fakes, items, datas, _) = retrieve_setup(
        40,
        256 * 1024,
        vec![
            ("a", rate(20.0)),
            (
                "b",
                FakeSpec {
                    fail_after: Some(2 * MB),
                    ..rate(20.0)
                },
            ),
            (
                "c",
                FakeSpec {
                    hang_after: Some(3 * MB),
                    ..rate(20.0)
                },
            ),
        ],
    );
    let (alloc, health) = allocator(&config(32));
    let started = Instant::now();
    let out = drain_all(alloc.read_objects(items)).await;
    let elapsed = started.elapsed();
    for (n, (i, result)) in out.into_iter().enumerate() {
        assert_eq!(i, n);
        assert!(result.expect("object") == datas[n], "object {n}");
    }
    eprintln!("retrieve with a failing and a hanging site: {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(10),
        "no hard timeout waited: {elapsed:?}"
    );
    let errors: HashMap<String, u64> = health
        .snapshot()
        .into_iter()
        .map(|s| (s.site, s.errors))
        .collect();
    assert!(errors["b"] >= 1 && errors["c"] >= 1, "{errors:?}");
}

#[tokio::test(start_paused = true)]
async fn retrieve_mixes_small_and_large_and_reports_bad_objects_in_place() {
    let meter = Arc::new(Meter::default());
    let (small, small_sha) = object(300 * 1024, 20);
    let (large, large_sha) = object(12 * MB, 21);
    let a = Fake::new("a", rate(20.0), &meter).holding(&[("s", &small), ("l", &large)]);
    let b = Fake::new("b", rate(20.0), &meter).holding(&[("s", &small), ("l", &large)]);
    let item = |key: &str, size, sha| ObjectSources {
        sources: sources(&[&a, &b], key),
        size,
        sha256: sha,
    };
    let items = vec![
        item("s", 300 * 1024, small_sha),
        item("l", 12 * MB, large_sha),
        item("missing", 1000, [0; 32]),
        item("s", 300 * 1024, small_sha),
    ];
    let (alloc, _) = allocator(&config(8));
    let mut objects = alloc.read_objects(items);
    assert_eq!(objects.len(), 4);
    let mut seen = Vec::new();
    while let Some((i, mut stream)) = objects.next_object().await {
        let mut chunks = 0;
        let mut all = Vec::new();
        let mut error = None;
        while let Some(chunk) = stream.next_chunk().await {
            match chunk {
                Ok(c) => {
                    chunks += 1;
                    all.extend_from_slice(&c);
                }
                Err(e) => error = Some(e),
            }
        }
        seen.push((i, chunks, all.len(), error.map(|e| e.to_string())));
    }
    assert_eq!(seen[0], (0, 1, 300 * 1024, None));
    // the large one streamed by ranges, one chunk per MiB
    assert_eq!(seen[1], (1, 12, 12 * MB as usize, None));
    assert_eq!(seen[2].0, 2);
    let missing = seen[2].3.clone().expect("error for the missing object");
    assert!(missing.contains('a') && missing.contains('b'), "{missing}");
    assert_eq!(seen[3], (3, 1, 300 * 1024, None));
    assert!(a.served() > MB && b.served() > MB, "both sites used");
}

#[tokio::test(start_paused = true)]
async fn retrieve_holds_at_most_the_slots() {
    // 20 objects of 1 MiB, 4 slots, a consumer slower than the sites.
    let (_fakes, items, datas, meter) =
        retrieve_setup(20, MB, vec![("a", rate(100.0)), ("b", rate(100.0))]);
    let mut cfg = config(8);
    cfg.objects_in_flight = 4;
    let (alloc, _) = allocator(&cfg);
    let mut objects = alloc.read_objects(items);
    let mut n = 0;
    while let Some((i, stream)) = objects.next_object().await {
        let bytes = stream.read_all().await.expect("object");
        meter
            .consumed
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        assert!(bytes == datas[i]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        n += 1;
    }
    assert_eq!(n, 20);
    let peak = meter.peak_outstanding.load(Ordering::SeqCst);
    eprintln!(
        "retrieve memory: peak {} KiB for 4 slots of 1 MiB",
        peak / 1024
    );
    assert!(peak <= 5 * MB, "{peak}");
}

#[tokio::test(start_paused = true)]
async fn edge_cases_empty_object_no_copy_no_items() {
    let meter = Arc::new(Meter::default());
    let (empty, empty_sha) = object(0, 30);
    let a = Fake::new("a", FakeSpec::default(), &meter).holding(&[("e", &empty)]);
    let (alloc, _) = allocator(&config(8));
    let (out, _) = drain(alloc.read_object(sources(&[&a], "e"), 0, empty_sha), &meter).await;
    assert_eq!(out.expect("empty object").len(), 0);
    // no copy at all: an error, not an empty success, for both paths
    for size in [10, 10 * MB] {
        let (out, _) = drain(alloc.read_object(Vec::new(), size, [0; 32]), &meter).await;
        assert!(
            matches!(out, Err(StorageError::Unavailable { .. })),
            "{out:?}"
        );
    }
    let mut none = alloc.read_objects(Vec::new());
    assert!(none.is_empty());
    assert!(none.next_object().await.is_none());
}
