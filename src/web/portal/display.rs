//! How stored values are shown: person names, dates, times, instants, and the rows of study
//! lists built from the query engine's matches (decoded to Unicode by the index already).

use dicom_core::Tag;
use dicom_dictionary_std::tags;

use crate::query::Match;

/// The text of `tag` in a match's identifier (multiple values joined by `\`), trimmed.
pub fn text(m: &Match, tag: Tag) -> String {
    m.identifier
        .get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_matches(|c: char| c == ' ' || c == '\0').to_string())
        .unwrap_or_default()
}

/// A person name for reading: components separated by spaces, component groups (alphabetic,
/// ideographic, phonetic) by " = ", empty ones left out: `Kuo^Cheng-Ta=郭^政達` →
/// `Kuo Cheng-Ta = 郭 政達`.
pub fn person_name(value: &str) -> String {
    value
        .split('\\')
        .map(|name| {
            name.split('=')
                .map(|group| {
                    group
                        .split('^')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|g| !g.is_empty())
                .collect::<Vec<_>>()
                .join(" = ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// DA `YYYYMMDD` → `YYYY-MM-DD` (anything else as stored).
pub fn date(value: &str) -> String {
    let v = value.trim();
    if v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &v[..4], &v[4..6], &v[6..])
    } else {
        v.to_string()
    }
}

/// TM `HHMMSS.frac` → `HH:MM` (or `HH:MM:SS`), anything else as stored.
pub fn time(value: &str) -> String {
    let v = value.trim();
    let whole = v.split('.').next().unwrap_or(v);
    if !whole.bytes().all(|b| b.is_ascii_digit()) {
        return v.to_string();
    }
    match whole.len() {
        4 => format!("{}:{}", &whole[..2], &whole[2..]),
        6 => format!("{}:{}:{}", &whole[..2], &whole[2..4], &whole[4..]),
        _ => v.to_string(),
    }
}

/// Seconds since the Unix epoch → `YYYY-MM-DD HH:MM:SS UTC`; 0 is "never".
pub fn instant(secs: u64) -> String {
    if secs == 0 {
        return "never".into();
    }
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Percent-encode a value for a URL path segment or query value (everything but RFC 3986
/// unreserved characters).
pub fn url_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A byte count for people.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {} ({bytes} bytes)", UNITS[unit])
}

/// A SOP class by name when the storage table knows it.
pub fn sop_class(uid: &str) -> String {
    crate::dictionary::storage_sop_class(uid)
        .map(|c| c.name.trim_end_matches(" Storage").to_string())
        .unwrap_or_else(|| uid.to_string())
}

/// One study in a list (the portal's study list, a patient's record).
#[derive(Debug, Clone)]
pub struct StudyRow {
    pub uid: String,
    pub date: String,
    pub time: String,
    pub patient_name: String,
    pub patient_id: String,
    pub birth_date: String,
    pub sex: String,
    pub accession: String,
    pub description: String,
    pub modalities: String,
    pub series: String,
    pub instances: String,
}

impl StudyRow {
    pub fn from_match(m: &Match) -> StudyRow {
        StudyRow {
            uid: m.key.clone(),
            date: date(&text(m, tags::STUDY_DATE)),
            time: time(&text(m, tags::STUDY_TIME)),
            patient_name: person_name(&text(m, tags::PATIENT_NAME)),
            patient_id: text(m, tags::PATIENT_ID),
            birth_date: date(&text(m, tags::PATIENT_BIRTH_DATE)),
            sex: text(m, tags::PATIENT_SEX),
            accession: text(m, tags::ACCESSION_NUMBER),
            description: text(m, tags::STUDY_DESCRIPTION),
            modalities: text(m, tags::MODALITIES_IN_STUDY).replace('\\', ", "),
            series: text(m, tags::NUMBER_OF_STUDY_RELATED_SERIES),
            instances: text(m, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        }
    }

    /// The patient page link's path segment.
    pub fn patient_href(&self) -> String {
        format!("/patients/{}", url_component(&self.patient_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_dates_instants() {
        assert_eq!(
            person_name("Kuo^Cheng-Ta=郭^政達"),
            "Kuo Cheng-Ta = 郭 政達"
        );
        assert_eq!(person_name("MÜLLER^JÜRGEN^^^"), "MÜLLER JÜRGEN");
        assert_eq!(person_name("=郭^政達"), "郭 政達");
        assert_eq!(date("20240131"), "2024-01-31");
        assert_eq!(date("2024"), "2024");
        assert_eq!(time("101530.123"), "10:15:30");
        assert_eq!(time("1015"), "10:15");
        assert_eq!(instant(0), "never");
        assert_eq!(instant(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(instant(1_764_936_000 + 3_723), "2025-12-05 13:02:03 UTC");
        assert_eq!(url_component("A B/é?&"), "A%20B%2F%C3%A9%3F%26");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB (1536 bytes)");
    }
}
