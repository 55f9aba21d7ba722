//! Decoding a text value written with ISO 2022 code extensions (PS3.5 §6.1.2.5).
//!
//! The bytes are read in order with two code elements: G0 (bytes 0x21..=0x7E) and G1 (bytes
//! 0xA1..=0xFE). Escape sequences designate a set to one of them. The state returns to the
//! initial one — the sets of the first value of (0008,0005) — at each value delimiter `\`, at
//! each end of line (CR, LF), form feed and TAB, and in person names at each component group
//! delimiter `=` and component delimiter `^` (§6.1.2.5.3). Those delimiters are recognised only
//! while G0 holds a single-byte set: in a two-byte G0 set, 0x5C or 0x5E is half of a character
//! (`ま` is 0x24 0x5E in JIS X 0208), and writers switch back to ASCII before a delimiter.
//!
//! Never fails, never panics. Fallbacks, chosen so a bad value still indexes as much as it can:
//! - an unknown or truncated escape sequence becomes U+FFFD and is skipped whole (ESC, its
//!   intermediate bytes 0x20..=0x2F and its final byte); the state does not change;
//! - a code with no character in the designated set (or half a two-byte code) becomes U+FFFD;
//! - a byte 0x80..=0xFF while no set is designated to G1 is read in the one two-byte G1 set
//!   (KS X 1001, GB 2312) that (0008,0005) names, if it names exactly one (writers that leave
//!   out `ESC $ ) C` or `ESC $ ) A` mean it); otherwise as ISO 8859-1, as dicom-rs and pydicom
//!   read text in the default repertoire.

use dicom_core::VR;

use super::CodeExtensions;
use super::graphic::{Element, Graphic};

const ESC: u8 = 0x1B;

/// How a text VR's value is delimited, for the resets of §6.1.2.5.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// PN: `\` between values, `=` between component groups, `^` between components.
    PersonName,
    /// SH, LO, UC: `\` between values.
    MultiValued,
    /// ST, LT, UT: one value; a backslash is an ordinary character.
    SingleValued,
}

impl TextKind {
    /// The text VRs whose values Specific Character Set applies to (PS3.5 §6.1.2.3).
    pub fn of(vr: VR) -> Option<TextKind> {
        match vr {
            VR::PN => Some(TextKind::PersonName),
            VR::SH | VR::LO | VR::UC => Some(TextKind::MultiValued),
            VR::ST | VR::LT | VR::UT => Some(TextKind::SingleValued),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct State {
    g0: Graphic,
    g1: Option<Graphic>,
}

impl State {
    fn initial(cs: &CodeExtensions) -> State {
        State {
            g0: cs.initial_g0,
            g1: cs.initial_g1,
        }
    }

    /// Delimiters and control characters are bytes of their own only in a single-byte G0.
    fn g0_single_byte(&self) -> bool {
        self.g0.width() == 1
    }
}

/// The values of an element whose bytes (all values, with their `\` delimiters) are `bytes`.
pub fn decode_values(bytes: &[u8], kind: TextKind, cs: &CodeExtensions) -> Vec<String> {
    let mut values = Vec::new();
    let mut current = String::with_capacity(bytes.len());
    let mut state = State::initial(cs);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == ESC {
            i += escape(&bytes[i..], &mut state, &mut current);
            continue;
        }
        if b < 0x20 {
            // Control characters: CR, LF, FF and TAB end a line (§6.1.2.5.3); the others are
            // kept as they are.
            current.push(char::from(b));
            if matches!(b, b'\r' | b'\n' | 0x0C | b'\t') {
                state = State::initial(cs);
            }
            i += 1;
            continue;
        }
        if b == b' ' || b == 0x7F {
            // SPACE and DELETE are not part of any 94-character set.
            current.push(char::from(b));
            i += 1;
            continue;
        }
        if b < 0x80 && state.g0_single_byte() {
            match (b, kind) {
                (b'\\', TextKind::PersonName | TextKind::MultiValued) => {
                    values.push(std::mem::take(&mut current));
                    state = State::initial(cs);
                    i += 1;
                    continue;
                }
                (b'^' | b'=', TextKind::PersonName) => {
                    current.push(char::from(b));
                    state = State::initial(cs);
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        i += if b < 0x80 {
            graphic(bytes, i, state.g0, 0x21..=0x7E, &mut current)
        } else {
            match state.g1.or(cs.undesignated_g1) {
                Some(set) => graphic(bytes, i, set, 0xA0..=0xFF, &mut current),
                None => {
                    current.push(char::from(b));
                    1
                }
            }
        };
    }
    values.push(current);
    values
}

/// Decode the character of `set` starting at `bytes[at]`; returns the bytes consumed.
fn graphic(
    bytes: &[u8],
    at: usize,
    set: Graphic,
    range: std::ops::RangeInclusive<u8>,
    out: &mut String,
) -> usize {
    let width = set.width();
    let code: Vec<u8> = bytes[at..]
        .iter()
        .take(width)
        .take_while(|b| range.contains(b))
        .map(|b| b & 0x7F)
        .collect();
    if code.len() < width {
        out.push(char::REPLACEMENT_CHARACTER);
        return 1;
    }
    out.push(set.decode(&code).unwrap_or(char::REPLACEMENT_CHARACTER));
    width
}

/// Apply the escape sequence at the start of `bytes`; returns its length.
fn escape(bytes: &[u8], state: &mut State, out: &mut String) -> usize {
    let intermediates = bytes[1..]
        .iter()
        .take_while(|b| (0x20..=0x2F).contains(*b))
        .count();
    let Some(&final_byte) = bytes.get(1 + intermediates) else {
        out.push(char::REPLACEMENT_CHARACTER);
        return bytes.len();
    };
    if !(0x30..=0x7E).contains(&final_byte) {
        // Not an escape sequence: drop the ESC alone and read on.
        out.push(char::REPLACEMENT_CHARACTER);
        return 1;
    }
    match Graphic::from_escape(&bytes[1..1 + intermediates], final_byte) {
        Some((set, Element::G0)) => state.g0 = set,
        Some((set, Element::G1)) => state.g1 = Some(set),
        None => out.push(char::REPLACEMENT_CHARACTER),
    }
    2 + intermediates
}
