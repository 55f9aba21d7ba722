//! QIDO-RS query parameters (PS3.18 8.3.4): attribute matching (`{attributeID}={value}`,
//! keywords or tags, one level of `Sequence.Attribute`), `includefield`, `fuzzymatching`,
//! `limit` and `offset`, checked and sorted by the level each attribute belongs to.

use std::collections::HashMap;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};

use crate::query::{Condition, Level, Model, QueryKey, ValueKind, keys};
use crate::web::HttpError;
use crate::web::dicomweb::json;

/// Most `includefield` entries one request may name (`all` asks for everything at once).
const MAX_INCLUDEFIELDS: usize = 256;
/// Most query parameters one request may have.
const MAX_PARAMETERS: usize = 512;

/// Attributes the answer adds itself (never asked of the engine).
const SYNTHETIC: &[Tag] = &[tags::RETRIEVE_URL, tags::INSTANCE_AVAILABILITY];

/// A parsed search: what to match at each level and what to return.
#[derive(Debug, Default)]
pub(super) struct Search {
    /// Matching keys (non-universal conditions, or sequence keys) by level.
    pub(super) matching: HashMap<Level, Vec<QueryKey>>,
    /// Return keys by level (the attribute's level; attributes outside the key table count as
    /// the searched level's, read from its stored header).
    pub(super) returned: HashMap<Level, Vec<(Tag, VR)>>,
    pub(super) fuzzy: bool,
    pub(super) limit: Option<usize>,
    pub(super) offset: usize,
}

/// An attribute of a query parameter: (the sequence it is in, if any; its tag; its VR).
type ParamKey = (Option<(Tag, VR)>, Tag, VR);

fn keyword(tag: Tag) -> String {
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.alias().to_string())
        .unwrap_or_else(|| json::tag_key(tag))
}

/// An attribute ID of a query: a keyword or 8 hex digits.
fn attribute(id: &str) -> Option<(Tag, VR)> {
    let (tag, entry) = if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        let raw = u32::from_str_radix(id, 16).ok()?;
        let tag = Tag((raw >> 16) as u16, raw as u16);
        (tag, StandardDataDictionary.by_tag(tag)?)
    } else {
        let entry = StandardDataDictionary.by_name(id)?;
        (entry.tag(), entry)
    };
    let vr = keys::by_tag(tag).map_or_else(|| entry.vr().relaxed(), |d| d.vr);
    Some((tag, vr))
}

/// The level an attribute belongs to in the Study Root model, if it is a key of the table.
fn table_level(tag: Tag) -> Option<Level> {
    keys::by_tag(tag).map(|d| Model::StudyRoot.level_of(d.level))
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Patient | Level::Study => "study",
        Level::Series => "series",
        Level::Image => "instance",
    }
}

fn unknown(id: &str) -> HttpError {
    HttpError::BadRequest(format!(
        "unknown query parameter or attribute {id:?} (expected limit, offset, fuzzymatching, includefield, or a DICOM keyword or tag)"
    ))
}

fn parse_count(name: &str, value: &str) -> Result<usize, HttpError> {
    value.trim().parse::<usize>().map_err(|_| {
        HttpError::BadRequest(format!(
            "{name} must be a non-negative integer, got {value:?}"
        ))
    })
}

fn condition(tag: Tag, vr: VR, raw: &str) -> Result<Condition, HttpError> {
    // UID lists may be separated by commas (PS3.18 8.3.4.1) as well as backslashes; so may
    // code strings (e.g. ModalitiesInStudy=CT,MR), which cannot contain commas.
    let value = if matches!(vr, VR::UI | VR::CS) {
        raw.replace(',', "\\")
    } else {
        raw.to_string()
    };
    Condition::parse(ValueKind::from_vr(vr), &value)
        .map_err(|e| HttpError::BadRequest(format!("bad value for {}: {e}", keyword(tag))))
}

impl Search {
    pub(super) fn parse(params: &[(String, String)], level: Level) -> Result<Search, HttpError> {
        if params.len() > MAX_PARAMETERS {
            return Err(HttpError::BadRequest(format!(
                "{} query parameters; at most {MAX_PARAMETERS} are accepted",
                params.len()
            )));
        }
        let mut search = Search::default();
        let mut include_all = false;
        let mut included: Vec<(Tag, VR)> = Vec::new();
        let mut includefields = 0usize;
        // Attribute values by (sequence, attribute); repeated parameters are joined.
        let mut values: Vec<(ParamKey, Vec<String>)> = Vec::new();
        for (name, value) in params {
            match name.to_ascii_lowercase().as_str() {
                "limit" => {
                    let limit = parse_count("limit", value)?;
                    if limit == 0 {
                        return Err(HttpError::BadRequest("limit must be at least 1".into()));
                    }
                    search.limit = Some(limit);
                }
                "offset" => search.offset = parse_count("offset", value)?,
                "fuzzymatching" => {
                    search.fuzzy = match value.trim() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(HttpError::BadRequest(format!(
                                "fuzzymatching must be true or false, got {other:?}"
                            )));
                        }
                    }
                }
                "includefield" => {
                    for id in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        includefields += 1;
                        if includefields > MAX_INCLUDEFIELDS {
                            return Err(HttpError::BadRequest(format!(
                                "too many includefield attributes (more than {MAX_INCLUDEFIELDS}); use includefield=all"
                            )));
                        }
                        if id == "all" {
                            include_all = true;
                            continue;
                        }
                        // A sequence path returns its top-level sequence.
                        let top = id.split('.').next().unwrap_or(id);
                        let attr = attribute(top).ok_or_else(|| unknown(id))?;
                        if !included.contains(&attr) {
                            included.push(attr);
                        }
                    }
                }
                _ => {
                    let mut path = name.split('.');
                    let first = path.next().unwrap_or_default();
                    let first = attribute(first).ok_or_else(|| unknown(name))?;
                    let key = match (path.next(), path.next()) {
                        (None, _) => (None, first.0, first.1),
                        (Some(inner), None) if first.1 == VR::SQ => {
                            let inner = attribute(inner).ok_or_else(|| unknown(name))?;
                            (Some(first), inner.0, inner.1)
                        }
                        _ => {
                            return Err(HttpError::BadRequest(format!(
                                "{name:?}: only one level of sequence matching (Sequence.Attribute) is supported"
                            )));
                        }
                    };
                    match values.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, v)) => {
                            if !matches!(key.2, VR::UI | VR::CS) {
                                return Err(HttpError::BadRequest(format!(
                                    "{name} is given more than once (only UID and code string attributes take value lists)"
                                )));
                            }
                            v.push(value.clone());
                        }
                        None => values.push((key, vec![value.clone()])),
                    }
                }
            }
        }
        for ((sequence, tag, vr), v) in values {
            let raw = v.join("\\");
            match sequence {
                None => {
                    let c = condition(tag, vr, &raw)?;
                    let attr_level = table_level(tag);
                    if c.is_universal() {
                        included.push((tag, vr));
                        continue;
                    }
                    let key_level = match attr_level {
                        Some(l) if l > level => {
                            return Err(HttpError::BadRequest(format!(
                                "{} is a {}-level attribute: a {} search cannot match on it",
                                keyword(tag),
                                level_name(l),
                                level_name(level)
                            )));
                        }
                        Some(l) => l,
                        // The instance's own header answers any attribute exactly.
                        None if level == Level::Image => Level::Image,
                        None => {
                            return Err(HttpError::BadRequest(format!(
                                "{} is not a matching attribute of a {} search (see the conformance statement for the supported keys)",
                                keyword(tag),
                                level_name(level)
                            )));
                        }
                    };
                    search
                        .matching
                        .entry(key_level)
                        .or_default()
                        .push(QueryKey {
                            tag,
                            vr,
                            condition: c,
                            items: None,
                        });
                }
                Some((seq_tag, seq_vr)) => {
                    let c = condition(tag, vr, &raw)?;
                    let seq_level = table_level(seq_tag).unwrap_or(level).min(level);
                    let keys = search.matching.entry(seq_level).or_default();
                    let sub = QueryKey {
                        tag,
                        vr,
                        condition: c,
                        items: None,
                    };
                    match keys.iter_mut().find(|k| k.tag == seq_tag) {
                        Some(k) => k.items.get_or_insert_with(Vec::new).push(sub),
                        None => keys.push(QueryKey {
                            tag: seq_tag,
                            vr: seq_vr,
                            condition: Condition::Universal,
                            items: Some(vec![sub]),
                        }),
                    }
                }
            }
        }
        // What comes back: the defaults of the searched level, and of the levels above when the
        // path does not name them (added by the caller), the included attributes, and with
        // `all` every key of the table at or above the level.
        let mut add = |level_of: Level, tag: Tag, vr: VR| {
            let list = search.returned.entry(level_of).or_default();
            if !list.iter().any(|(t, _)| *t == tag) {
                list.push((tag, vr));
            }
        };
        if include_all {
            for def in keys::all() {
                let l = Model::StudyRoot.level_of(def.level);
                if l <= level {
                    add(l, def.tag, def.vr);
                }
            }
        }
        for (tag, vr) in included {
            if SYNTHETIC.contains(&tag) {
                continue;
            }
            match table_level(tag) {
                // An attribute of a lower level has no single value here: not returned.
                Some(l) if l > level => {}
                Some(l) => add(l, tag, vr),
                None => add(level, tag, vr),
            }
        }
        Ok(search)
    }

    pub(super) fn return_defaults(&mut self, level: Level, defaults: &[Tag]) {
        let list = self.returned.entry(level).or_default();
        for tag in defaults {
            if !list.iter().any(|(t, _)| t == tag) {
                let vr = keys::by_tag(*tag)
                    .map(|d| d.vr)
                    .or_else(|| {
                        StandardDataDictionary
                            .by_tag(*tag)
                            .map(|e| e.vr().relaxed())
                    })
                    .unwrap_or(VR::UN);
                list.push((*tag, vr));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn attributes_by_keyword_or_tag() {
        assert_eq!(attribute("PatientName"), Some((tags::PATIENT_NAME, VR::PN)));
        assert_eq!(attribute("00100010"), Some((tags::PATIENT_NAME, VR::PN)));
        assert_eq!(
            attribute("0020000d"),
            Some((tags::STUDY_INSTANCE_UID, VR::UI))
        );
        assert_eq!(attribute("NoSuchThing"), None);
    }

    #[test]
    fn parses_matching_and_return_keys() {
        let s = Search::parse(
            &params(&[
                ("PatientName", "SMITH*"),
                ("StudyDate", "20200101-20201231"),
                ("StudyInstanceUID", "1.2.3,1.2.4"),
                ("includefield", "00081030,PatientAge"),
                ("includefield", "Modality"),
                ("limit", "5"),
                ("offset", "10"),
                ("fuzzymatching", "true"),
            ]),
            Level::Study,
        )
        .unwrap();
        assert_eq!((s.limit, s.offset, s.fuzzy), (Some(5), 10, true));
        let study = &s.matching[&Level::Study];
        assert_eq!(study.len(), 3);
        assert_eq!(
            study
                .iter()
                .find(|k| k.tag == tags::STUDY_INSTANCE_UID)
                .unwrap()
                .condition,
            Condition::UidList(vec!["1.2.3".into(), "1.2.4".into()])
        );
        let returned = &s.returned[&Level::Study];
        assert!(returned.contains(&(tags::STUDY_DESCRIPTION, VR::LO)));
        assert!(returned.contains(&(tags::PATIENT_AGE, VR::AS)));
        // Modality is a series attribute: no single value for a study, not returned
        assert!(
            !s.returned
                .values()
                .flatten()
                .any(|(t, _)| *t == tags::MODALITY)
        );
    }

    #[test]
    fn refuses_bad_input_with_its_name() {
        let err = |p: &[(&str, &str)], level| match Search::parse(&params(p), level) {
            Err(HttpError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(&[("limit", "-1")], Level::Study).contains("limit"));
        assert!(err(&[("offset", "x")], Level::Study).contains("offset"));
        assert!(err(&[("Bogus", "1")], Level::Study).contains("Bogus"));
        assert!(err(&[("includefield", "Nope")], Level::Study).contains("Nope"));
        assert!(err(&[("StudyInstanceUID", "1.2.x")], Level::Study).contains("StudyInstanceUID"));
        assert!(err(&[("Modality", "CT")], Level::Study).contains("Modality"));
        assert!(err(&[("fuzzymatching", "yes")], Level::Study).contains("fuzzymatching"));
        let many = vec!["00100010"; 5000].join(",");
        assert!(err(&[("includefield", many.as_str())], Level::Study).contains("includefield"));
        assert!(err(&[("StudyDate", "2020-01-01x")], Level::Study).contains("StudyDate"));
    }
}
