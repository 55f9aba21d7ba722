//! DICOM attribute matching (PS3.4 C.2.2.2): universal, single value, wildcard, range, UID list
//! and PN rules. Pure functions over decoded (Unicode) values, so the query's and the stored
//! object's character sets do not matter here.

/// How one query key constrains an attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Zero-length key: matches everything (C.2.2.2.3).
    Universal,
    /// Single value matching (C.2.2.2.1).
    Single(String),
    /// `*` and `?` wildcards (C.2.2.2.4).
    Wildcard(String),
    /// DA/TM/DT range, both ends normalised (C.2.2.2.5); `None` is open.
    Range {
        low: Option<String>,
        high: Option<String>,
    },
    /// List of UIDs (C.2.2.2.2).
    UidList(Vec<String>),
    /// A multi-valued key: matches when any of its values does.
    AnyOf(Vec<Condition>),
}

/// Kind of value, deciding which matching rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Date,
    Time,
    DateTime,
    PersonName,
    Uid,
    /// Any other string VR: case-sensitive, wildcards allowed.
    Text,
    /// Numbers (IS, DS, US...): single value only, compared as numbers when they parse.
    Number,
}

impl ValueKind {
    pub fn from_vr(vr: dicom_core::VR) -> ValueKind {
        use dicom_core::VR::*;
        match vr {
            DA => ValueKind::Date,
            TM => ValueKind::Time,
            DT => ValueKind::DateTime,
            PN => ValueKind::PersonName,
            UI => ValueKind::Uid,
            IS | DS | US | SS | UL | SL | FL | FD | UV | SV => ValueKind::Number,
            _ => ValueKind::Text,
        }
    }
}

/// How person names are compared (PS3.4 C.2.2.2.1, C.2.2.2.4, C.5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NameRules {
    /// Ignore case (`query.case_insensitive_names`).
    pub case_insensitive: bool,
    /// Fuzzy semantic matching of person names was negotiated (byte 3 of the FIND extended
    /// negotiation): a key is also tried against each single component, so `WIL*` finds
    /// `SMITH^WILLIAM`. Without it a key is matched against the whole value and each component
    /// group only, so a surname prefix finds surnames.
    pub fuzzy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("invalid range {0:?}")]
    BadRange(String),
    #[error("invalid {kind} value {value:?}")]
    BadValue { kind: &'static str, value: String },
}

fn pad(value: &str, width: usize, fill: char) -> String {
    let mut s: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    while s.len() < width {
        s.push(fill);
    }
    s
}

/// Normalise a DA/TM/DT bound so that plain string order is time order. `high` ends fill the
/// unspecified precision with 9s ("10" as an upper time bound means up to 10:59:59.999999).
pub fn normalize_temporal(
    kind: ValueKind,
    value: &str,
    high: bool,
) -> Result<String, ConditionError> {
    let v = value.trim();
    let fill = if high { '9' } else { '0' };
    let bad = |k| ConditionError::BadValue {
        kind: k,
        value: v.to_string(),
    };
    match kind {
        ValueKind::Date => {
            // Legacy ACR-NEMA dates (YYYY.MM.DD) are accepted too.
            let digits: String = v.chars().filter(|c| *c != '.').collect();
            if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("DA"));
            }
            Ok(digits)
        }
        ValueKind::Time => {
            let t: String = v.chars().filter(|c| *c != ':').collect();
            let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
            if whole.is_empty()
                || whole.len() > 6
                || whole.len() % 2 == 1
                || !whole.bytes().all(|b| b.is_ascii_digit())
                || !frac.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(bad("TM"));
            }
            let frac_fill = if frac.is_empty() { fill } else { '0' };
            Ok(format!(
                "{}.{}",
                pad(whole, 6, fill),
                pad(frac, 6, frac_fill)
            ))
        }
        ValueKind::DateTime => {
            // Drop a UTC offset suffix: offsets are not adjusted (timezone query adjustment is
            // not negotiated).
            let core = v.split(['+', '-']).next().unwrap_or(v);
            let (whole, frac) = core.split_once('.').unwrap_or((core, ""));
            if whole.len() < 4
                || whole.len() > 14
                || !whole.bytes().all(|b| b.is_ascii_digit())
                || !frac.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(bad("DT"));
            }
            let frac_fill = if frac.is_empty() { fill } else { '0' };
            Ok(format!(
                "{}.{}",
                pad(whole, 14, fill),
                pad(frac, 6, frac_fill)
            ))
        }
        _ => Ok(v.to_string()),
    }
}

impl Condition {
    /// Interpret a query key's value (already decoded to Unicode, multiple values joined by `\`).
    pub fn parse(kind: ValueKind, raw: &str) -> Result<Condition, ConditionError> {
        let value = raw.trim_matches(|c: char| c == ' ' || c == '\0');
        if value.is_empty() || value == "*" {
            return Ok(Condition::Universal);
        }
        match kind {
            ValueKind::Uid => {
                let uids: Vec<String> = value
                    .split('\\')
                    .map(|u| crate::uid::trim(u.trim()).to_string())
                    .filter(|u| !u.is_empty())
                    .collect();
                // No wildcards or ranges for UIDs (C.2.2.2.2): anything but a valid UID is an error.
                if let Some(bad) = uids.iter().find(|u| crate::uid::validate(u).is_err()) {
                    return Err(ConditionError::BadValue {
                        kind: "UI",
                        value: bad.clone(),
                    });
                }
                Ok(if uids.len() == 1 {
                    Condition::Single(uids.into_iter().next().unwrap_or_default())
                } else {
                    Condition::UidList(uids)
                })
            }
            ValueKind::Date | ValueKind::Time | ValueKind::DateTime => {
                if let Some((low, high)) = value
                    .split_once('-')
                    .filter(|_| kind != ValueKind::DateTime || is_dt_range(value))
                {
                    if low.trim().is_empty() && high.trim().is_empty() {
                        return Err(ConditionError::BadRange(value.to_string()));
                    }
                    let low = (!low.trim().is_empty())
                        .then(|| normalize_temporal(kind, low, false))
                        .transpose()?;
                    let high = (!high.trim().is_empty())
                        .then(|| normalize_temporal(kind, high, true))
                        .transpose()?;
                    Ok(Condition::Range { low, high })
                } else {
                    // A single date/time matches its whole precision: "2024" as DT is a year.
                    let low = normalize_temporal(kind, value, false)?;
                    let high = normalize_temporal(kind, value, true)?;
                    Ok(Condition::Range {
                        low: Some(low),
                        high: Some(high),
                    })
                }
            }
            // Several values (e.g. ModalitiesInStudy "CT\\MR"): any of them may match.
            _ if value.contains('\\') => {
                let parts = value
                    .split('\\')
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| Condition::parse(kind, v))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(
                    if parts.iter().any(Condition::is_universal) || parts.is_empty() {
                        Condition::Universal
                    } else {
                        Condition::AnyOf(parts)
                    },
                )
            }
            _ if value.contains(['*', '?']) => Ok(Condition::Wildcard(value.to_string())),
            _ => Ok(Condition::Single(value.to_string())),
        }
    }

    pub fn is_universal(&self) -> bool {
        matches!(self, Condition::Universal)
    }

    /// Does a stored value (possibly multi-valued with `\`) satisfy the condition?
    /// An absent or empty stored value only matches a universal key.
    pub fn matches(&self, kind: ValueKind, stored: &str, names: NameRules) -> bool {
        if self.is_universal() {
            return true;
        }
        let stored = stored.trim_matches(|c: char| c == ' ' || c == '\0');
        if stored.is_empty() {
            return false;
        }
        stored
            .split('\\')
            .any(|v| self.matches_one(kind, v.trim(), names))
    }

    fn matches_one(&self, kind: ValueKind, value: &str, names: NameRules) -> bool {
        let ci_names = names.case_insensitive;
        match self {
            Condition::Universal => true,
            Condition::UidList(uids) => uids.iter().any(|u| u == crate::uid::trim(value)),
            Condition::AnyOf(parts) => parts.iter().any(|c| c.matches_one(kind, value, names)),
            Condition::Range { low, high } => {
                let (Ok(lo_v), Ok(hi_v)) = (
                    normalize_temporal(kind, value, false),
                    normalize_temporal(kind, value, true),
                ) else {
                    return false;
                };
                // The stored value's own precision spans [lo_v, hi_v]; it matches when that
                // span overlaps the query's.
                low.as_ref().is_none_or(|l| hi_v >= *l) && high.as_ref().is_none_or(|h| lo_v <= *h)
            }
            Condition::Single(q) => match kind {
                ValueKind::PersonName => {
                    name_candidates(value, names.fuzzy).any(|v| text_eq(q, &v, ci_names))
                }
                ValueKind::Number => match (q.trim().parse::<f64>(), value.parse::<f64>()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => q.trim() == value,
                },
                ValueKind::Uid => crate::uid::trim(q) == crate::uid::trim(value),
                _ => q == value,
            },
            Condition::Wildcard(pattern) => match kind {
                ValueKind::PersonName => {
                    let p = if ci_names {
                        pattern.to_lowercase()
                    } else {
                        pattern.clone()
                    };
                    name_candidates(value, names.fuzzy).any(|v| {
                        let v = if ci_names { v.to_lowercase() } else { v };
                        wildcard_match(&p, &v)
                    })
                }
                _ => wildcard_match(pattern, value),
            },
        }
    }
}

/// In a DT key, '-' separates a range or starts a UTC offset ("…120000-0500"): it is an offset
/// when exactly four digits follow a value that has at least the hour.
fn is_dt_range(value: &str) -> bool {
    match value.find('-') {
        Some(i) => {
            let (before, after) = (&value[..i], &value[i + 1..]);
            let offset =
                after.len() == 4 && after.bytes().all(|b| b.is_ascii_digit()) && before.len() >= 10;
            !offset
        }
        None => false,
    }
}

fn text_eq(q: &str, v: &str, ci: bool) -> bool {
    if ci {
        q.to_lowercase() == v.to_lowercase()
    } else {
        q == v
    }
}

/// The strings a PN key is tried against (PS3.4 C.2.2.2.1, C.2.2.2.4: a key is matched
/// against the value, per component group): the whole value, each component group
/// (alphabetic, ideographic, phonetic), and each group without its `^` separators — so `郭*`
/// finds `Kuo^Cheng-Ta=郭^政達` and `郭政達` finds `郭^政達`, while `WIL*` does not find
/// `SMITH^WILLIAM`. With fuzzy semantic matching (`fuzzy`) also each single component, so
/// `JÜRGEN` finds `MÜLLER^JÜRGEN`.
fn name_candidates(value: &str, fuzzy: bool) -> impl Iterator<Item = String> + '_ {
    let whole = std::iter::once(value.trim_end_matches(['^', '=', ' ']).to_string());
    let groups = value
        .split('=')
        .filter(|g| !g.is_empty())
        .flat_map(move |group| {
            let g = group.trim_end_matches(['^', ' ']);
            let compact: String = g.replace('^', "");
            let components = g
                .split('^')
                .filter(move |c| fuzzy && !c.trim().is_empty())
                .map(|c| c.trim().to_string());
            std::iter::once(g.to_string())
                .chain(std::iter::once(compact))
                .chain(components)
        });
    whole.chain(groups)
}

/// `*` matches any run of characters (also none), `?` exactly one; everything else literally.
pub fn wildcard_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The literal prefix of a wildcard pattern (what an ordered index can seek to).
pub fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?']).unwrap_or(pattern.len());
    &pattern[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValueKind::*;

    const CI: NameRules = NameRules {
        case_insensitive: true,
        fuzzy: false,
    };
    const FUZZY: NameRules = NameRules {
        case_insensitive: true,
        fuzzy: true,
    };

    fn m(kind: ValueKind, query: &str, stored: &str) -> bool {
        Condition::parse(kind, query)
            .unwrap()
            .matches(kind, stored, CI)
    }

    fn fuzzy(query: &str, stored: &str) -> bool {
        Condition::parse(PersonName, query)
            .unwrap()
            .matches(PersonName, stored, FUZZY)
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("AB*", "ABC"));
        assert!(wildcard_match("A?C", "ABC"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*C", "ABC"));
        assert!(!wildcard_match("A?C", "AC"));
        assert!(wildcard_match("a*b*c", "aXbYc"));
        assert!(!wildcard_match("a*b*c", "aXbY"));
        assert_eq!(literal_prefix("SMI*TH?"), "SMI");
    }

    #[test]
    fn universal_and_empty_values() {
        assert!(m(Text, "", "anything"));
        assert!(m(Text, "", ""));
        assert!(!m(Text, "CT", ""));
        assert!(m(Text, "*", ""));
    }

    #[test]
    fn person_names_per_component_group() {
        assert!(m(PersonName, "müller*", "MÜLLER^JÜRGEN"));
        assert!(m(PersonName, "郭*", "郭政達"));
        assert!(m(PersonName, "郭*", "Kuo^Cheng-Ta=郭^政達"));
        assert!(m(PersonName, "郭*", "Guo^Zhengda=郭^政達"));
        assert!(m(PersonName, "郭政達", "Guo^Zhengda=郭^政達"));
        assert!(m(PersonName, "WIL*", "WILSON^JOHN"));
        assert!(m(PersonName, "doe^john", "DOE^JOHN"));
        assert!(!m(PersonName, "SMITH*", "DOE^JOHN"));
        // A surname prefix does not find given names (C.2.2.2.4 matches the value).
        assert!(!m(PersonName, "WIL*", "SMITH^WILLIAM"));
        assert!(!m(PersonName, "JÜRGEN", "MÜLLER^JÜRGEN"));
        assert!(!m(PersonName, "政*", "Guo^Zhengda=郭^政達"));
        assert!(!Condition::parse(PersonName, "doe^john").unwrap().matches(
            PersonName,
            "DOE^JOHN",
            NameRules::default()
        ));
    }

    #[test]
    fn fuzzy_person_names_also_match_single_components() {
        assert!(fuzzy("WIL*", "SMITH^WILLIAM"));
        assert!(fuzzy("JÜRGEN", "MÜLLER^JÜRGEN"));
        assert!(fuzzy("政*", "Guo^Zhengda=郭^政達"));
        assert!(fuzzy("WIL*", "WILSON^JOHN"));
        assert!(!fuzzy("SMITH*", "DOE^JOHN"));
    }

    #[test]
    fn date_ranges() {
        assert!(m(Date, "20240101-20240131", "20240115"));
        assert!(!m(Date, "20240101-20240131", "20240201"));
        assert!(m(Date, "20240101-", "20250101"));
        assert!(m(Date, "-20240101", "20240101"));
        assert!(m(Date, "20240101", "20240101"));
        assert!(!m(Date, "20240101", "20240102"));
        assert!(Condition::parse(Date, "2024x101").is_err());
        assert!(Condition::parse(Date, "-").is_err());
    }

    #[test]
    fn time_ranges_respect_precision() {
        assert!(m(Time, "10-11", "105959"));
        assert!(m(Time, "10-11", "1130"));
        assert!(!m(Time, "10-11", "120000"));
        assert!(m(Time, "101500", "101500.123"));
        assert!(m(Time, "1015", "101533"));
    }

    #[test]
    fn datetime_ranges_and_offsets() {
        assert!(m(DateTime, "20240101-20240102", "20240101120000"));
        assert!(!m(DateTime, "20240101-20240102", "20240103000000"));
        assert!(m(DateTime, "20240101120000-0500", "20240101120000"));
    }

    #[test]
    fn uid_lists_and_multi_values() {
        assert!(m(Uid, "1.2\\1.3", "1.3"));
        assert!(!m(Uid, "1.2\\1.3", "1.4"));
        assert!(m(Text, "MR", "CT\\MR"));
        assert!(m(Text, "MR\\US", "CT\\MR"));
        assert!(!m(Text, "PT\\US", "CT\\MR"));
        assert!(m(Number, "5", "5.0"));
    }
}
