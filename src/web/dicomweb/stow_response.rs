//! The STOW-RS answer: Failure Reason values and the mapping from ingest errors, and the Store
//! Instances Response Module (PS3.18 Annex I) with its HTTP status and Warning headers.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::archive::IngestError;

/// Warning headers on one response at most (each names one failed part).
const MAX_WARNINGS: usize = 20;

/// Failure Reason (0008,1197) values (PS3.18 Table I.2-2; MIFAS-specific ones in the ranges
/// it leaves open, as for C-STORE).
pub mod reason {
    /// Refused: out of resources (disk full, quota, `storage.max_object_bytes`).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class — the data set's SOP Class or Instance UID
    /// differs from the meta group's, or (`/studies/{study}`) the instance is of another study.
    pub const DATASET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand — not a Part-10 file, truncated, malformed, part not
    /// `application/dicom`.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Cannot understand: a UID is not a valid UID (as C-STORE's 0xC001).
    pub const INVALID_UID: u16 = 0xC001;
    /// Cannot understand: a required attribute is missing (as C-STORE's 0xC002).
    pub const MISSING_ATTRIBUTE: u16 = 0xC002;
    /// Referenced Transfer Syntax not supported.
    pub const TRANSFER_SYNTAX_NOT_SUPPORTED: u16 = 0xC122;
    /// Processing failure (a storage site or the index failed).
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// Duplicate SOP Instance (PS3.7 C.4), with `storage.duplicate_policy = "reject"`.
    pub const DUPLICATE: u16 = 0x0111;
    /// Referenced SOP Class not supported (not a storage SOP class we accept).
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
}

/// The Failure Reason for an ingest error.
pub fn failure_reason(err: &IngestError) -> u16 {
    match err {
        e if e.is_out_of_resources() => reason::OUT_OF_RESOURCES,
        IngestError::OutOfResources(_) => reason::OUT_OF_RESOURCES,
        IngestError::DatasetMismatch(_) => reason::DATASET_MISMATCH,
        IngestError::Unreadable(_) => reason::CANNOT_UNDERSTAND,
        IngestError::InvalidUid { .. } => reason::INVALID_UID,
        IngestError::MissingAttribute(_) => reason::MISSING_ATTRIBUTE,
        IngestError::Duplicate(_) => reason::DUPLICATE,
        IngestError::Storage(_)
        | IngestError::Index(_)
        | IngestError::Spool(_)
        | IngestError::ShuttingDown => reason::PROCESSING_FAILURE,
    }
}

/// What became of one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartOutcome {
    Stored {
        sop_class: String,
        sop_instance: String,
        study: Option<String>,
        series: Option<String>,
    },
    Failed {
        part: usize,
        sop_class: Option<String>,
        sop_instance: Option<String>,
        reason: u16,
        message: String,
    },
}

/// `http(s)://host/dicom-web` from the request's Host header (a relative root without one).
pub(super) fn base_url(headers: &HeaderMap, tls: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()));
    match host {
        Some(host) => format!(
            "{}://{host}{}",
            if tls { "https" } else { "http" },
            crate::web::dicomweb::ROOT
        ),
        None => crate::web::dicomweb::ROOT.to_string(),
    }
}

fn ui(value: Option<&str>) -> Value {
    match value {
        Some(v) if !v.is_empty() => json!({"vr": "UI", "Value": [v]}),
        _ => json!({"vr": "UI"}),
    }
}

fn ur(value: Option<String>) -> Value {
    match value {
        Some(v) => json!({"vr": "UR", "Value": [v]}),
        None => json!({"vr": "UR"}),
    }
}

/// The Store Instances Response Module (PS3.18 Table I.1-1) in the DICOM JSON model, and its
/// HTTP status (PS3.18 §10.5.3): 200 all stored, 202 some failed, 409 none stored.
pub fn response_body(
    outcomes: &[PartOutcome],
    base: &str,
    expect_study: Option<&str>,
) -> (StatusCode, Value) {
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    let mut studies: Vec<&str> = Vec::new();
    for outcome in outcomes {
        match outcome {
            PartOutcome::Stored {
                sop_class,
                sop_instance,
                study,
                series,
            } => {
                let url = match (study, series) {
                    (Some(st), Some(se)) => {
                        if !studies.contains(&st.as_str()) {
                            studies.push(st);
                        }
                        Some(format!(
                            "{base}/studies/{st}/series/{se}/instances/{sop_instance}"
                        ))
                    }
                    _ => None,
                };
                referenced.push(json!({
                    "00081150": ui(Some(sop_class)),
                    "00081155": ui(Some(sop_instance)),
                    "00081190": ur(url),
                }));
            }
            PartOutcome::Failed {
                sop_class,
                sop_instance,
                reason,
                ..
            } => failed.push(json!({
                "00081150": ui(sop_class.as_deref()),
                "00081155": ui(sop_instance.as_deref()),
                "00081197": {"vr": "US", "Value": [reason]},
            })),
        }
    }
    // The study's URL when the instances stored belong to one study (Type 2: empty otherwise).
    let study = expect_study.or(match studies.as_slice() {
        [one] => Some(*one),
        _ => None,
    });
    let study_url = if referenced.is_empty() {
        None
    } else {
        study.map(|s| format!("{base}/studies/{s}"))
    };
    let mut body = serde_json::Map::new();
    body.insert("00081190".into(), ur(study_url));
    if !failed.is_empty() {
        body.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    if !referenced.is_empty() {
        body.insert("00081199".into(), json!({"vr": "SQ", "Value": referenced}));
    }
    let status = match (referenced.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, _) => StatusCode::CONFLICT,
    };
    (status, Value::Object(body))
}

pub(super) fn response(
    outcomes: &[PartOutcome],
    base: &str,
    expect_study: Option<&str>,
) -> Response {
    let (status, body) = response_body(outcomes, base, expect_study);
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom+json"),
    );
    // Why each part failed, in words (PS3.18 §8.6.3 uses Warning headers for this).
    for outcome in outcomes
        .iter()
        .filter(|o| matches!(o, PartOutcome::Failed { .. }))
        .take(MAX_WARNINGS)
    {
        if let PartOutcome::Failed {
            part,
            reason,
            message,
            ..
        } = outcome
            && let Ok(value) = HeaderValue::from_str(&warning_text(*part, *reason, message))
        {
            h.append(header::WARNING, value);
        }
    }
    response
}

/// `299 MIFAS "part N: 0xXXXX: message"`, visible ASCII only.
pub(super) fn warning_text(part: usize, reason: u16, message: &str) -> String {
    let clean: String = message
        .chars()
        .take(300)
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect();
    format!("299 MIFAS \"part {part}: Failure Reason 0x{reason:04X}: {clean}\"")
}
