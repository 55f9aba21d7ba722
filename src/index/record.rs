//! What the index stores per level. Records are postcard-encoded values of sled trees.

use serde::{Deserialize, Serialize};

/// One stored SOP instance: where its object is, its integrity data, and its whole header
/// (every element but Pixel Data, Explicit VR Little Endian) so queries never open object files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub series_uid: String,
    pub study_uid: String,
    pub patient_key: String,
    pub transfer_syntax: String,
    pub instance_number: Option<i32>,
    /// Size of the stored Part-10 object in bytes.
    pub size: u64,
    /// SHA-256 of the stored Part-10 object.
    pub sha256: [u8; 32],
    /// Storage key of the object (relative path under `objects/`).
    pub object_key: String,
    pub source_aet: String,
    /// Seconds since the Unix epoch.
    pub received_at: u64,
    /// Key of the instance's header (every element but Pixel Data, Explicit VR Little Endian)
    /// in the `headers` tree. Headers live apart, keyed by an increasing id, so the large values
    /// are appended in order while the records keyed by random UIDs stay small.
    pub header_id: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesRecord {
    pub series_uid: String,
    pub study_uid: String,
    pub modality: String,
    pub series_number: Option<i32>,
    pub series_description: String,
    pub body_part: String,
    pub num_instances: u64,
    /// An instance of the series whose header answers series-level return keys.
    pub representative: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyRecord {
    pub study_uid: String,
    pub patient_key: String,
    pub study_date: String,
    pub study_time: String,
    pub accession_number: String,
    pub study_id: String,
    pub study_description: String,
    pub referring_physician: String,
    /// Distinct modalities of the study's series, with how many series have each.
    pub modalities: Vec<(String, u64)>,
    /// Distinct SOP classes of the study's instances, with how many instances have each.
    pub sop_classes: Vec<(String, u64)>,
    /// An instance of the study whose header answers study-level return keys.
    pub representative: String,
    pub num_series: u64,
    pub num_instances: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientRecord {
    pub patient_key: String,
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_name: String,
    pub birth_date: String,
    pub sex: String,
    pub num_studies: u64,
    pub num_series: u64,
    pub num_instances: u64,
    /// An instance of the patient whose header answers patient-level return keys.
    pub representative: String,
}

/// Archive-wide totals, kept in the same transaction as the records they count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub patients: u64,
    pub studies: u64,
    pub series: u64,
    pub instances: u64,
    pub bytes: u64,
}

/// The patient-level key: Patient ID qualified by its issuer (PS3.4 C.6.1.1.2 treats the pair as
/// the patient's identity).
pub fn patient_key(patient_id: &str, issuer: &str) -> String {
    format!("{patient_id}\u{1}{issuer}")
}

/// Lower-cased, the way the name index and case-insensitive PN matching compare.
pub fn fold_case(value: &str) -> String {
    value.to_lowercase()
}

/// The name-index entries of a person name: the whole value, each component group
/// (alphabetic, ideographic, phonetic) and each component, case-folded — so a prefix scan
/// finds "Kuo^Cheng-Ta=郭^政達" for "郭*", and "MÜLLER^JÜRGEN" for "jürgen*" when fuzzy
/// matching was negotiated. The component entries make the scan a superset of the group
/// matches without fuzzy matching; the executor applies the PN rules to every candidate.
pub fn name_index_keys(name: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        let s = fold_case(s.trim_matches(|c: char| c == ' ' || c == '^' || c == '='));
        if !s.is_empty() && !keys.contains(&s) {
            keys.push(s);
        }
    };
    add(name);
    for group in name.split('=') {
        add(group);
        add(&group.replace('^', ""));
        for component in group.split('^') {
            add(component);
        }
    }
    keys
}
