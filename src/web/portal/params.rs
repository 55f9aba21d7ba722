//! The study search's URL parameters (`/studies?patient_id=&patient_name=&date_from=&date_to=
//! &modality=&accession=&page=&per_page=`) → a STUDY-level query. Bad input is a 400 that says
//! which parameter and why; empty parameters are absent (an HTML form sends every field).

use std::collections::HashMap;

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;

use super::display::url_component;
use super::query::{STUDY_KEYS, build};
use crate::query::{Condition, Level, Model, Query, ValueKind};
use crate::web::HttpError;

pub const DEFAULT_PER_PAGE: usize = 25;
pub const MAX_PER_PAGE: usize = 200;
const MAX_PAGE: usize = 100_000;

/// The search as the user typed it (echoed into the form and the page links).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudySearch {
    pub patient_id: String,
    pub patient_name: String,
    /// `YYYY-MM-DD`.
    pub date_from: String,
    pub date_to: String,
    pub modality: String,
    pub accession: String,
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
}

fn bad(message: String) -> HttpError {
    HttpError::BadRequest(message)
}

/// Free text of a DICOM string VR: at most `max` characters, one value (no `\`), no control
/// characters.
fn text_param(name: &str, value: &str, max: usize) -> Result<String, HttpError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(bad(format!("{name} is longer than {max} characters")));
    }
    if value.contains('\\') {
        return Err(bad(format!(
            "{name} must not contain a backslash (it separates DICOM values)"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(format!("{name} must not contain control characters")));
    }
    Ok(value.to_string())
}

/// `YYYY-MM-DD` (a real calendar date) → `YYYYMMDD`.
pub fn parse_date(name: &str, value: &str) -> Result<String, HttpError> {
    let complain = || {
        bad(format!(
            "{name} must be a date as YYYY-MM-DD, got {value:?}"
        ))
    };
    let b = value.as_bytes();
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return Err(complain());
    }
    let year: u32 = value[..4].parse().map_err(|_| complain())?;
    let month: u32 = value[5..7].parse().map_err(|_| complain())?;
    let day: u32 = value[8..].parse().map_err(|_| complain())?;
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(complain()),
    };
    if day == 0 || day > days {
        return Err(complain());
    }
    Ok(format!("{}{}{}", &value[..4], &value[5..7], &value[8..]))
}

fn number_param(name: &str, value: &str, min: usize, max: usize) -> Result<usize, HttpError> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            bad(format!(
                "{name} must be a whole number from {min} to {max}, got {value:?}"
            ))
        })
}

impl StudySearch {
    pub fn parse(params: &HashMap<String, String>) -> Result<StudySearch, HttpError> {
        let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
        let modality = get("modality").trim().to_string();
        if !modality.is_empty()
            && (modality.len() > 16
                || !modality
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
        {
            return Err(bad(format!(
                "modality must be a DICOM modality code such as CT or MR, got {modality:?}"
            )));
        }
        let search = StudySearch {
            patient_id: text_param("patient_id", get("patient_id"), 64)?,
            patient_name: text_param("patient_name", get("patient_name"), 200)?,
            date_from: get("date_from").trim().to_string(),
            date_to: get("date_to").trim().to_string(),
            modality,
            accession: text_param("accession", get("accession"), 16)?,
            page: match get("page").trim() {
                "" => 1,
                p => number_param("page", p, 1, MAX_PAGE)?,
            },
            per_page: match get("per_page").trim() {
                "" => DEFAULT_PER_PAGE,
                p => number_param("per_page", p, 1, MAX_PER_PAGE)?,
            },
        };
        // Checked here so a bad date is a 400 even before a query is built.
        search.date_range()?;
        Ok(search)
    }

    /// The DA range condition text (`YYYYMMDD-YYYYMMDD`, either end open), if any.
    fn date_range(&self) -> Result<Option<String>, HttpError> {
        let from = (!self.date_from.is_empty())
            .then(|| parse_date("date_from", &self.date_from))
            .transpose()?;
        let to = (!self.date_to.is_empty())
            .then(|| parse_date("date_to", &self.date_to))
            .transpose()?;
        if let (Some(f), Some(t)) = (&from, &to)
            && f > t
        {
            return Err(bad(format!(
                "date_from {} is after date_to {}",
                self.date_from, self.date_to
            )));
        }
        Ok(match (from, to) {
            (None, None) => None,
            (f, t) => Some(format!(
                "{}-{}",
                f.unwrap_or_default(),
                t.unwrap_or_default()
            )),
        })
    }

    pub fn default_per_page(&self) -> bool {
        self.per_page == DEFAULT_PER_PAGE
    }

    /// Whether any filter is set (the list is then "search results", else "all studies").
    pub fn is_filtered(&self) -> bool {
        !(self.patient_id.is_empty()
            && self.patient_name.is_empty()
            && self.date_from.is_empty()
            && self.date_to.is_empty()
            && self.modality.is_empty()
            && self.accession.is_empty())
    }

    /// The STUDY-level query: the same keys and matching rules as a C-FIND with these values.
    pub fn query(&self) -> Result<Query, HttpError> {
        let mut conditions: Vec<(Tag, VR, Condition)> = Vec::new();
        let mut add = |tag: Tag, vr: VR, name: &str, value: &str| -> Result<(), HttpError> {
            if value.is_empty() {
                return Ok(());
            }
            let condition = Condition::parse(ValueKind::from_vr(vr), value)
                .map_err(|e| bad(format!("{name}: {e}")))?;
            if !condition.is_universal() {
                conditions.push((tag, vr, condition));
            }
            Ok(())
        };
        add(tags::PATIENT_ID, VR::LO, "patient_id", &self.patient_id)?;
        add(
            tags::PATIENT_NAME,
            VR::PN,
            "patient_name",
            &self.patient_name,
        )?;
        add(tags::ACCESSION_NUMBER, VR::SH, "accession", &self.accession)?;
        add(
            tags::MODALITIES_IN_STUDY,
            VR::CS,
            "modality",
            &self.modality,
        )?;
        if let Some(range) = self.date_range()? {
            add(tags::STUDY_DATE, VR::DA, "date", &range)?;
        }
        Ok(build(
            Model::StudyRoot,
            Level::Study,
            conditions,
            STUDY_KEYS,
        ))
    }

    /// `/studies?…` for this search at `page` (the filters in a stable order, empty ones left
    /// out, so links are short and shareable).
    pub fn href(&self, page: usize) -> String {
        let mut parts: Vec<String> = [
            ("patient_id", &self.patient_id),
            ("patient_name", &self.patient_name),
            ("date_from", &self.date_from),
            ("date_to", &self.date_to),
            ("modality", &self.modality),
            ("accession", &self.accession),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_component(v)))
        .collect();
        if self.per_page != DEFAULT_PER_PAGE {
            parts.push(format!("per_page={}", self.per_page));
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() {
            "/studies".into()
        } else {
            format!("/studies?{}", parts.join("&"))
        }
    }

    /// The same search for one modality (a catalog entry), from page 1.
    pub fn with_modality(&self, modality: &str) -> StudySearch {
        StudySearch {
            modality: modality.to_string(),
            page: 1,
            ..self.clone()
        }
    }
}
