//! Archive tests on real files in a temporary data directory (no fakes: real sled, real disk).

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;

use super::*;
use crate::config::{Config, DuplicatePolicy};

pub(super) fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.storage.data_dir = dir.to_owned();
    c
}

pub(super) struct Spec<'a> {
    pub(super) patient: &'a str,
    pub(super) study: &'a str,
    pub(super) series: &'a str,
    pub(super) sop: &'a str,
    pub(super) modality: &'a str,
    pub(super) pixels: usize,
}

pub(super) fn write_part10(path: &Path, spec: &Spec) -> PathBuf {
    let mut obj = InMemDicomObject::new_empty();
    let mut put =
        |tag, vr, value: &str| obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    put(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE);
    put(tags::SOP_INSTANCE_UID, VR::UI, spec.sop);
    put(tags::STUDY_INSTANCE_UID, VR::UI, spec.study);
    put(tags::SERIES_INSTANCE_UID, VR::UI, spec.series);
    put(tags::PATIENT_ID, VR::LO, spec.patient);
    put(tags::PATIENT_NAME, VR::PN, "DOE^JOHN");
    put(tags::MODALITY, VR::CS, spec.modality);
    put(tags::STUDY_DATE, VR::DA, "20240102");
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8(vec![7u8; spec.pixels].into()),
    ));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
                .media_storage_sop_instance_uid(spec.sop),
        )
        .unwrap();
    file.write_to_file(path).unwrap();
    path.to_owned()
}

pub(super) fn spec<'a>(sop: &'a str, series: &'a str, study: &'a str) -> Spec<'a> {
    Spec {
        patient: "P1",
        study,
        series,
        sop,
        modality: "CT",
        pixels: 1024,
    }
}

#[tokio::test]
async fn import_counts_every_level_and_stores_the_dataset_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let (archive, _) = Archive::open(&config(&dir.path().join("d"))).await.unwrap();
    let files = [
        write_part10(&src.path().join("a"), &spec("1.2.3.1", "1.2.2.1", "1.2.1")),
        write_part10(&src.path().join("b"), &spec("1.2.3.2", "1.2.2.1", "1.2.1")),
        write_part10(&src.path().join("c"), &spec("1.2.3.3", "1.2.2.2", "1.2.1")),
        write_part10(
            &src.path().join("d"),
            &Spec {
                patient: "P2",
                ..spec("1.2.3.4", "1.2.2.3", "1.2.9")
            },
        ),
    ];
    for f in &files {
        assert_eq!(
            archive.import_file(f, false).await.unwrap(),
            IngestOutcome::Stored
        );
    }
    let t = archive.totals().unwrap();
    assert_eq!((t.patients, t.studies, t.series, t.instances), (2, 2, 3, 4));
    let study = archive.inner.index.study("1.2.1").unwrap().unwrap();
    assert_eq!((study.num_series, study.num_instances), (2, 3));
    assert_eq!(study.modalities, vec![("CT".to_string(), 2)]);
    // data set bytes after our meta group equal the source's
    let stored = archive
        .inner
        .local
        .as_ref()
        .unwrap()
        .path(&crate::storage::ObjectKey::for_instance("1.2.3.1"));
    let tail = |p: &Path| {
        let mut f = std::fs::File::open(p).unwrap();
        let (_, off) = reconcile::read_part10_meta(&mut f).unwrap();
        std::fs::read(p).unwrap()[off as usize..].to_vec()
    };
    assert_eq!(tail(&stored), tail(&files[0]));
    let record = archive.inner.index.instance("1.2.3.1").unwrap().unwrap();
    use sha2::Digest;
    assert_eq!(
        record.sha256,
        <[u8; 32]>::from(sha2::Sha256::digest(std::fs::read(&stored).unwrap()))
    );
    let on_disk: u64 = ["1.2.3.1", "1.2.3.2", "1.2.3.3", "1.2.3.4"]
        .iter()
        .map(|u| {
            std::fs::metadata(
                archive
                    .inner
                    .local
                    .as_ref()
                    .unwrap()
                    .path(&crate::storage::ObjectKey::for_instance(u)),
            )
            .unwrap()
            .len()
        })
        .sum();
    assert_eq!(t.bytes, on_disk);
}

#[tokio::test]
async fn duplicates_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let f = write_part10(&src.path().join("a"), &spec("1.5.1", "1.5.2", "1.5.3"));
    let (archive, _) = Archive::open(&config(&dir.path().join("ignore")))
        .await
        .unwrap();
    assert_eq!(
        archive.import_file(&f, false).await.unwrap(),
        IngestOutcome::Stored
    );
    assert_eq!(
        archive.import_file(&f, false).await.unwrap(),
        IngestOutcome::DuplicateIgnored
    );
    assert_eq!(archive.totals().unwrap().instances, 1);

    let mut c = config(&dir.path().join("reject"));
    c.storage.duplicate_policy = DuplicatePolicy::Reject;
    let (archive, _) = Archive::open(&c).await.unwrap();
    archive.import_file(&f, false).await.unwrap();
    assert!(matches!(
        archive.import_file(&f, false).await,
        Err(IngestError::Duplicate(_))
    ));

    let mut c = config(&dir.path().join("replace"));
    c.storage.duplicate_policy = DuplicatePolicy::Replace;
    let (archive, _) = Archive::open(&c).await.unwrap();
    archive.import_file(&f, false).await.unwrap();
    // same instance moved to another series: counts follow
    let moved = write_part10(&src.path().join("b"), &spec("1.5.1", "1.5.9", "1.5.3"));
    assert_eq!(
        archive.import_file(&moved, false).await.unwrap(),
        IngestOutcome::Replaced
    );
    let t = archive.totals().unwrap();
    assert_eq!((t.studies, t.series, t.instances), (1, 1, 1));
    assert!(archive.inner.index.series("1.5.2").unwrap().is_none());
    assert_eq!(
        archive
            .inner
            .index
            .series("1.5.9")
            .unwrap()
            .unwrap()
            .num_instances,
        1
    );
}

#[tokio::test]
async fn truncated_and_hostile_objects_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let (archive, _) = Archive::open(&config(&dir.path().join("d"))).await.unwrap();
    let f = write_part10(
        &src.path().join("a"),
        &Spec {
            pixels: 100_000,
            ..spec("1.7.1", "1.7.2", "1.7.3")
        },
    );
    let bytes = std::fs::read(&f).unwrap();
    let cut = src.path().join("cut");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let err = archive.import_file(&cut, false).await.unwrap_err();
    assert!(
        matches!(err, IngestError::Unreadable(ref m) if m.contains("truncated")),
        "{err}"
    );

    let bad = write_part10(&src.path().join("bad"), &spec("1.7.4", "1.7.5", "../../x"));
    let err = archive.import_file(&bad, false).await.unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::InvalidUid {
                attribute: "StudyInstanceUID",
                ..
            }
        ),
        "{err}"
    );

    let long = format!("1.{}", "2".repeat(63));
    let bad = write_part10(&src.path().join("long"), &spec(&long, "1.7.5", "1.7.6"));
    assert!(matches!(
        archive.import_file(&bad, false).await,
        Err(IngestError::InvalidUid { .. })
    ));

    let not_dicom = src.path().join("text");
    std::fs::write(&not_dicom, b"hello").unwrap();
    assert!(matches!(
        archive.import_file(&not_dicom, false).await,
        Err(IngestError::Unreadable(_))
    ));

    assert_eq!(archive.totals().unwrap().instances, 0);
    assert_eq!(std::fs::read_dir(archive.spool_dir()).unwrap().count(), 0);
    let objects = archive
        .inner
        .local
        .as_ref()
        .unwrap()
        .list_keys()
        .await
        .unwrap();
    assert!(objects.is_empty(), "{objects:?}");
}

#[tokio::test]
async fn quota_refuses_with_out_of_resources() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let mut c = config(&dir.path().join("d"));
    c.storage.quota_bytes = 150_000;
    let (archive, _) = Archive::open(&c).await.unwrap();
    let a = write_part10(
        &src.path().join("a"),
        &Spec {
            pixels: 100_000,
            ..spec("1.8.1", "1.8.2", "1.8.3")
        },
    );
    let b = write_part10(
        &src.path().join("b"),
        &Spec {
            pixels: 100_000,
            ..spec("1.8.4", "1.8.2", "1.8.3")
        },
    );
    archive.import_file(&a, false).await.unwrap();
    assert!(matches!(
        archive.import_file(&b, false).await,
        Err(IngestError::OutOfResources(_))
    ));
    assert_eq!(archive.totals().unwrap().instances, 1);
}

#[tokio::test]
async fn reconciliation_indexes_orphans_and_reports_missing_objects() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let a = write_part10(&src.path().join("a"), &spec("1.9.1", "1.9.2", "1.9.3"));
    let b = write_part10(&src.path().join("b"), &spec("1.9.4", "1.9.2", "1.9.3"));
    {
        let (archive, _) = Archive::open(&config(&data)).await.unwrap();
        archive.import_file(&a, false).await.unwrap();
        archive.import_file(&b, false).await.unwrap();
        archive.close().await.unwrap();
    }
    // Simulate a crash between rename and index flush by dropping the index, and a lost file.
    std::fs::remove_dir_all(data.join("index")).unwrap();
    std::fs::write(data.join("spool").join("leftover.part"), b"partial").unwrap();
    let (archive, report) = Archive::open(&config(&data)).await.unwrap();
    assert_eq!(report.objects_indexed, 2);
    assert_eq!(report.spool_files_removed, 1);
    assert_eq!(archive.totals().unwrap().instances, 2);
    let key = crate::storage::ObjectKey::for_instance("1.9.4");
    std::fs::remove_file(archive.inner.local.as_ref().unwrap().path(&key)).unwrap();
    drop(archive);
    let (archive, _) = Archive::open(&config(&data)).await.unwrap();
    let missing = archive.verify_objects().await.unwrap();
    assert_eq!(
        (missing.count, missing.first),
        (1, vec!["1.9.4".to_string()])
    );
}

#[tokio::test]
async fn reconciliation_quarantines_unreadable_objects() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    {
        let (archive, _) = Archive::open(&config(&data)).await.unwrap();
        let key = crate::storage::ObjectKey::for_instance("1.4.4");
        // A named but empty object: not something a crash leaves any more (objects are fsynced
        // before their rename), but a damaged or hand-made file must not stop the start.
        std::fs::write(archive.inner.local.as_ref().unwrap().path(&key), b"").unwrap();
    }
    let (archive, report) = Archive::open(&config(&data)).await.unwrap();
    assert_eq!(report.unreadable_objects.len(), 1);
    assert!(
        archive
            .inner
            .local
            .as_ref()
            .unwrap()
            .list_keys()
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        std::fs::read_dir(data.join("quarantine")).unwrap().count(),
        1
    );
    assert_eq!(archive.totals().unwrap().instances, 0);
}
