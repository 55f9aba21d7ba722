//! The consumer's side of a co-allocated read: one object's bytes in order
//! ([`ObjectStream`]) and the objects of a retrieve in order ([`ObjectsStream`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::DropGuard;

use crate::storage::StorageError;

/// What a producer tells an [`ObjectStream`].
#[derive(Debug)]
pub(super) enum Msg {
    Chunk(Bytes),
    /// Every byte was sent and the SHA-256 matched.
    Verified,
    Failed(StorageError),
}

/// The bytes of one object, in order. Ends with `None` only once the whole object has passed
/// and matched its SHA-256; any failure (all sites failed, corrupt, cut short) is an `Err`
/// item, after which the stream ends. A consumer that has already sent some bytes on must
/// treat an `Err` as "the object is bad" (e.g. abort the sub-operation). Dropping the stream
/// cancels its reads.
#[derive(Debug)]
pub struct ObjectStream {
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Window of a ranged read: bytes handed to the consumer are given back to the producer.
    budget: Option<Arc<Semaphore>>,
    size: u64,
    yielded: u64,
    done: bool,
    _cancel: Option<DropGuard>,
    /// A slot of a multi-object retrieve, freed when this stream is dropped.
    _slot: Option<OwnedSemaphorePermit>,
}

impl ObjectStream {
    pub(super) fn channel(
        size: u64,
        budget: Option<Arc<Semaphore>>,
        cancel: Option<DropGuard>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> (mpsc::UnboundedSender<Msg>, ObjectStream) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = ObjectStream {
            rx,
            budget,
            size,
            yielded: 0,
            done: false,
            _cancel: cancel,
            _slot: slot,
        };
        (tx, stream)
    }

    /// An object already fetched and verified.
    pub(super) fn ready(bytes: Bytes, slot: Option<OwnedSemaphorePermit>) -> ObjectStream {
        let (tx, stream) = ObjectStream::channel(bytes.len() as u64, None, None, slot);
        if !bytes.is_empty() {
            let _ = tx.send(Msg::Chunk(bytes));
        }
        let _ = tx.send(Msg::Verified);
        stream
    }

    pub(super) fn failed(size: u64, error: StorageError) -> ObjectStream {
        let (tx, stream) = ObjectStream::channel(size, None, None, None);
        let _ = tx.send(Msg::Failed(error));
        stream
    }

    /// The object's size (as recorded at ingest).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The next chunk; `None` at the verified end.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, StorageError>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// The whole object in memory (for small objects; a large one should be streamed).
    pub async fn read_all(mut self) -> Result<Bytes, StorageError> {
        let first = match self.next_chunk().await {
            None => return Ok(Bytes::new()),
            Some(chunk) => chunk?,
        };
        let Some(second) = self.next_chunk().await else {
            return Ok(first);
        };
        let mut all = bytes::BytesMut::with_capacity(usize::try_from(self.size).unwrap_or(0));
        all.extend_from_slice(&first);
        all.extend_from_slice(&second?);
        while let Some(chunk) = self.next_chunk().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all.freeze())
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StorageError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let msg = match self.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(msg) => msg,
        };
        let item = match msg {
            Some(Msg::Chunk(bytes)) => {
                self.yielded += bytes.len() as u64;
                if let Some(budget) = &self.budget {
                    budget.add_permits(bytes.len());
                }
                if self.yielded > self.size {
                    self.done = true;
                    Some(Err(self.cut("more bytes than the object has")))
                } else {
                    Some(Ok(bytes))
                }
            }
            Some(Msg::Verified) => {
                self.done = true;
                (self.yielded != self.size).then(|| Err(self.cut("size mismatch")))
            }
            Some(Msg::Failed(e)) => {
                self.done = true;
                Some(Err(e))
            }
            None => {
                self.done = true;
                Some(Err(self.cut("the read stopped before the end")))
            }
        };
        Poll::Ready(item)
    }

    fn cut(&self, what: &str) -> StorageError {
        StorageError::Task(format!(
            "co-allocated read: {what} ({} of {} bytes)",
            self.yielded, self.size
        ))
    }
}

impl futures_core::Stream for ObjectStream {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_chunk(cx)
    }
}

/// The objects of a multi-object retrieve, as `(index in items, stream)` in the order of the
/// items; always exactly one per item (a failed object is a stream whose only item is `Err`).
/// Dropping it cancels the fetches not yet handed out.
#[derive(Debug)]
pub struct ObjectsStream {
    rx: mpsc::UnboundedReceiver<(usize, ObjectStream)>,
    next: usize,
    total: usize,
    _cancel: DropGuard,
}

impl ObjectsStream {
    pub(super) fn new(
        rx: mpsc::UnboundedReceiver<(usize, ObjectStream)>,
        total: usize,
        cancel: DropGuard,
    ) -> ObjectsStream {
        ObjectsStream {
            rx,
            next: 0,
            total,
            _cancel: cancel,
        }
    }

    /// Number of items of the retrieve.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub async fn next_object(&mut self) -> Option<(usize, ObjectStream)> {
        std::future::poll_fn(|cx| self.poll_object(cx)).await
    }

    fn poll_object(&mut self, cx: &mut Context<'_>) -> Poll<Option<(usize, ObjectStream)>> {
        if self.next >= self.total {
            return Poll::Ready(None);
        }
        let item = match self.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(item)) => item,
            // the producer is gone early: the rest fail rather than silently vanish
            Poll::Ready(None) => (
                self.next,
                ObjectStream::failed(
                    0,
                    StorageError::Task("co-allocated retrieve stopped early".into()),
                ),
            ),
        };
        self.next += 1;
        Poll::Ready(Some(item))
    }
}

impl futures_core::Stream for ObjectsStream {
    type Item = (usize, ObjectStream);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_object(cx)
    }
}
