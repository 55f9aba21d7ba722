//! Turning a parsed header into the records the index keeps.

use std::borrow::Cow;

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

use crate::query::charset::dataset::{Declared, DefaultCharacterSet, to_unicode_with_default};
use crate::query::un;

use super::record::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord, patient_key};

/// Everything the index needs to add one instance at every level.
#[derive(Debug, Clone)]
pub struct InstanceEntry {
    pub instance: InstanceRecord,
    /// The header data set, Explicit VR Little Endian (stored in the `headers` tree).
    pub header: Vec<u8>,
    pub series: SeriesRecord,
    pub study: StudyRecord,
    pub patient: PatientRecord,
    /// The sites that hold the object durably now (site name, placement).
    pub placements: Vec<(String, super::Placement)>,
    /// Sites still owed a copy: queued for replication with the entry.
    pub replicate_to: Vec<String>,
    /// Milliseconds since the Unix epoch before which those copies are not made by the queue
    /// (copies already being written get that long to land first).
    pub replicate_not_before_ms: u64,
}

/// Where the object is and what it is, known to the archive, not read from the header.
#[derive(Debug, Clone)]
pub struct ObjectFacts {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    pub size: u64,
    pub sha256: [u8; 32],
    pub object_key: String,
    pub source_aet: String,
    pub received_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("cannot encode the header for the index: {0}")]
    EncodeHeader(String),
}

/// Text of an element, trimmed of padding; empty when absent or not text. A standard
/// attribute received as UN is read with its dictionary VR (PS3.5 6.2.2), so that the UID
/// checks of ingest see the UID rather than its bytes as numbers.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| match e.value() {
            Value::Primitive(PrimitiveValue::U8(bytes)) if e.vr() == VR::UN => {
                un::reinterpret(tag, bytes, &|b, _| latin1(b))
                    .map(|(_, value)| value.to_str().into_owned())
            }
            _ => e.to_str().ok().map(Cow::into_owned),
        })
        .map(|s| s.trim_matches(|c: char| c == ' ' || c == '\0').to_string())
        .unwrap_or_default()
}

/// Bytes as ISO 8859-1 text (any byte is a character); the header is read with its own
/// character set before its names are indexed (`indexable_header`).
fn latin1(bytes: &[u8]) -> PrimitiveValue {
    PrimitiveValue::from(bytes.iter().map(|b| char::from(*b)).collect::<String>())
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i32> {
    obj.get(tag).and_then(|e| e.to_int::<i32>().ok())
}

/// The header as the index keeps it and the matching rules see it: every text value in
/// Unicode, whatever character set it was received in (ISO 2022 code extensions included, see
/// `query::charset`), declared ISO_IR 192 when it had to be re-read, and standard attributes
/// received as UN with their dictionary VR (`query::un`). Text of a data set that declares no
/// character set is read in `default`. Borrowed when dicom-rs's reading already was right. The
/// stored object keeps its bytes.
pub fn indexable_header<'a>(
    header: &'a InMemDicomObject,
    default: &DefaultCharacterSet,
) -> Cow<'a, InMemDicomObject> {
    match to_unicode_with_default(header, Declared::Utf8, default) {
        Some(unicode) => Cow::Owned(unicode),
        None => Cow::Borrowed(header),
    }
}

impl InstanceEntry {
    pub fn from_header(
        header: &InMemDicomObject,
        facts: ObjectFacts,
        default_charset: &DefaultCharacterSet,
    ) -> Result<Self, EntryError> {
        let header = indexable_header(header, default_charset);
        let header: &InMemDicomObject = &header;
        let patient_id = text(header, tags::PATIENT_ID);
        let issuer = text(header, tags::ISSUER_OF_PATIENT_ID);
        let pkey = patient_key(&patient_id, &issuer);
        let study_uid = text(header, tags::STUDY_INSTANCE_UID);
        let series_uid = text(header, tags::SERIES_INSTANCE_UID);
        let mut header_bytes = Vec::with_capacity(4096);
        header
            .write_dataset_with_ts(&mut header_bytes, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
            .map_err(|e| EntryError::EncodeHeader(e.to_string()))?;
        let representative = facts.sop_instance_uid.clone();
        Ok(InstanceEntry {
            instance: InstanceRecord {
                sop_instance_uid: facts.sop_instance_uid,
                sop_class_uid: facts.sop_class_uid,
                series_uid: series_uid.clone(),
                study_uid: study_uid.clone(),
                patient_key: pkey.clone(),
                transfer_syntax: facts.transfer_syntax,
                instance_number: int(header, tags::INSTANCE_NUMBER),
                size: facts.size,
                sha256: facts.sha256,
                object_key: facts.object_key,
                source_aet: facts.source_aet,
                received_at: facts.received_at,
                header_id: 0,
            },
            header: header_bytes,
            series: SeriesRecord {
                series_uid,
                study_uid: study_uid.clone(),
                modality: text(header, tags::MODALITY),
                series_number: int(header, tags::SERIES_NUMBER),
                series_description: text(header, tags::SERIES_DESCRIPTION),
                body_part: text(header, tags::BODY_PART_EXAMINED),
                num_instances: 0,
                representative: representative.clone(),
            },
            study: StudyRecord {
                study_uid,
                patient_key: pkey.clone(),
                study_date: text(header, tags::STUDY_DATE),
                study_time: text(header, tags::STUDY_TIME),
                accession_number: text(header, tags::ACCESSION_NUMBER),
                study_id: text(header, tags::STUDY_ID),
                study_description: text(header, tags::STUDY_DESCRIPTION),
                referring_physician: text(header, tags::REFERRING_PHYSICIAN_NAME),
                modalities: Vec::new(),
                sop_classes: Vec::new(),
                representative: representative.clone(),
                num_series: 0,
                num_instances: 0,
            },
            patient: PatientRecord {
                patient_key: pkey,
                patient_id,
                issuer_of_patient_id: issuer,
                patient_name: text(header, tags::PATIENT_NAME),
                birth_date: text(header, tags::PATIENT_BIRTH_DATE),
                sex: text(header, tags::PATIENT_SEX),
                num_studies: 0,
                num_series: 0,
                num_instances: 0,
                representative: representative.clone(),
            },
            placements: Vec::new(),
            replicate_to: Vec::new(),
            replicate_not_before_ms: 0,
        })
    }
}
