//! `dicom.default_character_set`: data sets without (0008,0005) whose text has bytes beyond
//! ASCII, read in the configured default for the index.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

use super::dataset::{Declared, DefaultCharacterSet, relies_on_default, to_unicode_with_default};

/// An Explicit VR Little Endian data set: (0008,0005) when given, then a PN element.
fn dataset(charset: Option<&[u8]>, name: &[u8]) -> InMemDicomObject {
    let mut out = Vec::new();
    let mut element = |group: u16, elem: u16, vr: &[u8; 2], value: &[u8]| {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(b' ');
        }
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&elem.to_le_bytes());
        out.extend_from_slice(vr);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(&value);
    };
    if let Some(charset) = charset {
        element(0x0008, 0x0005, b"CS", charset);
    }
    element(0x0010, 0x0010, b"PN", name);
    InMemDicomObject::read_dataset_with_ts(&out[..], &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("a readable data set")
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end().to_string())
}

fn default(term: &str) -> DefaultCharacterSet {
    DefaultCharacterSet::parse(term).expect("a valid default")
}

/// What the index keeps: the header as written and read back.
fn indexed(obj: &InMemDicomObject, default: &DefaultCharacterSet) -> InMemDicomObject {
    let unicode = to_unicode_with_default(obj, Declared::Utf8, default);
    let mut written = Vec::new();
    unicode
        .as_ref()
        .unwrap_or(obj)
        .write_dataset_with_ts(&mut written, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("written");
    InMemDicomObject::read_dataset_with_ts(&written[..], &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("read back")
}

#[test]
fn latin1_is_the_default_and_costs_no_copy() {
    let parsed = dataset(None, b"M\xfcller^J\xfcrgen");
    assert!(relies_on_default(&parsed));
    assert_eq!(DefaultCharacterSet::default(), default("ISO_IR 100"));
    assert!(to_unicode_with_default(&parsed, Declared::Utf8, &default("ISO_IR 100")).is_none());
    let kept = indexed(&parsed, &DefaultCharacterSet::default());
    assert_eq!(
        text(&kept, tags::PATIENT_NAME).as_deref(),
        Some("Müller^Jürgen")
    );
}

#[test]
fn a_configured_default_reads_names_without_character_set() {
    for (term, bytes, name) in [
        ("ISO_IR 192", "Müller^Jürgen".as_bytes(), "Müller^Jürgen"),
        ("ISO_IR 192", "郭^政達".as_bytes(), "郭^政達"),
        (
            "ISO_IR 144",
            &b"\xbb\xee\xdd\xd8\xdd^\xb2\xd8\xe2"[..],
            "Люнин^Вит",
        ),
        ("ISO_IR 148", &b"\xdd\xfe\xe7\xfc"[..], "İşçü"),
        ("GB18030", &b"\xb9\xf9^\xd5\xfe\xdf_"[..], "郭^政達"),
    ] {
        let parsed = dataset(None, bytes);
        assert!(relies_on_default(&parsed), "{term}");
        let kept = indexed(&parsed, &default(term));
        assert_eq!(
            text(&kept, tags::PATIENT_NAME).as_deref(),
            Some(name),
            "{term}"
        );
        // The index's copy says what its strings now are.
        assert_eq!(
            text(&kept, tags::SPECIFIC_CHARACTER_SET).as_deref(),
            Some("ISO_IR 192")
        );
    }
    // An empty (0008,0005) means the same as none.
    let parsed = dataset(Some(b""), "Müller".as_bytes());
    assert!(relies_on_default(&parsed));
    let kept = indexed(&parsed, &default("ISO_IR 192"));
    assert_eq!(text(&kept, tags::PATIENT_NAME).as_deref(), Some("Müller"));
}

#[test]
fn a_declared_character_set_or_ascii_text_ignores_the_default() {
    let declared = dataset(Some(b"ISO_IR 100"), b"M\xfcller");
    assert!(!relies_on_default(&declared));
    assert!(to_unicode_with_default(&declared, Declared::Utf8, &default("ISO_IR 192")).is_none());
    let ascii = dataset(None, b"Smith^John");
    assert!(!relies_on_default(&ascii));
    assert!(to_unicode_with_default(&ascii, Declared::Utf8, &default("ISO_IR 192")).is_none());
}

#[test]
fn bytes_the_default_cannot_read_never_fail() {
    // Latin-1 bytes with a UTF-8 default: dicom-rs writes each byte it cannot read as a
    // backslash and three octal digits (as for a data set that declares ISO_IR 192); no error.
    let parsed = dataset(None, b"M\xfcller");
    let kept = indexed(&parsed, &default("ISO_IR 192"));
    assert_eq!(
        text(&kept, tags::PATIENT_NAME).as_deref(),
        Some("M\\374ller")
    );
}

#[test]
fn only_single_valued_terms_are_defaults() {
    for bad in [
        "",
        "latin1",
        "ISO 2022 IR 87",
        "\\ISO 2022 IR 87",
        "ISO_IR 100\\ISO_IR 144",
        "ISO 2022 IR 100",
    ] {
        let err = DefaultCharacterSet::parse(bad).expect_err(bad);
        assert!(err.contains("ISO_IR 192"), "{err}");
    }
    for good in ["ISO_IR 6", "ISO_IR 100", "ISO_IR 13", "ISO_IR 203", "GBK"] {
        assert_eq!(default(good).term(), good);
    }
}
