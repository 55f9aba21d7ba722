//! A C-FIND / C-MOVE / C-GET identifier (a DICOM data set) → [`Query`], with the checks of
//! PS3.4 C.4.1.2 (hierarchical search, keys of the right level, VRs).

use dicom_core::header::Header;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use super::keys::{self, KeyType};
use super::matching::{Condition, ValueKind};
use super::{Level, Model, Query, QueryError, QueryKey};

/// Options negotiated or configured outside the identifier.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    pub case_insensitive_names: bool,
    pub combined_datetime: bool,
    /// Fuzzy semantic matching of person names was negotiated (C-FIND only).
    pub fuzzy_names: bool,
}

fn element_text(e: &InMemElement) -> String {
    e.to_str().map(|s| s.into_owned()).unwrap_or_default()
}

fn keyword(tag: Tag) -> String {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.alias().to_string())
        .unwrap_or_else(|| format!("{tag}"))
}

fn sub_keys(item: &InMemDicomObject) -> Result<Vec<QueryKey>, QueryError> {
    let mut out = Vec::new();
    for e in item.iter() {
        let tag = e.tag();
        if tag.element() == 0 {
            continue;
        }
        let vr = e.vr();
        let condition = if vr == VR::SQ {
            Condition::Universal
        } else {
            Condition::parse(ValueKind::from_vr(vr), &element_text(e)).map_err(|err| {
                QueryError::BadValue {
                    keyword: keyword(tag),
                    message: err.to_string(),
                }
            })?
        };
        out.push(QueryKey {
            tag,
            vr,
            condition,
            items: None,
        });
    }
    Ok(out)
}

/// Interpret an identifier for `model`.
pub fn parse(
    identifier: &InMemDicomObject,
    model: Model,
    options: ParseOptions,
) -> Result<Query, QueryError> {
    let level_text = identifier
        .get(tags::QUERY_RETRIEVE_LEVEL)
        .map(element_text)
        .ok_or(QueryError::MissingLevel)?;
    let level = Level::parse(&level_text)
        .ok_or_else(|| QueryError::UnknownLevel(level_text.trim().to_string()))?;
    if model == Model::StudyRoot && level == Level::Patient {
        return Err(QueryError::LevelNotInModel("PATIENT"));
    }
    let mut query = Query {
        model,
        level,
        keys: Vec::new(),
        case_insensitive_names: options.case_insensitive_names,
        combined_datetime: options.combined_datetime,
        fuzzy_names: options.fuzzy_names,
        unsupported_matching_keys: false,
    };
    for element in identifier.iter() {
        let tag = element.tag();
        if tag.element() == 0
            || tag == tags::QUERY_RETRIEVE_LEVEL
            || tag == tags::SPECIFIC_CHARACTER_SET
        {
            continue;
        }
        let vr = element.vr();
        let def = keys::by_tag(tag);
        if let Some(def) = def {
            let key_level = model.level_of(def.level);
            if key_level > level {
                return Err(QueryError::KeyOfAnotherLevel {
                    keyword: def.keyword,
                    key_level: key_level.as_str(),
                    level: level.as_str(),
                });
            }
            if vr != def.vr && vr != VR::UN {
                return Err(QueryError::WrongVr {
                    keyword: def.keyword,
                    got: vr.to_string().into(),
                    expected: def.vr.to_string().into(),
                });
            }
        }
        let (condition, items) = if vr == VR::SQ {
            let items = element
                .items()
                .and_then(|items| items.first())
                .map(sub_keys)
                .transpose()?;
            (Condition::Universal, items)
        } else {
            let kind = ValueKind::from_vr(def.map(|d| d.vr).unwrap_or(vr));
            let condition = Condition::parse(kind, &element_text(element)).map_err(|err| {
                QueryError::BadValue {
                    keyword: keyword(tag),
                    message: err.to_string(),
                }
            })?;
            (condition, None)
        };
        let matchable = def.is_some();
        if !matchable
            && (!condition.is_universal()
                || items
                    .as_ref()
                    .is_some_and(|i| i.iter().any(|k| !k.condition.is_universal())))
        {
            // Not a key we match on: returned, but the peer is told (pending 0xFF01).
            query.unsupported_matching_keys = true;
            query.keys.push(QueryKey {
                tag,
                vr,
                condition: Condition::Universal,
                items: None,
            });
            continue;
        }
        if let Some(def) = def {
            let key_level = model.level_of(def.level);
            // Hierarchical search (C.4.1.3.1): a unique key of a level above the query level
            // must be one value.
            // In Study Root the patient level is folded into the study level, so PatientID is
            // not a unique key there.
            let unique_here =
                def.key_type == KeyType::Unique && model.level_of(def.level) == def.level;
            if key_level < level
                && unique_here
                && !matches!(condition, Condition::Single(_))
                && !condition.is_universal()
            {
                return Err(QueryError::UpperKeyNotUnique {
                    keyword: def.keyword,
                    level: level.as_str(),
                });
            }
        }
        query.keys.push(QueryKey {
            tag,
            vr: def.map(|d| d.vr).unwrap_or(vr),
            condition,
            items,
        });
    }
    // The unique key of the query level is always returned.
    let unique = keys::unique_key(level);
    if query.key(unique).is_none() {
        let vr = keys::by_tag(unique).map(|d| d.vr).unwrap_or(VR::UI);
        query.keys.push(QueryKey {
            tag: unique,
            vr,
            condition: Condition::Universal,
            items: None,
        });
    }
    Ok(query)
}
