//! C-FIND SCP (PS3.4 C.4.1) for the Patient Root and Study Root models: identifier → query
//! (index query engine), matches streamed as pending responses, C-CANCEL honoured.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use tokio_util::sync::CancellationToken;

use super::association::{Context, Peer, ServerSession, unsupported};
use super::message::{Command, Response};
use super::session::Exit;
use super::status::Status;
use crate::index::query::identifier::{self as query_identifier, ParseOptions};
use crate::index::query::{Model, QueryError};

/// C-FIND statuses (PS3.4 C.4.1.1.4).
pub const PENDING: Status = Status(0xFF00);
/// Pending, but some optional keys were not matched (only returned).
pub const PENDING_UNSUPPORTED_KEYS: Status = Status(0xFF01);
pub const CANCELLED: Status = Status(0xFE00);
/// Identifier does not match SOP Class.
pub const IDENTIFIER_MISMATCH: Status = Status(0xA900);
/// Unable to process: a key's value cannot be understood.
pub const UNABLE_TO_PROCESS: Status = Status(0xC000);
/// Unable to process: the index failed (MIFAS-specific code in the 0xCxxx range).
pub const INDEX_FAILURE: Status = Status(0xC001);
/// Refused: out of resources (more matches than `query.max_results`).
pub const TOO_MANY_MATCHES: Status = Status(0xA700);

/// The largest identifier we accept.
pub const MAX_IDENTIFIER_SIZE: usize = 1 << 20;

pub const FIND_SOP_CLASSES: [&str; 2] = [
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
];

pub fn model_of(sop_class: &str) -> Option<Model> {
    match sop_class {
        uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND => Some(Model::PatientRoot),
        uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND => Some(Model::StudyRoot),
        _ => None,
    }
}

pub fn status_for(err: &QueryError) -> Status {
    match err {
        QueryError::BadValue { .. } => UNABLE_TO_PROCESS,
        QueryError::Index(_) => INDEX_FAILURE,
        _ => IDENTIFIER_MISMATCH,
    }
}

pub fn decode_identifier(bytes: &[u8], transfer_syntax: &str) -> Result<InMemDicomObject, String> {
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax)
        .ok_or_else(|| format!("unknown transfer syntax {transfer_syntax}"))?;
    InMemDicomObject::read_dataset_with_ts(bytes, ts)
        .map_err(|e| format!("identifier cannot be decoded: {e}"))
}

/// Does every text value (also inside sequences) fit in `fits`?
fn all_text(obj: &InMemDicomObject, fits: &dyn Fn(char) -> bool) -> bool {
    obj.iter().all(|e| match e.items() {
        Some(items) => items.iter().all(|i| all_text(i, fits)),
        None => match e.vr() {
            VR::PN | VR::LO | VR::SH | VR::LT | VR::ST | VR::UT | VR::UC => {
                e.to_str().map(|s| s.chars().all(fits)).unwrap_or(true)
            }
            _ => true,
        },
    })
}

/// The character set of a response: none when everything is ASCII; else the query's own when
/// it can hold every value (Latin-1, GB18030, UTF-8), else UTF-8 (ISO_IR 192).
pub fn response_charset(
    identifier: &InMemDicomObject,
    query_charset: &str,
) -> Option<&'static str> {
    if all_text(identifier, &|c| c.is_ascii()) {
        return None;
    }
    let first = query_charset.split('\\').next().unwrap_or("").trim();
    match first {
        "ISO_IR 100" if all_text(identifier, &|c| (c as u32) <= 0xFF) => Some("ISO_IR 100"),
        "GB18030" => Some("GB18030"),
        _ => Some("ISO_IR 192"),
    }
}

/// Encode a response identifier in the presentation context's transfer syntax, declaring and
/// using the chosen character set.
pub fn encode_identifier(
    mut identifier: InMemDicomObject,
    transfer_syntax: &str,
    query_charset: &str,
) -> Result<Vec<u8>, String> {
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax)
        .ok_or_else(|| format!("unknown transfer syntax {transfer_syntax}"))?;
    let charset = response_charset(&identifier, query_charset);
    let cs = match charset {
        Some(code) => {
            identifier.put(DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::from(code),
            ));
            SpecificCharacterSet::from_code(code).unwrap_or_default()
        }
        None => {
            identifier.remove_element(tags::SPECIFIC_CHARACTER_SET);
            SpecificCharacterSet::default()
        }
    };
    let mut out = Vec::with_capacity(1024);
    identifier
        .write_dataset_with_ts_cs(&mut out, ts, cs)
        .map_err(|e| format!("cannot encode the response identifier: {e}"))?;
    // A deflated data set can end on an odd byte: PS3.5 A.5 pads it with one NUL, and P-DATA
    // fragments must be even-length (PS3.8 E.2).
    if out.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
}

/// Keys the SCP answers itself rather than from the index.
pub fn fill_service_keys(identifier: &mut InMemDicomObject, asked: &InMemDicomObject, aet: &str) {
    if asked.get(tags::RETRIEVE_AE_TITLE).is_some() {
        identifier.put(DataElement::new(
            tags::RETRIEVE_AE_TITLE,
            VR::AE,
            PrimitiveValue::from(aet),
        ));
    }
    if asked.get(tags::INSTANCE_AVAILABILITY).is_some() {
        identifier.put(DataElement::new(
            tags::INSTANCE_AVAILABILITY,
            VR::CS,
            PrimitiveValue::from("ONLINE"),
        ));
    }
}

/// One C-FIND: identifier → query → matches streamed as pending responses until the end, a
/// C-CANCEL (`cancel`), `query.max_results` or an error.
pub(crate) async fn handle(
    session: &mut ServerSession,
    peer: &Peer,
    context_id: u8,
    context: &Context,
    command: Command,
    identifier_bytes: Vec<u8>,
    cancel: CancellationToken,
) -> Result<(), Exit> {
    let span = tracing::info_span!("c_find", message_id = command.message_id);
    let config = &peer.ctx.config;
    let fail = |status: Status, comment: String| {
        tracing::warn!(parent: &span, %status, reason = %comment, "C-FIND refused");
        Response::for_request(&command, status).with_comment(comment)
    };
    let Some(model) = model_of(&context.abstract_syntax) else {
        return session.respond(context_id, &unsupported(&command)).await;
    };
    if command.affected_sop_class_uid != context.abstract_syntax {
        let r = fail(
            Status::SOP_CLASS_NOT_SUPPORTED,
            "SOP class differs from the presentation context".into(),
        );
        return session.respond(context_id, &r).await;
    }
    let decoded = crate::archive::check_dataset_bytes(
        &identifier_bytes,
        &context.transfer_syntax,
        config.dicom.max_sequence_depth,
    )
    .map_err(|e| format!("identifier refused: {e}"))
    .and_then(|()| decode_identifier(&identifier_bytes, &context.transfer_syntax));
    let identifier = match decoded {
        Ok(i) => i,
        Err(msg) => {
            let r = fail(UNABLE_TO_PROCESS, msg);
            return session.respond(context_id, &r).await;
        }
    };
    let options = ParseOptions {
        case_insensitive_names: config.query.case_insensitive_names,
        combined_datetime: context.combined_datetime,
    };
    let query = match query_identifier::parse(&identifier, model, options) {
        Ok(q) => q,
        Err(e) => {
            let r = fail(status_for(&e), e.to_string());
            return session.respond(context_id, &r).await;
        }
    };
    tracing::info!(parent: &span, level = query.level.as_str(), keys = query.keys.len(), "C-FIND");
    let query_charset = identifier
        .get(tags::SPECIFIC_CHARACTER_SET)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.into_owned())
        .unwrap_or_default();
    let pending = if query.unsupported_matching_keys {
        PENDING_UNSUPPORTED_KEYS
    } else {
        PENDING
    };
    let max_results = config.query.max_results;
    let aet = config.dicom.aet.clone();
    let mut matches = peer.ctx.archive.find(query);
    let mut sent = 0usize;
    let started = std::time::Instant::now();
    let final_response = loop {
        let Some(next) = session.until(&cancel, matches.recv()).await? else {
            tracing::info!(parent: &span, sent, "C-FIND cancelled by the peer");
            break Response::for_request(&command, CANCELLED);
        };
        let m = match next {
            None => break Response::for_request(&command, Status::SUCCESS),
            Some(Err(e)) => break fail(status_for(&e), e.to_string()),
            Some(Ok(m)) => m,
        };
        if max_results > 0 && sent >= max_results {
            break fail(
                TOO_MANY_MATCHES,
                format!("more than {max_results} matches; narrow the query"),
            );
        }
        let mut ident = m.identifier;
        fill_service_keys(&mut ident, &identifier, &aet);
        let bytes = match encode_identifier(ident, &context.transfer_syntax, &query_charset) {
            Ok(b) => b,
            Err(msg) => break fail(UNABLE_TO_PROCESS, msg),
        };
        session
            .respond_with(context_id, Response::for_request(&command, pending), &bytes)
            .await?;
        sent += 1;
    };
    drop(matches);
    tracing::info!(parent: &span, matches = sent, elapsed_ms = started.elapsed().as_millis() as u64, status = %final_response.status, "C-FIND done");
    session.respond(context_id, &final_response).await
}
