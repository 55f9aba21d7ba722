//! The query-key table (`dictionaries/query-keys.tsv`): which attributes belong to which level.

use std::collections::HashMap;
use std::sync::LazyLock;

use dicom_core::{Tag, VR};

use super::Level;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Unique,
    Required,
    Optional,
}

#[derive(Debug, Clone)]
pub struct KeyDef {
    pub level: Level,
    pub tag: Tag,
    pub keyword: &'static str,
    pub vr: VR,
    pub key_type: KeyType,
}

const TABLE: &str = include_str!("../../dictionaries/query-keys.tsv");

static KEYS: LazyLock<Vec<KeyDef>> = LazyLock::new(|| {
    TABLE
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut c = line.split('\t');
            let level = match c.next()? {
                "PATIENT" => Level::Patient,
                "STUDY" => Level::Study,
                "SERIES" => Level::Series,
                "IMAGE" => Level::Image,
                _ => return None,
            };
            let raw = u32::from_str_radix(c.next()?, 16).ok()?;
            let keyword = c.next()?;
            let vr: VR = c.next()?.parse().ok()?;
            let key_type = match c.next()?.trim() {
                "U" => KeyType::Unique,
                "R" => KeyType::Required,
                _ => KeyType::Optional,
            };
            Some(KeyDef {
                level,
                tag: Tag((raw >> 16) as u16, (raw & 0xffff) as u16),
                keyword,
                vr,
                key_type,
            })
        })
        .collect()
});

static BY_TAG: LazyLock<HashMap<Tag, &'static KeyDef>> =
    LazyLock::new(|| KEYS.iter().map(|k| (k.tag, k)).collect());

pub fn all() -> &'static [KeyDef] {
    &KEYS
}

pub fn by_tag(tag: Tag) -> Option<&'static KeyDef> {
    BY_TAG.get(&tag).copied()
}

/// The unique key of a level.
pub fn unique_key(level: Level) -> Tag {
    use dicom_dictionary_std::tags;
    match level {
        Level::Patient => tags::PATIENT_ID,
        Level::Study => tags::STUDY_INSTANCE_UID,
        Level::Series => tags::SERIES_INSTANCE_UID,
        Level::Image => tags::SOP_INSTANCE_UID,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    use dicom_dictionary_std::StandardDataDictionary;

    #[test]
    fn table_matches_the_standard_dictionary() {
        assert!(all().len() > 40);
        for k in all() {
            let entry = StandardDataDictionary
                .by_tag(k.tag)
                .unwrap_or_else(|| panic!("{} not in the dictionary", k.keyword));
            assert_eq!(entry.alias(), k.keyword, "keyword of {}", k.tag);
        }
        for level in [Level::Patient, Level::Study, Level::Series, Level::Image] {
            let u = by_tag(unique_key(level)).unwrap();
            assert_eq!(u.key_type, KeyType::Unique);
            assert_eq!(u.level, level);
        }
    }
}
