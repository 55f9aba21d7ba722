//! Streaming check of a data set's element structure (PS3.5 §7.1, §7.5) while its bytes arrive:
//! every element header is read and every value skipped by its declared length, so a truncated
//! or malformed object is refused without reading it back from disk. The header (top-level
//! elements before Pixel Data) is kept in memory on the way, for indexing.
//!
//! Values of defined length are skipped whole, nested sequences included: their contents before
//! Pixel Data are parsed anyway when the header is decoded for the index.

use std::io::Read;

const ITEM: u32 = 0xFFFE_E000;
const ITEM_DELIMITATION: u32 = 0xFFFE_E00D;
const SEQUENCE_DELIMITATION: u32 = 0xFFFE_E0DD;
const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;
/// Header capture stops at the first top-level element at or after (7FE0,0010) Pixel Data.
const PIXEL_DATA: u32 = 0x7FE0_0010;
/// A header larger than this is not kept in memory; it is parsed from the file instead.
const MAX_HEADER: usize = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
}

impl Encoding {
    /// Implicit VR Little Endian: the encoding of the contents of an undefined-length UN value
    /// (PS3.5 §6.2.2).
    const IMPLICIT_LE: Encoding = Encoding {
        explicit_vr: false,
        big_endian: false,
    };

    fn u16(self, b: [u8; 2]) -> u16 {
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(self, b: [u8; 4]) -> u32 {
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

/// An open value of undefined length.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// Items (or fragments) until a sequence delimitation item.
    Sequence(Encoding),
    /// Elements until an item delimitation item.
    Item(Encoding),
}

/// VRs whose explicit-VR header has two reserved bytes and a 32-bit length (PS3.5 Table 7.1-1).
fn has_long_length(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

fn tag_text(tag: u32) -> String {
    format!("({:04X},{:04X})", tag >> 16, tag & 0xFFFF)
}

#[derive(Debug)]
pub(crate) struct StructureCheck {
    top: Encoding,
    stack: Vec<Frame>,
    /// An element header still arriving.
    partial: [u8; 12],
    partial_len: usize,
    /// Bytes of the current value still to come, and the element they belong to.
    skip: u64,
    skipping: u32,
    /// Data-set bytes seen so far.
    position: u64,
    header: Vec<u8>,
    capturing: bool,
    header_too_large: bool,
    error: Option<String>,
}

impl StructureCheck {
    pub(crate) fn new(encoding: Encoding) -> StructureCheck {
        StructureCheck {
            top: encoding,
            stack: Vec::new(),
            partial: [0; 12],
            partial_len: 0,
            skip: 0,
            skipping: 0,
            position: 0,
            header: Vec::with_capacity(8192),
            capturing: true,
            header_too_large: false,
            error: None,
        }
    }

    /// Walk a whole data set from a reader (objects not received through a spool).
    pub(crate) fn read_from(encoding: Encoding, mut from: impl Read) -> std::io::Result<Self> {
        let mut check = StructureCheck::new(encoding);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                return Ok(check);
            }
            check.feed(&buf[..n]);
        }
    }

    fn encoding(&self) -> Encoding {
        match self.stack.last() {
            Some(Frame::Sequence(e) | Frame::Item(e)) => *e,
            None => self.top,
        }
    }

    /// The next data-set bytes, in order.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.error.is_none() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.consume(&data[..n]);
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let need = self.header_len();
            let n = (need - self.partial_len).min(data.len());
            self.partial[self.partial_len..self.partial_len + n].copy_from_slice(&data[..n]);
            self.partial_len += n;
            data = &data[n..];
            if self.partial_len == self.header_len() {
                self.element_header();
            }
        }
    }

    /// Length of the element header being read, as far as its first bytes tell.
    fn header_len(&self) -> usize {
        if self.partial_len < 4 {
            return 8;
        }
        let enc = self.encoding();
        let tag = self.tag(enc);
        if tag >> 16 == 0xFFFE || !enc.explicit_vr || self.partial_len < 6 {
            return 8;
        }
        if has_long_length([self.partial[4], self.partial[5]]) {
            12
        } else {
            8
        }
    }

    fn tag(&self, enc: Encoding) -> u32 {
        let p = &self.partial;
        (u32::from(enc.u16([p[0], p[1]])) << 16) | u32::from(enc.u16([p[2], p[3]]))
    }

    fn element_header(&mut self) {
        let enc = self.encoding();
        let tag = self.tag(enc);
        let p = self.partial;
        let len = self.partial_len;
        let (vr, length) = if tag >> 16 == 0xFFFE || !enc.explicit_vr {
            (None, enc.u32([p[4], p[5], p[6], p[7]]))
        } else if len == 12 {
            (Some([p[4], p[5]]), enc.u32([p[8], p[9], p[10], p[11]]))
        } else {
            (Some([p[4], p[5]]), u32::from(enc.u16([p[6], p[7]])))
        };
        if self.stack.is_empty() && tag >= PIXEL_DATA {
            self.capturing = false;
        }
        self.partial_len = 0;
        self.consume(&p[..len]);
        match (tag, self.stack.last().copied()) {
            (ITEM, Some(Frame::Sequence(e))) => {
                if length == UNDEFINED_LENGTH {
                    self.stack.push(Frame::Item(e));
                } else {
                    self.begin_value(tag, length);
                }
            }
            (ITEM, _) => self.fail(format!(
                "item outside a sequence at byte {}",
                self.position - len as u64
            )),
            (ITEM_DELIMITATION, Some(Frame::Item(_))) => {
                self.stack.pop();
            }
            (SEQUENCE_DELIMITATION, Some(Frame::Sequence(_))) => {
                self.stack.pop();
            }
            // Stray delimiters between top-level elements carry nothing; readers skip them.
            (ITEM_DELIMITATION | SEQUENCE_DELIMITATION, None) => {}
            (ITEM_DELIMITATION | SEQUENCE_DELIMITATION, Some(_)) => self.fail(format!(
                "misplaced delimitation item {} at byte {}",
                tag_text(tag),
                self.position - len as u64
            )),
            (_, Some(Frame::Sequence(_))) => self.fail(format!(
                "element {} where a sequence item was expected",
                tag_text(tag)
            )),
            _ if length == UNDEFINED_LENGTH => match vr {
                None | Some([b'S', b'Q']) | Some([b'O', b'B']) | Some([b'O', b'W']) => {
                    self.stack.push(Frame::Sequence(enc))
                }
                Some([b'U', b'N']) => self.stack.push(Frame::Sequence(Encoding::IMPLICIT_LE)),
                Some(other) => self.fail(format!(
                    "element {} of VR {} has an undefined length",
                    tag_text(tag),
                    String::from_utf8_lossy(&other)
                )),
            },
            _ => self.begin_value(tag, length),
        }
    }

    fn begin_value(&mut self, tag: u32, length: u32) {
        self.skip = u64::from(length);
        self.skipping = tag;
    }

    fn consume(&mut self, bytes: &[u8]) {
        self.position += bytes.len() as u64;
        if self.capturing {
            if self.header.len() + bytes.len() > MAX_HEADER {
                self.capturing = false;
                self.header_too_large = true;
                self.header = Vec::new();
            } else {
                self.header.extend_from_slice(bytes);
            }
        }
    }

    fn fail(&mut self, message: String) {
        self.error = Some(message);
    }

    /// The verdict once every byte has arrived.
    pub(crate) fn result(&self) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(format!("malformed data set: {e}"));
        }
        if self.skip > 0 {
            return Err(format!(
                "truncated data set: the value of {} lacks {} bytes ({} bytes received)",
                tag_text(self.skipping),
                self.skip,
                self.position
            ));
        }
        if self.partial_len > 0 {
            return Err(format!(
                "truncated data set: it ends inside an element header ({} bytes received)",
                self.position + self.partial_len as u64
            ));
        }
        if !self.stack.is_empty() {
            return Err(format!(
                "truncated data set: {} sequence or item value(s) of undefined length not closed",
                self.stack.len()
            ));
        }
        Ok(())
    }

    /// The top-level elements before Pixel Data, unless larger than [`MAX_HEADER`].
    pub(crate) fn header(&self) -> Option<&[u8]> {
        (!self.header_too_large).then_some(self.header.as_slice())
    }
}

#[cfg(test)]
mod tests {
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
                let mut c = StructureCheck::new(enc);
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
            el(enc, 0x0040_0275, b"SQ", &el(enc, 0xFFFE_E000, b"  ", b"")),
            el(enc, 0x7FE0_0010, b"OW", &[1, 2, 3, 4]),
        ]
    }

    #[test]
    fn well_formed_in_every_split_and_header_kept() {
        for enc in [LE, BE, Encoding::IMPLICIT_LE] {
            let elements = sample(enc);
            let data = elements.concat();
            assert!(check_all_splits(enc, &data).iter().all(Result::is_ok));
            let mut c = StructureCheck::new(enc);
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
                let mut c = StructureCheck::new(enc);
                c.feed(&data[..cut]);
                // a cut between elements is a shorter, well-formed data set
                assert_eq!(
                    c.result().is_ok(),
                    boundaries.contains(&cut),
                    "cut at {cut}"
                );
            }
            let mut c = StructureCheck::new(enc);
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
        let mut c = StructureCheck::new(LE);
        c.feed(&d);
        assert_eq!(c.header(), Some(&d[..header_len]));
        // without the final delimiter the pixel data never closes
        let mut c = StructureCheck::new(LE);
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
        let mut c = StructureCheck::new(LE);
        c.feed(&d);
        assert!(c.result().unwrap_err().contains("item outside a sequence"));
        let mut d = undefined(0x0040_0275, b"SQ");
        d.extend(el(LE, 0x0010_0010, b"PN", b"X^Y "));
        let mut c = StructureCheck::new(LE);
        c.feed(&d);
        assert!(
            c.result()
                .unwrap_err()
                .contains("where a sequence item was expected")
        );
        let mut d = el(LE, 0x0010_0010, b"PN", b"X^Y ");
        d.extend(undefined(0x0010_4000, b"UT"));
        let mut c = StructureCheck::new(LE);
        c.feed(&d);
        assert!(c.result().unwrap_err().contains("undefined length"));
    }

    #[test]
    fn large_headers_are_not_kept() {
        let mut c = StructureCheck::new(LE);
        c.feed(&el(LE, 0x0042_0011, b"OB", &vec![0u8; MAX_HEADER + 2]));
        assert!(c.result().is_ok());
        assert_eq!(c.header(), None);
    }
}
