//! The DICOM JSON model (PS3.18 F.2): data sets as `application/dicom+json`.
//!
//! Conventions (also in the conformance statement, §4.5.3):
//! - one object per data set, keyed by the tag as 8 upper-case hex digits, in tag order;
//!   group length elements (gggg,0000) are left out (PS3.18 F.2.1: not included);
//! - `"vr"` always; `"Value"` only when the element has a value; an empty value inside a
//!   multi-valued element is `null` (F.2.5);
//! - PN: `{"Alphabetic", "Ideographic", "Phonetic"}`, empty groups left out (F.2.2); the text
//!   is Unicode whatever the stored character set (the index decodes ISO 2022 and the rest);
//! - IS and DS as JSON numbers (integers when they have no fraction); a value that is not a
//!   number stays a string rather than be lost;
//! - AT as 8-hex-digit strings; FL, FD, SL, SS, UL, US, SV, UV as numbers (non-finite floats as
//!   the strings "NaN", "Infinity", "-Infinity", which JSON numbers cannot carry);
//! - binary values (OB, OD, OF, OL, OV, OW, UN) as base64 `InlineBinary`, unless longer than
//!   [`BULK_DATA_THRESHOLD`] bytes and the caller gives a `BulkDataURI` for them;
//! - Specific Character Set (0008,0005), when present, says `ISO_IR 192`: the JSON text is
//!   UTF-8, so a client turning it back into binary DICOM must not apply the original set.

use base64::Engine;
use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use serde_json::{Map, Value as Json, json};

/// Binary values longer than this (bytes) are offered to the caller as bulk data: 1 KiB keeps
/// small values (e.g. a short private blob, an LUT descriptor) inline and every image-sized
/// value (pixel data, overlays, ICC profiles, waveforms) out of the metadata.
pub const BULK_DATA_THRESHOLD: usize = 1024;

/// The media type of DICOM JSON.
pub const MEDIA_TYPE: &str = "application/dicom+json";

/// Asked for a `BulkDataURI` for the binary value at `path` (the tags from the top-level
/// element down to the element itself; sequence item indices are not part of the path).
/// `None`: the value is written inline.
pub type BulkDataUri<'a> = dyn FnMut(&[Tag]) -> Option<String> + 'a;

/// A data set as a DICOM JSON object.
pub fn dataset_to_json(obj: &InMemDicomObject, bulk: &mut BulkDataUri<'_>) -> Json {
    let mut path = Vec::with_capacity(4);
    Json::Object(object(obj, &mut path, bulk))
}

/// No bulk data: every binary value inline.
pub fn dataset_to_json_inline(obj: &InMemDicomObject) -> Json {
    dataset_to_json(obj, &mut |_| None)
}

/// The JSON key of a tag: 8 upper-case hex digits.
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

fn object(
    obj: &InMemDicomObject,
    path: &mut Vec<Tag>,
    bulk: &mut BulkDataUri<'_>,
) -> Map<String, Json> {
    let mut out = Map::new();
    for e in obj.iter() {
        let tag = e.tag();
        if tag.element() == 0 {
            continue;
        }
        path.push(tag);
        out.insert(tag_key(tag), element(e, path, bulk));
        path.pop();
    }
    out
}

/// The JSON of one element; `path` ends with its tag.
pub fn element(e: &InMemElement, path: &mut Vec<Tag>, bulk: &mut BulkDataUri<'_>) -> Json {
    let vr = e.vr();
    let mut out = Map::new();
    out.insert("vr".into(), Json::String(vr.to_string().to_string()));
    match e.value() {
        Value::Sequence(seq) => {
            let items: Vec<Json> = seq
                .items()
                .iter()
                .map(|item| Json::Object(object(item, path, bulk)))
                .collect();
            if !items.is_empty() {
                out.insert("Value".into(), Json::Array(items));
            }
        }
        Value::PixelSequence(seq) => {
            // Encapsulated pixel data never reaches an indexed header; offered as bulk data, or
            // its fragments inline, so nothing is silently dropped.
            let len: usize = seq.fragments().iter().map(Vec::len).sum();
            if len > BULK_DATA_THRESHOLD
                && let Some(uri) = bulk(path)
            {
                out.insert("BulkDataURI".into(), Json::String(uri));
            } else {
                let bytes: Vec<u8> = seq.fragments().iter().flatten().copied().collect();
                out.insert("InlineBinary".into(), Json::String(base64(&bytes)));
            }
        }
        Value::Primitive(p) => {
            if matches!(p, PrimitiveValue::Empty) {
                return Json::Object(out);
            }
            if is_binary(vr) {
                let bytes = p.to_bytes();
                if bytes.is_empty() {
                    return Json::Object(out);
                }
                if bytes.len() > BULK_DATA_THRESHOLD
                    && let Some(uri) = bulk(path)
                {
                    out.insert("BulkDataURI".into(), Json::String(uri));
                } else {
                    out.insert("InlineBinary".into(), Json::String(base64(&bytes)));
                }
                return Json::Object(out);
            }
            let values = primitive_values(e.tag(), vr, p);
            if !values.is_empty() && !values.iter().all(Json::is_null) {
                out.insert("Value".into(), Json::Array(values));
            }
        }
    }
    Json::Object(out)
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

/// VRs whose value is one string that may contain backslashes (PS3.5 6.2: not multi-valued).
fn single_text(vr: VR) -> bool {
    matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR)
}

/// Padding that is not part of a value: trailing spaces (and NUL for UI); leading spaces too
/// for the VRs where PS3.5 calls them insignificant.
fn trim(vr: VR, s: &str) -> &str {
    let s = s.trim_end_matches([' ', '\0']);
    match vr {
        VR::LT | VR::ST | VR::UT | VR::UC | VR::UR => s,
        _ => s.trim_start_matches(' '),
    }
}

fn float(v: f64) -> Json {
    if v.is_nan() {
        Json::String("NaN".into())
    } else if v.is_infinite() {
        Json::String(if v > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        json!(v)
    }
}

/// A DS or IS value as a number: integers without a fraction, others as floats; text that is
/// not a number stays text.
fn decimal(s: &str) -> Json {
    if s.is_empty() {
        return Json::Null;
    }
    if let Ok(i) = s.parse::<i64>() {
        return json!(i);
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => json!(f),
        _ => Json::String(s.to_string()),
    }
}

fn person_name(s: &str) -> Json {
    if s.is_empty() {
        return Json::Null;
    }
    let mut out = Map::new();
    for (group, key) in s.split('=').zip(["Alphabetic", "Ideographic", "Phonetic"]) {
        let group = group.trim_end_matches([' ', '^']);
        if !group.is_empty() {
            out.insert(key.into(), Json::String(group.to_string()));
        }
    }
    if out.is_empty() {
        Json::Null
    } else {
        Json::Object(out)
    }
}

fn primitive_values(tag: Tag, vr: VR, p: &PrimitiveValue) -> Vec<Json> {
    use PrimitiveValue as P;
    match (vr, p) {
        (VR::AT, P::Tags(tags)) => tags.iter().map(|t| Json::String(tag_key(*t))).collect(),
        (_, P::U16(v)) => v.iter().map(|x| json!(x)).collect(),
        (_, P::I16(v)) => v.iter().map(|x| json!(x)).collect(),
        (_, P::U32(v)) => v.iter().map(|x| json!(x)).collect(),
        (_, P::I32(v)) => v.iter().map(|x| json!(x)).collect(),
        (_, P::U64(v)) => v.iter().map(|x| json!(x)).collect(),
        (_, P::I64(v)) => v.iter().map(|x| json!(x)).collect(),
        (_, P::F32(v)) => v.iter().map(|x| float(f64::from(*x))).collect(),
        (_, P::F64(v)) => v.iter().map(|x| float(*x)).collect(),
        (_, P::U8(v)) => v.iter().map(|x| json!(x)).collect(),
        _ => {
            if tag == tags::SPECIFIC_CHARACTER_SET {
                return vec![Json::String("ISO_IR 192".into())];
            }
            let strings = p.to_multi_str();
            if single_text(vr) {
                // dicom-rs keeps these whole; a joined form guards against a split one.
                return match trim(vr, &strings.join("\\")) {
                    "" => Vec::new(),
                    s => vec![Json::String(s.to_string())],
                };
            }
            strings
                .iter()
                .map(|s| trim(vr, s))
                .map(|s| match vr {
                    VR::PN => person_name(s),
                    VR::IS | VR::DS => decimal(s),
                    _ if s.is_empty() => Json::Null,
                    _ => Json::String(s.to_string()),
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, dicom_value};

    fn obj(elements: Vec<InMemElement>) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(elements)
    }

    #[test]
    fn person_names_have_component_groups() {
        let o = obj(vec![
            DataElement::new(
                tags::PATIENT_NAME,
                VR::PN,
                PrimitiveValue::from("Yamada^Tarou=山田^太郎=やまだ^たろう"),
            ),
            DataElement::new(
                tags::REFERRING_PHYSICIAN_NAME,
                VR::PN,
                dicom_value!(Strs, ["MÜLLER^JÜRGEN", "", "=郭^政達"]),
            ),
        ]);
        let j = dataset_to_json_inline(&o);
        assert_eq!(
            j["00100010"],
            json!({"vr": "PN", "Value": [{
                "Alphabetic": "Yamada^Tarou",
                "Ideographic": "山田^太郎",
                "Phonetic": "やまだ^たろう"
            }]})
        );
        assert_eq!(
            j["00080090"]["Value"],
            json!([{"Alphabetic": "MÜLLER^JÜRGEN"}, null, {"Ideographic": "郭^政達"}])
        );
    }

    #[test]
    fn numbers_tags_and_strings() {
        let o = obj(vec![
            DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from(" 12 ")),
            DataElement::new(
                tags::PIXEL_SPACING,
                VR::DS,
                dicom_value!(Strs, ["0.5", "1e2", "x"]),
            ),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(512_u16)),
            DataElement::new(
                tags::FRAME_INCREMENT_POINTER,
                VR::AT,
                PrimitiveValue::Tags(vec![Tag(0x0018, 0x1063)].into()),
            ),
            DataElement::new(
                tags::IMAGE_TYPE,
                VR::CS,
                dicom_value!(Strs, ["ORIGINAL", "", "AXIAL "]),
            ),
            DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from("1.2.3\0"),
            ),
            DataElement::new(
                tags::PATIENT_COMMENTS,
                VR::LT,
                PrimitiveValue::from("  a\\b  "),
            ),
            DataElement::new(tags::STUDY_DESCRIPTION, VR::LO, PrimitiveValue::Empty),
            DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                dicom_value!(Strs, ["", "ISO 2022 IR 87"]),
            ),
            DataElement::new(Tag(0x0008, 0x0000), VR::UL, PrimitiveValue::from(10_u32)),
            DataElement::new(
                Tag(0x0018, 0x1041),
                VR::DS,
                PrimitiveValue::from(f64::NAN.to_string()),
            ),
        ]);
        let j = dataset_to_json_inline(&o);
        assert_eq!(j["00200013"], json!({"vr": "IS", "Value": [12]}));
        assert_eq!(
            j["00280030"],
            json!({"vr": "DS", "Value": [0.5, 100.0, "x"]})
        );
        assert_eq!(j["00280010"], json!({"vr": "US", "Value": [512]}));
        assert_eq!(j["00280009"], json!({"vr": "AT", "Value": ["00181063"]}));
        assert_eq!(
            j["00080008"],
            json!({"vr": "CS", "Value": ["ORIGINAL", null, "AXIAL"]})
        );
        assert_eq!(j["00080018"], json!({"vr": "UI", "Value": ["1.2.3"]}));
        assert_eq!(j["00104000"], json!({"vr": "LT", "Value": ["  a\\b"]}));
        assert_eq!(j["00081030"], json!({"vr": "LO"}));
        assert_eq!(j["00080005"], json!({"vr": "CS", "Value": ["ISO_IR 192"]}));
        assert!(j.get("00080000").is_none(), "group length left out");
        assert_eq!(j["00181041"], json!({"vr": "DS", "Value": ["NaN"]}));
        // keys come in tag order
        let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn sequences_nest_and_binary_goes_inline_or_bulk() {
        let small = vec![1_u8, 2, 3, 4];
        let large = vec![7_u8; BULK_DATA_THRESHOLD + 1];
        let item = obj(vec![
            DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from("T-A0100")),
            DataElement::new(
                Tag(0x0009, 0x1010),
                VR::OB,
                PrimitiveValue::from(large.clone()),
            ),
        ]);
        let o = obj(vec![
            DataElement::new(
                tags::ANATOMIC_REGION_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ),
            DataElement::new(Tag(0x0029, 0x1010), VR::OB, PrimitiveValue::from(small)),
            DataElement::new(
                Tag(0x6000, 0x3000),
                VR::OW,
                PrimitiveValue::U16(vec![0x0102; 600].into()),
            ),
            DataElement::new(
                tags::REFERENCED_IMAGE_SEQUENCE,
                VR::SQ,
                DataSetSequence::<InMemDicomObject>::empty(),
            ),
        ]);
        let mut asked: Vec<Vec<Tag>> = Vec::new();
        let j = dataset_to_json(&o, &mut |path| {
            asked.push(path.to_vec());
            (path.len() == 1).then(|| format!("http://h/bulk/{}", tag_key(path[0])))
        });
        assert_eq!(
            j["00082218"]["Value"][0]["00080100"],
            json!({"vr": "SH", "Value": ["T-A0100"]})
        );
        // nested large value: the callback declined, so inline
        assert_eq!(
            j["00082218"]["Value"][0]["00091010"]["InlineBinary"],
            json!(base64(&large))
        );
        assert_eq!(
            j["00291010"],
            json!({"vr": "OB", "InlineBinary": "AQIDBA=="})
        );
        assert_eq!(
            j["60003000"],
            json!({"vr": "OW", "BulkDataURI": "http://h/bulk/60003000"})
        );
        assert_eq!(j["00081140"], json!({"vr": "SQ"}));
        assert_eq!(
            asked,
            vec![
                vec![tags::ANATOMIC_REGION_SEQUENCE, Tag(0x0009, 0x1010)],
                vec![Tag(0x6000, 0x3000)]
            ]
        );
    }
}
