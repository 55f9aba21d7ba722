//! Data tables from `dictionaries/`, compiled into the binary so the code and the
//! Conformance Statement are built from the same rows.

use std::collections::HashMap;
use std::sync::LazyLock;

/// One row of `dictionaries/storage-sop-classes.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSopClass {
    pub uid: &'static str,
    /// The constant's name in `dicom_dictionary_std::uids`.
    pub keyword: &'static str,
    pub name: &'static str,
    pub retired: bool,
}

const STORAGE_TABLE: &str = include_str!("../dictionaries/storage-sop-classes.tsv");

static STORAGE_SOP_CLASSES: LazyLock<Vec<StorageSopClass>> =
    LazyLock::new(|| parse_storage_table(STORAGE_TABLE));

static STORAGE_BY_UID: LazyLock<HashMap<&'static str, &'static StorageSopClass>> =
    LazyLock::new(|| STORAGE_SOP_CLASSES.iter().map(|c| (c.uid, c)).collect());

fn parse_storage_table(text: &'static str) -> Vec<StorageSopClass> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let (uid, keyword, name, status) =
                (cols.next()?, cols.next()?, cols.next()?, cols.next()?);
            Some(StorageSopClass {
                uid,
                keyword,
                name,
                retired: status.trim() == "retired",
            })
        })
        .collect()
}

/// Every storage SOP class we accept as C-STORE SCP.
pub fn storage_sop_classes() -> &'static [StorageSopClass] {
    &STORAGE_SOP_CLASSES
}

pub fn storage_sop_class(uid: &str) -> Option<&'static StorageSopClass> {
    STORAGE_BY_UID.get(uid).copied()
}

const MODALITY_TABLE: &str = include_str!("../dictionaries/modalities.tsv");

/// Modality code → display name, from `dictionaries/modalities.tsv` (the portal's exam types).
static MODALITY_NAMES: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    MODALITY_TABLE
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| line.split_once('\t'))
        .map(|(code, name)| (code.trim(), name.trim()))
        .collect()
});

/// The display name of a Modality (0008,0060) code, if the table knows it.
pub fn modality_name(code: &str) -> Option<&'static str> {
    MODALITY_NAMES.get(code).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::dictionary::UidDictionary;
    use dicom_dictionary_std::StandardSopClassDictionary;

    #[test]
    fn table_is_not_empty_and_unique() {
        let classes = storage_sop_classes();
        assert!(classes.len() > 150, "only {} rows", classes.len());
        assert_eq!(
            STORAGE_BY_UID.len(),
            classes.len(),
            "duplicate UIDs in the table"
        );
    }

    /// Each row must name a real SOP class of the standard dictionary, with the same name and
    /// retired flag, and its keyword must be the dicom-dictionary-std constant's name.
    #[test]
    fn every_row_matches_the_standard_dictionary() {
        for class in storage_sop_classes() {
            let entry = StandardSopClassDictionary
                .by_uid(class.uid)
                .unwrap_or_else(|| {
                    panic!("{} ({}) is not a standard SOP class", class.uid, class.name)
                });
            assert_eq!(entry.name, class.name, "name of {}", class.uid);
            assert_eq!(
                entry.retired, class.retired,
                "retired flag of {}",
                class.uid
            );
            // Acronyms (CT, MR, RT...) make CamelCase→SNAKE_CASE ambiguous: compare letters only.
            assert_eq!(
                entry.alias.to_ascii_uppercase(),
                class.keyword.replace('_', ""),
                "keyword of {}",
                class.uid
            );
        }
    }

    #[test]
    fn common_classes_present() {
        for uid in [
            dicom_dictionary_std::uids::CT_IMAGE_STORAGE,
            dicom_dictionary_std::uids::MR_IMAGE_STORAGE,
            dicom_dictionary_std::uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
            dicom_dictionary_std::uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE,
            dicom_dictionary_std::uids::ENHANCED_SR_STORAGE,
        ] {
            assert!(storage_sop_class(uid).is_some(), "{uid} missing");
        }
    }
    #[test]
    fn modality_names() {
        assert_eq!(modality_name("CT"), Some("Computed Tomography"));
        assert_eq!(modality_name("MR"), Some("Magnetic Resonance"));
        assert_eq!(modality_name("ES"), Some("Endoscopy"));
        assert_eq!(modality_name("NOPE"), None);
        assert!(
            MODALITY_NAMES.len() > 60,
            "only {} rows",
            MODALITY_NAMES.len()
        );
    }
}
