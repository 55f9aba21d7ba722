//! The ISO 2022 decoder and encoder on the byte strings of PS3.5 Annexes H, I, J (as in
//! pydicom's chrH31, chrH32, chrI2 files) and on hand-made edge cases.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

use super::dataset::{Declared, declares_code_extensions, to_unicode};
use super::decode::{TextKind, decode_values};
use super::encode::{encode_dataset, encode_values, without_item_character_sets};
use super::*;

const H31: &[u8] =
    b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B";
const H31_TEXT: &str = "Yamada^Tarou=山田^太郎=やまだ^たろう";
const H32: &[u8] = b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J";
const H32_TEXT: &str = "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう";
const I2: &[u8] =
    b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf";
const I2_TEXT: &str = "Hong^Gildong=洪^吉洞=홍^길동";

fn cs(value: &str) -> CodeExtensions {
    CodeExtensions::from_specific_character_set(value).expect("a code extension set")
}

fn pn(bytes: &[u8], charset: &str) -> Vec<String> {
    decode_values(bytes, TextKind::PersonName, &cs(charset))
}

#[test]
fn which_character_sets_are_decoded_here() {
    for handled in [
        "\\ISO 2022 IR 87",
        "ISO 2022 IR 13\\ISO 2022 IR 87",
        "\\ISO 2022 IR 149",
        "\\ISO 2022 IR 58",
        "ISO 2022 IR 6\\ISO 2022 IR 87",
        "ISO 2022 IR 100",
        "ISO_IR 100\\ISO 2022 IR 126",
        // Single-byte sets dicom-rs 0.10 does not know.
        "ISO_IR 148",
        "ISO_IR 203",
    ] {
        assert!(
            CodeExtensions::from_specific_character_set(handled).is_some(),
            "{handled}"
        );
    }
    for left_to_dicom_rs in [
        "",
        "ISO_IR 100",
        "ISO_IR 192",
        "GB18030",
        "GBK",
        "ISO_IR 13",
        "ISO_IR 192\\ISO 2022 IR 87",
        "SOMETHING ELSE",
    ] {
        assert!(
            CodeExtensions::from_specific_character_set(left_to_dicom_rs).is_none(),
            "{left_to_dicom_rs}"
        );
    }
}

#[test]
fn japanese_jis_x_0208_with_ascii_default() {
    assert_eq!(pn(H31, "\\ISO 2022 IR 87"), vec![H31_TEXT]);
    // The first value spelled out as ISO 2022 IR 6 is the same.
    assert_eq!(pn(H31, "ISO 2022 IR 6\\ISO 2022 IR 87"), vec![H31_TEXT]);
}

#[test]
fn japanese_katakana_in_g1_and_jis_roman_in_g0() {
    assert_eq!(pn(H32, "ISO 2022 IR 13\\ISO 2022 IR 87"), vec![H32_TEXT]);
    // Katakana designated to G0 (ESC ( I) reads 0x21..=0x5F.
    assert_eq!(pn(b"\x1b(IT\x1b(B", "\\ISO 2022 IR 13"), vec!["ﾔ"]);
}

#[test]
fn korean_ks_x_1001_redesignated_after_each_delimiter() {
    assert_eq!(pn(I2, "\\ISO 2022 IR 149"), vec![I2_TEXT]);
}

#[test]
fn chinese_gb_2312() {
    // 王^小东 in GB 2312: CDF5 ^ D0A1 B6AB.
    let bytes = b"Wang^XiaoDong=\x1b$)A\xcd\xf5^\x1b$)A\xd0\xa1\xb6\xab";
    assert_eq!(pn(bytes, "\\ISO 2022 IR 58"), vec!["Wang^XiaoDong=王^小东"]);
}

#[test]
fn japanese_jis_x_0212() {
    // JIS X 0212 0x3021 is U+4E02.
    assert_eq!(
        pn(b"\x1b$(D0!\x1b(B", "\\ISO 2022 IR 159"),
        vec!["\u{4e02}"]
    );
}

#[test]
fn single_byte_sets_switched_by_escapes() {
    // Latin-1 in G1, then Greek designated to G1 (ESC - F): 0xE1 is á, then α.
    let bytes = b"\xe1\x1b-F\xe1";
    let v = decode_values(
        bytes,
        TextKind::MultiValued,
        &cs("ISO 2022 IR 100\\ISO 2022 IR 126"),
    );
    assert_eq!(v, vec!["áα"]);
    // Turkish (ISO 8859-9): 0xDD is İ, which ISO 8859-1 reads as Ý.
    let v = decode_values(b"\xdd", TextKind::MultiValued, &cs("ISO_IR 148"));
    assert_eq!(v, vec!["İ"]);
}

#[test]
fn person_name_resets_at_components_other_text_does_not() {
    // Greek designated once, then a `^`: in PN the designation ends at the delimiter (the
    // bytes after it are Latin-1 again); in LO `^` is an ordinary character.
    let bytes = b"\x1b-F\xe1^\xe1";
    let latin_greek = cs("ISO 2022 IR 100\\ISO 2022 IR 126");
    assert_eq!(
        decode_values(bytes, TextKind::PersonName, &latin_greek),
        vec!["α^á"]
    );
    assert_eq!(
        decode_values(bytes, TextKind::MultiValued, &latin_greek),
        vec!["α^α"]
    );
}

#[test]
fn a_missing_designation_of_the_only_two_byte_g1_set_is_tolerated() {
    // pydicom 3.0 writes ISO 2022 IR 58 text without `ESC $ ) A`; some Korean systems do the
    // same with IR 149.
    assert_eq!(pn(b"\xcd\xf5*", "\\ISO 2022 IR 58"), vec!["王*"]);
    assert_eq!(pn(b"\xc8\xab", "\\ISO 2022 IR 149"), vec!["홍"]);
    // With two such sets named there is no telling which: ISO 8859-1.
    assert_eq!(
        pn(b"\xc8\xab", "\\ISO 2022 IR 149\\ISO 2022 IR 58"),
        vec!["È«"]
    );
}

#[test]
fn values_and_lines_reset_the_state() {
    let latin_greek = cs("ISO 2022 IR 100\\ISO 2022 IR 126");
    let bytes = b"\x1b-F\xe1\\\xe1";
    assert_eq!(
        decode_values(bytes, TextKind::MultiValued, &latin_greek),
        vec!["α", "á"]
    );
    // In LT a backslash is a character, but a line end resets.
    let bytes = b"\x1b-F\xe1\\\xe1\r\n\xe1";
    assert_eq!(
        decode_values(bytes, TextKind::SingleValued, &latin_greek),
        vec!["α\\α\r\ná"]
    );
}

#[test]
fn a_delimiter_byte_inside_a_two_byte_character_is_not_a_delimiter() {
    // ま is 0x24 0x5E in JIS X 0208: the 0x5E is not a `^`.
    assert_eq!(pn(b"\x1b$B$^\x1b(B", "\\ISO 2022 IR 87"), vec!["ま"]);
    // The same for a 0x5C (`\`): 0x30 0x5C is a kanji, not a value delimiter.
    let v = decode_values(
        b"\x1b$B0\\\x1b(B",
        TextKind::MultiValued,
        &cs("\\ISO 2022 IR 87"),
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(!v[0].contains('\\') && !v[0].contains('\u{fffd}'), "{v:?}");
}

#[test]
fn bad_escapes_and_codes_fall_back_without_panicking() {
    let jp = cs("\\ISO 2022 IR 87");
    let d = |b: &[u8]| decode_values(b, TextKind::PersonName, &jp);
    // Unknown escape: one U+FFFD, skipped whole, state unchanged.
    assert_eq!(d(b"\x1b(Zabc"), vec!["\u{fffd}abc"]);
    // Truncated escape at the end.
    assert_eq!(d(b"ab\x1b$"), vec!["ab\u{fffd}"]);
    assert_eq!(d(b"ab\x1b"), vec!["ab\u{fffd}"]);
    // ESC followed by a non-escape byte: the ESC alone is dropped.
    assert_eq!(d(b"a\x1b\x01b"), vec!["a\u{fffd}\u{1}b"]);
    // Half a kanji at the end of the value.
    assert_eq!(d(b"\x1b$B;"), vec!["\u{fffd}"]);
    // A code with no character in JIS X 0208 (row 0x29 is empty).
    assert_eq!(d(b"\x1b$B)!\x1b(B"), vec!["\u{fffd}"]);
    // A high byte with nothing designated to G1 reads as ISO 8859-1.
    assert_eq!(d(b"\xe9"), vec!["é"]);
}

#[test]
fn no_byte_string_makes_the_decoder_panic() {
    // A deterministic stream of pseudo-random bytes, biased towards ESC and delimiters.
    let mut seed: u32 = 0x1234_5678;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let charsets = [
        "\\ISO 2022 IR 87",
        "ISO 2022 IR 13\\ISO 2022 IR 87\\ISO 2022 IR 159",
        "\\ISO 2022 IR 149",
        "\\ISO 2022 IR 58",
        "ISO 2022 IR 100\\ISO 2022 IR 144",
    ];
    let alphabet = [
        0x1b, b'$', b'(', b')', b'-', b'B', b'C', b'\\', b'^', b'=', 0xA1, 0xFE,
    ];
    for round in 0..2000 {
        let len = (next() % 24) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                if r % 3 == 0 {
                    alphabet[(r as usize / 3) % alphabet.len()]
                } else {
                    (r >> 8) as u8
                }
            })
            .collect();
        let set = cs(charsets[round % charsets.len()]);
        for kind in [
            TextKind::PersonName,
            TextKind::MultiValued,
            TextKind::SingleValued,
        ] {
            let values = decode_values(&bytes, kind, &set);
            assert!(!values.is_empty());
        }
    }
}

#[test]
fn encoding_gives_back_the_standard_examples() {
    let enc = |text: &str, charset: &str| {
        encode_values(&[text], TextKind::PersonName, &cs(charset)).expect("encodable")
    };
    assert_eq!(enc(H31_TEXT, "\\ISO 2022 IR 87"), H31);
    assert_eq!(enc(H32_TEXT, "ISO 2022 IR 13\\ISO 2022 IR 87"), H32);
    assert_eq!(enc(I2_TEXT, "\\ISO 2022 IR 149"), I2);
    let gb = enc("Wang^XiaoDong=王^小东", "\\ISO 2022 IR 58");
    assert_eq!(pn(&gb, "\\ISO 2022 IR 58"), vec!["Wang^XiaoDong=王^小东"]);
}

#[test]
fn encoding_fails_for_a_character_outside_every_set() {
    let jp = cs("\\ISO 2022 IR 87");
    assert!(encode_values(&["山田😀"], TextKind::PersonName, &jp).is_none());
    // Hangul is not in the Japanese sets.
    assert!(encode_values(&["홍"], TextKind::PersonName, &jp).is_none());
    // Several values, each back to ASCII before its delimiter.
    let bytes = encode_values(&["山", "田"], TextKind::MultiValued, &jp).expect("encodable");
    assert_eq!(bytes, b"\x1b$B;3\x1b(B\\\x1b$BED\x1b(B");
    assert_eq!(
        decode_values(&bytes, TextKind::MultiValued, &jp),
        vec!["山", "田"]
    );
}

/// An Explicit VR Little Endian data set with (0008,0005) and a PN element, as bytes.
fn dataset_bytes(charset: &[u8], name: &[u8]) -> Vec<u8> {
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
    element(0x0008, 0x0005, b"CS", charset);
    element(0x0010, 0x0010, b"PN", name);
    out
}

fn parse(bytes: &[u8]) -> InMemDicomObject {
    InMemDicomObject::read_dataset_with_ts(bytes, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("a readable data set")
}

fn name_of(obj: &InMemDicomObject) -> String {
    obj.get(tags::PATIENT_NAME)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

#[test]
fn a_parsed_data_set_becomes_unicode_and_survives_a_rewrite() {
    for (charset, bytes, text) in [
        (&b"\\ISO 2022 IR 87"[..], H31, H31_TEXT),
        (b"ISO 2022 IR 13\\ISO 2022 IR 87", H32, H32_TEXT),
        (b"\\ISO 2022 IR 149", I2, I2_TEXT),
    ] {
        let parsed = parse(&dataset_bytes(charset, bytes));
        assert_ne!(name_of(&parsed), text, "dicom-rs alone reads it wrong");
        assert!(declares_code_extensions(&parsed));
        let unicode = to_unicode(&parsed, Declared::Utf8).expect("re-read");
        assert_eq!(name_of(&unicode), text);
        // The index writes this data set and reads it back.
        let mut written = Vec::new();
        unicode
            .write_dataset_with_ts(&mut written, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
            .expect("written");
        let again = parse(&written);
        assert_eq!(name_of(&again), text);
        assert!(to_unicode(&again, Declared::Utf8).is_none());
        // A C-FIND identifier keeps its (0008,0005) for the answer.
        let identifier = to_unicode(&parsed, Declared::AsReceived).expect("re-read");
        assert_eq!(name_of(&identifier), text);
        assert_eq!(
            identifier
                .get(tags::SPECIFIC_CHARACTER_SET)
                .and_then(|e| e.to_str().ok())
                .map(|s| s.into_owned()),
            Some(String::from_utf8_lossy(charset).trim().to_string())
        );
    }
}

#[test]
fn single_valued_sets_are_left_to_dicom_rs() {
    let parsed = parse(&dataset_bytes(b"ISO_IR 100", b"M\xfcller^J\xfcrgen"));
    assert_eq!(name_of(&parsed), "Müller^Jürgen");
    assert!(to_unicode(&parsed, Declared::Utf8).is_none());
}

#[test]
fn a_nested_item_uses_its_own_character_set() {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::Strs(["".to_string(), "ISO 2022 IR 149".to_string()].into()),
    ));
    // As dicom-rs reads it with the default repertoire: one char per byte.
    let as_latin1: String = I2.iter().map(|b| char::from(*b)).collect();
    item.put(DataElement::new(
        tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::from(as_latin1.as_str()),
    ));
    let mut top = InMemDicomObject::new_empty();
    top.put(DataElement::new(
        tags::REFERENCED_PATIENT_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![item]),
    ));
    let unicode = to_unicode(&top, Declared::Utf8).expect("re-read");
    let items = unicode
        .get(tags::REFERENCED_PATIENT_SEQUENCE)
        .and_then(|e| e.items())
        .expect("the sequence");
    assert_eq!(name_of(&items[0]), I2_TEXT);
}

#[test]
fn an_item_with_its_own_character_set_before_iso_2022_names_still_writes() {
    // (0008,0005) "\ISO 2022 IR 87", then (0008,1110) with one item declaring ISO_IR 100, then
    // PatientName in JIS X 0208: the index's copy must declare UTF-8 in the item as well, or
    // dicom-rs would write the kanji after it with the item's Latin-1 codec.
    let mut bytes = Vec::new();
    let element = |out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]| {
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
    element(&mut bytes, 0x0008, 0x0005, b"CS", b"\\ISO 2022 IR 87");
    bytes.extend_from_slice(&[
        0x08, 0x00, 0x10, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    element(&mut bytes, 0x0008, 0x0005, b"CS", b"ISO_IR 100");
    element(&mut bytes, 0x0008, 0x1150, b"UI", b"1.2.3");
    bytes.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
    bytes.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    element(&mut bytes, 0x0010, 0x0010, b"PN", H31);
    let parsed = parse(&bytes);
    let unicode = to_unicode(&parsed, Declared::Utf8).expect("re-read");
    assert_eq!(name_of(&unicode), H31_TEXT);
    let mut written = Vec::new();
    unicode
        .write_dataset_with_ts(&mut written, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("the index's copy can be written");
    assert_eq!(name_of(&parse(&written)), H31_TEXT);
}

#[test]
fn a_header_without_code_extensions_or_un_is_not_copied() {
    let parsed = parse(&dataset_bytes(b"ISO_IR 192", "山田^太郎".as_bytes()));
    assert!(to_unicode(&parsed, Declared::Utf8).is_none());
    assert!(!declares_code_extensions(&parsed));
}

fn with_item(item_charset: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from(item_charset),
    ));
    item.put(DataElement::new(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("1.2.3"),
    ));
    let mut top = InMemDicomObject::new_empty();
    top.put(DataElement::new(
        tags::REFERENCED_STUDY_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![item]),
    ));
    top.put(DataElement::new(
        tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::from(H31_TEXT),
    ));
    top
}

#[test]
fn a_response_is_written_in_one_character_set_whatever_its_items_declared() {
    // UTF-8 response: without the item's ISO_IR 100 the kanji after it can be written.
    let mut utf8 = without_item_character_sets(with_item("ISO_IR 100"));
    utf8.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from("ISO_IR 192"),
    ));
    let mut written = Vec::new();
    utf8.write_dataset_with_ts(&mut written, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("written in UTF-8");
    assert_eq!(name_of(&parse(&written)), H31_TEXT);

    // ISO 2022 response: the name becomes the bytes of PS3.5 H.3.1; items declare nothing.
    let jp = encode_dataset(&with_item("ISO_IR 100"), &cs("\\ISO 2022 IR 87")).expect("fits");
    let mut written = Vec::new();
    jp.write_dataset_with_ts(&mut written, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("written");
    assert!(written.windows(H31.len()).any(|w| w == H31));
    let read = parse(&written);
    let item = &read
        .get(tags::REFERENCED_STUDY_SEQUENCE)
        .and_then(|e| e.items())
        .expect("seq")[0];
    assert!(item.get(tags::SPECIFIC_CHARACTER_SET).is_none());
    let unicode = to_unicode(&read, Declared::AsReceived).expect("re-read");
    assert_eq!(name_of(&unicode), H31_TEXT);
    // A name outside the set: no ISO 2022 encoding (the caller answers in UTF-8). Half-width
    // katakana are JIS X 0201 only.
    let mut kana = with_item("ISO_IR 100");
    kana.put(DataElement::new(
        tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::from("ﾔﾏﾀﾞ^ﾀﾛｳ"),
    ));
    assert!(encode_dataset(&kana, &cs("\\ISO 2022 IR 87")).is_none());
    assert!(encode_dataset(&kana, &cs("ISO 2022 IR 13\\ISO 2022 IR 87")).is_some());
}
