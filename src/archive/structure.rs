//! Streaming check of a data set's element structure (PS3.5 §7.1, §7.5) while its bytes arrive:
//! every element header is read and every value skipped by its declared length, so a truncated
//! or malformed object is refused without reading it back from disk. The header (top-level
//! elements before Pixel Data) is kept in memory on the way, for indexing.
//!
//! The walk descends into every sequence and item, of defined or undefined length, and refuses
//! nesting deeper than a configured limit and values that overrun the item or sequence holding
//! them. This is what stands between peer bytes and dicom-object's recursive parser, which would
//! overflow the thread's stack on a few hundred kilobytes of sequences nested 20,000 deep: every
//! data set, identifier and command set is walked here before dicom-object sees it.

use std::io::Read;

const ITEM: u32 = 0xFFFE_E000;
const ITEM_DELIMITATION: u32 = 0xFFFE_E00D;
const SEQUENCE_DELIMITATION: u32 = 0xFFFE_E0DD;
const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;
/// Header capture stops at the first top-level element at or after (7FE0,0010) Pixel Data.
const PIXEL_DATA: u32 = 0x7FE0_0010;
/// A header larger than this is not kept in memory; it is parsed from the file instead.
const MAX_HEADER: usize = 8 << 20;
/// The most a deflated identifier or command may inflate to (real ones are kilobytes).
const MAX_INFLATED_IN_MEMORY: u64 = 16 << 20;
/// Default for `dicom.max_sequence_depth`: real objects nest a handful of levels (structured
/// reports reach ten or twenty); dicom-object's recursion is safe far beyond this.
pub const DEFAULT_MAX_SEQUENCE_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
}

impl Encoding {
    /// Implicit VR Little Endian: the encoding of the contents of an undefined-length UN value
    /// (PS3.5 §6.2.2).
    pub(crate) const EXPLICIT_LE: Encoding = Encoding {
        explicit_vr: true,
        big_endian: false,
    };

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

/// An open sequence or item. `end` is the data-set position where one of defined length ends;
/// `None` means it ends with a delimitation item.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// Items until its end; `fragments` for encapsulated Pixel Data, whose items are opaque.
    Sequence {
        enc: Encoding,
        end: Option<u64>,
        fragments: bool,
    },
    /// Elements until its end.
    Item { enc: Encoding, end: Option<u64> },
}

impl Frame {
    fn encoding(self) -> Encoding {
        match self {
            Frame::Sequence { enc, .. } | Frame::Item { enc, .. } => enc,
        }
    }

    fn end(self) -> Option<u64> {
        match self {
            Frame::Sequence { end, .. } | Frame::Item { end, .. } => end,
        }
    }
}

/// Whether an implicit-VR element of defined length is a sequence: dicom-parser decides by the
/// dictionary, so the walk must too.
fn implicit_is_sequence(tag: u32) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    let tag = dicom_core::Tag((tag >> 16) as u16, tag as u16);
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| e.vr().relaxed() == dicom_core::VR::SQ)
}

/// The size of one number in a value of this element (1 for text and bytes). dicom-parser reads
/// `length / size` numbers and then goes on as if `length` bytes were read, so a length that is
/// no multiple desynchronises it from this walk: it then takes value bytes for the next header and
/// allocates whatever length they declare (found by fuzzing: 90 bytes, 4 GB). Refused here.
fn value_unit(tag: u32, explicit: Option<[u8; 2]>) -> u32 {
    use dicom_core::VR;
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    let vr = match explicit {
        Some(code) => VR::from_binary(code).unwrap_or(VR::UN),
        // As dicom-encoding's implicit VR decoder: Pixel Data and Overlay Data are OW.
        None if tag == PIXEL_DATA || (tag >> 24 == 0x60 && tag & 0xFFFF == 0x3000) => VR::OW,
        None => dicom_dictionary_std::StandardDataDictionary
            .by_tag(dicom_core::Tag((tag >> 16) as u16, tag as u16))
            .map_or(VR::UN, |e| e.vr().relaxed()),
    };
    match vr {
        VR::SS | VR::US | VR::OW => 2,
        VR::AT | VR::FL | VR::SL | VR::UL | VR::OL | VR::OF => 4,
        VR::FD | VR::SV | VR::UV | VR::OD | VR::OV => 8,
        _ => 1,
    }
}

/// VRs whose explicit-VR header has two reserved bytes and a 32-bit length (PS3.5 Table 7.1-1).
/// A VR code the standard does not define is read as UN by dicom-parser, with the long header:
/// the walk must read it the same way, or a 100-byte identifier passes the walk here and then makes
/// the parser allocate the gigabytes its 32-bit length declares (found by fuzzing).
fn has_long_length(vr: [u8; 2]) -> bool {
    if dicom_core::VR::from_binary(vr).is_none() {
        return true;
    }
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

/// Walk a data set held in memory — a command set, a C-FIND/C-MOVE/C-GET identifier — in the
/// transfer syntax `ts_uid`, before dicom-object parses it: nesting deeper than `max_depth` and
/// lengths beyond the bytes at hand are refused here instead of reaching a recursive parser or an
/// allocation of the declared size.
pub fn check_dataset_bytes(bytes: &[u8], ts_uid: &str, max_depth: usize) -> Result<(), String> {
    use dicom_encoding::TransferSyntaxIndex;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    if matches!(ts.codec(), dicom_encoding::Codec::Dataset(_)) {
        // The caller inflates these bytes into memory next: bound what it will get.
        let inflated = std::io::Read::take(
            flate2::read::DeflateDecoder::new(bytes),
            MAX_INFLATED_IN_MEMORY + 1,
        );
        let check = StructureCheck::read_from(Encoding::EXPLICIT_LE, max_depth, inflated)
            .map_err(|e| format!("cannot inflate: {e}"))?;
        if check.position > MAX_INFLATED_IN_MEMORY {
            return Err(format!(
                "deflated data set inflates to more than {MAX_INFLATED_IN_MEMORY} bytes"
            ));
        }
        return check.result();
    }
    let encoding = Encoding {
        explicit_vr: ts.uid()
            != dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.uid(),
        big_endian: ts.endianness() == dicom_encoding::transfer_syntax::Endianness::Big,
    };
    StructureCheck::check_bytes(encoding, max_depth, bytes)
}

#[derive(Debug)]
pub(crate) struct StructureCheck {
    top: Encoding,
    stack: Vec<Frame>,
    /// Sequences open on the stack, and how many may be.
    depth: usize,
    max_depth: usize,
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
    pub(crate) fn new(encoding: Encoding, max_depth: usize) -> StructureCheck {
        StructureCheck {
            top: encoding,
            stack: Vec::new(),
            depth: 0,
            max_depth,
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
    pub(crate) fn read_from(
        encoding: Encoding,
        max_depth: usize,
        mut from: impl Read,
    ) -> std::io::Result<Self> {
        let mut check = StructureCheck::new(encoding, max_depth);
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
        self.stack.last().map_or(self.top, |f| f.encoding())
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
                if self.skip == 0 {
                    self.close_finished();
                }
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
        let at = self.position - len as u64;
        if self.beyond_enclosing_end(0) {
            return self.fail(format!(
                "{} overruns its item (element at byte {at})",
                tag_text(tag)
            ));
        }
        let defined = (length != UNDEFINED_LENGTH).then_some(u64::from(length));
        if defined.is_some_and(|l| self.beyond_enclosing_end(l)) {
            return self.fail(format!(
                "{} overruns its item ({length} bytes at byte {at})",
                tag_text(tag)
            ));
        }
        let end = defined.map(|l| self.position + l);
        match (tag, self.stack.last().copied()) {
            (
                ITEM,
                Some(Frame::Sequence {
                    fragments: true, ..
                }),
            ) => match defined {
                Some(_) => self.begin_value(tag, length),
                None => self.fail(format!(
                    "pixel data fragment of undefined length at byte {at}"
                )),
            },
            (ITEM, Some(Frame::Sequence { enc, .. })) => {
                self.stack.push(Frame::Item { enc, end });
            }
            (ITEM, _) => self.fail(format!("item outside a sequence at byte {at}")),
            (ITEM_DELIMITATION, Some(Frame::Item { end: None, .. }))
            | (SEQUENCE_DELIMITATION, Some(Frame::Sequence { end: None, .. })) => {
                self.pop();
            }
            // Stray delimiters between top-level elements carry nothing; readers skip them. Their
            // length must be 0 (PS3.5 7.5): dicom-parser reads a stray sequence delimiter as an
            // element and allocates the length it declares (found by fuzzing: 3.9 GB from 64
            // bytes of C-FIND identifier).
            (ITEM_DELIMITATION | SEQUENCE_DELIMITATION, None) if length != 0 => self.fail(format!(
                "delimitation item {} outside a sequence with a length of {length} at byte {at}",
                tag_text(tag)
            )),
            (ITEM_DELIMITATION | SEQUENCE_DELIMITATION, None) => {}
            (ITEM_DELIMITATION | SEQUENCE_DELIMITATION, Some(_)) => self.fail(format!(
                "misplaced delimitation item {} at byte {at}",
                tag_text(tag)
            )),
            (_, Some(Frame::Sequence { .. })) => self.fail(format!(
                "element {} where a sequence item was expected",
                tag_text(tag)
            )),
            _ if defined.is_none() => match vr {
                None | Some([b'S', b'Q']) => self.open_sequence(enc, None, tag == PIXEL_DATA),
                Some([b'O', b'B']) | Some([b'O', b'W']) => self.open_sequence(enc, None, true),
                Some([b'U', b'N']) => self.open_sequence(Encoding::IMPLICIT_LE, None, false),
                Some(other) => self.fail(format!(
                    "element {} of VR {} has an undefined length",
                    tag_text(tag),
                    String::from_utf8_lossy(&other)
                )),
            },
            _ if vr == Some(*b"SQ") || (vr.is_none() && implicit_is_sequence(tag)) => {
                self.open_sequence(enc, end, false)
            }
            _ => {
                let unit = value_unit(tag, vr);
                if length % unit != 0 {
                    return self.fail(format!(
                        "{} has a length of {length}, not a multiple of {unit} (byte {at})",
                        tag_text(tag)
                    ));
                }
                self.begin_value(tag, length)
            }
        }
        if self.skip == 0 {
            self.close_finished();
        }
    }

    fn open_sequence(&mut self, enc: Encoding, end: Option<u64>, fragments: bool) {
        if self.depth >= self.max_depth {
            return self.fail(format!(
                "sequences nested deeper than {} levels (dicom.max_sequence_depth)",
                self.max_depth
            ));
        }
        self.depth += 1;
        self.stack.push(Frame::Sequence {
            enc,
            end,
            fragments,
        });
    }

    fn pop(&mut self) {
        if let Some(Frame::Sequence { .. }) = self.stack.pop() {
            self.depth -= 1;
        }
    }

    /// Would `more` bytes from here pass the end of the innermost item or sequence of defined
    /// length? (Outer ones were checked when the inner ones opened.)
    fn beyond_enclosing_end(&self, more: u64) -> bool {
        self.stack
            .iter()
            .rev()
            .find_map(|f| f.end())
            .is_some_and(|end| self.position + more > end)
    }

    /// Close the items and sequences of defined length that end here.
    fn close_finished(&mut self) {
        while let Some(end) = self.stack.last().and_then(|f| f.end()) {
            if end != self.position {
                break;
            }
            self.pop();
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
            // Short: it ends up in a 64-character ErrorComment.
            return Err(e.clone());
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

    /// Walk a data set held in memory (a command set, an identifier) before it is parsed.
    pub(crate) fn check_bytes(
        encoding: Encoding,
        max_depth: usize,
        bytes: &[u8],
    ) -> Result<(), String> {
        let mut check = StructureCheck::new(encoding, max_depth);
        check.capturing = false;
        check.feed(bytes);
        check.result()
    }

    /// The top-level elements before Pixel Data, unless larger than [`MAX_HEADER`].
    pub(crate) fn header(&self) -> Option<&[u8]> {
        (!self.header_too_large).then_some(self.header.as_slice())
    }
}

#[cfg(test)]
#[path = "structure_tests.rs"]
mod tests;
