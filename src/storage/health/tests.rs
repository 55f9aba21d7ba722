//! The state machine (hysteresis), the prober and the text exposition.

use super::*;
use crate::storage::{ListPage, Locator, PutSource, Result, StorageError};

fn config() -> HealthConfig {
    HealthConfig {
        probe_interval_secs: 1,
        down_after: 3,
        up_after: 2,
        degraded_error_rate: 0.2,
        degraded_latency_ms: 100,
    }
}

#[test]
fn down_after_consecutive_failures_up_after_consecutive_probes() {
    let h = SiteHealth::new(config());
    h.register("a");
    assert_eq!(h.state("a"), SiteState::Up);
    h.record_error("a");
    h.record_probe_error("a");
    assert_ne!(h.state("a"), SiteState::Down, "two failures are not three");
    h.record_ok("a");
    h.record_error("a");
    h.record_error("a");
    assert_ne!(
        h.state("a"),
        SiteState::Down,
        "a success in between resets the run"
    );
    h.record_error("a");
    assert_eq!(h.state("a"), SiteState::Down);
    // one good probe is not enough, and a failure in between restarts the count
    h.record_probe_ok("a", Duration::from_millis(5));
    assert_eq!(h.state("a"), SiteState::Down);
    h.record_probe_error("a");
    h.record_probe_ok("a", Duration::from_millis(5));
    assert_eq!(h.state("a"), SiteState::Down);
    // a successful call does not bring a down site back: only probes do
    h.record_ok("a");
    assert_eq!(h.state("a"), SiteState::Down);
    h.record_probe_ok("a", Duration::from_millis(5));
    assert_eq!(h.state("a"), SiteState::Up);
    assert_eq!(h.snapshot()[0].error_rate, 0.0);
}

#[test]
fn degraded_by_error_rate_with_hysteresis() {
    let h = SiteHealth::new(config());
    // every third call fails: never three in a row, but a 33% error rate
    for _ in 0..30 {
        h.record_ok("b");
        h.record_ok("b");
        h.record_error("b");
    }
    assert_eq!(h.state("b"), SiteState::Degraded);
    // just under the threshold is not enough to come back (no flapping at the edge)
    let mut steps = 0;
    while h.snapshot()[0].error_rate > 0.19 {
        h.record_ok("b");
        steps += 1;
    }
    assert_eq!(h.state("b"), SiteState::Degraded, "after {steps} successes");
    while h.snapshot()[0].error_rate > 0.1 {
        h.record_ok("b");
    }
    assert_eq!(h.state("b"), SiteState::Up);
}

#[test]
fn degraded_by_probe_latency() {
    let h = SiteHealth::new(config());
    for _ in 0..10 {
        h.record_probe_ok("c", Duration::from_millis(300));
    }
    assert_eq!(h.state("c"), SiteState::Degraded);
    for _ in 0..3 {
        h.record_probe_ok("c", Duration::from_millis(1));
    }
    assert_eq!(
        h.state("c"),
        SiteState::Degraded,
        "average still above half"
    );
    for _ in 0..20 {
        h.record_probe_ok("c", Duration::from_millis(1));
    }
    assert_eq!(h.state("c"), SiteState::Up);
}

#[test]
fn throughput_prior_then_measured() {
    let h = SiteHealth::new(config());
    assert_eq!(h.throughput("x"), DEFAULT_THROUGHPUT);
    h.record_transfer("a", 4 << 20, Duration::from_secs(1));
    h.record_transfer("b", 2 << 20, Duration::from_secs(1));
    // an unmeasured site is assumed to be average
    assert_eq!(h.throughput("x"), 3.0 * 1024.0 * 1024.0);
    // the average moves toward new samples but not all the way
    h.record_transfer("a", 8 << 20, Duration::from_secs(1));
    let a = h.throughput("a");
    assert!(a > 4.0 * 1048576.0 && a < 8.0 * 1048576.0, "{a}");
    // a tiny transfer barely moves it
    h.record_transfer("a", 1, Duration::from_secs(1));
    assert!(h.throughput("a") > 0.9 * a);
    assert_eq!(h.snapshot()[0].bytes_read, (12 << 20) + 1);
}

/// A site whose probe answers, fails or hangs as the test says.
#[derive(Debug)]
struct ProbeFake {
    mode: std::sync::atomic::AtomicU8,
}
const ANSWER: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

#[async_trait::async_trait]
impl Site for ProbeFake {
    fn name(&self) -> &str {
        "p"
    }
    async fn put_group(&self, _: &[PutSource]) -> Result<Vec<Locator>> {
        Ok(Vec::new())
    }
    async fn read_at(&self, _: &Locator, _: u64, _: u64) -> Result<bytes::Bytes> {
        Ok(bytes::Bytes::new())
    }
    async fn size(&self, _: &Locator) -> Result<u64> {
        Ok(0)
    }
    async fn delete(&self, _: &Locator) -> Result<()> {
        Ok(())
    }
    async fn list(&self, _: Option<String>, _: usize) -> Result<ListPage> {
        Ok(Default::default())
    }
    async fn probe(&self) -> Result<()> {
        match self.mode.load(std::sync::atomic::Ordering::SeqCst) {
            ANSWER => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            }
            FAIL => Err(StorageError::Unavailable {
                site: "p".into(),
                reason: "refused".into(),
            }),
            _ => std::future::pending().await,
        }
    }
}

/// The prober takes a site down after `down_after` failed or hung probes and back up after
/// `up_after` good ones, and stops with its token.
#[tokio::test(start_paused = true)]
async fn prober_follows_the_site() {
    use std::sync::atomic::Ordering::SeqCst;
    let health = Arc::new(SiteHealth::new(config()));
    let fake = Arc::new(ProbeFake {
        mode: std::sync::atomic::AtomicU8::new(ANSWER),
    });
    let cancel = CancellationToken::new();
    let task = health.spawn_prober(vec![fake.clone() as Arc<dyn Site>], cancel.clone());
    let tick = Duration::from_secs(1);
    tokio::time::sleep(tick / 2).await;
    let latency = health.probe_latency("p").expect("probed at once");
    assert_eq!(latency, Duration::from_millis(20));
    assert_eq!(health.state("p"), SiteState::Up);

    fake.mode.store(FAIL, SeqCst);
    tokio::time::sleep(tick * 2).await;
    assert_eq!(health.state("p"), SiteState::Up, "two failed probes");
    fake.mode.store(HANG, SeqCst);
    // a hanging probe fails at its timeout (one interval), then the next one starts
    tokio::time::sleep(tick * 3).await;
    assert_eq!(health.state("p"), SiteState::Down);

    fake.mode.store(ANSWER, SeqCst);
    tokio::time::sleep(tick * 3).await;
    assert_eq!(health.state("p"), SiteState::Up);

    cancel.cancel();
    tokio::time::timeout(tick, task)
        .await
        .expect("prober stops when cancelled")
        .expect("task");
}

#[test]
fn prometheus_text() {
    let h = SiteHealth::new(config());
    h.register("east");
    h.register("we\"ird\\\n");
    h.record_transfer("east", 1000, Duration::from_secs(2));
    h.record_written("east", 77);
    h.record_error("east");
    h.record_probe_ok("east", Duration::from_millis(250));
    let text = h.render_prometheus();
    for line in [
        "# TYPE mifas_site_up gauge",
        "mifas_site_up{site=\"east\"} 1",
        "# TYPE mifas_site_bytes_read_total counter",
        "mifas_site_bytes_read_total{site=\"east\"} 1000",
        "mifas_site_bytes_written_total{site=\"east\"} 77",
        "mifas_site_errors_total{site=\"east\"} 1",
        "mifas_site_throughput_bytes_per_second{site=\"east\"} 500",
        "mifas_site_probe_latency_seconds{site=\"east\"} 0.25",
        "mifas_site_error_rate{site=\"east\"} 0.1",
        "mifas_site_state{site=\"east\",state=\"up\"} 0",
        "mifas_site_state{site=\"east\",state=\"degraded\"} 1",
        "mifas_site_state{site=\"east\",state=\"down\"} 0",
        "mifas_site_up{site=\"we\\\"ird\\\\\\n\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // every sample line belongs to a family announced by HELP and TYPE
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let family = l.split('{').next().unwrap_or_default();
        assert!(text.contains(&format!("# TYPE {family} ")), "{l}");
        assert!(text.contains(&format!("# HELP {family} ")), "{l}");
    }
    // an unmeasured site has no throughput sample rather than a made-up one
    assert!(!text.contains("mifas_site_throughput_bytes_per_second{site=\"we"));
}
