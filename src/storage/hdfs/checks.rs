//! Checks of [`HdfsFs`] against a live cluster, for an integration harness (our MiniDFSCluster
//! launcher) and for `examples/hdfs_check` (tests/minidfs/hdfs_check.rs). Unit tests cannot
//! require HDFS, so these are plain functions: each takes a connected site and a scratch
//! directory on it, and returns a one-line note on success or what went wrong.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::HdfsFs;
use crate::config::SiteConfig;
use crate::storage::{PackFs, StorageError};

/// Ok: a note for the report line (timings); Err: what failed.
pub type CheckResult = std::result::Result<String, String>;

/// `n` deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn pattern(seed: u64, n: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    Bytes::from(out)
}

fn fail<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> std::result::Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Bytes `[offset, offset+len)` read by a new reader must equal `expected`.
async fn read_back(fs: &HdfsFs, path: &str, expected: &[u8]) -> std::result::Result<(), String> {
    let reader = fs.open(path).await.map_err(fail("open"))?;
    ensure(reader.len() == expected.len() as u64, || {
        format!(
            "a new reader of {path} sees {} bytes, {} were synced",
            reader.len(),
            expected.len()
        )
    })?;
    let got = reader
        .read_at(0, expected.len() as u64)
        .await
        .map_err(fail("read"))?;
    ensure(got == expected, || format!("{path}: bytes differ"))
}

/// create / write / sync, then a NEW reader (and `len`) see the synced bytes while the writer
/// is still open — twice, so the tail of an open block is read too — then close and read all.
/// This is what pack files rely on: readers of a pack that is still being appended to.
pub async fn check_read_while_open(fs: &HdfsFs, dir: &str) -> CheckResult {
    let path = format!("{dir}/open.pack");
    let first = pattern(1, 512 * 1024);
    let second = pattern(2, 100_000);
    let mut all = first.to_vec();
    all.extend_from_slice(&second);

    let mut w = fs.create(&path).await.map_err(fail("create"))?;
    w.write(first.clone()).await.map_err(fail("write"))?;
    w.sync().await.map_err(fail("hsync"))?;
    let len = fs.len(&path).await.map_err(fail("len"))?;
    ensure(len == first.len() as u64, || {
        format!("len after hsync is {len}, expected {}", first.len())
    })?;
    read_back(fs, &path, &first).await?;

    w.write(second.clone()).await.map_err(fail("write 2"))?;
    w.sync().await.map_err(fail("hsync 2"))?;
    read_back(fs, &path, &all).await?;
    // a reader of the open file reads a range in the middle of the synced tail
    let r = fs.open(&path).await.map_err(fail("open 3"))?;
    let mid = r
        .read_at(first.len() as u64 - 10, 1000)
        .await
        .map_err(fail("read across the hsync boundary"))?;
    ensure(mid[..] == all[first.len() - 10..first.len() + 990], || {
        "range across the hsync boundary differs".into()
    })?;

    ensure(w.written() == all.len() as u64, || {
        "written() is off".into()
    })?;
    w.close().await.map_err(fail("close"))?;
    read_back(fs, &path, &all).await?;
    Ok(format!(
        "{} bytes synced in 2 steps, both read while open",
        all.len()
    ))
}

/// The same across block boundaries, on a site with a 1 MiB block size: after every hsync a
/// new reader reads everything synced (part from HDFS's complete blocks, part from the writer),
/// and a reader opened early still reads its range after the writer has moved two blocks on.
pub async fn check_read_while_open_across_blocks(fs: &HdfsFs, dir: &str) -> CheckResult {
    let path = format!("{dir}/blocks.pack");
    let mut all = Vec::new();
    let mut w = fs.create(&path).await.map_err(fail("create"))?;
    let mut early = None;
    for i in 0..10u64 {
        let b = pattern(300 + i, 300_000);
        all.extend_from_slice(&b);
        w.write(b).await.map_err(fail("write"))?;
        w.sync().await.map_err(fail("hsync"))?;
        read_back(fs, &path, &all).await?;
        if i == 1 {
            early = Some(fs.open(&path).await.map_err(fail("open early"))?);
        }
    }
    let early = early.ok_or("no early reader")?;
    let got = early
        .read_at(250_000, 350_000)
        .await
        .map_err(fail("early reader after the writer moved on"))?;
    ensure(got[..] == all[250_000..600_000], || {
        "early reader read different bytes".into()
    })?;
    w.close().await.map_err(fail("close"))?;
    read_back(fs, &path, &all).await?;
    Ok(format!(
        "{} bytes over {} blocks, every hsync read back while open",
        all.len(),
        all.len().div_ceil(1 << 20)
    ))
}

/// `create` of an existing file fails and leaves it alone.
pub async fn check_create_exists(fs: &HdfsFs, dir: &str) -> CheckResult {
    let path = format!("{dir}/exists");
    let mut w = fs.create(&path).await.map_err(fail("create"))?;
    w.write(pattern(3, 1000)).await.map_err(fail("write"))?;
    w.close().await.map_err(fail("close"))?;
    match fs.create(&path).await {
        Ok(_) => return Err("a second create of the same path succeeded".into()),
        Err(StorageError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("second create: unexpected error {e}")),
    }
    read_back(fs, &path, &pattern(3, 1000)).await?;
    Ok("second create refused with AlreadyExists".into())
}

/// `rename` moves a file and never replaces an existing one.
pub async fn check_rename(fs: &HdfsFs, dir: &str) -> CheckResult {
    let (a, b, c) = (
        format!("{dir}/ren-a"),
        format!("{dir}/ren-b"),
        format!("{dir}/ren-c"),
    );
    for (p, seed) in [(&a, 10), (&b, 11)] {
        let mut w = fs.create(p).await.map_err(fail("create"))?;
        w.write(pattern(seed, 777)).await.map_err(fail("write"))?;
        w.close().await.map_err(fail("close"))?;
    }
    ensure(fs.rename(&a, &b).await.is_err(), || {
        "rename onto an existing file succeeded".into()
    })?;
    read_back(fs, &b, &pattern(11, 777)).await?;
    fs.rename(&a, &c).await.map_err(fail("rename"))?;
    read_back(fs, &c, &pattern(10, 777)).await?;
    match fs.len(&a).await {
        Err(StorageError::NotFound(_)) => {}
        other => return Err(format!("len of the renamed source: {other:?}")),
    }
    Ok("no-overwrite refused, plain rename moved the bytes".into())
}

/// `list`: names relative to the directory, lengths, directories; a missing dir is empty.
pub async fn check_list(fs: &HdfsFs, dir: &str) -> CheckResult {
    let base = format!("{dir}/list");
    for (name, n) in [("x.pack", 10usize), ("y.pack", 20)] {
        let mut w = fs
            .create(&format!("{base}/{name}"))
            .await
            .map_err(fail("create"))?;
        w.write(pattern(n as u64, n)).await.map_err(fail("write"))?;
        w.close().await.map_err(fail("close"))?;
    }
    let w = fs
        .create(&format!("{base}/sub/z.pack"))
        .await
        .map_err(fail("create in a new subdirectory"))?;
    w.close().await.map_err(fail("close"))?;
    let got = fs.list(&base).await.map_err(fail("list"))?;
    let summary: Vec<(String, u64, bool)> =
        got.into_iter().map(|e| (e.name, e.len, e.is_dir)).collect();
    let want = vec![
        ("sub".to_string(), 0, true),
        ("x.pack".to_string(), 10, false),
        ("y.pack".to_string(), 20, false),
    ];
    ensure(summary == want, || format!("list gave {summary:?}"))?;
    let missing = fs
        .list(&format!("{dir}/no-such-dir"))
        .await
        .map_err(fail("list of a missing directory"))?;
    ensure(missing.is_empty(), || {
        "a missing directory lists entries".into()
    })?;
    Ok("3 entries, missing directory empty".into())
}

/// `delete` removes a file; deleting it again (missing) is fine.
pub async fn check_delete(fs: &HdfsFs, dir: &str) -> CheckResult {
    let path = format!("{dir}/del");
    let w = fs.create(&path).await.map_err(fail("create"))?;
    w.close().await.map_err(fail("close"))?;
    fs.delete(&path).await.map_err(fail("delete"))?;
    match fs.len(&path).await {
        Err(StorageError::NotFound(_)) => {}
        other => return Err(format!("len after delete: {other:?}")),
    }
    fs.delete(&path)
        .await
        .map_err(fail("delete of a missing file"))?;
    match fs.open(&path).await {
        Err(StorageError::NotFound(_)) => Ok("deleted; missing = ok; open = NotFound".into()),
        Err(e) => Err(format!("open of a deleted file: {e}")),
        Ok(_) => Err("open of a deleted file succeeded".into()),
    }
}

/// Reads past the end are clamped, never a panic.
pub async fn check_read_clamped(fs: &HdfsFs, dir: &str) -> CheckResult {
    let path = format!("{dir}/clamp");
    let data = pattern(4, 5000);
    let mut w = fs.create(&path).await.map_err(fail("create"))?;
    w.write(data.clone()).await.map_err(fail("write"))?;
    w.close().await.map_err(fail("close"))?;
    let r = fs.open(&path).await.map_err(fail("open"))?;
    let tail = r
        .read_at(4000, 10_000)
        .await
        .map_err(fail("read past end"))?;
    ensure(tail[..] == data[4000..], || {
        format!("clamped read gave {} bytes", tail.len())
    })?;
    let none = r.read_at(9000, 10).await.map_err(fail("read after end"))?;
    ensure(none.is_empty(), || {
        "read after the end returned bytes".into()
    })?;
    let huge = r
        .read_at(1, u64::MAX)
        .await
        .map_err(fail("read of u64::MAX"))?;
    ensure(huge.len() == 4999, || "u64::MAX length not clamped".into())?;
    Ok("past-end reads clamped".into())
}

/// A writer that dies without close (a crashed MIFAS): `recover` ends its lease and the synced
/// bytes are readable.
pub async fn check_recover(fs: &HdfsFs, dir: &str) -> CheckResult {
    let path = format!("{dir}/crashed.pack");
    let data = pattern(5, 300_000);
    let mut w = fs.create(&path).await.map_err(fail("create"))?;
    w.write(data.clone()).await.map_err(fail("write"))?;
    w.sync().await.map_err(fail("hsync"))?;
    drop(w);
    // before recovery the synced bytes are still readable (from the abandoned writer's tail)
    read_back(fs, &path, &data).await?;
    let t = Instant::now();
    fs.recover(&path).await.map_err(fail("recover"))?;
    let took = t.elapsed();
    read_back(fs, &path, &data).await?;
    // a recovered file is closed: it can be renamed (sealed) like any other
    fs.rename(&path, &format!("{path}.sealed"))
        .await
        .map_err(fail("rename after recover"))?;
    Ok(format!("lease recovered in {}", ms(took)))
}

/// A write that loses one datanode of its pipeline half-way goes on (replication 2 on a
/// 2-datanode site continues with one). `kill` stops a datanode and returns once it is down.
pub async fn check_write_survives_datanode_loss<F: Future<Output = ()>>(
    fs: &HdfsFs,
    dir: &str,
    kill: F,
) -> CheckResult {
    let path = format!("{dir}/dn-loss.pack");
    let chunk = 1 << 20;
    let mut all = Vec::new();
    let mut w = fs.create(&path).await.map_err(fail("create"))?;
    for i in 0..4 {
        let b = pattern(100 + i, chunk);
        all.extend_from_slice(&b);
        w.write(b).await.map_err(fail("write before the kill"))?;
    }
    w.sync().await.map_err(fail("hsync before the kill"))?;
    kill.await;
    let t = Instant::now();
    for i in 4..8 {
        let b = pattern(100 + i, chunk);
        all.extend_from_slice(&b);
        w.write(b).await.map_err(fail("write after the kill"))?;
    }
    w.sync().await.map_err(fail("hsync after the kill"))?;
    let took = t.elapsed();
    w.close().await.map_err(fail("close after the kill"))?;
    read_back(fs, &path, &all).await?;
    Ok(format!(
        "4 MiB written + hsync after the kill in {}, read back",
        ms(took)
    ))
}

/// A site whose address refuses connections, and one whose listener never answers, both give
/// Unavailable within the site's timeout (plus scheduling slack).
pub async fn check_dead_addresses(timeout_secs: u64) -> CheckResult {
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail("bind"))?;
        l.local_addr().map_err(fail("addr"))?
        // dropped: nothing listens there any more
    };
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(fail("bind"))?;
    let silent_addr = silent.local_addr().map_err(fail("addr"))?;
    let mut notes = Vec::new();
    for (what, addr) in [("refused", refused), ("silent", silent_addr)] {
        let site = test_site(&format!("hdfs://{addr}"), &[], timeout_secs);
        let fs = HdfsFs::connect(&site).map_err(fail("connect"))?;
        let t = Instant::now();
        let r = fs.probe().await;
        let took = t.elapsed();
        match r {
            Err(StorageError::Unavailable { .. }) => {}
            other => return Err(format!("{what} address: probe gave {other:?}")),
        }
        ensure(
            took <= Duration::from_secs(timeout_secs) + Duration::from_secs(2),
            || format!("{what} address: Unavailable only after {}", ms(took)),
        )?;
        notes.push(format!("{what}: Unavailable in {}", ms(took)));
    }
    drop(silent);
    Ok(notes.join(", "))
}

/// A minimal site entry for checks and tests.
pub fn test_site(url: &str, namenodes: &[String], timeout_secs: u64) -> SiteConfig {
    SiteConfig {
        name: "check".into(),
        url: url.into(),
        namenodes: namenodes.to_vec(),
        replication: 0,
        block_size_mb: 0,
        root: "/mifas".into(),
        user: None,
        pack_max_mb: 1024,
        timeout_secs,
        failover_attempts: 2,
        hadoop: Default::default(),
    }
}

/// Latencies and throughputs of the site, as report lines.
pub async fn measure(fs: &HdfsFs, dir: &str) -> std::result::Result<Vec<String>, String> {
    const N: usize = 10;
    let half = pattern(6, 512 * 1024);
    let mut lines = Vec::new();

    // create + write 0.5 MB + hsync (a new pack with one group), median of N
    let mut t_create = Vec::new();
    for i in 0..N {
        let t = Instant::now();
        let mut w = fs
            .create(&format!("{dir}/m-create-{i}"))
            .await
            .map_err(fail("create"))?;
        w.write(half.clone()).await.map_err(fail("write"))?;
        w.sync().await.map_err(fail("hsync"))?;
        t_create.push(t.elapsed());
        w.close().await.map_err(fail("close"))?;
    }
    lines.push(format!(
        "create+write 0.5 MB+hsync: median {}",
        ms(median(&mut t_create))
    ));

    // hsync alone: append 0.5 MB to an open pack, time the hsync only
    let path = format!("{dir}/m-append");
    let mut w = fs.create(&path).await.map_err(fail("create"))?;
    let (mut t_write, mut t_sync) = (Vec::new(), Vec::new());
    for _ in 0..N {
        let t = Instant::now();
        w.write(half.clone()).await.map_err(fail("write"))?;
        t_write.push(t.elapsed());
        let t = Instant::now();
        w.sync().await.map_err(fail("hsync"))?;
        t_sync.push(t.elapsed());
    }
    lines.push(format!(
        "write 0.5 MB to an open pack: median {}; hsync alone: median {}",
        ms(median(&mut t_write)),
        ms(median(&mut t_sync))
    ));

    // positional reads of 0.5 MB: from the still-open pack (its open block comes from the
    // writer's memory), then from the closed pack (datanodes)
    let mut open_w = Some(w);
    for state in ["open", "closed"] {
        if state == "closed"
            && let Some(w) = open_w.take()
        {
            w.close().await.map_err(fail("close"))?;
        }
        let (mut t_open_read, mut t_read) = (Vec::new(), Vec::new());
        for i in 0..N {
            let t = Instant::now();
            let r = fs.open(&path).await.map_err(fail("open"))?;
            let off = (i as u64 * 512 * 1024 + 4096) % (r.len() - half.len() as u64 + 1);
            let b = r
                .read_at(off, half.len() as u64)
                .await
                .map_err(fail("read"))?;
            t_open_read.push(t.elapsed());
            ensure(b.len() == half.len(), || "short read".into())?;
            let t = Instant::now();
            r.read_at(off, half.len() as u64)
                .await
                .map_err(fail("read"))?;
            t_read.push(t.elapsed());
        }
        lines.push(format!(
            "positional read 0.5 MB, {state} pack: open+read median {}, read alone median {}",
            ms(median(&mut t_open_read)),
            ms(median(&mut t_read))
        ));
    }

    // 64 MB sequential write in 1 MiB writes, hsync + close at the end
    let big = format!("{dir}/m-64mb");
    let mb = 1 << 20;
    let chunks: Vec<Bytes> = (0..64).map(|i| pattern(200 + i, mb)).collect();
    let t = Instant::now();
    let mut w = fs.create(&big).await.map_err(fail("create"))?;
    for c in &chunks {
        w.write(c.clone()).await.map_err(fail("write"))?;
    }
    w.close().await.map_err(fail("close"))?;
    let took = t.elapsed();
    lines.push(format!(
        "64 MiB sequential write (1 MiB writes, hsync+close): {} = {:.1} MiB/s",
        ms(took),
        64.0 / took.as_secs_f64()
    ));

    // read it back in 4 MiB positional reads
    let t = Instant::now();
    let r = fs.open(&big).await.map_err(fail("open"))?;
    let mut off = 0;
    while off < r.len() {
        let b = r.read_at(off, 4 * mb as u64).await.map_err(fail("read"))?;
        let i = (off / mb as u64) as usize;
        ensure(b[..mb] == chunks[i][..], || {
            format!("64 MiB file differs at {off}")
        })?;
        off += b.len() as u64;
    }
    let took = t.elapsed();
    lines.push(format!(
        "64 MiB read (4 MiB positional reads): {} = {:.1} MiB/s",
        ms(took),
        64.0 / took.as_secs_f64()
    ));
    Ok(lines)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}
