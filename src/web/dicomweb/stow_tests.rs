//! Pure parts of STOW-RS: the meta group reader, the response module and its status.

use super::response::{response_body, warning_text};
use super::*;
use crate::archive::IngestError;
use axum::http::StatusCode;
use serde_json::json;

fn stored(n: u32, study: &str) -> PartOutcome {
    PartOutcome::Stored {
        sop_class: "1.2.840.10008.5.1.4.1.1.2".into(),
        sop_instance: format!("1.2.3.{n}"),
        study: Some(study.into()),
        series: Some("1.2.4".into()),
    }
}

fn failed(reason: u16) -> PartOutcome {
    PartOutcome::Failed {
        part: 2,
        sop_class: None,
        sop_instance: None,
        reason,
        message: "x".into(),
    }
}

#[test]
fn statuses_follow_ps3_18_10_5_3() {
    let base = "http://h/dicom-web";
    let (status, body) = response_body(&[stored(1, "1.9"), stored(2, "1.9")], base, None);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["00081190"]["Value"][0],
        "http://h/dicom-web/studies/1.9"
    );
    let refs = &body["00081199"]["Value"];
    assert_eq!(refs.as_array().map(Vec::len), Some(2));
    assert_eq!(refs[1]["00081155"]["Value"][0], "1.2.3.2");
    assert_eq!(refs[1]["00081150"]["vr"], "UI");
    assert_eq!(
        refs[1]["00081190"]["Value"][0],
        "http://h/dicom-web/studies/1.9/series/1.2.4/instances/1.2.3.2"
    );
    assert!(body.get("00081198").is_none());

    let (status, body) = response_body(&[stored(1, "1.9"), failed(0xC000)], base, None);
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["00081198"]["Value"][0]["00081197"]["Value"][0], 0xC000);
    assert_eq!(body["00081198"]["Value"][0]["00081197"]["vr"], "US");

    let (status, body) = response_body(&[failed(0xA900)], base, Some("1.9"));
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.get("00081199").is_none());
    // Type 2: present, empty, when nothing was stored.
    assert_eq!(body["00081190"], json!({"vr": "UR"}));

    // Instances of two studies: no single study URL.
    let (_, body) = response_body(&[stored(1, "1.9"), stored(2, "1.8")], base, None);
    assert_eq!(body["00081190"], json!({"vr": "UR"}));
}

#[test]
fn ingest_errors_map_to_failure_reasons() {
    assert_eq!(
        failure_reason(&IngestError::OutOfResources("q".into())),
        0xA700
    );
    assert_eq!(
        failure_reason(&IngestError::DatasetMismatch("m".into())),
        0xA900
    );
    assert_eq!(failure_reason(&IngestError::Unreadable("u".into())), 0xC000);
    assert_eq!(
        failure_reason(&IngestError::MissingAttribute("StudyInstanceUID")),
        0xC002
    );
    assert_eq!(
        failure_reason(&IngestError::Duplicate("1.2".into())),
        0x0111
    );
    assert_eq!(failure_reason(&IngestError::ShuttingDown), 0x0110);
    let full = IngestError::Spool(std::io::Error::from(std::io::ErrorKind::StorageFull));
    assert_eq!(failure_reason(&full), 0xA700);
}

fn part10(sop_class: &str) -> Vec<u8> {
    let meta = dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid("1.2.3.4")
        .transfer_syntax("1.2.840.10008.1.2.1")
        .implementation_class_uid("1.2.3")
        .source_application_entity_title("CT1")
        .build()
        .expect("meta");
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out).expect("write meta");
    out.extend_from_slice(b"DATASET");
    out
}

#[test]
fn meta_group_needs_its_bytes_and_yields_the_announcement() {
    let file = part10("1.2.840.10008.5.1.4.1.1.2");
    let end = file.len() - 7;
    for cut in [0, 10, 131, 132, 140, end - 1] {
        assert!(
            matches!(parse_meta(&file[..cut]), Meta::NeedMore),
            "cut {cut}"
        );
    }
    match parse_meta(&file) {
        Meta::Done(request, offset) => {
            assert_eq!(offset, end);
            assert_eq!(request.sop_instance_uid, "1.2.3.4");
            assert_eq!(request.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
            assert_eq!(request.transfer_syntax, "1.2.840.10008.1.2.1");
            assert_eq!(request.source_aet, "CT1");
        }
        _ => panic!("meta group not read"),
    }
    // No preamble: starts at DICM.
    assert!(matches!(parse_meta(&file[128..]), Meta::Done(_, 12..)));
    assert!(matches!(parse_meta(&[0u8; 200]), Meta::Invalid(_)));
    let mut bad = file.clone();
    bad[132] = 0x08;
    assert!(matches!(parse_meta(&bad), Meta::Invalid(_)));
}

#[test]
fn warnings_are_visible_ascii() {
    assert_eq!(
        warning_text(3, 0xC000, "name \"郭\"\n"),
        "299 MIFAS \"part 3: Failure Reason 0xC000: name '?'?\""
    );
}
