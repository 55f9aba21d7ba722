//! Tests of the multipart reader: framing, limits, and the same body split anywhere.

use super::*;

const LIMITS: Limits = Limits {
    max_parts: 100,
    max_header_line: 200,
    max_header_bytes: 400,
    max_preamble: 1000,
};

type Parts = Vec<(PartHeaders, Vec<u8>)>;

/// Feeds `body` cut at `cuts` (ascending offsets) and collects the parts.
fn parse_cut(boundary: &str, body: &[u8], cuts: &[usize]) -> Result<Parts, MultipartError> {
    let mut parser = Parser::new(boundary, LIMITS)?;
    let mut parts: Parts = Vec::new();
    let mut ended = 0;
    let mut from = 0;
    let bounds: Vec<usize> = cuts.iter().copied().chain([body.len()]).collect();
    let mut pieces = bounds.iter();
    loop {
        match parser.poll()? {
            Some(Event::Part(h)) => parts.push((h, Vec::new())),
            Some(Event::Data(d)) => {
                assert!(!d.is_empty(), "empty data events are noise");
                parts
                    .last_mut()
                    .expect("data inside a part")
                    .1
                    .extend_from_slice(&d);
            }
            Some(Event::PartEnd) => {
                ended += 1;
                assert_eq!(ended, parts.len(), "one PartEnd per part");
            }
            Some(Event::End) => {
                assert_eq!(ended, parts.len(), "every part ended before End");
                return Ok(parts);
            }
            None => match pieces.next() {
                Some(&to) => {
                    parser.feed(&body[from..to]);
                    from = to;
                }
                None => parser.finish(),
            },
        }
    }
}

fn parse(boundary: &str, body: &[u8]) -> Result<Parts, MultipartError> {
    parse_cut(boundary, body, &[])
}

fn body(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (headers, data) in parts {
        out.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n").as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[test]
fn two_parts_with_headers() {
    let b = body(
        "xYz",
        &[
            (
                "Content-Type: application/dicom\r\nContent-Location: a.dcm\r\nContent-Length: 5\r\n",
                b"hello",
            ),
            (
                "content-type:application/dicom \r\n",
                b"\r\n--xY not a boundary\r\n",
            ),
        ],
    );
    let parts = parse("xYz", &b).expect("parse");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].0.number, 1);
    assert_eq!(
        parts[0].0.content_type.as_deref(),
        Some("application/dicom")
    );
    assert_eq!(parts[0].0.content_location.as_deref(), Some("a.dcm"));
    assert_eq!(parts[0].0.content_length, Some(5));
    assert_eq!(parts[0].1, b"hello");
    assert_eq!(
        parts[1].0.content_type.as_deref(),
        Some("application/dicom")
    );
    assert_eq!(parts[1].1, b"\r\n--xY not a boundary\r\n");
}

#[test]
fn preamble_padding_epilogue_and_empty_parts() {
    let b = b"This is a preamble.\r\n--b \t\r\n\r\n\r\n--b\r\nX-Other: 1\r\n\r\ndata\r\n--b--  epilogue \r\n--b\r\n";
    let parts = parse("b", b).expect("parse");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].1, b"");
    assert_eq!(parts[0].0.content_type, None);
    assert_eq!(parts[1].1, b"data");
    // No part at all is a valid (empty) body.
    assert_eq!(parse("b", b"--b--\r\n").expect("parse"), Vec::new());
}

#[test]
fn malformed_bodies_are_typed_errors() {
    let ok = body(
        "bnd",
        &[("Content-Type: application/dicom\r\n", b"0123456789")],
    );
    // Cut before the final boundary: the last part never ends.
    let cut = &ok[..ok.len() - 9];
    assert_eq!(parse("bnd", cut), Err(MultipartError::MissingFinalBoundary));
    // Ends in the middle of the headers.
    assert_eq!(
        parse("bnd", b"--bnd\r\nContent-Type: appl"),
        Err(MultipartError::MissingFinalBoundary)
    );
    // Garbage: no boundary anywhere.
    assert_eq!(
        parse("bnd", b"garbage, not multipart"),
        Err(MultipartError::NoOpeningBoundary(1000))
    );
    assert_eq!(
        parse("bnd", &vec![b'x'; 5000]),
        Err(MultipartError::NoOpeningBoundary(1000))
    );
    assert_eq!(
        parse("bnd", b""),
        Err(MultipartError::NoOpeningBoundary(1000))
    );
    assert_eq!(
        parse("bnd", b"--bndX\r\n\r\n\r\n--bnd--"),
        Err(MultipartError::BadDelimiter)
    );
    let long = format!("--bnd\r\nX-Long: {}\r\n\r\n", "v".repeat(300));
    assert_eq!(
        parse("bnd", long.as_bytes()),
        Err(MultipartError::HeaderLineTooLong(200))
    );
    let many = format!(
        "--bnd\r\n{}\r\n",
        "X-A: 12345678901234567890\r\n".repeat(20)
    );
    assert_eq!(
        parse("bnd", many.as_bytes()),
        Err(MultipartError::HeadersTooLong(400))
    );
    assert!(matches!(
        parse("bnd", b"--bnd\r\nno colon here\r\n\r\nx\r\n--bnd--"),
        Err(MultipartError::BadHeader(_))
    ));
    assert!(matches!(
        parse("bnd", b"--bnd\r\nContent-Length: -1\r\n\r\nx\r\n--bnd--"),
        Err(MultipartError::BadHeader(_))
    ));
    assert_eq!(
        parse("bnd", b"--bnd\r\nContent-Length: 3\r\n\r\nxy\r\n--bnd--"),
        Err(MultipartError::LengthMismatch {
            part: 1,
            declared: 3,
            actual: 2
        })
    );
    let parts: Vec<(&str, &[u8])> = vec![("", b"x"); 101];
    assert_eq!(
        parse("bnd", &body("bnd", &parts)),
        Err(MultipartError::TooManyParts(100))
    );
    // An error is final.
    let mut parser = Parser::new("bnd", LIMITS).expect("parser");
    parser.feed(b"--bndX");
    assert_eq!(parser.poll(), Err(MultipartError::BadDelimiter));
    parser.feed(b"\r\n\r\n--bnd--");
    assert_eq!(parser.poll(), Err(MultipartError::BadDelimiter));
}

/// A small deterministic generator (no extra crate): xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

/// Data full of near-boundaries: CR, LF, dashes and prefixes of the delimiter.
fn tricky_data(rng: &mut Rng, boundary: &str) -> Vec<u8> {
    let delimiter = format!("\r\n--{boundary}");
    let mut out = Vec::new();
    for _ in 0..rng.below(12) {
        match rng.below(5) {
            0 => out.extend_from_slice(&delimiter.as_bytes()[..rng.below(delimiter.len() as u64)]),
            1 => out.extend_from_slice(b"\r\r\n-"),
            2 => out.push(rng.next() as u8),
            3 => out.extend_from_slice(b"--"),
            _ => out.extend_from_slice(b"\r\n"),
        }
    }
    out
}

/// The same body, split at every position (and byte by byte), parses the same.
#[test]
fn split_anywhere_parses_the_same() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..60 {
        let boundary = ["b", "MIFAS-boundary-42", "=_x"][round % 3];
        let data: Vec<Vec<u8>> = (0..1 + rng.below(3))
            .map(|_| tricky_data(&mut rng, boundary))
            .collect();
        let parts: Vec<(&str, &[u8])> = data
            .iter()
            .map(|d| ("Content-Type: application/dicom\r\n", d.as_slice()))
            .collect();
        let mut b = b"pre\r\n".to_vec();
        b.extend(body(boundary, &parts));
        let whole = parse(boundary, &b).expect("whole body parses");
        let expected: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let got: Vec<&[u8]> = whole.iter().map(|(_, d)| d.as_slice()).collect();
        assert_eq!(got, expected, "round {round}");
        for cut in 0..=b.len() {
            assert_eq!(
                parse_cut(boundary, &b, &[cut]),
                Ok(whole.clone()),
                "cut at {cut}"
            );
        }
        let every: Vec<usize> = (1..b.len()).collect();
        assert_eq!(parse_cut(boundary, &b, &every), Ok(whole.clone()));
        // And a truncated copy fails the same way wherever it is split.
        let short = &b[..b.len() - 3 - boundary.len()];
        let failure = parse(boundary, short);
        assert!(failure.is_err(), "{failure:?}");
        for cut in 0..=short.len() {
            assert_eq!(
                parse_cut(boundary, short, &[cut]),
                failure,
                "truncated, cut at {cut}"
            );
        }
    }
}

/// What the parser holds is bounded by one fed chunk plus the delimiter, however large the part.
#[test]
fn memory_stays_bounded_over_a_large_part() {
    let mut parser = Parser::new("bnd", LIMITS).expect("parser");
    parser.feed(b"--bnd\r\n\r\n");
    let chunk = vec![b'\r'; 64 * 1024];
    let mut total = 0usize;
    for _ in 0..256 {
        parser.feed(&chunk);
        while let Some(event) = parser.poll().expect("poll") {
            if let Event::Data(d) = event {
                total += d.len();
            }
        }
        assert!(parser.buf.len() <= chunk.len() + 16, "{}", parser.buf.len());
    }
    parser.feed(b"\r\n--bnd--");
    parser.finish();
    while let Some(event) = parser.poll().expect("poll") {
        match event {
            Event::Data(d) => total += d.len(),
            Event::End => break,
            _ => {}
        }
    }
    assert_eq!(total, 256 * chunk.len());
}

#[test]
fn media_types_and_boundaries() {
    let m =
        MediaType::parse("Multipart/Related; type=\"application/dicom\"; boundary=\"a b\\\"c\"")
            .expect("parse");
    assert_eq!(m.essence, "multipart/related");
    assert_eq!(m.param("TYPE"), Some("application/dicom"));
    assert_eq!(m.boundary(), Ok("a b\"c"));
    let m =
        MediaType::parse("multipart/related;boundary=abc;type=application/dicom").expect("parse");
    assert_eq!(m.boundary(), Ok("abc"));
    assert_eq!(m.param("type"), Some("application/dicom"));
    assert_eq!(
        MediaType::parse("multipart/related; type=application/dicom")
            .expect("parse")
            .boundary(),
        Err(MultipartError::NoBoundary)
    );
    assert!(matches!(
        MediaType::parse("multipart/related; boundary=").and_then(|m| m.boundary().map(str::len)),
        Err(MultipartError::InvalidBoundary(_))
    ));
    assert!(matches!(
        MediaType::parse(&format!("multipart/related; boundary={}", "x".repeat(257)))
            .and_then(|m| m.boundary().map(str::len)),
        Err(MultipartError::InvalidBoundary(_))
    ));
    assert!(matches!(
        MediaType::parse("multipart/related; boundary=\"abc"),
        Err(MultipartError::BadContentType(_))
    ));
    assert!(matches!(
        MediaType::parse("garbage"),
        Err(MultipartError::BadContentType(_))
    ));
}

/// A body stream of fixed chunks, for the reader.
struct Chunks(std::collections::VecDeque<Result<Bytes, String>>);

impl Stream for Chunks {
    type Item = Result<Bytes, String>;
    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.pop_front())
    }
}

fn chunks(body: &[u8], size: usize) -> Chunks {
    Chunks(
        body.chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect(),
    )
}

#[tokio::test]
async fn reader_skips_unread_data_and_limits_size() {
    let b = body("q", &[("", b"first part"), ("X: y\r\n", b"second")]);
    let parser = Parser::new("q", LIMITS).expect("parser");
    let mut reader = MultipartReader::new(chunks(&b, 3), parser, 1 << 20);
    let first = reader.next_part().await.expect("part").expect("some");
    assert_eq!(first.number, 1);
    // Read only one chunk of the first part; the rest is skipped.
    assert!(reader.next_chunk().await.expect("chunk").is_some());
    let second = reader.next_part().await.expect("part").expect("some");
    assert_eq!(second.number, 2);
    let mut data = Vec::new();
    while let Some(c) = reader.next_chunk().await.expect("chunk") {
        data.extend_from_slice(&c);
    }
    assert_eq!(data, b"second");
    assert_eq!(reader.next_part().await, Ok(None));
    // The epilogue after the final boundary need not be read.
    assert!(
        reader.received() + 3 > b.len() as u64,
        "{}",
        reader.received()
    );

    let parser = Parser::new("q", LIMITS).expect("parser");
    let mut reader = MultipartReader::new(chunks(&b, 8), parser, 20);
    let mut result = Ok(None);
    for _ in 0..3 {
        result = reader.next_part().await;
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(MultipartError::TooLarge(20)));

    let mut broken = chunks(&b[..10], 4);
    broken.0.push_back(Err("connection reset".into()));
    let parser = Parser::new("q", LIMITS).expect("parser");
    let mut reader = MultipartReader::new(broken, parser, 1 << 20);
    assert!(reader.next_part().await.expect("part").is_some());
    let mut result = Ok(None);
    for _ in 0..10 {
        result = reader.next_chunk().await;
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(MultipartError::Read("connection reset".into())));
}
