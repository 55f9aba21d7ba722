//! One object: ranged reads, the small-object path, failures and memory.

use super::*;

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

#[tokio::test(start_paused = true)]
async fn small_object_on_a_hung_site_is_hedged() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(MB, 12);
    let hung = FakeSpec {
        hang_after: Some(0),
        ..rate(100.0)
    };
    let fast_hung = Fake::new("fast", hung, &meter).holding(&[("obj", &data)]);
    let slow = Fake::new("slow", rate(10.0), &meter).holding(&[("obj", &data)]);
    let (alloc, health) = allocator(&config(8));
    health.record_transfer("fast", 100 * MB, Duration::from_secs(1));
    health.record_transfer("slow", 10 * MB, Duration::from_secs(1));
    let stream = alloc.read_object(sources(&[&slow, &fast_hung], "obj"), MB, sha);
    let (out, elapsed) = drain(stream, &meter).await;
    assert!(out.expect("the other copy") == data);
    assert_eq!(
        fast_hung.hung.load(Ordering::SeqCst),
        1,
        "best site asked first"
    );
    // straggler wait (0.25 s floor) + 0.1 s on the slow copy, not the 30 s call timeout
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        fast_hung.active.load(Ordering::SeqCst),
        0,
        "the hung read was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn down_sites_are_a_last_resort() {
    let meter = Arc::new(Meter::default());
    let (data, sha) = object(8 * MB, 13);
    let a = Fake::new("a", rate(20.0), &meter).holding(&[("obj", &data)]);
    let b = Fake::new("b", rate(20.0), &meter).holding(&[("obj", &data)]);
    let (alloc, health) = allocator(&config(8));
    for _ in 0..HealthConfig::default().down_after {
        health.record_probe_error("b");
    }
    assert_eq!(health.state("b"), SiteState::Down);
    let (out, _) = drain(
        alloc.read_object(sources(&[&a, &b], "obj"), 8 * MB, sha),
        &meter,
    )
    .await;
    assert!(out.expect("read") == data);
    assert_eq!(
        (a.served(), b.served()),
        (8 * MB, 0),
        "b is down: not asked"
    );
    // with only down sites left, they are still tried rather than giving up
    let (out, _) = drain(
        alloc.read_object(sources(&[&b], "obj"), 8 * MB, sha),
        &meter,
    )
    .await;
    assert!(out.expect("read from the down site") == data);
}
