//! C-FIND SCP (PS3.4 C.4.1) for the Patient Root and Study Root models: identifier → query
//! (index query engine), matches streamed as pending responses, C-CANCEL honoured.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::status::Status;
use crate::query::charset::CodeExtensions;
use crate::query::charset::dataset::{Declared, to_unicode};
use crate::query::charset::encode::{encode_dataset, without_item_character_sets};
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
