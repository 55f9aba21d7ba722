//! `multipart/related` (RFC 2387) request bodies, read as a stream (STOW-RS requests). Bodies
//! are never held whole: part data is handed out in chunks as it arrives; only the bytes that
//! might be the start of a boundary are held back.
//!
//! Two layers: [`Parser`] is a pure state machine over bytes (fed with [`Parser::feed`], read
//! with [`Parser::poll`]): no I/O, no async, so the fuzzer (issue 13) and the split tests drive
//! it directly. [`MultipartReader`] pulls an HTTP body stream through it.
//!
//! Syntax (RFC 2046 §5.1.1): an optional preamble, then `--boundary` at the start of a line,
//! optional transport padding (spaces, tabs), CRLF; per part: header lines, an empty line, the
//! body; each body ends at `CRLF--boundary`; the last boundary is `--boundary--`, after which
//! the epilogue is ignored.

use std::future::poll_fn;
use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;

/// Longest part header line (name, colon, value). Real ones are under 200 bytes.
pub const MAX_HEADER_LINE: usize = 8 * 1024;
/// Header bytes of one part, all lines together.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Bytes before the first boundary: a preamble is allowed (RFC 2046) but nobody sends a
/// large one; a body that is not multipart at all fails here instead of at its end.
pub const MAX_PREAMBLE: usize = 64 * 1024;
/// Longest boundary accepted. RFC 2046 §5.1.1 allows 1 to 70 characters, but real clients
/// exceed it (Orthanc's DICOMweb plugin 1.7 sends 73: two UUIDs joined by a dash); the limit
/// only has to keep the delimiter search cheap.
pub const MAX_BOUNDARY: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the Content-Type has no boundary parameter")]
    NoBoundary,
    #[error("invalid boundary {0:?}: 1 to 256 printable characters, not ending in a space")]
    InvalidBoundary(String),
    #[error("malformed Content-Type: {0}")]
    BadContentType(String),
    #[error("no opening boundary in the first {0} bytes of the body")]
    NoOpeningBoundary(usize),
    #[error("the body ends before its final boundary (--boundary--): truncated request")]
    MissingFinalBoundary,
    #[error("unexpected bytes after a boundary (expected CRLF or --)")]
    BadDelimiter,
    #[error("a part header line is longer than {0} bytes")]
    HeaderLineTooLong(usize),
    #[error("the headers of a part are longer than {0} bytes")]
    HeadersTooLong(usize),
    #[error("malformed part header line {0:?}")]
    BadHeader(String),
    #[error("more than {0} parts")]
    TooManyParts(usize),
    #[error("part {part}: Content-Length says {declared} bytes, the part has {actual}")]
    LengthMismatch {
        part: usize,
        declared: u64,
        actual: u64,
    },
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("cannot read the request body: {0}")]
    Read(String),
}

/// What the parser accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_parts: usize,
    pub max_header_line: usize,
    pub max_header_bytes: usize,
    pub max_preamble: usize,
}

impl Limits {
    pub fn with_max_parts(max_parts: usize) -> Limits {
        Limits {
            max_parts,
            max_header_line: MAX_HEADER_LINE,
            max_header_bytes: MAX_HEADER_BYTES,
            max_preamble: MAX_PREAMBLE,
        }
    }
}

/// The headers of one part that DICOMweb uses; others are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHeaders {
    /// 1-based position of the part in the body.
    pub number: usize,
    pub content_type: Option<String>,
    pub content_location: Option<String>,
    pub content_length: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part begins; its data follows as [`Event::Data`].
    Part(PartHeaders),
    Data(Bytes),
    /// The current part is complete (its closing boundary was seen).
    PartEnd,
    /// The final boundary was seen; repeated on every later poll.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Preamble,
    /// Just after `--boundary`: `--` (the end), or padding and CRLF (a part).
    AfterBoundary,
    Headers,
    Body,
    Done,
    Failed(MultipartError),
}

/// The pure multipart state machine. Feed bytes, then poll until it answers `Ok(None)` (it needs
/// more) before feeding again: then it holds at most one fed chunk plus a boundary's length.
#[derive(Debug)]
pub struct Parser {
    /// `CRLF--boundary`: what ends a part body.
    delimiter: Vec<u8>,
    buf: BytesMut,
    state: State,
    eof: bool,
    limits: Limits,
    parts: usize,
    headers: PartHeaders,
    header_bytes: usize,
    part_len: u64,
    /// The current part's Content-Length, checked when the part ends.
    declared_len: Option<u64>,
    preamble_len: usize,
}

impl Parser {
    pub fn new(boundary: &str, limits: Limits) -> Result<Parser, MultipartError> {
        validate_boundary(boundary)?;
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        let mut buf = BytesMut::with_capacity(64 * 1024);
        // The first boundary may open the body without a line break before it: a virtual
        // CRLF makes it look like every other delimiter.
        buf.extend_from_slice(b"\r\n");
        Ok(Parser {
            delimiter,
            buf,
            state: State::Preamble,
            eof: false,
            limits,
            parts: 0,
            headers: PartHeaders::default(),
            header_bytes: 0,
            part_len: 0,
            declared_len: None,
            preamble_len: 0,
        })
    }

    /// More body bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The body has no more bytes.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// Parts begun so far.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// The next event; `Ok(None)` when more input is needed. An error is final: every later
    /// poll answers it again.
    pub fn poll(&mut self) -> Result<Option<Event>, MultipartError> {
        let result = self.step();
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
            self.buf.clear();
        }
        result
    }

    fn step(&mut self) -> Result<Option<Event>, MultipartError> {
        loop {
            match &self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Done => return Ok(Some(Event::End)),
                State::Preamble => {
                    if let Some(at) = find(&self.buf, &self.delimiter) {
                        self.buf.advance(at + self.delimiter.len());
                        self.state = State::AfterBoundary;
                        continue;
                    }
                    let keep = self.holdback();
                    let drop = self.buf.len() - keep;
                    self.preamble_len += drop;
                    self.buf.advance(drop);
                    if self.preamble_len > self.limits.max_preamble + 2 || self.eof {
                        return Err(MultipartError::NoOpeningBoundary(self.limits.max_preamble));
                    }
                    return Ok(None);
                }
                State::AfterBoundary => {
                    if self.buf.is_empty() || self.buf[..] == *b"-" {
                        return self.need_more();
                    }
                    if self.buf.starts_with(b"--") {
                        self.buf.clear();
                        self.state = State::Done;
                        return Ok(Some(Event::End));
                    }
                    // Transport padding (spaces, tabs) up to the CRLF; anything else is no
                    // boundary line. Checked byte by byte so garbage fails without waiting.
                    let mut eol = None;
                    for (i, &b) in self.buf.iter().enumerate() {
                        match b {
                            b' ' | b'\t' => {}
                            b'\r' if self.buf.get(i + 1).is_none_or(|&n| n == b'\n') => {
                                eol = self.buf.get(i + 1).map(|_| i);
                                break;
                            }
                            _ => return Err(MultipartError::BadDelimiter),
                        }
                    }
                    let Some(eol) = eol else {
                        if self.buf.len() > self.limits.max_header_line {
                            return Err(MultipartError::BadDelimiter);
                        }
                        return self.need_more();
                    };
                    self.buf.advance(eol + 2);
                    if self.parts >= self.limits.max_parts {
                        return Err(MultipartError::TooManyParts(self.limits.max_parts));
                    }
                    self.parts += 1;
                    self.headers = PartHeaders {
                        number: self.parts,
                        ..PartHeaders::default()
                    };
                    self.header_bytes = 0;
                    self.state = State::Headers;
                }
                State::Headers => {
                    let Some(eol) = find(&self.buf, b"\r\n") else {
                        if self.buf.len() > self.limits.max_header_line {
                            return Err(MultipartError::HeaderLineTooLong(
                                self.limits.max_header_line,
                            ));
                        }
                        return self.need_more();
                    };
                    if eol > self.limits.max_header_line {
                        return Err(MultipartError::HeaderLineTooLong(
                            self.limits.max_header_line,
                        ));
                    }
                    self.header_bytes += eol + 2;
                    if self.header_bytes > self.limits.max_header_bytes {
                        return Err(MultipartError::HeadersTooLong(self.limits.max_header_bytes));
                    }
                    let line = self.buf.split_to(eol);
                    self.buf.advance(2);
                    if line.is_empty() {
                        self.state = State::Body;
                        self.part_len = 0;
                        self.declared_len = self.headers.content_length;
                        return Ok(Some(Event::Part(std::mem::take(&mut self.headers))));
                    }
                    parse_header(&line, &mut self.headers)?;
                }
                State::Body => {
                    match find(&self.buf, &self.delimiter) {
                        Some(0) => {
                            self.buf.advance(self.delimiter.len());
                            self.state = State::AfterBoundary;
                            return self.part_end();
                        }
                        Some(at) => return Ok(Some(self.data(at))),
                        None => {}
                    }
                    let safe = self.buf.len() - self.holdback();
                    if safe > 0 {
                        return Ok(Some(self.data(safe)));
                    }
                    return self.need_more();
                }
            }
        }
    }

    fn data(&mut self, len: usize) -> Event {
        self.part_len += len as u64;
        Event::Data(self.buf.split_to(len).freeze())
    }

    fn part_end(&mut self) -> Result<Option<Event>, MultipartError> {
        if let Some(declared) = self.declared_len
            && declared != self.part_len
        {
            return Err(MultipartError::LengthMismatch {
                part: self.parts,
                declared,
                actual: self.part_len,
            });
        }
        Ok(Some(Event::PartEnd))
    }

    /// How many trailing bytes could be the beginning of a delimiter: they wait for the next
    /// chunk. The delimiter has one CR, at its start (a boundary has none), so at most one
    /// position can match.
    fn holdback(&self) -> usize {
        let window = self.delimiter.len() - 1;
        let start = self.buf.len().saturating_sub(window);
        memchr::memchr_iter(b'\r', &self.buf[start..])
            .map(|i| &self.buf[start + i..])
            .find(|tail| self.delimiter.starts_with(tail))
            .map_or(0, <[u8]>::len)
    }

    fn need_more(&self) -> Result<Option<Event>, MultipartError> {
        if self.eof {
            Err(MultipartError::MissingFinalBoundary)
        } else {
            Ok(None)
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn validate_boundary(boundary: &str) -> Result<(), MultipartError> {
    let ok = (1..=MAX_BOUNDARY).contains(&boundary.len())
        && boundary.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !boundary.ends_with(' ');
    if ok {
        Ok(())
    } else {
        Err(MultipartError::InvalidBoundary(
            boundary.chars().take(300).collect(),
        ))
    }
}

/// One `Name: value` line (RFC 5322 header syntax, no folding).
fn parse_header(line: &[u8], headers: &mut PartHeaders) -> Result<(), MultipartError> {
    let bad =
        || MultipartError::BadHeader(String::from_utf8_lossy(line).chars().take(120).collect());
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let (name, value) = text.split_once(':').ok_or_else(bad)?;
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(bad());
    }
    let value = value.trim_matches([' ', '\t']);
    if name.eq_ignore_ascii_case("content-type") {
        headers.content_type = Some(value.to_string());
    } else if name.eq_ignore_ascii_case("content-location") {
        headers.content_location = Some(value.to_string());
    } else if name.eq_ignore_ascii_case("content-length") {
        headers.content_length = Some(value.parse().map_err(|_| bad())?);
    }
    Ok(())
}

/// A media type and its parameters (RFC 9110 §8.3.1): `type/subtype` lower-cased, parameter
/// names lower-cased, values unquoted (quoted-string with backslash escapes, or a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    pub essence: String,
    pub params: Vec<(String, String)>,
}

impl MediaType {
    pub fn parse(value: &str) -> Result<MediaType, MultipartError> {
        let bad = |why: &str| MultipartError::BadContentType(format!("{why} in {value:?}"));
        let (essence, mut rest) = value.split_once(';').unwrap_or((value, ""));
        let essence = essence.trim().to_ascii_lowercase();
        if essence.split('/').count() != 2 || essence.contains(char::is_whitespace) {
            return Err(bad("no type/subtype"));
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', '\t', ';']);
            if rest.is_empty() {
                break;
            }
            let (name, after) = rest
                .split_once('=')
                .ok_or_else(|| bad("a parameter without ="))?;
            let name = name.trim().to_ascii_lowercase();
            let after = after.trim_start_matches([' ', '\t']);
            let (val, next) = if let Some(quoted) = after.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some((_, escaped)) => out.push(escaped),
                            None => break,
                        },
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => out.push(c),
                    }
                }
                let end = end.ok_or_else(|| bad("an unterminated quoted string"))?;
                (out, &quoted[end..])
            } else {
                let (token, next) = after.split_once(';').unwrap_or((after, ""));
                (token.trim().to_string(), next)
            };
            params.push((name, val));
            rest = next;
        }
        Ok(MediaType { essence, params })
    }

    /// A parameter's value (names compare case-insensitively).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `boundary` parameter, checked.
    pub fn boundary(&self) -> Result<&str, MultipartError> {
        let boundary = self.param("boundary").ok_or(MultipartError::NoBoundary)?;
        validate_boundary(boundary)?;
        Ok(boundary)
    }
}

/// Reads a multipart body from a stream of chunks (an HTTP request body): parts one after the
/// other, each part's data as chunks. At most `max_bytes` are read.
pub struct MultipartReader<S> {
    stream: S,
    parser: Parser,
    in_part: bool,
    received: u64,
    max_bytes: u64,
}

impl<S, E> MultipartReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    pub fn new(stream: S, parser: Parser, max_bytes: u64) -> MultipartReader<S> {
        MultipartReader {
            stream,
            parser,
            in_part: false,
            received: 0,
            max_bytes,
        }
    }

    /// Bytes of the body read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The next part's headers (what is left of the current part is skipped); `None` after
    /// the final boundary.
    pub async fn next_part(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        loop {
            match self.parser.poll()? {
                Some(Event::Part(headers)) => {
                    self.in_part = true;
                    return Ok(Some(headers));
                }
                Some(Event::Data(_)) => {}
                Some(Event::PartEnd) => self.in_part = false,
                Some(Event::End) => return Ok(None),
                None => self.fill().await?,
            }
        }
    }

    /// The next chunk of the current part's data; `None` once the part is complete (its
    /// closing boundary was read).
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        if !self.in_part {
            return Ok(None);
        }
        loop {
            match self.parser.poll()? {
                Some(Event::Data(data)) => return Ok(Some(data)),
                Some(Event::PartEnd | Event::End) => {
                    self.in_part = false;
                    return Ok(None);
                }
                // The parser only announces a part after the previous one ended.
                Some(Event::Part(_)) => return Err(MultipartError::BadDelimiter),
                None => self.fill().await?,
            }
        }
    }

    async fn fill(&mut self) -> Result<(), MultipartError> {
        let next = poll_fn(|cx| Pin::new(&mut self.stream).poll_next(cx)).await;
        match next {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if self.received > self.max_bytes {
                    return Err(MultipartError::TooLarge(self.max_bytes));
                }
                self.parser.feed(&chunk);
            }
            Some(Err(e)) => return Err(MultipartError::Read(e.to_string())),
            None => self.parser.finish(),
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "multipart_tests.rs"]
mod tests;
