//! The image routes over a real archive (sled index, local store) with objects imported the way
//! `mifas import` does; the login check is the auth module's, so these call the handler body.

use std::path::{Path as FsPath, PathBuf};

use axum::body::Body;
use axum::http::Request;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_pixeldata::image;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::archive::Archive;
use crate::config::Config;

/// A 64x64 16-bit CT (or an SR without pixels) written as a Part-10 file.
fn write(dir: &FsPath, sop: &str, with_pixels: bool) -> PathBuf {
    let mut obj = InMemDicomObject::new_empty();
    let mut put =
        |tag, vr, value: &str| obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    let class = if with_pixels {
        uids::CT_IMAGE_STORAGE
    } else {
        uids::BASIC_TEXT_SR_STORAGE
    };
    put(tags::SOP_CLASS_UID, VR::UI, class);
    put(tags::SOP_INSTANCE_UID, VR::UI, sop);
    put(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.1");
    put(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.2");
    put(tags::PATIENT_ID, VR::LO, "P1");
    put(tags::PATIENT_NAME, VR::PN, "DOE^JOHN");
    put(
        tags::MODALITY,
        VR::CS,
        if with_pixels { "CT" } else { "SR" },
    );
    put(tags::STUDY_DATE, VR::DA, "20240102");
    if with_pixels {
        put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
        put(tags::RESCALE_INTERCEPT, VR::DS, "-1024");
        put(tags::RESCALE_SLOPE, VR::DS, "1");
        put(tags::WINDOW_CENTER, VR::DS, "40");
        put(tags::WINDOW_WIDTH, VR::DS, "400");
        let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
        for (tag, v) in [
            (tags::SAMPLES_PER_PIXEL, 1),
            (tags::ROWS, 64),
            (tags::COLUMNS, 64),
            (tags::BITS_ALLOCATED, 16),
            (tags::BITS_STORED, 12),
            (tags::HIGH_BIT, 11),
            (tags::PIXEL_REPRESENTATION, 0),
        ] {
            obj.put(us(tag, v));
        }
        let pixels: Vec<u16> = (0..64 * 64).map(|i| (i % 64) as u16 * 32).collect();
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(pixels.into()),
        ));
    }
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(class)
                .media_storage_sop_instance_uid(sop),
        )
        .expect("meta");
    let path = dir.join(sop);
    file.write_to_file(&path).expect("write");
    path
}

async fn state(dir: &FsPath) -> WebState {
    let mut config = Config::default();
    config.storage.data_dir = dir.join("data");
    let (archive, _) = Archive::open(&config).await.expect("open archive");
    for (sop, pixels) in [("1.2.3.1", true), ("1.2.3.2", false)] {
        archive
            .import_file(&write(dir, sop, pixels), false)
            .await
            .expect("import");
    }
    WebState::new().with_archive(archive, &config.http)
}

async fn get(
    state: &WebState,
    uid: &str,
    kind: Kind,
    query: ImageQuery,
) -> Result<Response, HttpError> {
    answer(state, uid, kind, &query, None).await
}

async fn body(response: Response) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn thumbnails_and_previews_of_a_stored_ct() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;

    let thumb = get(&state, "1.2.3.1", Kind::Thumbnail, ImageQuery::default())
        .await
        .expect("thumbnail");
    assert_eq!(thumb.status(), StatusCode::OK);
    assert_eq!(header(&thumb, "content-type"), Some("image/jpeg"));
    assert_eq!(header(&thumb, "x-frames"), Some("1"));
    assert_eq!(header(&thumb, "x-placeholder"), None);
    assert_eq!(
        header(&thumb, "cache-control"),
        Some("private, max-age=3600")
    );
    let etag = header(&thumb, "etag").expect("etag").to_string();
    let img = image::load_from_memory(&body(thumb).await).expect("JPEG");
    // 64x64 is below the 128 default: never enlarged.
    assert_eq!((img.width(), img.height()), (64, 64));

    // The same request with its ETag: 304 without a body.
    let again = answer(
        &state,
        "1.2.3.1",
        Kind::Thumbnail,
        &ImageQuery::default(),
        Some(&etag),
    )
    .await
    .expect("revalidate");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    let png = get(
        &state,
        "1.2.3.1",
        Kind::PreviewPng,
        ImageQuery {
            size: Some(32),
            preset: Some("bone".into()),
            ..ImageQuery::default()
        },
    )
    .await
    .expect("preview");
    assert_eq!(header(&png, "content-type"), Some("image/png"));
    let img = image::load_from_memory(&body(png).await).expect("PNG");
    assert_eq!((img.width(), img.height()), (32, 32));

    // An SR is stored but has no image: the placeholder, never an error.
    let sr = get(&state, "1.2.3.2", Kind::PreviewJpeg, ImageQuery::default())
        .await
        .expect("placeholder");
    assert_eq!(sr.status(), StatusCode::OK);
    assert_eq!(header(&sr, "x-placeholder"), Some("1"));
    assert_eq!(header(&sr, "x-frames"), Some("0"));
    image::load_from_memory(&body(sr).await).expect("placeholder JPEG");

    let metrics = state.renderer.metrics_text();
    assert!(
        metrics.contains("mifas_render_placeholders_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_uids_parameters_and_unknown_instances_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    let status = |r: Result<Response, HttpError>| match r {
        Ok(response) => response.status(),
        Err(e) => e.status(),
    };
    for uid in ["..", "1.2.3.1/../x", "abc", ""] {
        assert_eq!(
            status(get(&state, uid, Kind::Thumbnail, ImageQuery::default()).await),
            StatusCode::BAD_REQUEST,
            "{uid:?}"
        );
    }
    assert_eq!(
        status(get(&state, "9.9.9", Kind::Thumbnail, ImageQuery::default()).await),
        StatusCode::NOT_FOUND
    );
    let bad = [
        ImageQuery {
            size: Some(0),
            ..ImageQuery::default()
        },
        ImageQuery {
            size: Some(100_000),
            ..ImageQuery::default()
        },
        ImageQuery {
            quality: Some(0),
            ..ImageQuery::default()
        },
        ImageQuery {
            wc: Some(40.0),
            ..ImageQuery::default()
        },
        ImageQuery {
            wc: Some(40.0),
            ww: Some(0.0),
            ..ImageQuery::default()
        },
        ImageQuery {
            preset: Some("liver".into()),
            ..ImageQuery::default()
        },
        ImageQuery {
            wc: Some(1.0),
            ww: Some(2.0),
            preset: Some("lung".into()),
            ..ImageQuery::default()
        },
    ];
    for query in bad {
        let text = format!("{query:?}");
        assert_eq!(
            status(get(&state, "1.2.3.1", Kind::PreviewJpeg, query).await),
            StatusCode::BAD_REQUEST,
            "{text}"
        );
    }
}

/// Through the router: without a session the image routes answer 401, whatever the UID.
#[tokio::test]
async fn the_routes_need_a_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = crate::web::router(state(dir.path()).await);
    for uri in [
        "/instances/1.2.3.1/thumbnail.jpg",
        "/instances/1.2.3.1/preview.jpg?frame=0",
        "/instances/1.2.3.1/preview.png",
    ] {
        let response = router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{uri}");
    }
}
