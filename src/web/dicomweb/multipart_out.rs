//! WADO-RS responses: `Accept` media ranges (RFC 9110 §12.5.1, PS3.18 §8.7) and
//! `multipart/related` bodies (RFC 2387) written while they are sent.
//!
//! A producer task writes parts into a small bounded channel and the response body reads the
//! other end, so a study of any size holds at most a few chunks in memory. A failure after the
//! first byte cannot change the status any more: it ends the body with an error, which cuts the
//! connection (the chunked body has no last chunk), so a client sees a broken transfer, never a
//! multipart that looks complete but lacks parts.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Chunks in flight between the producer and the response (each at most one read range of an
/// object, or one frame).
const CHANNEL_CHUNKS: usize = 4;

/// A response body that failed after it had started.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PartError(pub String);

/// One media range of an `Accept` header, lower-cased, parameters unquoted.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    /// `type/subtype`, e.g. `multipart/related`.
    pub media_type: String,
    pub params: Vec<(String, String)>,
    pub q: f32,
}

impl MediaRange {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this range accepts anything (`*/*`, `multipart/*`, or `multipart/related`
    /// without a `type` or with `type="*/*"`): the resource's default media type applies.
    pub fn is_default(&self) -> bool {
        match self.media_type.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" => matches!(self.param("type"), None | Some("*/*")),
            _ => false,
        }
    }

    /// The media type of the parts this range asks for: the `type` parameter of
    /// `multipart/related`, or the range itself when a client names the part type alone
    /// (`application/dicom`, `image/jpeg`; answered as a multipart of that type all the same).
    pub fn part_type(&self) -> Option<&str> {
        let named = if self.media_type == "multipart/related" {
            self.param("type")?
        } else if self.media_type.contains('*') {
            return None;
        } else {
            self.media_type.as_str()
        };
        // The unregistered names some clients still send (dicomweb-client lists both).
        Some(match named {
            "image/x-dicom-rle" => "image/dicom-rle",
            "image/x-jls" => "image/jls",
            other => other,
        })
    }

    /// The `transfer-syntax` parameter.
    pub fn transfer_syntax(&self) -> Option<&str> {
        self.param("transfer-syntax")
    }
}

/// Split on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The media ranges of an `Accept` value, most preferred first (by `q`, then in the order
/// given); ranges with `q=0` are left out. Malformed pieces are skipped.
pub fn parse_accept_value(value: &str) -> Vec<MediaRange> {
    let mut ranges: Vec<MediaRange> = Vec::new();
    for piece in split_unquoted(value, ',') {
        let mut fields = split_unquoted(piece, ';').into_iter();
        let media_type = fields.next().unwrap_or("").trim().to_ascii_lowercase();
        if !media_type.contains('/') {
            continue;
        }
        let mut params = Vec::new();
        let mut q = 1.0_f32;
        for field in fields {
            let Some((k, v)) = field.split_once('=') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().trim_matches('"').to_string();
            if k == "q" {
                q = v.parse().unwrap_or(0.0);
            } else {
                // Media type names are case-insensitive; transfer syntax UIDs have no case.
                params.push((k, v.to_ascii_lowercase()));
            }
        }
        if q > 0.0 {
            ranges.push(MediaRange {
                media_type,
                params,
                q,
            });
        }
    }
    // A stable sort keeps the client's order among equal weights.
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    ranges
}

/// The media ranges of all `Accept` headers of a request; empty when there is none (the
/// resource's default applies).
pub fn accept(headers: &HeaderMap) -> Vec<MediaRange> {
    let joined: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    parse_accept_value(&joined.join(","))
}

/// The `Accept` header as given, for a 406 message.
pub fn accept_text(headers: &HeaderMap) -> String {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A boundary that cannot occur in the parts by chance (128 random bits).
pub fn new_boundary() -> String {
    format!("mifas-{:032x}", rand::random::<u128>())
}

/// Writes the parts of one multipart body into the response channel.
pub struct PartWriter {
    tx: mpsc::Sender<Result<Bytes, PartError>>,
    boundary: String,
}

impl PartWriter {
    async fn send(&self, bytes: Bytes) -> Result<(), PartError> {
        self.tx
            .send(Ok(bytes))
            .await
            .map_err(|_| PartError("the client went away".into()))
    }

    /// Start a part with this `Content-Type`.
    pub async fn begin(&self, content_type: &str) -> Result<(), PartError> {
        let head = format!(
            "--{}\r\nContent-Type: {content_type}\r\n\r\n",
            self.boundary
        );
        self.send(Bytes::from(head)).await
    }

    /// Bytes of the current part.
    pub async fn data(&self, bytes: Bytes) -> Result<(), PartError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.send(bytes).await
    }

    /// End the current part.
    pub async fn end(&self) -> Result<(), PartError> {
        self.send(Bytes::from_static(b"\r\n")).await
    }

    /// A whole part.
    pub async fn part(&self, content_type: &str, bytes: Bytes) -> Result<(), PartError> {
        self.begin(content_type).await?;
        self.data(bytes).await?;
        self.end().await
    }

    async fn close(&self) -> Result<(), PartError> {
        self.send(Bytes::from(format!("--{}--\r\n", self.boundary)))
            .await
    }
}

/// A `multipart/related` response whose parts `produce` writes while the body is sent.
/// `part_type` is the `type` parameter of the response's media type.
pub fn response<F, Fut>(part_type: &str, produce: F) -> Response
where
    F: FnOnce(PartWriter) -> Fut,
    Fut: Future<Output = Result<(), PartError>> + Send + 'static,
{
    let boundary = new_boundary();
    let content_type = format!("multipart/related; type=\"{part_type}\"; boundary={boundary}");
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let writer = PartWriter {
        tx: tx.clone(),
        boundary: boundary.clone(),
    };
    let writing = produce(writer);
    let task = tokio::spawn(async move {
        let closer = PartWriter {
            tx: tx.clone(),
            boundary,
        };
        let outcome = match writing.await {
            Ok(()) => closer.close().await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "DICOMweb multipart response cut short");
            // The receiver may be gone already (the client left): nothing more to do then.
            let _ = tx.send(Err(e)).await;
        }
    });
    let body = MultipartBody {
        rx,
        task: Some(task),
    };
    let mut response = Body::from_stream(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// The response body: the channel's chunks, ending with the producer's error if it failed.
pub struct MultipartBody {
    rx: mpsc::Receiver<Result<Bytes, PartError>>,
    task: Option<JoinHandle<()>>,
}

impl Stream for MultipartBody {
    type Item = Result<Bytes, PartError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl Drop for MultipartBody {
    /// A client that goes away stops the producer (and with it the reads from the sites).
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_ranges_in_preference_order() {
        let ranges = parse_accept_value(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1;q=0.5, \
             multipart/related; type=\"image/jpeg\", */*;q=0",
        );
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].part_type(), Some("image/jpeg"));
        assert_eq!(ranges[1].part_type(), Some("application/dicom"));
        assert_eq!(ranges[1].transfer_syntax(), Some("1.2.840.10008.1.2.1"));
        assert!(!ranges[1].is_default());
        let any = parse_accept_value("*/*");
        assert!(any[0].is_default());
        assert_eq!(any[0].part_type(), None);
        let bare = parse_accept_value("multipart/related");
        assert!(bare[0].is_default());
        assert!(parse_accept_value("garbage").is_empty());
    }
}
