//! A parsed data set's text as Unicode: what the index stores and the matching rules compare.
//!
//! dicom-rs has already turned each text value into a `String` with the codec of the first
//! value of the (0008,0005) it last met while parsing — in document order, nested items
//! included, and a nested (0008,0005) stays in force after its item ends. Where that is not the
//! right reading (code extensions, or a codec left over from a nested item), the bytes are
//! recovered by encoding the string back with the codec that produced it — exact for ISO 8859-1,
//! which is what dicom-rs uses for an empty or unknown first value, and for the EUC and
//! Shift-JIS supersets dicom-rs uses for `ISO 2022 IR 13/149/58` as a first value — and decoded
//! again with the right rules. Per PS3.5 §6.1.2.3 a (0008,0005) inside a sequence item applies
//! to that item (and its nested items) only.
//!
//! Values received as VR UN are read through the data dictionary here too (`query::un`), since
//! a UN PatientName needs the item's character set as much as a PN one.

use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use super::CodeExtensions;
use super::decode::{TextKind, decode_values};
use crate::query::un;

/// The character set a text value must be read with.
#[derive(Debug, Clone, PartialEq)]
enum Scope {
    /// A set dicom-rs reads right, given it is the one it parsed with.
    Codec(SpecificCharacterSet),
    /// ISO 2022 code extensions, read by [`decode_values`].
    Extensions(CodeExtensions),
}

impl Scope {
    fn of(value: &str, inherited: &Scope) -> Scope {
        if let Some(cs) = CodeExtensions::from_specific_character_set(value) {
            return Scope::Extensions(cs);
        }
        match first_value_codec(value) {
            Some(codec) => Scope::Codec(codec),
            None => inherited.clone(),
        }
    }
}

/// The codec dicom-rs switches to when it parses this (0008,0005) value (`None`: it keeps the
/// one it had).
fn first_value_codec(value: &str) -> Option<SpecificCharacterSet> {
    SpecificCharacterSet::from_code(value.split('\\').next().unwrap_or("").trim())
}

/// What to do with (0008,0005) once the text is Unicode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// Declare ISO_IR 192 wherever a (0008,0005) is, and at the top: the data set is written
    /// again (the index's copy of the header) and must say what its strings now are.
    Utf8,
    /// Leave (0008,0005) as received: the caller needs the requester's character set (a
    /// C-FIND identifier, answered in that set) and never writes this data set.
    AsReceived,
}

/// The character set of data sets that declare none (`dicom.default_character_set`, like
/// Orthanc's `DefaultEncoding`): (0008,0005) absent or empty, yet text with bytes beyond ASCII.
/// Such data sets are not valid (the default repertoire is ASCII) but common; their text is read
/// in this set for the index, and the stored object keeps its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultCharacterSet {
    term: String,
    /// `None`: dicom-rs's own reading of such bytes (ISO 8859-1), which the index keeps as is.
    scope: Option<Scope>,
}

/// The single-valued defined terms a default may name: the single-byte sets, UTF-8 and the
/// Chinese multi-byte sets (ISO 2022 terms need escape sequences, so cannot be a default).
const DEFAULT_TERMS: [&str; 16] = [
    "ISO_IR 6",
    "ISO_IR 100",
    "ISO_IR 101",
    "ISO_IR 109",
    "ISO_IR 110",
    "ISO_IR 126",
    "ISO_IR 127",
    "ISO_IR 138",
    "ISO_IR 144",
    "ISO_IR 148",
    "ISO_IR 13",
    "ISO_IR 166",
    "ISO_IR 203",
    "ISO_IR 192",
    "GB18030",
    "GBK",
];

impl Default for DefaultCharacterSet {
    /// ISO_IR 100, as Orthanc's `DefaultEncoding`: what dicom-rs reads such bytes as anyway.
    fn default() -> Self {
        DefaultCharacterSet {
            term: "ISO_IR 100".into(),
            scope: None,
        }
    }
}

impl DefaultCharacterSet {
    /// A default from its defined term (`ISO_IR 100`, `ISO_IR 192`, `GB18030`…); the error says
    /// which terms are accepted.
    pub fn parse(term: &str) -> Result<DefaultCharacterSet, String> {
        let term = term.trim();
        let known = || {
            format!(
                "{term:?} is not a character set a default can name (one of: {})",
                DEFAULT_TERMS.join(", ")
            )
        };
        if !DEFAULT_TERMS.contains(&term) {
            return Err(known());
        }
        // ISO_IR 6 and ISO_IR 100: dicom-rs already reads bytes beyond ASCII as ISO 8859-1.
        let scope = match term {
            "ISO_IR 6" | "ISO_IR 100" => None,
            t => match CodeExtensions::from_specific_character_set(t) {
                Some(cs) => Some(Scope::Extensions(cs)),
                None => Some(Scope::Codec(first_value_codec(t).ok_or_else(known)?)),
            },
        };
        Ok(DefaultCharacterSet {
            term: term.to_string(),
            scope,
        })
    }

    /// The defined term, for logs.
    pub fn term(&self) -> &str {
        &self.term
    }
}

/// Does the data set lack a character set yet have text beyond ASCII, so that its reading
/// depends on the default? (0008,0005) absent or empty at the top, and a non-ASCII value
/// anywhere an item does not declare its own set. Cheap for the usual header: it returns at once
/// when (0008,0005) has a value.
pub fn relies_on_default(obj: &InMemDicomObject) -> bool {
    if specific_character_set(obj).is_some_and(|v| !v.is_empty()) {
        return false;
    }
    has_non_ascii_text(obj)
}

fn has_non_ascii_text(obj: &InMemDicomObject) -> bool {
    obj.iter().any(|e| match e.items() {
        Some(items) => items.iter().any(|item| {
            specific_character_set(item).is_none_or(|v| v.is_empty()) && has_non_ascii_text(item)
        }),
        None => {
            TextKind::of(e.vr()).is_some()
                && match e.value() {
                    Value::Primitive(PrimitiveValue::Str(s)) => !s.is_ascii(),
                    Value::Primitive(PrimitiveValue::Strs(v)) => v.iter().any(|s| !s.is_ascii()),
                    _ => false,
                }
        }
    })
}

/// Does the data set declare a character set this module must decode (a cheap check of the
/// top-level (0008,0005) only)?
pub fn declares_code_extensions(obj: &InMemDicomObject) -> bool {
    specific_character_set(obj)
        .is_some_and(|v| CodeExtensions::from_specific_character_set(&v).is_some())
}

fn specific_character_set(obj: &InMemDicomObject) -> Option<String> {
    obj.get(tags::SPECIFIC_CHARACTER_SET)
        .map(character_set_value)
}

/// The text of a (0008,0005) element, also when it came as UN (its bytes are ASCII).
fn character_set_value(element: &InMemElement) -> String {
    match element.value() {
        Value::Primitive(PrimitiveValue::U8(bytes)) => {
            bytes.iter().map(|b| char::from(*b)).collect::<String>()
        }
        _ => element.to_str().map(|s| s.into_owned()).unwrap_or_default(),
    }
    .trim_end_matches(['\0', ' '])
    .to_string()
}

/// The data set with every text value read with its right character set and every UN value of
/// a standard attribute read with its dictionary VR, or `None` when dicom-rs's reading already
/// was right everywhere.
pub fn to_unicode(obj: &InMemDicomObject, declared: Declared) -> Option<InMemDicomObject> {
    to_unicode_with_default(obj, declared, &DefaultCharacterSet::default())
}

/// [`to_unicode`], reading text in `default` where the data set declares no character set.
pub fn to_unicode_with_default(
    obj: &InMemDicomObject,
    declared: Declared,
    default: &DefaultCharacterSet,
) -> Option<InMemDicomObject> {
    let default_applies = default.scope.is_some() && relies_on_default(obj);
    if !default_applies && !may_need_work(obj, true) {
        return None;
    }
    let mut parser = SpecificCharacterSet::default();
    let mut changed = false;
    // What dicom-rs read without a (0008,0005) is ISO 8859-1, exact byte for byte: re-read in
    // the default, it becomes what the sender meant.
    let inherited = match (&default.scope, default_applies) {
        (Some(scope), true) => scope.clone(),
        _ => Scope::Codec(SpecificCharacterSet::default()),
    };
    let out = convert(obj, &inherited, &mut parser, &mut changed);
    if !changed {
        return None;
    }
    Some(match declared {
        Declared::Utf8 => declare_utf8(out, true),
        Declared::AsReceived => out,
    })
}

/// A cheap look for what [`convert`] acts on: a UN element, a (0008,0005) with code extensions
/// or one inside a sequence item (whose codec dicom-rs keeps after the item). Most headers
/// have none, and are not copied.
fn may_need_work(obj: &InMemDicomObject, top: bool) -> bool {
    obj.iter().any(|e| {
        if e.vr() == VR::UN {
            return true;
        }
        if e.tag() == tags::SPECIFIC_CHARACTER_SET {
            return !top
                || CodeExtensions::from_specific_character_set(&character_set_value(e)).is_some();
        }
        e.items()
            .is_some_and(|items| items.iter().any(|item| may_need_work(item, false)))
    })
}

/// Every string is Unicode now: declare ISO_IR 192 at the top and in every item that has a
/// (0008,0005), so dicom-rs writes (and reads back) UTF-8 throughout — one item left in, say,
/// ISO_IR 100 would switch its writer to a codec that cannot hold the names after it.
fn declare_utf8(obj: InMemDicomObject, top: bool) -> InMemDicomObject {
    let had_charset = obj.get(tags::SPECIFIC_CHARACTER_SET).is_some();
    let mut out =
        InMemDicomObject::from_element_iter(obj.into_iter().map(|element| match element.items() {
            Some(items) => {
                let items: Vec<InMemDicomObject> = items
                    .iter()
                    .cloned()
                    .map(|item| declare_utf8(item, false))
                    .collect();
                DataElement::new(
                    element.tag(),
                    VR::SQ,
                    DataSetSequence::new(items, dicom_core::Length::UNDEFINED),
                )
            }
            None => element,
        }));
    if top || had_charset {
        out.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 192"),
        ));
    }
    out
}

fn convert(
    obj: &InMemDicomObject,
    inherited: &Scope,
    parser: &mut SpecificCharacterSet,
    changed: &mut bool,
) -> InMemDicomObject {
    let scope = match specific_character_set(obj) {
        Some(value) => Scope::of(&value, inherited),
        None => inherited.clone(),
    };
    let mut elements: Vec<InMemElement> = Vec::new();
    for element in obj.iter() {
        let tag = element.tag();
        if tag == tags::SPECIFIC_CHARACTER_SET {
            let value = character_set_value(element);
            if element.vr() == VR::UN {
                // dicom-rs did not switch its codec for a UN (0008,0005).
                *changed = true;
                elements.push(DataElement::new(
                    tag,
                    VR::CS,
                    PrimitiveValue::Strs(value.split('\\').map(str::to_string).collect()),
                ));
                continue;
            }
            if let Some(codec) = first_value_codec(&value) {
                *parser = codec;
            }
            elements.push(element.clone());
            continue;
        }
        if element.vr() == VR::UN
            && let Value::Primitive(PrimitiveValue::U8(bytes)) = element.value()
            && let Some((vr, value)) =
                un::reinterpret(tag, bytes, &|b, kind| decode_bytes(b, kind, &scope))
        {
            *changed = true;
            elements.push(DataElement::new(tag, vr, value));
            continue;
        }
        if let Some(items) = element.items() {
            let items: Vec<InMemDicomObject> = items
                .iter()
                .map(|item| convert(item, &scope, parser, changed))
                .collect();
            elements.push(DataElement::new(
                tag,
                VR::SQ,
                DataSetSequence::new(items, dicom_core::Length::UNDEFINED),
            ));
            continue;
        }
        match redecode(element, &scope, parser) {
            Some(value) => {
                *changed = true;
                elements.push(DataElement::new(tag, element.vr(), value));
            }
            None => elements.push(element.clone()),
        }
    }
    InMemDicomObject::from_element_iter(elements)
}

/// The value of a text element read right, when dicom-rs's reading was not.
fn redecode(
    element: &InMemElement,
    scope: &Scope,
    parser: &SpecificCharacterSet,
) -> Option<PrimitiveValue> {
    let kind = TextKind::of(element.vr())?;
    let strings: Vec<&str> = match element.value() {
        Value::Primitive(PrimitiveValue::Str(s)) => vec![s.as_str()],
        Value::Primitive(PrimitiveValue::Strs(v)) => v.iter().map(String::as_str).collect(),
        _ => return None,
    };
    if matches!(scope, Scope::Codec(c) if c == parser) {
        return None;
    }
    // Nothing to re-read in pure ASCII: every set handled here reads it the same.
    if strings
        .iter()
        .all(|s| s.is_ascii() && !s.contains('\u{1b}'))
    {
        return None;
    }
    let bytes = parser.encode(&strings.join("\\")).ok()?;
    Some(decode_bytes(&bytes, kind, scope))
}

/// Text bytes in `scope`'s character set as the element's value (also for values whose bytes
/// are at hand, such as those of VR UN).
fn decode_bytes(bytes: &[u8], kind: TextKind, scope: &Scope) -> PrimitiveValue {
    let values = match scope {
        Scope::Extensions(cs) => decode_values(bytes, kind, cs),
        Scope::Codec(codec) => {
            let split: Vec<&[u8]> = if kind == TextKind::SingleValued {
                vec![bytes]
            } else {
                bytes.split(|b| *b == b'\\').collect()
            };
            split
                .into_iter()
                .map(|part| {
                    codec
                        .decode(part)
                        .unwrap_or_else(|_| String::from_utf8_lossy(part).into_owned())
                })
                .collect()
        }
    };
    match (kind, <[String; 1]>::try_from(values)) {
        (TextKind::SingleValued, Ok([one])) => PrimitiveValue::Str(one),
        (_, Ok(one)) => PrimitiveValue::Strs(one.into_iter().collect()),
        (_, Err(values)) => PrimitiveValue::Strs(values.into_iter().collect()),
    }
}
