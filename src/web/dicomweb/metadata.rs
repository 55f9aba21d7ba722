//! WADO-RS metadata (PS3.18 10.4.1.1.2): `/studies/{study}[/series/{series}[/instances/{i}]]/metadata`
//! as a DICOM JSON array, one object per instance, served from the index alone (the stored
//! header of each instance; object files are never opened).
//!
//! Pixel Data is not part of the stored header (the index keeps the elements before it): an
//! instance whose header has Rows (0028,0010) and no Float/Double Float Pixel Data gets a
//! Pixel Data element with a `BulkDataURI`. Other top-level binary values larger than
//! [`json::BULK_DATA_THRESHOLD`] become `BulkDataURI`s too, all of the form
//! `http://{Host}/dicom-web/studies/{s}/series/{se}/instances/{i}/bulkdata/{gggg}{eeee}` (the
//! `/bulkdata` routes are in `wado.rs`); binary values inside sequences stay `InlineBinary`.
//!
//! The answer is streamed: headers are read on a blocking thread, converted there and sent in
//! chunks of about [`CHUNK`] bytes, so a large study is never held whole in memory.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use super::json;
use super::user::DicomWebUser;
use crate::archive::{HeadersError, InstanceHeader};
use crate::web::auth::Role;
use crate::web::{HttpError, WebState};

/// Bytes of JSON gathered before a chunk is sent.
const CHUNK: usize = 64 * 1024;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/studies/{study}/metadata", get(study_metadata))
        .route(
            "/studies/{study}/series/{series}/metadata",
            get(series_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(instance_metadata),
        )
}

async fn study_metadata(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    metadata(user, state, &headers, &uri, study, None, None).await
}

async fn series_metadata(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    metadata(user, state, &headers, &uri, study, Some(series), None).await
}

async fn instance_metadata(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    metadata(
        user,
        state,
        &headers,
        &uri,
        study,
        Some(series),
        Some(instance),
    )
    .await
}

/// A UID of the request path or query, checked as ingest checks them (400 otherwise).
pub(super) fn check_uid(what: &str, uid: &str) -> Result<(), HttpError> {
    crate::uid::validate(uid)
        .map_err(|e| HttpError::BadRequest(format!("{what} {uid:?} is not a valid UID: {e}")))
}

/// `http://{Host}/dicom-web`: the root the URLs of an answer are built on, from the request's
/// Host header (or the authority of an absolute request URI). A Host with characters that have
/// no place in a host name is refused rather than echoed into URLs.
pub(super) fn base_url(headers: &HeaderMap, uri: &Uri) -> Result<String, HttpError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .ok_or_else(|| HttpError::BadRequest("the request has no Host header".into()))?;
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    if !valid {
        return Err(HttpError::BadRequest(format!(
            "Host header {host:?} is not a host name"
        )));
    }
    Ok(format!("http://{host}{}", super::ROOT))
}

/// Refuse (406) a request whose Accept header excludes DICOM JSON.
pub(super) fn require_json(headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    let accept = accept.to_str().unwrap_or_default();
    let ok = accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        !refused
            && matches!(
                media.as_str(),
                "application/dicom+json" | "application/json" | "application/*" | "*/*"
            )
    });
    if ok {
        Ok(())
    } else {
        Err(HttpError::NotAcceptable(format!(
            "this resource is only available as {}; the request accepts {accept:?}",
            json::MEDIA_TYPE
        )))
    }
}

async fn metadata(
    user: DicomWebUser,
    state: WebState,
    headers: &HeaderMap,
    uri: &Uri,
    study: String,
    series: Option<String>,
    instance: Option<String>,
) -> Result<Response, HttpError> {
    user.require(Role::Viewer)?;
    require_json(headers)?;
    check_uid("StudyInstanceUID", &study)?;
    if let Some(s) = &series {
        check_uid("SeriesInstanceUID", s)?;
    }
    if let Some(i) = &instance {
        check_uid("SOPInstanceUID", i)?;
    }
    let base = base_url(headers, uri)?;
    let archive = state.archive()?;
    crate::web::audit_hooks::viewed(
        &state,
        &user.actor(),
        &study,
        series.as_deref(),
        instance.as_deref(),
    );
    let rx = archive
        .instance_headers(&study, series.as_deref(), instance.as_deref())
        .await
        .map_err(|e| match e {
            HeadersError::Index(_) => HttpError::Unavailable(e.to_string()),
            other => HttpError::NotFound(other.to_string()),
        })?;
    let (tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || write_array(rx, tx, &base));
    let mut response = Body::from_stream(ChannelStream(body_rx)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(json::MEDIA_TYPE),
    );
    Ok(response)
}

/// Convert the headers as they arrive and send the JSON array in chunks. An index failure
/// midway ends the body with an error (the client sees a cut connection, never a short array
/// that looks complete).
fn write_array(
    mut headers: mpsc::Receiver<Result<InstanceHeader, HeadersError>>,
    body: mpsc::Sender<Result<Bytes, std::io::Error>>,
    base: &str,
) {
    let mut buf = Vec::with_capacity(CHUNK + 16 * 1024);
    buf.push(b'[');
    let mut first = true;
    while let Some(item) = headers.blocking_recv() {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                tracing::warn!(error = %e, "DICOMweb metadata cut short");
                let _ = body.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        if !first {
            buf.push(b',');
        }
        first = false;
        let value = instance_json(&item, base);
        if serde_json::to_writer(&mut buf, &value).is_err() {
            let _ = body.blocking_send(Err(std::io::Error::other("JSON encoding failed")));
            return;
        }
        if buf.len() >= CHUNK {
            let chunk = Bytes::from(std::mem::take(&mut buf));
            if body.blocking_send(Ok(chunk)).is_err() {
                return; // the client went away: dropping `headers` stops the index reads
            }
        }
    }
    buf.push(b']');
    let _ = body.blocking_send(Ok(Bytes::from(buf)));
}

/// The URL of an instance's bulk data element (`tag` a top-level element).
pub fn bulk_data_url(base: &str, record: &crate::index::InstanceRecord, tag: Tag) -> String {
    format!(
        "{base}/studies/{}/series/{}/instances/{}/bulkdata/{}",
        record.study_uid,
        record.series_uid,
        record.sop_instance_uid,
        json::tag_key(tag)
    )
}

/// One instance's metadata: its header, with bulk data URIs, plus the Pixel Data reference.
pub fn instance_json(item: &InstanceHeader, base: &str) -> Json {
    let record = &item.record;
    let mut value = json::dataset_to_json(&item.header, &mut |path: &[Tag]| {
        (path.len() == 1).then(|| bulk_data_url(base, record, path[0]))
    });
    if let Some(vr) = pixel_data_vr(&item.header, &record.transfer_syntax)
        && let Some(obj) = value.as_object_mut()
    {
        obj.insert(
            json::tag_key(tags::PIXEL_DATA),
            json!({"vr": vr, "BulkDataURI": bulk_data_url(base, record, tags::PIXEL_DATA)}),
        );
    }
    value
}

/// The VR Pixel Data has in the stored object, if the header says it has pixels: OB when
/// encapsulated or of 8-bit samples, OW for other native data (always OW in Implicit VR,
/// PS3.5 A.1).
fn pixel_data_vr(header: &InMemDicomObject, transfer_syntax: &str) -> Option<&'static str> {
    if header.get(tags::ROWS).is_none()
        || header.get(tags::FLOAT_PIXEL_DATA).is_some()
        || header.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some()
    {
        return None;
    }
    const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
    const NATIVE: [&str; 3] = [
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
    ];
    if transfer_syntax == IMPLICIT_LE {
        return Some("OW");
    }
    if !NATIVE.contains(&transfer_syntax) {
        return Some("OB");
    }
    let bits = header
        .get(tags::BITS_ALLOCATED)
        .and_then(|e| e.to_int::<u16>().ok())
        .unwrap_or(16);
    Some(if bits <= 8 { "OB" } else { "OW" })
}

/// An mpsc receiver as the byte stream of a response body.
pub(super) struct ChannelStream(pub mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for ChannelStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    fn header(elements: Vec<dicom_object::mem::InMemElement>) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(elements)
    }

    #[test]
    fn pixel_data_vr_follows_the_stored_encoding() {
        let image = |bits: u16| {
            header(vec![
                DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(2_u16)),
                DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(bits)),
            ])
        };
        assert_eq!(pixel_data_vr(&image(16), "1.2.840.10008.1.2.1"), Some("OW"));
        assert_eq!(pixel_data_vr(&image(8), "1.2.840.10008.1.2.1"), Some("OB"));
        assert_eq!(pixel_data_vr(&image(8), "1.2.840.10008.1.2"), Some("OW"));
        assert_eq!(
            pixel_data_vr(&image(16), "1.2.840.10008.1.2.4.50"),
            Some("OB")
        );
        assert_eq!(pixel_data_vr(&header(vec![]), "1.2.840.10008.1.2.1"), None);
    }

    #[test]
    fn accept_header() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            require_json(&h)
        };
        assert!(require_json(&HeaderMap::new()).is_ok());
        assert!(with("application/dicom+json, application/json").is_ok());
        assert!(with("*/*").is_ok());
        assert!(with("text/html, application/*;q=0.5").is_ok());
        assert!(matches!(
            with("application/dicom+xml"),
            Err(HttpError::NotAcceptable(_))
        ));
        assert!(matches!(
            with("application/json;q=0"),
            Err(HttpError::NotAcceptable(_))
        ));
    }

    #[test]
    fn host_header_builds_urls_or_is_refused() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
            base_url(&h, &Uri::from_static("/dicom-web/studies"))
        };
        assert_eq!(
            with("pacs.example:8080").unwrap(),
            "http://pacs.example:8080/dicom-web"
        );
        assert_eq!(with("[::1]:80").unwrap(), "http://[::1]:80/dicom-web");
        assert!(matches!(with("evil/\"x"), Err(HttpError::BadRequest(_))));
    }
}
