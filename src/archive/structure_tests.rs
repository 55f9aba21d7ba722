//! Unit tests of the element walk: every split of the input, truncation, nesting and length
//! bombs in every length form.
use super::*;

const LE: Encoding = Encoding {
    explicit_vr: true,
    big_endian: false,
};
const BE: Encoding = Encoding {
    explicit_vr: true,
    big_endian: true,
};

fn el(enc: Encoding, tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let w16 = |v: u16| {
        if enc.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w32 = |v: u32| {
        if enc.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    out.extend_from_slice(&w16((tag >> 16) as u16));
    out.extend_from_slice(&w16(tag as u16));
    if !enc.explicit_vr {
        out.extend_from_slice(&w32(value.len() as u32));
    } else if has_long_length(*vr) {
        out.extend_from_slice(vr);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&w32(value.len() as u32));
    } else {
        out.extend_from_slice(vr);
        out.extend_from_slice(&w16(value.len() as u16));
    }
    out.extend_from_slice(value);
    out
}

/// An item of defined length: tag and 32-bit length, no VR, in `enc`'s byte order.
fn item(enc: Encoding, content: &[u8]) -> Vec<u8> {
    let implicit = Encoding {
        explicit_vr: false,
        ..enc
    };
    el(implicit, ITEM, b"  ", content)
}

fn raw(tag: u32, len: u32) -> Vec<u8> {
    let mut out = ((tag >> 16) as u16).to_le_bytes().to_vec();
    out.extend_from_slice(&(tag as u16).to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out
}

fn undefined(tag: u32, vr: &[u8; 2]) -> Vec<u8> {
    let mut out = ((tag >> 16) as u16).to_le_bytes().to_vec();
    out.extend_from_slice(&(tag as u16).to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&UNDEFINED_LENGTH.to_le_bytes());
    out
}

/// Feed in every chunk size from 1 byte up, so element headers split anywhere.
fn check_all_splits(enc: Encoding, data: &[u8]) -> Vec<Result<(), String>> {
    (1..=data.len().min(40))
        .chain([data.len()])
        .map(|chunk| {
            let mut c = StructureCheck::new(enc, DEFAULT_MAX_SEQUENCE_DEPTH);
            for part in data.chunks(chunk) {
                c.feed(part);
            }
            assert_eq!(c.position, data.len() as u64);
            c.result()
        })
        .collect()
}

/// Elements of a small data set; the last is Pixel Data.
fn sample(enc: Encoding) -> Vec<Vec<u8>> {
    vec![
        el(enc, 0x0008_0016, b"UI", b"1.2.3\0"),
        el(enc, 0x0010_0010, b"PN", b"DOE^J "),
        el(enc, 0x0040_0275, b"SQ", &item(enc, b"")),
        el(enc, 0x7FE0_0010, b"OW", &[1, 2, 3, 4]),
    ]
}

#[test]
fn well_formed_in_every_split_and_header_kept() {
    for enc in [LE, BE, Encoding::IMPLICIT_LE] {
        let elements = sample(enc);
        let data = elements.concat();
        assert!(check_all_splits(enc, &data).iter().all(Result::is_ok));
        let mut c = StructureCheck::new(enc, DEFAULT_MAX_SEQUENCE_DEPTH);
        c.feed(&data);
        assert_eq!(c.header(), Some(&elements[..3].concat()[..]));
    }
}

#[test]
fn truncation_anywhere_but_between_elements_is_refused() {
    for enc in [LE, BE, Encoding::IMPLICIT_LE] {
        let elements = sample(enc);
        let data = elements.concat();
        let boundaries: Vec<usize> = elements
            .iter()
            .scan(0, |end, e| {
                *end += e.len();
                Some(*end)
            })
            .collect();
        for cut in 1..data.len() {
            let mut c = StructureCheck::new(enc, DEFAULT_MAX_SEQUENCE_DEPTH);
            c.feed(&data[..cut]);
            // a cut between elements is a shorter, well-formed data set
            assert_eq!(
                c.result().is_ok(),
                boundaries.contains(&cut),
                "cut at {cut}"
            );
        }
        let mut c = StructureCheck::new(enc, DEFAULT_MAX_SEQUENCE_DEPTH);
        c.feed(&data[..data.len() - 1]);
        assert!(
            c.result()
                .unwrap_err()
                .contains("(7FE0,0010) lacks 1 bytes")
        );
    }
}

#[test]
fn undefined_lengths_nest_and_must_close() {
    // SQ of undefined length, one item of undefined length holding an element, then
    // encapsulated pixel data with an offset table and one fragment.
    let mut d = undefined(0x0040_0275, b"SQ");
    d.extend(raw(ITEM, UNDEFINED_LENGTH));
    d.extend(el(LE, 0x0040_0009, b"SH", b"SPS1"));
    d.extend(raw(ITEM_DELIMITATION, 0));
    d.extend(raw(SEQUENCE_DELIMITATION, 0));
    let header_len = d.len();
    d.extend(undefined(0x7FE0_0010, b"OB"));
    d.extend(raw(ITEM, 0));
    d.extend(raw(ITEM, 4));
    d.extend([0xFF, 0xD8, 0xFF, 0xD9]);
    d.extend(raw(SEQUENCE_DELIMITATION, 0));
    assert!(check_all_splits(LE, &d).iter().all(Result::is_ok));
    let mut c = StructureCheck::new(LE, DEFAULT_MAX_SEQUENCE_DEPTH);
    c.feed(&d);
    assert_eq!(c.header(), Some(&d[..header_len]));
    // without the final delimiter the pixel data never closes
    let mut c = StructureCheck::new(LE, DEFAULT_MAX_SEQUENCE_DEPTH);
    c.feed(&d[..d.len() - 8]);
    assert!(c.result().unwrap_err().contains("not closed"));
}

#[test]
fn un_of_undefined_length_holds_implicit_vr() {
    let mut d = undefined(0x0009_1010, b"UN");
    d.extend(raw(ITEM, UNDEFINED_LENGTH));
    d.extend(el(Encoding::IMPLICIT_LE, 0x0009_1011, b"  ", b"ABCD"));
    d.extend(raw(ITEM_DELIMITATION, 0));
    d.extend(raw(SEQUENCE_DELIMITATION, 0));
    d.extend(el(LE, 0x0010_0010, b"PN", b"X^Y "));
    assert!(check_all_splits(LE, &d).iter().all(Result::is_ok));
}

#[test]
fn misplaced_items_are_malformed() {
    let mut d = el(LE, 0x0010_0010, b"PN", b"X^Y ");
    d.extend(raw(ITEM, 0));
    let mut c = StructureCheck::new(LE, DEFAULT_MAX_SEQUENCE_DEPTH);
    c.feed(&d);
    assert!(c.result().unwrap_err().contains("item outside a sequence"));
    let mut d = undefined(0x0040_0275, b"SQ");
    d.extend(el(LE, 0x0010_0010, b"PN", b"X^Y "));
    let mut c = StructureCheck::new(LE, DEFAULT_MAX_SEQUENCE_DEPTH);
    c.feed(&d);
    assert!(
        c.result()
            .unwrap_err()
            .contains("where a sequence item was expected")
    );
    let mut d = el(LE, 0x0010_0010, b"PN", b"X^Y ");
    d.extend(undefined(0x0010_4000, b"UT"));
    let mut c = StructureCheck::new(LE, DEFAULT_MAX_SEQUENCE_DEPTH);
    c.feed(&d);
    assert!(c.result().unwrap_err().contains("undefined length"));
}

/// A delimiter outside any sequence is skipped when its length is 0 and refused otherwise:
/// dicom-parser reads a stray sequence delimiter as an element with that length (found by
/// fuzzing: 64 bytes of C-FIND identifier, then 3.9 GB).
#[test]
fn stray_delimiters_must_have_no_length() {
    for tag in [ITEM_DELIMITATION, SEQUENCE_DELIMITATION] {
        let mut d = el(LE, 0x0010_0010, b"PN", b"X^Y ");
        d.extend(raw(tag, 0));
        d.extend(el(LE, 0x0010_0020, b"LO", b"ID01"));
        for result in check_all_splits(LE, &d) {
            assert_eq!(result, Ok(()));
        }
        let mut d = el(LE, 0x0010_0010, b"PN", b"X^Y ");
        d.extend(raw(tag, 0xE801_0008));
        let mut c = StructureCheck::new(LE, DEFAULT_MAX_SEQUENCE_DEPTH);
        c.feed(&d);
        assert!(c.result().unwrap_err().contains("outside a sequence"));
    }
}

#[test]
fn large_headers_are_not_kept() {
    let mut c = StructureCheck::new(LE, DEFAULT_MAX_SEQUENCE_DEPTH);
    c.feed(&el(LE, 0x0042_0011, b"OB", &vec![0u8; MAX_HEADER + 2]));
    assert!(c.result().is_ok());
    assert_eq!(c.header(), None);
}

/// `depth` sequences, each holding one item holding the next; `defined` chooses lengths.
fn nested(enc: Encoding, depth: usize, defined: bool) -> Vec<u8> {
    let mut inner = el(enc, 0x0010_0010, b"PN", b"DEEP");
    for _ in 0..depth {
        if defined {
            inner = el(enc, 0x0008_1115, b"SQ", &item(enc, &inner));
        } else {
            let mut sq = if enc.explicit_vr {
                undefined(0x0008_1115, b"SQ")
            } else {
                raw(0x0008_1115, UNDEFINED_LENGTH)
            };
            sq.extend(raw(ITEM, UNDEFINED_LENGTH));
            sq.extend(&inner);
            sq.extend(raw(ITEM_DELIMITATION, 0));
            sq.extend(raw(SEQUENCE_DELIMITATION, 0));
            inner = sq;
        }
    }
    inner
}

#[test]
fn nesting_beyond_the_limit_is_refused_in_every_length_form() {
    for enc in [LE, Encoding::IMPLICIT_LE] {
        for defined in [false, true] {
            let ok = nested(enc, 8, defined);
            assert_eq!(
                StructureCheck::check_bytes(enc, 8, &ok),
                Ok(()),
                "{enc:?} {defined}"
            );
            let deep = nested(enc, 9, defined);
            let err = StructureCheck::check_bytes(enc, 8, &deep).unwrap_err();
            assert!(
                err.contains("nested deeper than 8"),
                "{enc:?} {defined}: {err}"
            );
            // the limit holds however the bytes arrive
            let mut c = StructureCheck::new(enc, 8);
            for part in deep.chunks(3) {
                c.feed(part);
            }
            assert!(c.result().is_err());
        }
    }
    // the bomb of the issue: 20,000 levels, refused without recursion
    let bomb = nested(LE, 20_000, false);
    let err = StructureCheck::check_bytes(LE, DEFAULT_MAX_SEQUENCE_DEPTH, &bomb).unwrap_err();
    assert!(err.contains("nested deeper than 64"), "{err}");
}

#[test]
fn values_overrunning_their_item_are_refused() {
    // an item of 10 bytes holding an element that declares 100
    let mut inner = el(LE, 0x0010_0010, b"PN", b"AB");
    inner[6] = 100;
    let item = [raw(ITEM, 10), inner].concat();
    let sq = el(LE, 0x0008_1115, b"SQ", &item);
    let err = StructureCheck::check_bytes(LE, 64, &sq).unwrap_err();
    assert!(err.contains("overruns"), "{err}");
    // a sequence declaring more than the data set holds is truncated, not allocated
    let mut bomb = el(LE, 0x0008_1115, b"SQ", b"");
    bomb[8..12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let err = StructureCheck::check_bytes(LE, 64, &bomb).unwrap_err();
    assert!(
        err.contains("truncated") || err.contains("not closed"),
        "{err}"
    );
}

#[test]
fn defined_length_sequences_close_by_position() {
    for enc in [LE, BE, Encoding::IMPLICIT_LE] {
        let mut d = nested(enc, 3, true);
        d.extend(el(enc, 0x0020_000D, b"UI", b"1.2\0"));
        assert!(
            check_all_splits(enc, &d).iter().all(Result::is_ok),
            "{enc:?}"
        );
    }
}

/// A VR code the standard does not define has the long header (dicom-parser reads it as UN): its
/// 32-bit length is checked against the bytes at hand, both byte orders. Found by fuzzing: read
/// with a 16-bit length, 100 bytes passed the walk and made the parser allocate 1.3 GB.
#[test]
fn unknown_vr_has_the_long_header() {
    for enc in [LE, BE] {
        let w32 = |v: u32| {
            if enc.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        // (0009,0010) "ZZ", reserved, a 32-bit length far beyond the data.
        let mut bomb = el(enc, 0x0008_0020, b"DA", b"20200101");
        bomb.extend_from_slice(&el(enc, 0x0009_0010, b"ZZ", b"")[..6]);
        bomb.extend_from_slice(&w32(0x5243_4C2A));
        bomb.extend_from_slice(&[0; 16]);
        assert!(StructureCheck::check_bytes(enc, 8, &bomb).is_err());
        // The same element with a true 32-bit length walks cleanly.
        let fine = el(enc, 0x0009_0010, b"ZZ", b"ABCD");
        assert_eq!(fine.len(), 16);
        for result in check_all_splits(enc, &fine) {
            assert_eq!(result, Ok(()));
        }
    }
}

/// A number value whose length is no multiple of the number's size is refused: dicom-parser would
/// read the whole numbers only and lose its place (found by fuzzing: a 2-byte UL, then 4 GB).
#[test]
fn number_lengths_must_be_multiples() {
    for enc in [LE, BE] {
        assert!(
            StructureCheck::check_bytes(enc, 8, &el(enc, 0x0028_0010, b"US", &[0; 3])).is_err()
        );
        assert!(
            StructureCheck::check_bytes(enc, 8, &el(enc, 0x0018_1310, b"UL", &[0; 6])).is_err()
        );
        assert_eq!(
            StructureCheck::check_bytes(enc, 8, &el(enc, 0x0028_0010, b"US", &[0; 4])),
            Ok(())
        );
    }
    let implicit = Encoding::IMPLICIT_LE;
    // (0028,0010) Rows is US in the dictionary; (0010,0010) PN takes any length.
    assert!(
        StructureCheck::check_bytes(implicit, 8, &el(implicit, 0x0028_0010, b"  ", &[0; 3]))
            .is_err()
    );
    assert_eq!(
        StructureCheck::check_bytes(implicit, 8, &el(implicit, 0x0010_0010, b"  ", b"ABC")),
        Ok(())
    );
}
