//! The durability contract on real files and a real sled: replacement by generations, a failed
//! index flush, reconciliation of generations, limits checked while spooling.

use std::sync::atomic::Ordering;

use super::tests::{Spec, config, spec, write_part10};
use super::*;
use crate::config::DuplicatePolicy;
use crate::storage::ObjectKey;

fn replace_config(dir: &Path) -> Config {
    let mut c = config(dir);
    c.storage.duplicate_policy = DuplicatePolicy::Replace;
    c
}

fn object_bytes(archive: &Archive, key: &ObjectKey) -> Vec<u8> {
    std::fs::read(archive.inner.local.as_ref().unwrap().path(key)).unwrap()
}

fn live_key(archive: &Archive, uid: &str) -> ObjectKey {
    let record = archive.inner.index.instance(uid).unwrap().unwrap();
    ObjectKey::parse(&record.object_key).unwrap()
}

#[tokio::test]
async fn replace_writes_a_new_generation_then_removes_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let (archive, _) = Archive::open(&replace_config(&dir.path().join("d")))
        .await
        .unwrap();
    let first = write_part10(&src.path().join("a"), &spec("1.6.1", "1.6.2", "1.6.3"));
    let second = write_part10(
        &src.path().join("b"),
        &Spec {
            pixels: 2048,
            ..spec("1.6.1", "1.6.2", "1.6.3")
        },
    );
    archive.import_file(&first, false).await.unwrap();
    let g0 = live_key(&archive, "1.6.1");
    assert_eq!(g0, ObjectKey::for_instance("1.6.1"));
    assert_eq!(
        archive.import_file(&second, false).await.unwrap(),
        IngestOutcome::Replaced
    );
    let g1 = live_key(&archive, "1.6.1");
    assert_eq!(g1.generation(), 1);
    assert_eq!(
        archive
            .inner
            .local
            .as_ref()
            .unwrap()
            .list_keys()
            .await
            .unwrap(),
        vec![g1.clone()]
    );
    let record = archive.inner.index.instance("1.6.1").unwrap().unwrap();
    assert_eq!(record.size, object_bytes(&archive, &g1).len() as u64);
    assert_eq!(archive.totals().unwrap().bytes, record.size);
    // a third copy goes to generation 2
    archive.import_file(&first, false).await.unwrap();
    assert_eq!(live_key(&archive, "1.6.1").generation(), 2);
    assert_eq!(
        archive
            .inner
            .local
            .as_ref()
            .unwrap()
            .list_keys()
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_failed_index_flush_keeps_the_old_copy_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let (archive, _) = Archive::open(&replace_config(&dir.path().join("d")))
        .await
        .unwrap();
    let first = write_part10(&src.path().join("a"), &spec("1.6.11", "1.6.12", "1.6.13"));
    let moved = write_part10(&src.path().join("b"), &spec("1.6.11", "1.6.19", "1.6.13"));
    let other = write_part10(&src.path().join("c"), &spec("1.6.14", "1.6.15", "1.6.16"));
    archive.import_file(&first, false).await.unwrap();
    let g0 = live_key(&archive, "1.6.11");
    let old_bytes = object_bytes(&archive, &g0);
    let totals = archive.totals().unwrap();
    let index = &archive.inner.index;
    let old_record = index.instance("1.6.11").unwrap().unwrap();

    index.fail_flushes.store(true, Ordering::SeqCst);
    let err = archive.import_file(&moved, false).await.unwrap_err();
    assert!(matches!(err, IngestError::OutOfResources(_)), "{err}");
    let err = archive.import_file(&other, false).await.unwrap_err();
    assert!(matches!(err, IngestError::OutOfResources(_)), "{err}");
    index.fail_flushes.store(false, Ordering::SeqCst);

    // The replacement's writes were undone: old record, old series, old totals, old object.
    assert_eq!(index.instance("1.6.11").unwrap().unwrap(), old_record);
    assert!(index.series("1.6.19").unwrap().is_none());
    assert_eq!(index.series("1.6.12").unwrap().unwrap().num_instances, 1);
    let header = index.header_bytes(&old_record).unwrap();
    assert!(header.is_some(), "the old header was removed");
    // The new instance is not visible at all.
    assert!(!index.contains_instance("1.6.14").unwrap());
    assert!(index.study("1.6.16").unwrap().is_none());
    assert_eq!(archive.totals().unwrap(), totals);
    assert_eq!(object_bytes(&archive, &g0), old_bytes);
    assert_eq!(
        archive
            .inner
            .local
            .as_ref()
            .unwrap()
            .list_keys()
            .await
            .unwrap(),
        vec![g0.clone()]
    );

    // After a restart nothing of the refused objects comes back.
    archive.close().await.unwrap();
    drop(archive);
    let (archive, report) = Archive::open(&replace_config(&dir.path().join("d")))
        .await
        .unwrap();
    assert_eq!(report.objects_indexed, 0);
    assert_eq!(archive.totals().unwrap(), totals);
    assert_eq!(live_key(&archive, "1.6.11"), g0);
}

#[tokio::test]
async fn reconciliation_removes_unindexed_generations_and_keeps_the_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let first = write_part10(&src.path().join("a"), &spec("1.6.21", "1.6.22", "1.6.23"));
    let second = write_part10(
        &src.path().join("b"),
        &Spec {
            pixels: 4096,
            ..spec("1.6.21", "1.6.22", "1.6.23")
        },
    );
    let live = {
        let (archive, _) = Archive::open(&replace_config(&data)).await.unwrap();
        archive.import_file(&first, false).await.unwrap();
        archive.import_file(&second, false).await.unwrap();
        let live = live_key(&archive, "1.6.21");
        // What crashes can leave: the replaced generation whose removal was lost, and a newer
        // complete generation whose index switch never happened.
        let path = |k: &ObjectKey| archive.inner.local.as_ref().unwrap().path(k);
        std::fs::copy(&first, path(&ObjectKey::for_instance("1.6.21"))).unwrap();
        std::fs::copy(&first, path(&live.next_generation())).unwrap();
        archive.close().await.unwrap();
        live
    };
    let (archive, report) = Archive::open(&replace_config(&data)).await.unwrap();
    assert_eq!(
        (report.objects_indexed, report.stale_generations_removed),
        (0, 2)
    );
    assert_eq!(live_key(&archive, "1.6.21"), live);
    assert_eq!(
        archive
            .inner
            .local
            .as_ref()
            .unwrap()
            .list_keys()
            .await
            .unwrap(),
        vec![live.clone()]
    );
    let record = archive.inner.index.instance("1.6.21").unwrap().unwrap();
    assert_eq!(record.size, object_bytes(&archive, &live).len() as u64);
    assert_eq!(archive.totals().unwrap().instances, 1);
}

#[tokio::test]
async fn without_an_entry_the_newest_generation_is_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let old = write_part10(&src.path().join("a"), &spec("1.6.31", "1.6.32", "1.6.33"));
    let new = write_part10(&src.path().join("b"), &spec("1.6.31", "1.6.39", "1.6.33"));
    {
        let (archive, _) = Archive::open(&config(&data)).await.unwrap();
        let path = |k: &ObjectKey| archive.inner.local.as_ref().unwrap().path(k);
        std::fs::copy(&old, path(&ObjectKey::for_instance("1.6.31"))).unwrap();
        std::fs::copy(&new, path(&ObjectKey::for_generation("1.6.31", 3))).unwrap();
    }
    let (archive, report) = Archive::open(&config(&data)).await.unwrap();
    assert_eq!(
        (report.objects_indexed, report.stale_generations_removed),
        (1, 1)
    );
    assert_eq!(live_key(&archive, "1.6.31").generation(), 3);
    assert!(archive.inner.index.series("1.6.39").unwrap().is_some());
    assert!(archive.inner.index.series("1.6.32").unwrap().is_none());
}

#[tokio::test]
async fn limits_are_checked_while_the_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir.path().join("d"));
    c.storage.max_object_bytes = 1_000_000;
    let (archive, _) = Archive::open(&c).await.unwrap();
    let request = IngestRequest {
        sop_class_uid: dicom_dictionary_std::uids::CT_IMAGE_STORAGE.into(),
        sop_instance_uid: "1.6.41".into(),
        transfer_syntax: dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN.into(),
        source_aet: "T".into(),
        charset_notice: Default::default(),
    };
    let mut spool = archive.begin(request.clone()).await.unwrap();
    let chunk = vec![0u8; 300_000];
    for _ in 0..3 {
        spool.write(&chunk).await;
    }
    assert_eq!(std::fs::read_dir(archive.spool_dir()).unwrap().count(), 1);
    spool.write(&chunk).await;
    // Past the limit the spool file is gone at once, before the data set ends.
    assert_eq!(std::fs::read_dir(archive.spool_dir()).unwrap().count(), 0);
    for _ in 0..10 {
        spool.write(&chunk).await;
    }
    let err = archive.commit(spool).await.unwrap_err();
    assert!(
        matches!(err, IngestError::OutOfResources(ref m) if m.contains("max_object_bytes")),
        "{err}"
    );

    // The quota, likewise, while spooling; and what one spool reserves counts for another.
    let mut c = config(&dir.path().join("q"));
    c.storage.quota_bytes = 1_000_000;
    let (archive, _) = Archive::open(&c).await.unwrap();
    let mut a = archive.begin(request.clone()).await.unwrap();
    let mut b = archive
        .begin(IngestRequest {
            sop_instance_uid: "1.6.42".into(),
            ..request
        })
        .await
        .unwrap();
    for _ in 0..2 {
        a.write(&chunk).await;
    }
    for _ in 0..2 {
        b.write(&chunk).await;
    }
    assert_eq!(std::fs::read_dir(archive.spool_dir()).unwrap().count(), 1);
    drop(a);
    assert_eq!(std::fs::read_dir(archive.spool_dir()).unwrap().count(), 0);
    let err = archive.commit(b).await.unwrap_err();
    assert!(
        matches!(err, IngestError::OutOfResources(ref m) if m.contains("quota")),
        "{err}"
    );
    assert_eq!(
        archive.inner.spool_limits.reserved.load(Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn a_retrieve_selected_before_a_replace_reads_the_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let (archive, _) = Archive::open(&replace_config(&dir.path().join("d")))
        .await
        .unwrap();
    let first = write_part10(&src.path().join("a"), &spec("1.6.51", "1.6.52", "1.6.53"));
    let second = write_part10(
        &src.path().join("b"),
        &Spec {
            pixels: 3000,
            ..spec("1.6.51", "1.6.52", "1.6.53")
        },
    );
    archive.import_file(&first, false).await.unwrap();
    // selected while generation 0 was live
    let item = RetrieveItem::for_test(
        "1.6.51",
        dicom_dictionary_std::uids::CT_IMAGE_STORAGE,
        dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN,
    );
    archive.import_file(&second, false).await.unwrap();
    let mut stream = archive.open_dataset(&item).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next_chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    let stored = object_bytes(&archive, &live_key(&archive, "1.6.51"));
    assert!(stored.ends_with(&got) && got.len() > 3000, "{}", got.len());
}
