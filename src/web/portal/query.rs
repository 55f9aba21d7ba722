//! The queries behind the pages, built the way C-FIND's identifier parser builds them (a level,
//! keys with conditions, return keys), so the portal and C-FIND share one engine and one set of
//! matching rules.

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;

use crate::query::{Condition, Level, Model, Query, QueryKey};

fn key(tag: Tag, vr: VR, condition: Condition) -> QueryKey {
    QueryKey {
        tag,
        vr,
        condition,
        items: None,
    }
}

/// A query whose `conditions` match and whose `returned` keys come back (universal).
pub fn build(
    model: Model,
    level: Level,
    conditions: Vec<(Tag, VR, Condition)>,
    returned: &[(Tag, VR)],
) -> Query {
    let mut keys: Vec<QueryKey> = conditions
        .into_iter()
        .map(|(tag, vr, c)| key(tag, vr, c))
        .collect();
    for (tag, vr) in returned {
        if !keys.iter().any(|k| k.tag == *tag) {
            keys.push(key(*tag, *vr, Condition::Universal));
        }
    }
    Query {
        model,
        level,
        keys,
        // As C-FIND by default ([dicom] case_insensitive_names): names ignore case.
        case_insensitive_names: true,
        fuzzy_names: false,
        combined_datetime: false,
        unsupported_matching_keys: false,
    }
}

/// What a study row shows.
pub const STUDY_KEYS: &[(Tag, VR)] = &[
    (tags::STUDY_INSTANCE_UID, VR::UI),
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::ACCESSION_NUMBER, VR::SH),
    (tags::STUDY_ID, VR::SH),
    (tags::STUDY_DESCRIPTION, VR::LO),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::MODALITIES_IN_STUDY, VR::CS),
    (tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS),
    (tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS),
];

pub const SERIES_KEYS: &[(Tag, VR)] = &[
    (tags::SERIES_INSTANCE_UID, VR::UI),
    (tags::MODALITY, VR::CS),
    (tags::SERIES_NUMBER, VR::IS),
    (tags::SERIES_DESCRIPTION, VR::LO),
    (tags::BODY_PART_EXAMINED, VR::CS),
    (tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS),
];

pub const INSTANCE_KEYS: &[(Tag, VR)] = &[
    (tags::SOP_INSTANCE_UID, VR::UI),
    (tags::SOP_CLASS_UID, VR::UI),
    (tags::SERIES_INSTANCE_UID, VR::UI),
    (tags::STUDY_INSTANCE_UID, VR::UI),
    (tags::INSTANCE_NUMBER, VR::IS),
    (tags::NUMBER_OF_FRAMES, VR::IS),
    (tags::ROWS, VR::US),
    (tags::COLUMNS, VR::US),
];

/// Patient-level keys (Patient Root), for the patient record.
pub const PATIENT_KEYS: &[(Tag, VR)] = &[
    (tags::PATIENT_ID, VR::LO),
    (tags::ISSUER_OF_PATIENT_ID, VR::LO),
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::NUMBER_OF_PATIENT_RELATED_STUDIES, VR::IS),
    (tags::NUMBER_OF_PATIENT_RELATED_SERIES, VR::IS),
    (tags::NUMBER_OF_PATIENT_RELATED_INSTANCES, VR::IS),
];

fn single(tag: Tag, vr: VR, value: &str) -> (Tag, VR, Condition) {
    (tag, vr, Condition::Single(value.to_string()))
}

/// The study with this UID.
pub fn study(uid: &str) -> Query {
    build(
        Model::StudyRoot,
        Level::Study,
        vec![single(tags::STUDY_INSTANCE_UID, VR::UI, uid)],
        STUDY_KEYS,
    )
}

/// The series of a study.
pub fn series_of_study(uid: &str) -> Query {
    build(
        Model::StudyRoot,
        Level::Series,
        vec![single(tags::STUDY_INSTANCE_UID, VR::UI, uid)],
        SERIES_KEYS,
    )
}

/// The instances of a study.
pub fn instances_of_study(uid: &str) -> Query {
    build(
        Model::StudyRoot,
        Level::Image,
        vec![single(tags::STUDY_INSTANCE_UID, VR::UI, uid)],
        INSTANCE_KEYS,
    )
}

/// One instance, with `extra` keys read from its stored header.
pub fn instance(uid: &str, extra: &[(Tag, VR)]) -> Query {
    let mut q = build(
        Model::StudyRoot,
        Level::Image,
        vec![single(tags::SOP_INSTANCE_UID, VR::UI, uid)],
        INSTANCE_KEYS,
    );
    for (tag, vr) in extra {
        if q.key(*tag).is_none() {
            q.keys.push(key(*tag, *vr, Condition::Universal));
        }
    }
    q
}

/// The patients with this Patient ID (one per issuer).
pub fn patients(patient_id: &str) -> Query {
    build(
        Model::PatientRoot,
        Level::Patient,
        vec![single(tags::PATIENT_ID, VR::LO, patient_id)],
        PATIENT_KEYS,
    )
}

/// Every study of the patients with this Patient ID.
pub fn studies_of_patient(patient_id: &str) -> Query {
    build(
        Model::StudyRoot,
        Level::Study,
        vec![single(tags::PATIENT_ID, VR::LO, patient_id)],
        STUDY_KEYS,
    )
}
