//! Character sets of text values (PS3.5 §6.1, PS3.3 C.12.1.1.2), beyond what dicom-rs decodes.
//!
//! dicom-rs 0.10 decodes text with the **first** value of Specific Character Set (0008,0005)
//! only, so ISO 2022 code extensions (`\ISO 2022 IR 87`, `ISO 2022 IR 13\ISO 2022 IR 87`,
//! `\ISO 2022 IR 149`, `\ISO 2022 IR 58`, escapes inside single-byte sets) come out as escape
//! sequences and stray bytes. This module implements PS3.5 §6.1.2.5: the escape sequences that
//! switch G0/G1 inside a value, and the return to the initial state at each value, each PN
//! component group and component, and each line. It turns the text of a data set into Unicode
//! for the index and the matching rules, and encodes Unicode back into a requester's ISO 2022
//! character set for C-FIND responses. Stored objects are never touched.
//!
//! - [`graphic`]: the designatable sets, their escapes and code tables (from `encoding_rs`);
//! - [`decode`]: bytes of a value in a code-extension character set → Unicode;
//! - [`encode`]: Unicode → bytes in a code-extension character set (or `None`);
//! - [`dataset`]: a whole parsed data set → Unicode text, as the index keeps it.

pub mod dataset;
pub mod decode;
pub mod encode;
pub mod graphic;

use graphic::{Graphic, Upper};

/// One defined term of (0008,0005) that we can handle: the sets it designates initially (for
/// the first value) or makes available (for the other values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Term {
    g0: Graphic,
    g1: Option<Graphic>,
}

/// The defined terms of PS3.3 Tables C.12-2 to C.12-4 that are ISO 2022 designations. Both the
/// `ISO_IR nnn` and the `ISO 2022 IR nnn` spelling are accepted for the single-byte sets.
fn term(value: &str) -> Option<Term> {
    let ascii_with = |g1: Graphic| Term {
        g0: Graphic::Ascii,
        g1: Some(g1),
    };
    let number = value
        .strip_prefix("ISO 2022 IR ")
        .or_else(|| value.strip_prefix("ISO_IR "))?;
    let upper = |u: Upper| Some(ascii_with(Graphic::Upper(u)));
    match number.trim() {
        "6" => Some(Term {
            g0: Graphic::Ascii,
            g1: None,
        }),
        "13" => Some(Term {
            g0: Graphic::JisRoman,
            g1: Some(Graphic::JisKatakana),
        }),
        "100" => upper(Upper::Latin1),
        "101" => upper(Upper::Latin2),
        "109" => upper(Upper::Latin3),
        "110" => upper(Upper::Latin4),
        "144" => upper(Upper::Cyrillic),
        "127" => upper(Upper::Arabic),
        "126" => upper(Upper::Greek),
        "138" => upper(Upper::Hebrew),
        "148" => upper(Upper::Latin5),
        "203" => upper(Upper::Latin9),
        "166" => upper(Upper::Thai),
        // Multi-byte sets exist only with code extensions (PS3.3 Table C.12-4).
        "87" if value.starts_with("ISO 2022") => Some(Term {
            g0: Graphic::JisX0208,
            g1: None,
        }),
        "159" if value.starts_with("ISO 2022") => Some(Term {
            g0: Graphic::JisX0212,
            g1: None,
        }),
        "149" if value.starts_with("ISO 2022") => Some(ascii_with(Graphic::KsX1001)),
        "58" if value.starts_with("ISO 2022") => Some(ascii_with(Graphic::Gb2312)),
        _ => None,
    }
}

fn is_multi_byte(g: Graphic) -> bool {
    g.width() == 2
}

/// A Specific Character Set handled here: the state each value starts in, and every set its
/// values name (for encoding). Built only for values dicom-rs does not decode right by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeExtensions {
    /// The (0008,0005) value as given (values joined with `\`), to declare it in responses.
    declared: String,
    /// G0 at the start of each value, component group and component.
    initial_g0: Graphic,
    /// G1 at the start of each value, component group and component.
    initial_g1: Option<Graphic>,
    /// Every set the values name, in their order (the initial ones first).
    available: Vec<Graphic>,
    /// The set that reads bytes 0x80..=0xFF met while nothing is designated to G1: the one
    /// two-byte G1 set named (KS X 1001 or GB 2312), when there is exactly one. Writers that
    /// omit its escape sequence (pydicom 3.0 does for ISO 2022 IR 58) mean that set; valid
    /// data never has such bytes, so nothing valid is read differently.
    undesignated_g1: Option<Graphic>,
}

impl CodeExtensions {
    /// The code extension model of a (0008,0005) value, when this module must decode it:
    /// several values, or an `ISO 2022` term, or a single-byte set dicom-rs does not know
    /// (ISO_IR 148, ISO_IR 203). `None` for single-valued sets dicom-rs decodes itself
    /// (ISO_IR 100, ISO_IR 192, GB18030…), for UTF-8/GB18030/GBK as a first value (code
    /// extensions are not allowed with them: dicom-rs's reading of value 1 stands), and for
    /// an unknown first value (dicom-rs's default repertoire stands).
    pub fn from_specific_character_set(value: &str) -> Option<CodeExtensions> {
        let values: Vec<&str> = value.split('\\').map(str::trim).collect();
        let first = values.first().copied().unwrap_or("");
        let first_term = if first.is_empty() {
            term("ISO 2022 IR 6")?
        } else {
            term(first)?
        };
        let dicom_rs_knows_it =
            dicom_encoding::text::SpecificCharacterSet::from_code(first).is_some();
        if values.len() < 2
            && !first.starts_with("ISO 2022")
            && (dicom_rs_knows_it || first.is_empty())
        {
            return None;
        }
        // A multi-byte G0 set as the first value (not allowed, but written by some systems) is
        // available to the escapes but does not replace ASCII as the start: text before the
        // first escape is ASCII. A multi-byte G1 set as the first value is in force from the
        // start, as its bytes (0xA1..) cannot be mistaken for ASCII.
        let initial_g0 = if is_multi_byte(first_term.g0) {
            Graphic::Ascii
        } else {
            first_term.g0
        };
        let initial_g1 = first_term.g1;
        let mut available = vec![initial_g0];
        available.extend(initial_g1);
        for v in &values {
            if let Some(t) = term(v) {
                for g in std::iter::once(t.g0).chain(t.g1) {
                    if !available.contains(&g) {
                        available.push(g);
                    }
                }
            }
        }
        let mut g1_sets = available
            .iter()
            .copied()
            .filter(|g| is_multi_byte(*g) && g.element() == graphic::Element::G1);
        let undesignated_g1 = match (g1_sets.next(), g1_sets.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        };
        Some(CodeExtensions {
            declared: values.join("\\"),
            initial_g0,
            initial_g1,
            available,
            undesignated_g1,
        })
    }

    /// The requester's character set as the one to answer in: like
    /// [`CodeExtensions::from_specific_character_set`], and also for the single-byte sets
    /// dicom-rs knows (`ISO_IR 100`, `ISO_IR 144`, `ISO_IR 13`…), whose tables here are exact
    /// (dicom-rs encodes `ISO_IR 13` as all of Shift-JIS). `None` for the default repertoire,
    /// UTF-8, GB18030, GBK and unknown values.
    pub fn for_answer(value: &str) -> Option<CodeExtensions> {
        if let Some(cs) = CodeExtensions::from_specific_character_set(value) {
            return Some(cs);
        }
        let first = value.trim();
        let t = term(first)?;
        if first.contains('\\') || is_multi_byte(t.g0) || t.g1.is_some_and(is_multi_byte) {
            return None;
        }
        Some(CodeExtensions {
            declared: first.to_string(),
            initial_g0: t.g0,
            initial_g1: t.g1,
            available: std::iter::once(t.g0).chain(t.g1).collect(),
            undesignated_g1: None,
        })
    }

    /// The value to put in (0008,0005) of an identifier encoded with
    /// [`encode::encode_dataset`].
    pub fn declared(&self) -> &str {
        &self.declared
    }
}

#[cfg(test)]
mod default_tests;
#[cfg(test)]
mod tests;
