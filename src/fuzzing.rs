//! Entry points for the fuzz targets in `tests/fuzz/` (cargo-afl, stable toolchain): one small
//! function per target that hands arbitrary bytes to the real parser the way MIFAS uses it. They
//! return nothing; a panic, an abort, a stack overflow or a hang is the finding. Not an API.
//!
//! The saved inputs under `tests/fuzz/regressions/<target>/` (findings), `corpus/<target>/`
//! (seeds) and `minimised/<target>/` (the corpus of the 10⁷-execution runs, minimised) are
//! replayed by the tests below, so `cargo test` keeps every fixed finding fixed.

use crate::web::dicomweb::multipart::{Event, Limits, MediaType, MultipartError, Parser};

/// What `dicom.max_sequence_depth` defaults to: the depth the network paths use.
const MAX_DEPTH: usize = crate::archive::DEFAULT_MAX_SEQUENCE_DEPTH;

/// Split points derived from the input itself, so the fuzzer steers them: a xorshift generator
/// seeded from the input's length and first bytes yields chunk sizes of 1..=`max` bytes.
fn chunks(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut seed = data.len() as u64 ^ 0x9E37_79B9_7F4A_7C15;
    for &b in data.iter().take(8) {
        seed = seed.rotate_left(8) ^ u64::from(b);
    }
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = (seed % max as u64) as usize + 1;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// A multipart body as [`Parser`] reports it: the parts' headers and data (consecutive
/// [`Event::Data`] joined), or the error that ended it.
type Parsed = Result<Vec<(String, Vec<u8>)>, MultipartError>;

fn parse_multipart(boundary: &str, pieces: &[&[u8]]) -> Parsed {
    let mut parser = Parser::new(boundary, Limits::with_max_parts(64))?;
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    // Every event but the final one consumes input: more polls than this is a livelock.
    let max_events = 4 * total + 64;
    let mut events = 0usize;
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut poll = |parser: &mut Parser, parts: &mut Vec<(String, Vec<u8>)>| loop {
        events += 1;
        assert!(events <= max_events, "multipart parser does not progress");
        match parser.poll()? {
            None => return Ok(false),
            Some(Event::End) => return Ok(true),
            Some(Event::Part(h)) => parts.push((format!("{h:?}"), Vec::new())),
            Some(Event::Data(d)) => match parts.last_mut() {
                Some(p) => p.1.extend_from_slice(&d),
                None => panic!("data before any part"),
            },
            Some(Event::PartEnd) => {}
        }
    };
    for piece in pieces {
        parser.feed(piece);
        if poll(&mut parser, &mut parts)? {
            return Ok(parts);
        }
    }
    parser.finish();
    match poll(&mut parser, &mut parts)? {
        true => Ok(parts),
        false => panic!("multipart parser asks for more after finish()"),
    }
}

/// STOW-RS body parser (`web::dicomweb::multipart`). The input is a Content-Type value, a
/// newline, then the body; the body is fed whole and again in chunks split at points derived from
/// the input. Beside panics and livelocks this checks that chunking never changes a body that
/// parses completely both ways.
pub fn stow_multipart(data: &[u8]) {
    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(content_type) = std::str::from_utf8(&data[..nl]) else {
        return;
    };
    let body = &data[nl + 1..];
    let Ok(media) = MediaType::parse(content_type) else {
        return;
    };
    let Ok(boundary) = media.boundary() else {
        return;
    };
    let whole = parse_multipart(boundary, &[body]);
    let chunked = parse_multipart(boundary, &chunks(body, 97));
    if let (Ok(a), Ok(b)) = (&whole, &chunked) {
        assert_eq!(a, b, "chunking changed the parsed body");
    }
}

/// The streaming element-structure walk (`archive::structure`) that every stored object,
/// identifier and command set passes before dicom-object parses it. The first input byte picks
/// the encoding; the rest is the data set, fed in chunks split at data-derived points, and the
/// verdict must equal that of the in-memory walk.
pub fn element_structure(data: &[u8]) {
    use crate::archive::structure::{Encoding, StructureCheck};
    let Some((&selector, dataset)) = data.split_first() else {
        return;
    };
    let encoding = Encoding {
        explicit_vr: selector & 1 != 0,
        big_endian: selector & 2 != 0,
    };
    let mut streamed = StructureCheck::new(encoding, MAX_DEPTH);
    for piece in chunks(dataset, 61) {
        streamed.feed(piece);
    }
    let _ = streamed.header();
    let whole = StructureCheck::check_bytes(encoding, MAX_DEPTH, dataset);
    assert_eq!(
        streamed.result().is_ok(),
        whole.is_ok(),
        "the streamed walk and the in-memory walk disagree"
    );
}

/// A C-STORE data set as ingest handles it (`archive::ingest::parse_and_validate`): the element
/// walk fed in input-derived chunks as the spool feeds it, then, if it passes, the captured
/// header parsed by dicom-parser and turned into an index entry (character sets, person names,
/// dates). Byte 0 picks the transfer syntax (mod 3: implicit LE, explicit LE, explicit BE) and,
/// with 0x10, a default character set of ISO_IR 192 instead of ISO_IR 100.
pub fn store_dataset(data: &[u8]) {
    use crate::archive::structure::{Encoding, StructureCheck};
    use crate::query::charset::dataset::DefaultCharacterSet;
    use dicom_encoding::TransferSyntaxIndex;
    let Some((&selector, dataset)) = data.split_first() else {
        return;
    };
    let (ts, encoding) = match selector % 3 {
        0 => ("1.2.840.10008.1.2", (false, false)),
        1 => ("1.2.840.10008.1.2.1", (true, false)),
        _ => ("1.2.840.10008.1.2.2", (true, true)),
    };
    let mut walk = StructureCheck::new(
        Encoding {
            explicit_vr: encoding.0,
            big_endian: encoding.1,
        },
        MAX_DEPTH,
    );
    for piece in chunks(dataset, 509) {
        walk.feed(piece);
    }
    if walk.result().is_err() {
        return;
    }
    let Some(header) = walk.header() else {
        return;
    };
    let Some(ts) = dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(ts) else {
        return;
    };
    let Ok(object) = dicom_object::InMemDicomObject::read_dataset_with_ts(header, ts) else {
        return;
    };
    let charset = if selector & 0x10 != 0 {
        "ISO_IR 192"
    } else {
        "ISO_IR 100"
    };
    let charset = DefaultCharacterSet::parse(charset).unwrap_or_default();
    let facts = crate::index::ObjectFacts {
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        sop_instance_uid: "1.2.3".into(),
        transfer_syntax: ts.uid().into(),
        size: dataset.len() as u64,
        sha256: [0; 32],
        object_key: "fuzz".into(),
        source_aet: "FUZZ".into(),
        received_at: 0,
    };
    let _ = crate::index::InstanceEntry::from_header(&object, facts, &charset);
}

/// Transfer syntaxes an identifier may arrive in (the first input byte picks one).
const IDENTIFIER_SYNTAXES: [&str; 4] = [
    "1.2.840.10008.1.2",      // Implicit VR Little Endian
    "1.2.840.10008.1.2.1",    // Explicit VR Little Endian
    "1.2.840.10008.1.2.2",    // Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.1.99", // Deflated Explicit VR Little Endian
];

/// A C-FIND identifier as `dimse::c_find` handles it: structure walk, decode to Unicode, then
/// `query::identifier::parse` for each information model and option set.
pub fn cfind_identifier(data: &[u8]) {
    use crate::query::{Model, identifier::ParseOptions};
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let ts = IDENTIFIER_SYNTAXES[usize::from(selector) % IDENTIFIER_SYNTAXES.len()];
    let Ok(identifier) = crate::dimse::checked_identifier(bytes, ts, MAX_DEPTH) else {
        return;
    };
    for model in [Model::PatientRoot, Model::StudyRoot] {
        let options = ParseOptions {
            case_insensitive_names: selector & 0x10 != 0,
            combined_datetime: selector & 0x20 != 0,
            fuzzy_names: selector & 0x40 != 0,
        };
        let _ = crate::query::identifier::parse(&identifier, model, options);
    }
}

/// The upper-layer PDU reader (`dicom_ul::read_pdu`, strict, as the listener calls it) over a
/// stream of PDUs, and every complete command set of a P-DATA-TF through `Command::decode`.
pub fn pdu_stream(data: &[u8]) {
    use dicom_ul::pdu::{PDataValueType, Pdu};
    let mut rest = data;
    while !rest.is_empty() {
        let mut cursor = std::io::Cursor::new(rest);
        let pdu = match dicom_ul::read_pdu(&mut cursor, 16384, true) {
            Ok(Some(pdu)) => pdu,
            Ok(None) | Err(_) => return,
        };
        let used = usize::try_from(cursor.position()).unwrap_or(rest.len());
        assert!(used > 0, "read_pdu returned a PDU without consuming bytes");
        rest = &rest[used.min(rest.len())..];
        if let Pdu::PData { data } = pdu {
            for pdv in data {
                if pdv.value_type == PDataValueType::Command {
                    let _ = crate::dimse::message::Command::decode(&pdv.data, MAX_DEPTH);
                }
            }
        }
    }
}

/// The configuration loader: TOML text → `Config`, then its validation.
pub fn config_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = crate::config::Config::parse(text) {
        let _ = config.validate();
    }
}

/// A fuzz target: its name (the binary and the corpus directory) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, for the regression replay.
pub const TARGETS: [Target; 6] = [
    ("stow_multipart", stow_multipart),
    ("element_structure", element_structure),
    ("store_dataset", store_dataset),
    ("cfind_identifier", cfind_identifier),
    ("pdu_stream", pdu_stream),
    ("config_text", config_text),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every saved crash input, seed and minimised-corpus input of `tests/fuzz/` through
    /// its target: none may panic (the fuzzers found these; each was fixed, or is an input that
    /// must stay harmless).
    #[test]
    fn fuzz_regressions_and_seeds_do_not_panic() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
        let mut replayed = 0usize;
        for (name, target) in TARGETS {
            for dir in ["regressions", "corpus", "minimised"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.expect("list fuzz inputs").path();
                    let bytes = std::fs::read(&path).expect("read fuzz input");
                    let outcome = std::panic::catch_unwind(|| target(&bytes));
                    assert!(outcome.is_ok(), "{} panics", path.display());
                    replayed += 1;
                }
            }
        }
        // The seed corpora are in the repository: an empty walk means the path is wrong.
        assert!(
            replayed >= TARGETS.len(),
            "only {replayed} fuzz inputs found"
        );
    }

    #[test]
    fn chunks_cover_the_input_in_order() {
        let data: Vec<u8> = (0..=255).collect();
        let pieces = chunks(&data, 7);
        assert!(pieces.iter().all(|p| (1..=7).contains(&p.len())));
        assert_eq!(pieces.concat(), data);
    }
}
