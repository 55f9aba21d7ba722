//! C-FIND SCP (PS3.4 C.4.1) for the Patient Root and Study Root models: identifier → query
//! (index query engine), matches streamed as pending responses, C-CANCEL honoured.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::association::{Peer, QueryRequest, ServerSession};
use super::message::Response;
use super::session::Exit;
use super::status::Status;
use crate::query::charset::CodeExtensions;
use crate::query::charset::dataset::{Declared, to_unicode};
use crate::query::charset::encode::{encode_dataset, without_item_character_sets};
use crate::query::identifier::{self as query_identifier, ParseOptions};
use crate::query::{Model, QueryError};

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

/// Decode a request identifier, its text in Unicode (ISO 2022 code extensions included, see
/// `query::charset`). Its Specific Character Set stays as received: the answer is encoded in it.
pub fn decode_identifier(bytes: &[u8], transfer_syntax: &str) -> Result<InMemDicomObject, String> {
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax)
        .ok_or_else(|| format!("unknown transfer syntax {transfer_syntax}"))?;
    let identifier = InMemDicomObject::read_dataset_with_ts(bytes, ts)
        .map_err(|e| format!("identifier cannot be decoded: {e}"))?;
    Ok(to_unicode(&identifier, Declared::AsReceived).unwrap_or(identifier))
}

/// An identifier of C-FIND, C-MOVE or C-GET: its element structure walked first (nesting and
/// lengths, 4.2.1.4.4 of the Conformance Statement), then decoded.
pub(crate) fn checked_identifier(
    bytes: &[u8],
    transfer_syntax: &str,
    max_sequence_depth: usize,
) -> Result<InMemDicomObject, String> {
    crate::archive::check_dataset_bytes(bytes, transfer_syntax, max_sequence_depth)
        .map_err(|e| format!("identifier refused: {e}"))?;
    decode_identifier(bytes, transfer_syntax)
}

/// Does every text value (also inside sequences) pass `fits`?
fn all_text(obj: &InMemDicomObject, fits: &dyn Fn(&str) -> bool) -> bool {
    obj.iter().all(|e| match e.items() {
        Some(items) => items.iter().all(|i| all_text(i, fits)),
        None => match e.vr() {
            VR::PN | VR::LO | VR::SH | VR::LT | VR::ST | VR::UT | VR::UC => {
                e.to_str().map(|s| fits(&s)).unwrap_or(true)
            }
            _ => true,
        },
    })
}

/// The character set a response identifier is encoded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseCharset {
    /// Every text value is ASCII: no (0008,0005).
    Default,
    /// A set dicom-rs encodes (GB18030, ISO_IR 192).
    Named(&'static str),
    /// The requester's own set, encoded by `query::charset` (ISO 2022 code extensions such as
    /// `\ISO 2022 IR 87`, or a single-byte set such as `ISO_IR 100`).
    Requester(CodeExtensions),
}

/// The character set of a response: none when everything is ASCII; else the query's own when
/// it can hold every value (single-byte sets, ISO 2022 code extensions — Japanese, Korean,
/// Chinese —, GB18030), else UTF-8 (ISO_IR 192).
pub fn response_charset(identifier: &InMemDicomObject, query_charset: &str) -> ResponseCharset {
    if all_text(identifier, &|s| s.is_ascii()) {
        return ResponseCharset::Default;
    }
    if let Some(cs) = CodeExtensions::for_answer(query_charset)
        && encode_dataset(identifier, &cs).is_some()
    {
        return ResponseCharset::Requester(cs);
    }
    match query_charset.split('\\').next().unwrap_or("").trim() {
        "GB18030" => ResponseCharset::Named("GB18030"),
        _ => ResponseCharset::Named("ISO_IR 192"),
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
    identifier = without_item_character_sets(identifier);
    let cs = match response_charset(&identifier, query_charset) {
        ResponseCharset::Named(code) => {
            identifier.put(DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::from(code),
            ));
            SpecificCharacterSet::from_code(code).unwrap_or_default()
        }
        ResponseCharset::Requester(cs) => {
            // Text values become their bytes in the requester's set; nothing is left for
            // dicom-rs's codecs to encode but ASCII.
            identifier = encode_dataset(&identifier, &cs).ok_or_else(|| {
                "response text does not fit the query's character set".to_string()
            })?;
            SpecificCharacterSet::default()
        }
        ResponseCharset::Default => {
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
    rq: QueryRequest,
) -> Result<(), Exit> {
    let QueryRequest {
        context_id,
        context,
        command,
        model,
        identifier: identifier_bytes,
        cancel,
    } = rq;
    let span = tracing::info_span!("c_find", message_id = command.message_id);
    let config = &peer.ctx.config;
    let fail = |status: Status, comment: String| {
        tracing::warn!(parent: &span, %status, reason = %comment, "C-FIND refused");
        Response::for_request(&command, status).with_comment(comment)
    };
    if command.affected_sop_class_uid != context.abstract_syntax {
        let r = fail(
            Status::SOP_CLASS_NOT_SUPPORTED,
            "SOP class differs from the presentation context".into(),
        );
        return session.respond(context_id, &r).await;
    }
    let decoded = checked_identifier(
        &identifier_bytes,
        &context.transfer_syntax,
        config.dicom.max_sequence_depth,
    );
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
        fuzzy_names: context.fuzzy_names,
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
    peer.audit
        .queried(&context, &command, &identifier_bytes, &final_response);
    tracing::info!(parent: &span, matches = sent, elapsed_ms = started.elapsed().as_millis() as u64, status = %final_response.status, "C-FIND done");
    session.respond(context_id, &final_response).await
}
