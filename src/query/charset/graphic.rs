//! The graphic character sets that DICOM designates with ISO 2022 escape sequences (PS3.3
//! Tables C.12-3 and C.12-4), their escape sequences, and how one character of each maps to
//! Unicode and back. The tables themselves come from `encoding_rs` (WHATWG encodings): the
//! 94×94 sets are read through the EUC form of the same code points (high bit set), the
//! 96-character sets through the ISO 8859 (or identical-in-0xA0..0xFF Windows) encodings.

use encoding_rs::Encoding;

/// A 96-character set invoked into G1 (the upper half of an ISO 8859 part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper {
    /// ISO-IR 100, ISO 8859-1 (Latin-1).
    Latin1,
    /// ISO-IR 101, ISO 8859-2.
    Latin2,
    /// ISO-IR 109, ISO 8859-3.
    Latin3,
    /// ISO-IR 110, ISO 8859-4.
    Latin4,
    /// ISO-IR 144, ISO 8859-5.
    Cyrillic,
    /// ISO-IR 127, ISO 8859-6.
    Arabic,
    /// ISO-IR 126, ISO 8859-7.
    Greek,
    /// ISO-IR 138, ISO 8859-8.
    Hebrew,
    /// ISO-IR 148, ISO 8859-9.
    Latin5,
    /// ISO-IR 203, ISO 8859-15.
    Latin9,
    /// ISO-IR 166, TIS 620-2533.
    Thai,
}

impl Upper {
    /// An encoding whose bytes 0xA0..=0xFF are this set. Windows-1252/1254/874 equal ISO 8859-1,
    /// ISO 8859-9 and TIS-620 there (they differ only in 0x80..=0x9F, which a 96-set never uses).
    fn table(self) -> &'static Encoding {
        match self {
            Upper::Latin1 => encoding_rs::WINDOWS_1252,
            Upper::Latin2 => encoding_rs::ISO_8859_2,
            Upper::Latin3 => encoding_rs::ISO_8859_3,
            Upper::Latin4 => encoding_rs::ISO_8859_4,
            Upper::Cyrillic => encoding_rs::ISO_8859_5,
            Upper::Arabic => encoding_rs::ISO_8859_6,
            Upper::Greek => encoding_rs::ISO_8859_7,
            Upper::Hebrew => encoding_rs::ISO_8859_8,
            Upper::Latin5 => encoding_rs::WINDOWS_1254,
            Upper::Latin9 => encoding_rs::ISO_8859_15,
            Upper::Thai => encoding_rs::WINDOWS_874,
        }
    }

    fn final_byte(self) -> u8 {
        match self {
            Upper::Latin1 => b'A',
            Upper::Latin2 => b'B',
            Upper::Latin3 => b'C',
            Upper::Latin4 => b'D',
            Upper::Greek => b'F',
            Upper::Arabic => b'G',
            Upper::Hebrew => b'H',
            Upper::Cyrillic => b'L',
            Upper::Latin5 => b'M',
            Upper::Thai => b'T',
            Upper::Latin9 => b'b',
        }
    }

    const ALL: [Upper; 11] = [
        Upper::Latin1,
        Upper::Latin2,
        Upper::Latin3,
        Upper::Latin4,
        Upper::Cyrillic,
        Upper::Arabic,
        Upper::Greek,
        Upper::Hebrew,
        Upper::Latin5,
        Upper::Latin9,
        Upper::Thai,
    ];
}

/// A character set that can be designated to G0 or G1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Graphic {
    /// ISO-IR 6, ASCII (the default repertoire).
    Ascii,
    /// ISO-IR 14, JIS X 0201 Romaji. Read as ASCII (its two differing glyphs, yen sign at 0x5C
    /// and overline at 0x7E, are taken as backslash and tilde, as pydicom and DCMTK do).
    JisRoman,
    /// ISO-IR 13, JIS X 0201 Katakana (half-width katakana).
    JisKatakana,
    /// One of the ISO 8859 upper halves.
    Upper(Upper),
    /// ISO-IR 87, JIS X 0208 (kanji, kana); also ISO-IR 42, its 1978 edition.
    JisX0208,
    /// ISO-IR 159, JIS X 0212 (supplementary kanji).
    JisX0212,
    /// ISO-IR 149, KS X 1001 (Korean).
    KsX1001,
    /// ISO-IR 58, GB 2312 (simplified Chinese).
    Gb2312,
}

/// Which of the two code elements a set is designated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    G0,
    G1,
}

impl Graphic {
    /// Bytes per character.
    pub fn width(self) -> usize {
        match self {
            Graphic::JisX0208 | Graphic::JisX0212 | Graphic::KsX1001 | Graphic::Gb2312 => 2,
            _ => 1,
        }
    }

    /// The code element DICOM designates this set to (PS3.3 C.12-3, C.12-4).
    pub fn element(self) -> Element {
        match self {
            Graphic::Ascii | Graphic::JisRoman | Graphic::JisX0208 | Graphic::JisX0212 => {
                Element::G0
            }
            Graphic::JisKatakana | Graphic::Upper(_) | Graphic::KsX1001 | Graphic::Gb2312 => {
                Element::G1
            }
        }
    }

    /// The escape sequence that designates this set to its DICOM code element.
    pub fn escape(self) -> &'static [u8] {
        match self {
            Graphic::Ascii => b"\x1b(B",
            Graphic::JisRoman => b"\x1b(J",
            Graphic::JisKatakana => b"\x1b)I",
            Graphic::JisX0208 => b"\x1b$B",
            Graphic::JisX0212 => b"\x1b$(D",
            Graphic::KsX1001 => b"\x1b$)C",
            Graphic::Gb2312 => b"\x1b$)A",
            Graphic::Upper(u) => match u {
                Upper::Latin1 => b"\x1b-A",
                Upper::Latin2 => b"\x1b-B",
                Upper::Latin3 => b"\x1b-C",
                Upper::Latin4 => b"\x1b-D",
                Upper::Greek => b"\x1b-F",
                Upper::Arabic => b"\x1b-G",
                Upper::Hebrew => b"\x1b-H",
                Upper::Cyrillic => b"\x1b-L",
                Upper::Latin5 => b"\x1b-M",
                Upper::Thai => b"\x1b-T",
                Upper::Latin9 => b"\x1b-b",
            },
        }
    }

    /// The set and code element an escape sequence designates: `intermediates` are the bytes
    /// between ESC and the final byte. Sets designated to the other element than DICOM's (for
    /// example JIS X 0201 Katakana to G0 with `ESC ( I`) are understood too.
    pub fn from_escape(intermediates: &[u8], final_byte: u8) -> Option<(Graphic, Element)> {
        let g = match (intermediates, final_byte) {
            (b"(", b'B') => (Graphic::Ascii, Element::G0),
            (b"(", b'J') => (Graphic::JisRoman, Element::G0),
            (b"(", b'I') => (Graphic::JisKatakana, Element::G0),
            (b")", b'I') => (Graphic::JisKatakana, Element::G1),
            (b"$", b'B') | (b"$", b'@') | (b"$(", b'B') | (b"$(", b'@') => {
                (Graphic::JisX0208, Element::G0)
            }
            (b"$)", b'B') => (Graphic::JisX0208, Element::G1),
            (b"$(", b'D') => (Graphic::JisX0212, Element::G0),
            (b"$)", b'D') => (Graphic::JisX0212, Element::G1),
            (b"$)", b'C') => (Graphic::KsX1001, Element::G1),
            (b"$(", b'C') => (Graphic::KsX1001, Element::G0),
            (b"$)", b'A') => (Graphic::Gb2312, Element::G1),
            (b"$(", b'A') | (b"$", b'A') => (Graphic::Gb2312, Element::G0),
            (b"-", f) => {
                let upper = Upper::ALL.into_iter().find(|u| u.final_byte() == f)?;
                (Graphic::Upper(upper), Element::G1)
            }
            _ => return None,
        };
        Some(g)
    }

    /// Decode one character given as its code in the set's own 7-bit form (each byte
    /// 0x21..=0x7E for 94-sets, 0x20..=0x7F for 96-sets). `None` when the code has no character.
    pub fn decode(self, code: &[u8]) -> Option<char> {
        let high = |b: u8| b | 0x80;
        match (self, code) {
            (Graphic::Ascii | Graphic::JisRoman, [b]) => Some(char::from(*b)),
            (Graphic::JisKatakana, [b @ 0x21..=0x5F]) => {
                char::from_u32(0xFF61 + u32::from(*b - 0x21))
            }
            (Graphic::Upper(Upper::Latin1), [b @ 0x20..=0x7F]) => Some(char::from(high(*b))),
            (Graphic::Upper(u), [b @ 0x20..=0x7F]) => one_char(u.table(), &[high(*b)]),
            (Graphic::JisX0208, [a, b]) => one_char(encoding_rs::EUC_JP, &[high(*a), high(*b)]),
            // EUC-JP reaches JIS X 0212 through the single shift SS3 (0x8F).
            (Graphic::JisX0212, [a, b]) => {
                one_char(encoding_rs::EUC_JP, &[0x8F, high(*a), high(*b)])
            }
            (Graphic::KsX1001, [a, b]) => one_char(encoding_rs::EUC_KR, &[high(*a), high(*b)]),
            (Graphic::Gb2312, [a, b]) => one_char(encoding_rs::GBK, &[high(*a), high(*b)]),
            _ => None,
        }
        .filter(|c| *c != char::REPLACEMENT_CHARACTER)
    }

    /// The 7-bit code of `c` in this set (the inverse of [`Graphic::decode`]), if it has one.
    /// JIS X 0212 has no encoder in `encoding_rs`: characters only found there are not encoded.
    pub fn encode(self, c: char) -> Option<Vec<u8>> {
        let low = |b: u8| b & 0x7F;
        let mut buf = [0u8; 4];
        let s: &str = c.encode_utf8(&mut buf);
        match self {
            Graphic::Ascii | Graphic::JisRoman => c.is_ascii().then(|| vec![c as u8]),
            Graphic::JisKatakana => {
                let cp = c as u32;
                (0xFF61..=0xFF9F)
                    .contains(&cp)
                    .then(|| vec![0x21 + (cp - 0xFF61) as u8])
            }
            Graphic::Upper(Upper::Latin1) => {
                let cp = c as u32;
                (0xA0..=0xFF).contains(&cp).then(|| vec![low(cp as u8)])
            }
            Graphic::Upper(u) => match encode_with(u.table(), s)?.as_slice() {
                [b @ 0xA0..=0xFF] => Some(vec![low(*b)]),
                _ => None,
            },
            Graphic::JisX0208 => euc_pair(encoding_rs::EUC_JP, s, 0xA1..=0xFE),
            Graphic::JisX0212 => None,
            Graphic::KsX1001 => euc_pair(encoding_rs::EUC_KR, s, 0xA1..=0xFE),
            // GB 2312 is rows 0xA1..=0xF7 of GBK's double-byte area; 0xAA..=0xAF are user-defined.
            Graphic::Gb2312 => euc_pair(encoding_rs::GBK, s, 0xA1..=0xF7)
                .filter(|code| !(0x2A..=0x2F).contains(&code[0])),
        }
        .filter(|code| self.decode(code) == Some(c))
    }
}

/// The one character `bytes` decode to, or `None` if they are not exactly one valid character.
fn one_char(table: &'static Encoding, bytes: &[u8]) -> Option<char> {
    let (text, had_errors) = table.decode_without_bom_handling(bytes);
    let mut chars = text.chars();
    match (had_errors, chars.next(), chars.next()) {
        (false, Some(c), None) => Some(c),
        _ => None,
    }
}

fn encode_with(table: &'static Encoding, s: &str) -> Option<Vec<u8>> {
    let (bytes, _, had_errors) = table.encode(s);
    (!had_errors).then(|| bytes.into_owned())
}

/// A two-byte EUC code whose lead byte is in `leads` (and trail byte in 0xA1..=0xFE), as 7-bit.
fn euc_pair(
    table: &'static Encoding,
    s: &str,
    leads: std::ops::RangeInclusive<u8>,
) -> Option<Vec<u8>> {
    match encode_with(table, s)?.as_slice() {
        [a, b] if leads.contains(a) && (0xA1..=0xFE).contains(b) => Some(vec![a & 0x7F, b & 0x7F]),
        _ => None,
    }
}
