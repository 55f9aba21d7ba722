//! A zip written while it is sent: a task writes the entries (async_zip, stored entries with
//! data descriptors and zip64 fields) into one end of an in-memory pipe, the response body
//! reads the other. The pipe is small, so at most a pipe's worth plus one chunk of an object
//! is in memory, whatever the study's size.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_zip::base::write::ZipFileWriter;
use async_zip::{Compression, ZipEntryBuilder};
use bytes::Bytes;
use futures_core::Stream;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio_util::compat::FuturesAsyncWriteCompatExt;
use tokio_util::io::ReaderStream;

use crate::archive::Archive;

/// Bytes in flight between the zip writer and the response.
const PIPE_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ZipStreamError {
    #[error("zip: {0}")]
    Zip(#[from] async_zip::error::ZipError),
    #[error("reading {uid}: {message}")]
    Object { uid: String, message: String },
    #[error("zip pipe: {0}")]
    Io(#[from] std::io::Error),
    #[error("zip writer task failed: {0}")]
    Task(String),
}

/// The body of a zip of `uids`, entries named `<uid>.dcm`.
pub fn study(archive: Archive, uids: Vec<String>) -> ZipBody {
    let (reader, writer) = tokio::io::duplex(PIPE_BYTES);
    let task = tokio::spawn(write(archive, uids, writer));
    ZipBody {
        reader: ReaderStream::new(reader),
        task: Some(task),
    }
}

async fn write(
    archive: Archive,
    uids: Vec<String>,
    pipe: DuplexStream,
) -> Result<(), ZipStreamError> {
    let mut zip = ZipFileWriter::with_tokio(pipe);
    for uid in uids {
        let failed = |message: String| ZipStreamError::Object {
            uid: uid.clone(),
            message,
        };
        let mut object = archive
            .open_object(&uid)
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed("removed meanwhile".into()))?;
        let entry = ZipEntryBuilder::new(format!("{uid}.dcm").into(), Compression::Stored);
        let mut out = zip.write_entry_stream(entry).await?.compat_write();
        while let Some(chunk) = object.next_chunk().await {
            out.write_all(&chunk.map_err(|e| failed(e.to_string()))?)
                .await?;
        }
        out.into_inner().close().await?;
    }
    zip.close().await?;
    Ok(())
}

/// The response body: the pipe's bytes, then the writer's verdict. A failure after the first
/// byte cannot change the status any more, so it is answered as a body error, which cuts the
/// connection: the client sees a truncated download, never a zip that looks complete.
pub struct ZipBody {
    reader: ReaderStream<DuplexStream>,
    task: Option<JoinHandle<Result<(), ZipStreamError>>>,
}

impl Stream for ZipBody {
    type Item = Result<Bytes, ZipStreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match Pin::new(&mut this.reader).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => return Poll::Ready(Some(Ok(bytes))),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        let Some(task) = this.task.as_mut() else {
            return Poll::Ready(None);
        };
        let verdict = match Pin::new(task).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(result)) => result,
            Poll::Ready(Err(e)) => Err(ZipStreamError::Task(e.to_string())),
        };
        this.task = None;
        match verdict {
            Ok(()) => Poll::Ready(None),
            Err(e) => {
                tracing::warn!(error = %e, "study zip cut short");
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl Drop for ZipBody {
    /// A client that goes away stops the writer (and with it the reads from the sites).
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain(mut body: ZipBody) -> (Vec<u8>, Option<String>) {
        let mut bytes = Vec::new();
        while let Some(item) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).await {
            match item {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(e) => return (bytes, Some(e.to_string())),
            }
        }
        (bytes, None)
    }

    fn body(fail: bool) -> ZipBody {
        let (reader, mut writer) = tokio::io::duplex(64);
        let task = tokio::spawn(async move {
            writer.write_all(b"PK partial").await?;
            drop(writer);
            if fail {
                Err(ZipStreamError::Object {
                    uid: "1.2.3".into(),
                    message: "site gone".into(),
                })
            } else {
                Ok(())
            }
        });
        ZipBody {
            reader: ReaderStream::new(reader),
            task: Some(task),
        }
    }

    /// A writer that fails after some bytes ends the body with an error (the connection is
    /// cut), not with a clean end that would look like a complete zip.
    #[tokio::test]
    async fn a_failed_writer_ends_the_body_with_an_error() {
        let (bytes, error) = drain(body(true)).await;
        assert_eq!(bytes, b"PK partial");
        assert!(error.is_some_and(|e| e.contains("site gone")));
        let (bytes, error) = drain(body(false)).await;
        assert_eq!((bytes.as_slice(), error), (&b"PK partial"[..], None));
    }
}
