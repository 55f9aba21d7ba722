//! Multi-object retrieves.

use super::*;

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
