use super::*;

fn site() -> (tempfile::TempDir, LocalFs) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = LocalFs::new("local-test", dir.path());
    (dir, fs)
}

fn data(seed: u8, n: usize) -> Bytes {
    (0..n)
        .map(|i| seed.wrapping_mul(31).wrapping_add((i % 251) as u8))
        .collect()
}

#[tokio::test]
async fn write_sync_read_while_open_then_close() {
    let (dir, fs) = site();
    let mut w = fs.create("/mifas/packs/a/p1").await.expect("create");
    assert!(
        dir.path().join("mifas/packs/a/p1").is_file(),
        "parents made"
    );
    w.write(data(1, 1000)).await.expect("write");
    w.write(data(2, 500)).await.expect("write");
    assert_eq!(w.written(), 1500);
    w.sync().await.expect("sync");
    assert_eq!(fs.len("/mifas/packs/a/p1").await.expect("len"), 1500);

    let r = fs
        .open("/mifas/packs/a/p1")
        .await
        .expect("open while writing");
    assert_eq!(r.len(), 1500);
    let got = r.read_at(990, 20).await.expect("read");
    let mut want = data(1, 1000)[990..].to_vec();
    want.extend_from_slice(&data(2, 500)[..10]);
    assert_eq!(&got[..], &want[..]);

    w.write(data(3, 100)).await.expect("write");
    w.close().await.expect("close");
    // the early reader keeps the length it opened with; a new one sees everything
    assert_eq!(r.read_at(1400, 1000).await.expect("read").len(), 100);
    let r2 = fs.open("/mifas/packs/a/p1").await.expect("open");
    assert_eq!(r2.len(), 1600);
    assert_eq!(
        &r2.read_at(1500, 100).await.expect("read")[..],
        &data(3, 100)[..]
    );
}

#[tokio::test]
async fn reads_past_the_end_are_clamped() {
    let (_dir, fs) = site();
    let mut w = fs.create("/f").await.expect("create");
    w.write(data(4, 300)).await.expect("write");
    w.close().await.expect("close");
    let r = fs.open("/f").await.expect("open");
    assert_eq!(r.read_at(250, 1000).await.expect("read").len(), 50);
    assert!(r.read_at(300, 10).await.expect("read").is_empty());
    assert!(
        r.read_at(u64::MAX, u64::MAX)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(r.read_at(1, u64::MAX).await.expect("read").len(), 299);
}

#[tokio::test]
async fn create_refuses_an_existing_file() {
    let (_dir, fs) = site();
    let mut w = fs.create("/x/f").await.expect("create");
    w.write(data(5, 10)).await.expect("write");
    w.close().await.expect("close");
    match fs.create("/x/f").await {
        Err(StorageError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("second create succeeded"),
    }
    assert_eq!(fs.len("/x/f").await.expect("len"), 10, "left alone");
}

#[tokio::test]
async fn rename_never_replaces() {
    let (_dir, fs) = site();
    for (p, seed) in [("/d/a", 6), ("/d/b", 7)] {
        let mut w = fs.create(p).await.expect("create");
        w.write(data(seed, 64)).await.expect("write");
        w.close().await.expect("close");
    }
    match fs.rename("/d/a", "/d/b").await {
        Err(StorageError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
        }
        other => panic!("rename onto an existing file: {other:?}"),
    }
    let b = fs.open("/d/b").await.expect("open");
    assert_eq!(&b.read_at(0, 64).await.expect("read")[..], &data(7, 64)[..]);
    fs.rename("/d/a", "/d/c").await.expect("rename");
    assert!(matches!(
        fs.len("/d/a").await,
        Err(StorageError::NotFound(_))
    ));
    let c = fs.open("/d/c").await.expect("open");
    assert_eq!(&c.read_at(0, 64).await.expect("read")[..], &data(6, 64)[..]);
}

#[tokio::test]
async fn list_and_delete() {
    let (_dir, fs) = site();
    for (p, n) in [("/l/y", 20), ("/l/x", 10), ("/l/sub/z", 1)] {
        let mut w = fs.create(p).await.expect("create");
        w.write(data(8, n)).await.expect("write");
        w.close().await.expect("close");
    }
    let got: Vec<(String, u64, bool)> = fs
        .list("/l")
        .await
        .expect("list")
        .into_iter()
        .map(|e| (e.name, e.len, e.is_dir))
        .filter(|(_, _, d)| !d)
        .collect();
    assert_eq!(got, vec![("x".into(), 10, false), ("y".into(), 20, false)]);
    let dirs: Vec<String> = fs
        .list("/l")
        .await
        .expect("list")
        .into_iter()
        .filter(|e| e.is_dir)
        .map(|e| e.name)
        .collect();
    assert_eq!(dirs, vec!["sub".to_string()]);
    assert!(fs.list("/nope").await.expect("list missing").is_empty());

    fs.delete("/l/x").await.expect("delete");
    assert!(matches!(
        fs.open("/l/x").await,
        Err(StorageError::NotFound(_))
    ));
    fs.delete("/l/x")
        .await
        .expect("deleting a missing file is fine");
    fs.recover("/l/y").await.expect("recover is a no-op");
}

#[tokio::test]
async fn paths_cannot_leave_the_root() {
    let (dir, fs) = site();
    for bad in ["/../escape", "/a/../../escape", "../x"] {
        match fs.create(bad).await {
            Err(StorageError::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput, "{bad}")
            }
            Err(e) => panic!("{bad}: unexpected error {e}"),
            Ok(_) => panic!("{bad}: created"),
        }
    }
    let parent = dir.path().parent().expect("parent");
    assert!(!parent.join("escape").exists());
}

#[tokio::test]
async fn a_missing_root_is_an_unavailable_site() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = LocalFs::new("gone", dir.path().join("not-mounted"));
    assert!(matches!(
        fs.probe().await,
        Err(StorageError::Unavailable { .. })
    ));
    assert!(
        matches!(
            fs.create("/mifas/p").await,
            Err(StorageError::Unavailable { .. })
        ),
        "the root is never created"
    );
    assert!(!dir.path().join("not-mounted").exists());
    assert!(matches!(
        fs.list("/mifas").await,
        Err(StorageError::Unavailable { .. })
    ));
    let ok = LocalFs::new("here", dir.path());
    ok.probe().await.expect("probe");
}

/// A 1 MiB tmpfs (needs root, like tests/integration/test_limits.py): filling it is Full.
#[tokio::test]
async fn disk_full_is_full() {
    struct Mount(PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "cannot mount the 1 MiB tmpfs this test needs (run as root)"
    );
    let _mount = Mount(dir.path().to_path_buf());
    let fs = LocalFs::new("tiny", dir.path());
    let mut w = fs.create("/p").await.expect("create");
    let mut result = Ok(());
    for _ in 0..4 {
        result = w.write(Bytes::from(vec![7u8; 512 * 1024])).await;
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = w.sync().await;
    }
    assert!(
        matches!(result, Err(StorageError::Full { .. })),
        "2 MiB into 1 MiB: {result:?}"
    );
}
