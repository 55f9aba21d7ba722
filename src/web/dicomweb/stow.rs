//! STOW-RS (PS3.18 §10.5): `POST /studies` and `POST /studies/{study}` with a
//! `multipart/related; type="application/dicom"` body of Part-10 instances.
//!
//! Each part streams from the request body into a spool file (never a whole part, never the
//! whole request in memory) and goes through the archive's ingest pipeline, the one C-STORE
//! and the portal upload use: the same checks (UIDs, structure, SOP class), durability and
//! duplicate policy. A part is committed only once its closing boundary has arrived, while the
//! next part is being received. The answer is the Store Instances Response Module (PS3.18
//! Annex I) as `application/dicom+json`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::post;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::meta::FileMetaTable;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use self::response::{PartOutcome, failure_reason, reason};
use self::response::{base_url, response};
use super::multipart::{Limits, MediaType, MultipartError, MultipartReader, Parser, PartHeaders};
use super::user::DicomWebUser;
use crate::archive::{Archive, CharsetNotice, IngestOutcome, IngestRequest, Spool};
use crate::web::WebState;
use crate::web::auth::Role;
use crate::web::auth::login::ClientInfo;
use crate::web::error::HttpError;

/// Parts committed at once while the next parts arrive: the fsync of one overlaps the
/// reception of the next, and the group commit gets more than one object per flush.
const COMMITS_IN_FLIGHT: usize = 4;
/// Largest file meta group read before the data set (real ones are under 1 KiB).
const MAX_META: usize = 64 * 1024;
/// Source AE title recorded for STOW-RS objects whose meta group names none.
const SOURCE_AET: &str = "STOW-RS";

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/studies", post(store_any))
        .route("/studies/{study}", post(store_in_study))
}

async fn store_any(
    State(state): State<WebState>,
    user: DicomWebUser,
    client: ClientInfo,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    store(state, user, client, headers, body, None).await
}

async fn store_in_study(
    State(state): State<WebState>,
    user: DicomWebUser,
    client: ClientInfo,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    // The role first: a viewer learns nothing about the path from a 400.
    user.require(Role::Uploader)?;
    crate::uid::validate(&study).map_err(|e| {
        HttpError::BadRequest(format!("invalid Study Instance UID in the path: {e}"))
    })?;
    store(state, user, client, headers, body, Some(study)).await
}

enum Slot {
    Done(PartOutcome),
    Committing(JoinHandle<PartOutcome>),
}

async fn store(
    state: WebState,
    user: DicomWebUser,
    client: ClientInfo,
    headers: HeaderMap,
    body: Body,
    expect_study: Option<String>,
) -> Result<Response, HttpError> {
    user.require(Role::Uploader)?;
    let config = state.dicomweb.clone();
    let boundary = check_content_type(&headers)?;
    let limit = config.stow_max_mb.saturating_mul(1 << 20);
    let too_large = || {
        HttpError::PayloadTooLarge(format!(
            "the STOW-RS request is larger than dicomweb.stow_max_mb ({} MiB)",
            config.stow_max_mb
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let archive = state.archive()?.clone();
    let parser = Parser::new(&boundary, Limits::with_max_parts(config.stow_max_parts))
        .map_err(|e| HttpError::BadRequest(e.to_string()))?;
    let mut reader = MultipartReader::new(body.into_data_stream(), parser, limit);
    let in_flight = Arc::new(Semaphore::new(COMMITS_IN_FLIGHT));
    // One per request: the default character set is logged once, not once per part.
    let charset_notice = CharsetNotice::default();
    let mut slots = Vec::new();
    let framing = loop {
        let part = match reader.next_part().await {
            Ok(Some(part)) => part,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        let number = part.number;
        match receive_part(
            &mut reader,
            &archive,
            part,
            state.accept_unknown_storage,
            &charset_notice,
        )
        .await
        {
            Err(e) => break Some(e),
            Ok(Received::Failed(outcome)) => slots.push(Slot::Done(outcome)),
            Ok(Received::Spooled(spool)) => {
                let permit = in_flight.clone().acquire_owned().await;
                let archive = archive.clone();
                let expect = expect_study.clone();
                slots.push(Slot::Committing(tokio::spawn(async move {
                    let outcome = commit(&archive, *spool, number, expect.as_deref()).await;
                    drop(permit);
                    outcome
                })));
            }
        }
    };
    // Every complete part is committed (or refused) before answering, whatever follows.
    let mut outcomes = Vec::with_capacity(slots.len());
    for slot in slots {
        outcomes.push(match slot {
            Slot::Done(outcome) => outcome,
            Slot::Committing(task) => task.await.unwrap_or_else(|e| PartOutcome::Failed {
                part: 0,
                sop_class: None,
                sop_instance: None,
                reason: reason::PROCESSING_FAILURE,
                message: format!("commit task failed: {e}"),
            }),
        });
    }
    let stored_uids: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            PartOutcome::Stored { sop_instance, .. } => Some(sop_instance.clone()),
            _ => None,
        })
        .collect();
    let stored = stored_uids.len();
    crate::web::audit_hooks::stored(&state, &user.actor(), stored_uids);
    tracing::info!(user = %user.name, parts = outcomes.len(), stored, "STOW-RS request");
    if let Some(e) = framing {
        let note = if stored > 0 {
            format!("; the {stored} complete instance(s) before it were stored")
        } else {
            "; nothing was stored".to_string()
        };
        return Err(match e {
            MultipartError::TooLarge(_) => {
                HttpError::PayloadTooLarge(format!("{}{note}", too_large()))
            }
            MultipartError::Read(e) => {
                HttpError::BadRequest(format!("cannot read the request body: {e}{note}"))
            }
            other => HttpError::BadRequest(format!("malformed multipart body: {other}{note}")),
        });
    }
    if outcomes.is_empty() {
        return Err(HttpError::BadRequest(
            "the multipart body has no parts: nothing to store".into(),
        ));
    }
    let base = base_url(&headers, client.tls);
    Ok(response(&outcomes, &base, expect_study.as_deref()))
}

/// The boundary of a `multipart/related; type="application/dicom"` body; 415 for any other
/// media type.
fn check_content_type(headers: &HeaderMap) -> Result<String, HttpError> {
    let unsupported = |got: &str| {
        HttpError::UnsupportedMediaType(format!(
            "STOW-RS takes Content-Type multipart/related; type=\"application/dicom\" (Part-10 instances); got {got:?}"
        ))
    };
    let value = headers
        .get(header::CONTENT_TYPE)
        .ok_or_else(|| unsupported(""))?
        .to_str()
        .map_err(|_| unsupported("(not ASCII)"))?;
    let media = MediaType::parse(value).map_err(|_| unsupported(value))?;
    if media.essence != "multipart/related" {
        return Err(unsupported(value));
    }
    // The type parameter is required by RFC 2387; a body without one is read part by part.
    if let Some(kind) = media.param("type")
        && !kind.eq_ignore_ascii_case("application/dicom")
    {
        return Err(HttpError::UnsupportedMediaType(format!(
            "only type=\"application/dicom\" parts (Part-10 instances) are stored; got type={kind:?} (metadata and bulk data requests are not supported)"
        )));
    }
    media
        .boundary()
        .map(str::to_string)
        .map_err(|e| HttpError::BadRequest(format!("malformed Content-Type: {e}")))
}

enum Received {
    /// Refused before or while spooling; its remaining data is skipped.
    Failed(PartOutcome),
    /// Complete and spooled, waiting to be committed (boxed: a spool is large).
    Spooled(Box<Spool>),
}

/// Read one part: its file meta group (buffered, small), then the data set streamed into a
/// spool. A framing error ends the request (`Err`); anything wrong with the part itself is a
/// failed part.
async fn receive_part<S, E>(
    reader: &mut MultipartReader<S>,
    archive: &Archive,
    part: PartHeaders,
    accept_unknown: bool,
    charset_notice: &CharsetNotice,
) -> Result<Received, MultipartError>
where
    S: futures_core::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let number = part.number;
    let failed = |reason: u16, message: String, request: Option<&IngestRequest>| {
        Received::Failed(PartOutcome::Failed {
            part: number,
            sop_class: request.map(|r| r.sop_class_uid.clone()),
            sop_instance: request.map(|r| r.sop_instance_uid.clone()),
            reason,
            message,
        })
    };
    if let Some(kind) = &part.content_type {
        let essence = MediaType::parse(kind).map(|m| m.essence);
        if essence.as_deref() != Ok("application/dicom") {
            return Ok(failed(
                reason::CANNOT_UNDERSTAND,
                format!("the part's Content-Type is {kind:?}, not application/dicom"),
                None,
            ));
        }
    }
    let mut head: Vec<u8> = Vec::new();
    let (request, dataset_start) = loop {
        match parse_meta(&head) {
            Meta::NeedMore => {}
            Meta::Invalid(message) => return Ok(failed(reason::CANNOT_UNDERSTAND, message, None)),
            Meta::Done(request, offset) => {
                let request = IngestRequest {
                    charset_notice: charset_notice.clone(),
                    ..request
                };
                break (request, offset);
            }
        }
        match reader.next_chunk().await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => {
                return Ok(failed(
                    reason::CANNOT_UNDERSTAND,
                    format!(
                        "not a DICOM Part-10 file ({} bytes, no complete file meta group)",
                        head.len()
                    ),
                    None,
                ));
            }
        }
    };
    if !accept_unknown && crate::dictionary::storage_sop_class(&request.sop_class_uid).is_none() {
        let message = format!(
            "SOP class {} is not a storage SOP class we accept",
            request.sop_class_uid
        );
        return Ok(failed(
            reason::SOP_CLASS_NOT_SUPPORTED,
            message,
            Some(&request),
        ));
    }
    if TransferSyntaxRegistry
        .get(&request.transfer_syntax)
        .is_none()
    {
        let message = format!(
            "transfer syntax {} is not supported",
            request.transfer_syntax
        );
        return Ok(failed(
            reason::TRANSFER_SYNTAX_NOT_SUPPORTED,
            message,
            Some(&request),
        ));
    }
    let mut spool = match archive.begin(request.clone()).await {
        Ok(spool) => spool,
        Err(e) => return Ok(failed(failure_reason(&e), e.to_string(), Some(&request))),
    };
    spool.write(&head[dataset_start..]).await;
    drop(head);
    while let Some(chunk) = reader.next_chunk().await? {
        spool.write(&chunk).await;
    }
    Ok(Received::Spooled(Box::new(spool)))
}

enum Meta {
    NeedMore,
    Invalid(String),
    /// The announcement and where the data set starts in the bytes read.
    Done(IngestRequest, usize),
}

/// The file meta group at the start of `head` (PS3.10 §7.1: 128-byte preamble, `DICM`, group
/// 0002 opened by its group length), once enough bytes are there. A file without the preamble
/// (starting at `DICM`) is read too, as `mifas import` does.
fn parse_meta(head: &[u8]) -> Meta {
    let magic_at = if head.len() >= 132 && &head[128..132] == b"DICM" {
        128
    } else if head.starts_with(b"DICM") {
        0
    } else if head.len() < 132 {
        return Meta::NeedMore;
    } else {
        return Meta::Invalid("not a DICOM Part-10 file (no DICM magic code)".into());
    };
    // (0002,0000) UL, explicit VR little endian: tag, "UL", length 4, value.
    let group_length_at = magic_at + 4;
    let Some(element) = head.get(group_length_at..group_length_at + 12) else {
        return Meta::NeedMore;
    };
    if element[..6] != [0x02, 0x00, 0x00, 0x00, b'U', b'L'] {
        return Meta::Invalid(
            "the file meta group does not start with its group length (0002,0000)".into(),
        );
    }
    let group_length = u32::from_le_bytes([element[8], element[9], element[10], element[11]]);
    let end = group_length_at + 12 + group_length as usize;
    if end > MAX_META {
        return Meta::Invalid(format!(
            "the file meta group is larger than {MAX_META} bytes"
        ));
    }
    if head.len() < end {
        return Meta::NeedMore;
    }
    let meta = match FileMetaTable::from_reader(&head[magic_at..end]) {
        Ok(meta) => meta,
        Err(e) => return Meta::Invalid(format!("bad file meta group: {e}")),
    };
    let trim = |s: &str| crate::uid::trim(s).to_string();
    let request = IngestRequest {
        sop_class_uid: trim(meta.media_storage_sop_class_uid()),
        sop_instance_uid: trim(meta.media_storage_sop_instance_uid()),
        transfer_syntax: trim(meta.transfer_syntax()),
        source_aet: meta
            .source_application_entity_title
            .as_deref()
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| SOURCE_AET.to_string()),
        charset_notice: Default::default(),
    };
    Meta::Done(request, end)
}

/// Study and Series Instance UID of a spooled object, from the header captured while spooling
/// (or from the file when none was captured); `None` when unreadable (the ingest then refuses
/// the object with its own reason).
fn study_and_series(
    spooled_header: Option<&[u8]>,
    ts_uid: &str,
    path: &std::path::Path,
) -> Option<(String, String)> {
    let object: InMemDicomObject = match spooled_header {
        Some(bytes) => {
            let ts = TransferSyntaxRegistry.get(ts_uid)?;
            InMemDicomObject::read_dataset_with_ts(bytes, ts).ok()?
        }
        None => OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path)
            .ok()?
            .into_inner(),
    };
    let text = |tag| crate::index::text(&object, tag);
    Some((
        text(tags::STUDY_INSTANCE_UID),
        text(tags::SERIES_INSTANCE_UID),
    ))
}

/// Make one spooled part durable and indexed through the ingest pipeline.
async fn commit(
    archive: &Archive,
    spool: Spool,
    part: usize,
    expect_study: Option<&str>,
) -> PartOutcome {
    let request = spool.request().clone();
    let failed = |reason: u16, message: String| PartOutcome::Failed {
        part,
        sop_class: Some(request.sop_class_uid.clone()),
        sop_instance: Some(request.sop_instance_uid.clone()),
        reason,
        message,
    };
    let spooled = match spool.finish().await {
        Ok(spooled) => spooled,
        Err(e) => return failed(failure_reason(&e), e.to_string()),
    };
    // The study check needs the header; a header that does not parse is left to the ingest,
    // which refuses it with the precise reason.
    let readable = spooled
        .structure
        .as_ref()
        .is_none_or(|s| s.result().is_ok());
    let header = spooled
        .structure
        .as_ref()
        .and_then(|s| s.header())
        .map(<[u8]>::to_vec);
    let path = spooled.guard.path.clone();
    let ts = request.transfer_syntax.clone();
    let ids = if readable {
        tokio::task::spawn_blocking(move || study_and_series(header.as_deref(), &ts, &path))
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    if let (Some(expected), Some((study, _))) = (expect_study, &ids)
        && study != expected
    {
        return failed(
            reason::DATASET_MISMATCH,
            format!("the instance belongs to study {study}, not to {expected} named in the URL"),
        );
    }
    match archive.store_spooled(spooled).await {
        Ok(outcome) => {
            if outcome == IngestOutcome::DuplicateIgnored {
                tracing::debug!(sop_instance_uid = %request.sop_instance_uid, "STOW-RS duplicate ignored");
            }
            let (study, series) = ids.map_or((None, None), |(a, b)| (Some(a), Some(b)));
            PartOutcome::Stored {
                sop_class: request.sop_class_uid.clone(),
                sop_instance: request.sop_instance_uid.clone(),
                study,
                series,
            }
        }
        Err(e) => failed(failure_reason(&e), e.to_string()),
    }
}

#[path = "stow_response.rs"]
pub mod response;

#[cfg(test)]
#[path = "stow_tests.rs"]
mod tests;
