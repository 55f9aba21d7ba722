//! Handler tests: parameter parsing, the session requirement, and the pages over a real archive
//! in a temporary directory (real sled, real files; names in several character sets, and one
//! that tries to inject a script).

use std::collections::HashMap;
use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::params::StudySearch;
use super::preview::ViewParams;
use super::*;
use crate::archive::Archive;
use crate::config::{Config, HttpConfig};
use crate::query::Condition;

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn bad_request(r: Result<impl std::fmt::Debug, HttpError>) -> String {
    match r {
        Err(HttpError::BadRequest(m)) => m,
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[test]
fn search_parameters() {
    let s = StudySearch::parse(&params(&[
        ("patient_name", " 郭* "),
        ("date_from", "2024-01-01"),
        ("date_to", "2024-01-31"),
        ("modality", "CT"),
        ("page", "3"),
        ("unknown", "ignored"),
    ]))
    .unwrap();
    assert_eq!((s.patient_name.as_str(), s.page), ("郭*", 3));
    let q = s.query().unwrap();
    assert_eq!(
        q.condition(tags::PATIENT_NAME),
        Some(&Condition::Wildcard("郭*".into()))
    );
    assert_eq!(
        q.condition(tags::STUDY_DATE),
        Some(&Condition::Range {
            low: Some("20240101".into()),
            high: Some("20240131".into())
        })
    );
    assert_eq!(
        q.condition(tags::MODALITIES_IN_STUDY),
        Some(&Condition::Single("CT".into()))
    );
    assert!(q.condition(tags::PATIENT_ID).is_none(), "empty is absent");
    assert_eq!(
        s.href(4),
        "/studies?patient_name=%E9%83%AD%2A&date_from=2024-01-01&date_to=2024-01-31&modality=CT&page=4"
    );
    // one open end
    let s = StudySearch::parse(&params(&[("date_to", "2024-02-29")])).unwrap();
    assert_eq!(
        s.query().unwrap().condition(tags::STUDY_DATE),
        Some(&Condition::Range {
            low: None,
            high: Some("20240229".into())
        })
    );
    let defaults = StudySearch::parse(&HashMap::new()).unwrap();
    assert_eq!(
        (defaults.page, defaults.per_page),
        (1, params::DEFAULT_PER_PAGE)
    );
    assert!(!defaults.is_filtered());
    assert_eq!(defaults.href(1), "/studies");
}

#[test]
fn bad_search_parameters_say_what_is_wrong() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("date_from", "2024-13-01")],
            "date_from must be a date as YYYY-MM-DD",
        ),
        (&[("date_from", "20240101")], "date_from must be a date"),
        (&[("date_to", "2023-02-29")], "date_to must be a date"),
        (
            &[("date_from", "2024-02-01"), ("date_to", "2024-01-01")],
            "is after date_to",
        ),
        (&[("page", "0")], "page must be a whole number"),
        (&[("page", "x")], "page must be a whole number"),
        (&[("per_page", "1000")], "per_page must be a whole number"),
        (
            &[("modality", "ct")],
            "modality must be a DICOM modality code",
        ),
        (
            &[("modality", "<b>")],
            "modality must be a DICOM modality code",
        ),
        (&[("patient_id", "A\\B")], "must not contain a backslash"),
        (&[("patient_name", "a\u{1}")], "control characters"),
        (&[("accession", "12345678901234567")], "longer than 16"),
    ];
    for (pairs, expected) in cases {
        let message = bad_request(StudySearch::parse(&params(pairs)));
        assert!(message.contains(expected), "{pairs:?}: {message}");
    }
}

#[test]
fn view_parameters() {
    let p = ViewParams::parse(&params(&[("frame", "2"), ("preset", "lung")])).unwrap();
    assert_eq!(p.query(), "frame=2&size=768&preset=lung");
    let p = ViewParams::parse(&params(&[("wc", "40"), ("ww", "400")])).unwrap();
    assert_eq!(p.query(), "frame=0&size=768&wc=40&ww=400");
    for (pairs, expected) in [
        (
            &[("preset", "liver")][..],
            "preset must be brain, lung, bone or abdomen",
        ),
        (&[("frame", "-1")][..], "frame must be a frame number"),
        (&[("wc", "40")][..], "go together"),
        (&[("wc", "40"), ("ww", "0.5")][..], "must be at least 1"),
        (&[("wc", "NaN"), ("ww", "10")][..], "wc must be a number"),
    ] {
        let message = bad_request(ViewParams::parse(&params(pairs)));
        assert!(message.contains(expected), "{pairs:?}: {message}");
    }
}

#[test]
fn url_segments() {
    assert!(uid_segment("1.2.840.113619.2.55").is_ok());
    for bad in ["..", "1.2.x", "../etc/passwd", "", "1..2", &"1".repeat(65)] {
        assert!(
            matches!(uid_segment(bad), Err(HttpError::BadRequest(_))),
            "{bad:?}"
        );
    }
    assert!(patient::patient_id_segment("PAT-001 ü").is_ok());
    for bad in ["", "A*", "A?", "A\\B", "a\nb"] {
        assert!(
            matches!(
                patient::patient_id_segment(bad),
                Err(HttpError::BadRequest(_))
            ),
            "{bad:?}"
        );
    }
}

async fn call(router: axum::Router, uri: &str) -> (StatusCode, Option<String>, String) {
    let response = router
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn every_page_needs_a_session() {
    let router = crate::web::router(WebState::new());
    for uri in [
        "/studies",
        "/studies?patient_name=x",
        "/studies/1.2.3",
        "/patients/P1",
        "/instances/1.2.3/status",
        "/instances/1.2.3/view",
        // a bad segment is not even looked at without a session
        "/studies/..%2Fetc",
    ] {
        let (status, _, _) = call(router.clone(), uri).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let (status, location, _) = call(router.clone(), "/").await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location.as_deref(), Some("/studies"));
    let (status, _, css) = call(router.clone(), "/static/portal.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains("img.thumb"));
    let (status, _, js) = call(router, "/static/preview.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("frame-slider"));
}

struct Study<'a> {
    uid: &'a str,
    patient_id: &'a str,
    name: &'a str,
    charset: &'a str,
    date: &'a str,
    modality: &'a str,
    images: usize,
}

fn write(dir: &Path, s: &Study, n: usize) -> std::path::PathBuf {
    let sop = format!("{}.1.{n}", s.uid);
    let mut obj = InMemDicomObject::new_empty();
    let mut put =
        |tag, vr, value: &str| obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    put(tags::SPECIFIC_CHARACTER_SET, VR::CS, s.charset);
    put(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE);
    put(tags::SOP_INSTANCE_UID, VR::UI, &sop);
    put(tags::STUDY_INSTANCE_UID, VR::UI, s.uid);
    put(tags::SERIES_INSTANCE_UID, VR::UI, &format!("{}.1", s.uid));
    put(tags::PATIENT_ID, VR::LO, s.patient_id);
    put(tags::PATIENT_NAME, VR::PN, s.name);
    put(tags::MODALITY, VR::CS, s.modality);
    put(tags::STUDY_DATE, VR::DA, s.date);
    put(tags::STUDY_DESCRIPTION, VR::LO, "HEAD <b>bold</b>");
    put(tags::INSTANCE_NUMBER, VR::IS, &(n + 1).to_string());
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8(vec![7u8; 64].into()),
    ));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
                .media_storage_sop_instance_uid(&sop),
        )
        .expect("meta");
    let path = dir.join(&sop);
    file.write_to_file(&path).expect("write");
    path
}

const STUDIES: &[Study<'static>] = &[
    Study {
        uid: "1.2.826.0.1.1",
        patient_id: "P-KUO",
        name: "Kuo^Cheng-Ta=郭^政達",
        charset: "ISO_IR 192",
        date: "20240115",
        modality: "CT",
        images: 3,
    },
    Study {
        uid: "1.2.826.0.1.2",
        patient_id: "P-KUO",
        name: "Kuo^Cheng-Ta=郭^政達",
        charset: "ISO_IR 192",
        date: "20230301",
        modality: "MR",
        images: 1,
    },
    Study {
        uid: "1.2.826.0.1.3",
        patient_id: "P-MUE",
        name: "Müller^Jürgen",
        charset: "ISO_IR 100",
        date: "20240201",
        modality: "CT",
        images: 1,
    },
    Study {
        uid: "1.2.826.0.1.4",
        patient_id: "P-XSS",
        name: "<script>alert(1)</script>^Eve",
        charset: "ISO_IR 192",
        date: "20220505",
        modality: "US",
        images: 1,
    },
];

async fn archive_with_studies(dir: &Path) -> Archive {
    let mut config = Config::default();
    config.storage.data_dir = dir.join("data");
    let (archive, _) = Archive::open(&config).await.expect("open archive");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("src dir");
    for s in STUDIES {
        for n in 0..s.images {
            let path = write(&src, s, n);
            archive.import_file(&path, false).await.expect("import");
        }
    }
    archive
}

fn user() -> CurrentUser {
    CurrentUser {
        name: "alice".into(),
        role: Role::Viewer,
        csrf: "token-1".into(),
    }
}

async fn studies_html(state: &WebState, pairs: &[(&str, &str)]) -> String {
    let search = StudySearch::parse(&params(pairs)).expect("search");
    studies::page(state, &user(), search).await.expect("page").0
}

/// The study UIDs of a list page, in order.
fn listed(html: &str) -> Vec<String> {
    html.split("<tr class=\"study\" data-uid=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn pages_over_a_real_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = archive_with_studies(dir.path()).await;
    let state = WebState::new().with_archive(archive.clone(), &HttpConfig::default());

    // Everything, newest first, with the catalog named from dictionaries/modalities.tsv.
    let html = studies_html(&state, &[]).await;
    assert_eq!(
        listed(&html),
        [
            "1.2.826.0.1.3",
            "1.2.826.0.1.1",
            "1.2.826.0.1.2",
            "1.2.826.0.1.4"
        ]
    );
    assert!(
        html.contains(">Computed Tomography</a> <span class=\"count\">2</span>"),
        "{html}"
    );
    assert!(html.contains(">Ultrasound</a> <span class=\"count\">1</span>"));
    assert!(html.contains("of <span id=\"total\">4</span>"));
    // Escaped, never markup; names in their character sets.
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62; Eve"),
        "{html}"
    );
    assert!(html.contains("HEAD &#60;b&#62;bold&#60;/b&#62;"));
    assert!(html.contains("Kuo Cheng-Ta = 郭 政達"));
    assert!(html.contains("Müller Jürgen"));

    // 郭* finds the ideographic group; a date range; a modality; a Chart No.
    let html = studies_html(&state, &[("patient_name", "郭*")]).await;
    assert_eq!(listed(&html), ["1.2.826.0.1.1", "1.2.826.0.1.2"]);
    let html = studies_html(&state, &[("patient_name", "müll*")]).await;
    assert_eq!(listed(&html), ["1.2.826.0.1.3"]);
    let html = studies_html(
        &state,
        &[("date_from", "2024-01-01"), ("date_to", "2024-01-31")],
    )
    .await;
    assert_eq!(listed(&html), ["1.2.826.0.1.1"]);
    assert!(html.contains("of <span id=\"total\">1</span>"));
    let html = studies_html(&state, &[("modality", "CT")]).await;
    assert_eq!(listed(&html), ["1.2.826.0.1.3", "1.2.826.0.1.1"]);
    let html = studies_html(&state, &[("patient_id", "P-KUO"), ("modality", "MR")]).await;
    assert_eq!(listed(&html), ["1.2.826.0.1.2"]);
    let html = studies_html(&state, &[("patient_name", "nobody*")]).await;
    assert!(listed(&html).is_empty());
    assert!(html.contains("No studies match."));

    // Pagination: by the date index (no filter) and by a key (sorted matches).
    let html = studies_html(&state, &[("per_page", "3")]).await;
    assert_eq!(listed(&html).len(), 3);
    assert!(
        html.contains("href=\"/studies?per_page=3&#38;page=2\""),
        "{html}"
    );
    let html = studies_html(&state, &[("per_page", "3"), ("page", "2")]).await;
    assert_eq!(listed(&html), ["1.2.826.0.1.4"]);
    assert!(html.contains("Page 2 of 2"));
    assert!(!html.contains("id=\"next\""));
    let html = studies_html(
        &state,
        &[("patient_id", "P-KUO"), ("per_page", "1"), ("page", "2")],
    )
    .await;
    assert_eq!(listed(&html), ["1.2.826.0.1.2"]);
    let html = studies_html(&state, &[("modality", "CT"), ("per_page", "1")]).await;
    assert_eq!(listed(&html), ["1.2.826.0.1.3"]);
    assert!(html.contains("id=\"next\""));

    // The study page: a thumbnail and the four functions per instance, the zip link.
    let html = study::page(&state, &user(), "1.2.826.0.1.1")
        .await
        .expect("study")
        .0;
    for n in 0..3 {
        let sop = format!("1.2.826.0.1.1.1.{n}");
        for href in [
            format!("/instances/{sop}/thumbnail.jpg"),
            format!("/instances/{sop}/status"),
            format!("/instances/{sop}/view"),
            format!("/instances/{sop}/file"),
        ] {
            assert!(html.contains(&href), "{href} missing");
        }
    }
    assert!(html.contains("/studies/1.2.826.0.1.1/download.zip"));
    assert!(html.contains("href=\"/patients/P-KUO\""));
    assert!(matches!(
        study::page(&state, &user(), "1.2.9.9").await,
        Err(HttpError::NotFound(_))
    ));

    // The patient record lists every study of the patient.
    let html = patient::page(&state, &user(), "P-KUO")
        .await
        .expect("patient")
        .0;
    assert_eq!(listed(&html), ["1.2.826.0.1.1", "1.2.826.0.1.2"]);
    assert!(html.contains("Kuo Cheng-Ta = 郭 政達"));
    let html = patient::page(&state, &user(), "P-XSS")
        .await
        .expect("patient")
        .0;
    assert!(!html.contains("<script>alert"));
    assert!(matches!(
        patient::page(&state, &user(), "P-NONE").await,
        Err(HttpError::NotFound(_))
    ));

    // File status: the local site holds it, with the stored object's SHA-256.
    let sop = "1.2.826.0.1.3.1.0";
    let status = archive
        .file_status(sop)
        .await
        .expect("status")
        .expect("some");
    let html = file_status::page(&state, &user(), sop)
        .await
        .expect("status page")
        .0;
    assert!(html.contains(&hex::encode(status.sha256)));
    assert!(html.contains("data-state=\"held\""), "{html}");
    assert!(matches!(
        file_status::page(&state, &user(), "1.2.9.9").await,
        Err(HttpError::NotFound(_))
    ));

    // Preview: the image URL follows the preset; a frame that does not exist is a 400.
    let view = |pairs: &[(&str, &str)]| ViewParams::parse(&params(pairs)).expect("params");
    let html = preview::page(&state, &user(), sop, view(&[("preset", "bone")]))
        .await
        .expect("preview")
        .0;
    assert!(
        html.contains(&format!(
            "src=\"/instances/{sop}/preview.jpg?frame=0&#38;size=768&#38;preset=bone\""
        )),
        "{html}"
    );
    assert!(matches!(
        preview::page(&state, &user(), sop, view(&[("frame", "1")])).await,
        Err(HttpError::BadRequest(_))
    ));
    archive.close().await.expect("close");
}

/// Through the whole router with a real session cookie: statuses and messages as a browser
/// or a script sees them.
#[tokio::test]
async fn router_with_a_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = archive_with_studies(dir.path()).await;
    let state = WebState::new().with_archive(archive.clone(), &HttpConfig::default());
    let session = state.auth.sessions.create(
        "alice",
        Role::Viewer,
        std::time::Instant::now(),
        std::time::Duration::from_secs(600),
    );
    let router = crate::web::router(state);
    let get = |uri: &str| {
        let request = Request::get(uri)
            .header(
                header::COOKIE,
                format!("{}={session}", crate::web::auth::sessions::COOKIE),
            )
            .body(Body::empty())
            .expect("request");
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.expect("infallible");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = get("/studies?patient_name=%E9%83%AD*").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(listed(&body), ["1.2.826.0.1.1", "1.2.826.0.1.2"]);
    assert!(body.contains("value=\"郭*\""), "the form keeps the search");
    assert!(body.contains("id=\"current-user\">alice<"));
    let (status, body) = get("/studies?patient_name=%3Cscript%3E*").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed(&body), ["1.2.826.0.1.4"]);
    assert!(!body.contains("<script>"), "{body}");
    for (uri, code, message) in [
        (
            "/studies?date_from=2024-02-30",
            400,
            "date_from must be a date as YYYY-MM-DD",
        ),
        ("/studies?page=-1", 400, "page must be a whole number"),
        ("/studies/1.2.x", 400, "is not a DICOM UID"),
        ("/studies/..%2F..%2Fetc", 400, "is not a DICOM UID"),
        ("/instances/abc/status", 400, "is not a DICOM UID"),
        ("/instances/1.2.3/view?preset=liver", 400, "preset must be"),
        ("/patients/A*", 400, "is not a Patient ID"),
        ("/studies/1.2.9.9", 404, "no study 1.2.9.9"),
        ("/instances/1.2.9.9/status", 404, "no instance"),
        ("/instances/1.2.9.9/view", 404, "no instance"),
        ("/patients/NOBODY", 404, "no patient"),
    ] {
        let (status, body) = get(uri).await;
        assert_eq!(status.as_u16(), code, "{uri}: {body}");
        assert!(body.contains(message), "{uri}: {body}");
    }
    let (status, body) = get("/patients/P-M%C3%9CE").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = get("/patients/P-MUE").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Müller Jürgen"));
    archive.close().await.expect("close");
}
