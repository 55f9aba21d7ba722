//! Encoding Unicode text into an ISO 2022 code-extension character set (PS3.5 §6.1.2.5), for
//! C-FIND responses to a requester that asked in one.
//!
//! Each character goes into the first set, in the order of (0008,0005), that holds it (the set
//! already designated wins, so a run of kanji needs one escape). Before every delimiter the
//! requester's decoder resets on (`\`, CR, LF, FF, TAB, and `^`, `=` in person names) and at the
//! end of each value, G0 is switched back to its initial set, as §6.1.2.5.3 requires; a G1 set
//! is designated again after each reset, as in the examples of PS3.5 Annex H and I.

use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use super::CodeExtensions;
use super::decode::TextKind;
use super::graphic::{Element, Graphic};

#[derive(Debug, Clone, Copy)]
struct State {
    g0: Graphic,
    g1: Option<Graphic>,
}

/// The bytes of `values` (delimited by `\` where the VR is multi-valued), or `None` when a
/// character has no code in any set of `cs`.
pub fn encode_values(values: &[&str], kind: TextKind, cs: &CodeExtensions) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for (n, value) in values.iter().enumerate() {
        if n > 0 {
            out.push(b'\\');
        }
        encode_value(value, kind, cs, &mut out)?;
    }
    Some(out)
}

fn encode_value(value: &str, kind: TextKind, cs: &CodeExtensions, out: &mut Vec<u8>) -> Option<()> {
    let initial = State {
        g0: cs.initial_g0,
        g1: cs.initial_g1,
    };
    let mut state = initial;
    for c in value.chars() {
        let resets = matches!(c, '\r' | '\n' | '\u{0C}' | '\t')
            || (kind == TextKind::PersonName && matches!(c, '^' | '='));
        if resets {
            back_to_initial_g0(&mut state, cs, out);
            out.push(c as u8);
            state = initial;
            continue;
        }
        if c.is_ascii() {
            if !matches!(state.g0, Graphic::Ascii | Graphic::JisRoman) {
                back_to_initial_g0(&mut state, cs, out);
                if !matches!(state.g0, Graphic::Ascii | Graphic::JisRoman) {
                    out.extend_from_slice(Graphic::Ascii.escape());
                    state.g0 = Graphic::Ascii;
                }
            }
            out.push(c as u8);
            continue;
        }
        let designated = [Some(state.g0), state.g1];
        let (set, code) = designated
            .into_iter()
            .flatten()
            .chain(cs.available.iter().copied())
            .filter(|g| !matches!(g, Graphic::Ascii | Graphic::JisRoman))
            .find_map(|g| g.encode(c).map(|code| (g, code)))?;
        match set.element() {
            Element::G0 => {
                if state.g0 != set {
                    out.extend_from_slice(set.escape());
                    state.g0 = set;
                }
                out.extend_from_slice(&code);
            }
            Element::G1 => {
                if state.g1 != Some(set) {
                    out.extend_from_slice(set.escape());
                    state.g1 = Some(set);
                }
                out.extend(code.iter().map(|b| b | 0x80));
            }
        }
    }
    back_to_initial_g0(&mut state, cs, out);
    Some(())
}

fn back_to_initial_g0(state: &mut State, cs: &CodeExtensions, out: &mut Vec<u8>) {
    if state.g0 != cs.initial_g0 {
        out.extend_from_slice(cs.initial_g0.escape());
        state.g0 = cs.initial_g0;
    }
}

/// The data set with every text value (PN, SH, LO, UC, ST, LT, UT, also in sequence items)
/// replaced by its bytes in `cs` and (0008,0005) declaring `cs`; `None` when a value does not
/// fit. The bytes are kept as raw values so that dicom-rs writes them as they are.
pub fn encode_dataset(obj: &InMemDicomObject, cs: &CodeExtensions) -> Option<InMemDicomObject> {
    let mut elements: Vec<InMemElement> = Vec::new();
    for element in obj.iter() {
        let tag = element.tag();
        if tag == tags::SPECIFIC_CHARACTER_SET {
            continue;
        }
        if let Some(items) = element.items() {
            let items = items
                .iter()
                .map(|item| encode_dataset(item, cs).map(without_character_set))
                .collect::<Option<Vec<_>>>()?;
            elements.push(DataElement::new(
                tag,
                VR::SQ,
                DataSetSequence::new(items, dicom_core::Length::UNDEFINED),
            ));
            continue;
        }
        let values: Vec<&str> = match (TextKind::of(element.vr()), element.value()) {
            (Some(_), Value::Primitive(PrimitiveValue::Str(s))) => vec![s.as_str()],
            (Some(_), Value::Primitive(PrimitiveValue::Strs(v))) => {
                v.iter().map(String::as_str).collect()
            }
            _ => {
                elements.push(element.clone());
                continue;
            }
        };
        let kind = TextKind::of(element.vr())?;
        let mut bytes = encode_values(&values, kind, cs)?;
        if bytes.len() % 2 == 1 {
            bytes.push(b' ');
        }
        elements.push(DataElement::new(
            tag,
            element.vr(),
            PrimitiveValue::U8(bytes.into()),
        ));
    }
    let mut out = InMemDicomObject::from_element_iter(elements);
    out.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::Strs(cs.declared().split('\\').map(str::to_string).collect()),
    ));
    Some(out)
}

/// Items inherit the character set of the response: they declare none of their own.
fn without_character_set(mut item: InMemDicomObject) -> InMemDicomObject {
    item.remove_element(tags::SPECIFIC_CHARACTER_SET);
    item
}

/// The response identifier without a (0008,0005) in any sequence item: its strings are Unicode
/// and are all written in the response's one character set. (dicom-rs switches its writer at
/// an item's (0008,0005) and keeps that codec after the item, while the requester goes back to
/// the data set's.) Returned as it is when no item declares one.
pub fn without_item_character_sets(obj: InMemDicomObject) -> InMemDicomObject {
    fn any_in_items(obj: &InMemDicomObject) -> bool {
        obj.iter().any(|e| {
            e.items().is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i.get(tags::SPECIFIC_CHARACTER_SET).is_some() || any_in_items(i))
            })
        })
    }
    fn strip(obj: InMemDicomObject) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(obj.into_iter().map(|e| match e.items() {
            Some(items) => {
                let items: Vec<InMemDicomObject> = items
                    .iter()
                    .cloned()
                    .map(|i| strip(without_character_set(i)))
                    .collect();
                DataElement::new(
                    e.tag(),
                    VR::SQ,
                    DataSetSequence::new(items, dicom_core::Length::UNDEFINED),
                )
            }
            None => e,
        }))
    }
    if any_in_items(&obj) { strip(obj) } else { obj }
}
