//! Writing and reading one HDFS file.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use hdfs_native::Client;
use hdfs_native::file::{FileReader, FileWriter};

use super::ctx::Ctx;
use super::tail::{SharedTail, Tail, Tails};
use crate::storage::packfs::{PackReader, PackWriter};
use crate::storage::{Result, StorageError};

/// An open HDFS file being appended to.
pub(super) struct HdfsWriter {
    ctx: Ctx,
    writer: FileWriter,
    written: u64,
    synced: u64,
    /// A call failed or timed out part-way: the writer's pipeline state is unknown, so nothing
    /// more goes through it (the caller starts a new file).
    failed: bool,
    /// close() succeeded: the file is complete on HDFS.
    closed: bool,
    tails: Arc<Tails>,
    tail: SharedTail,
}

impl HdfsWriter {
    pub(super) fn new(ctx: Ctx, writer: FileWriter, tails: Arc<Tails>, tail: SharedTail) -> Self {
        HdfsWriter {
            ctx,
            writer,
            written: 0,
            synced: 0,
            failed: false,
            closed: false,
            tails,
            tail,
        }
    }

    fn check(&self) -> Result<()> {
        if self.failed {
            return Err(self.ctx.unavailable(format!(
                "{}: an earlier write to this file failed",
                self.ctx.path
            )));
        }
        Ok(())
    }

    fn op(&self, op: &'static str) -> Ctx {
        Ctx {
            op,
            ..self.ctx.clone()
        }
    }
}

impl Drop for HdfsWriter {
    fn drop(&mut self) {
        if self.closed {
            // complete on HDFS: new readers read it all from there
            self.tails.remove(&self.ctx.path, &self.tail);
        } else {
            // Failed or dropped while open: HDFS readers see only the complete blocks until
            // lease recovery closes the file, so the synced tail stays readable from here
            // until PackFs::recover has done that.
            Tails::abandon(&self.tail);
        }
    }
}

#[async_trait]
impl PackWriter for HdfsWriter {
    async fn write(&mut self, bytes: Bytes) -> Result<()> {
        self.check()?;
        let n = bytes.len() as u64;
        let ctx = self.op("write");
        match ctx.run(self.writer.write_bytes(bytes.clone())).await {
            Ok(_) => {
                self.written += n;
                Tail::push(&self.tail, bytes);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    async fn sync(&mut self) -> Result<()> {
        self.check()?;
        let ctx = self.op("hsync");
        match ctx.run(self.writer.hsync()).await {
            Ok(()) => {
                self.synced = self.written;
                Tail::mark_synced(&self.tail);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.check()?;
        // close() completes the file but the datanodes do not fsync on it (synconclose is
        // off by default): hsync first so "closed" implies "durable".
        if self.synced < self.written {
            self.sync().await?;
        }
        let ctx = self.op("close");
        if let Err(e) = ctx.run(self.writer.close()).await {
            self.failed = true;
            return Err(e);
        }
        // complete on the namenode: every byte is readable from HDFS now
        self.closed = true;
        Tail::clear(&self.tail);
        Ok(())
    }

    fn written(&self) -> u64 {
        self.written
    }
}

/// Positional reads of an HDFS file, up to its length when opened. `[0, readable)` comes from
/// HDFS; `[readable, len)`, the synced part of a block still being written by this process,
/// from the writer's tail (see tail.rs).
pub(super) struct HdfsReader {
    ctx: Ctx,
    client: Client,
    reader: FileReader,
    readable: u64,
    len: u64,
    tail: Option<SharedTail>,
    /// A later reader of the same file, opened when the tail no longer held a range (the
    /// writer moved to the next block or closed the file); reused for the next such reads.
    fresh: std::sync::Mutex<Option<Arc<FileReader>>>,
}

impl HdfsReader {
    pub(super) fn new(
        ctx: Ctx,
        client: Client,
        reader: FileReader,
        tail: Option<SharedTail>,
    ) -> Self {
        let readable = reader.file_length() as u64;
        let len = tail
            .as_ref()
            .map_or(readable, |t| Tail::synced(t).max(readable));
        HdfsReader {
            ctx,
            client,
            reader,
            readable,
            len,
            tail,
            fresh: std::sync::Mutex::new(None),
        }
    }

    /// `[offset, end)` past what this reader can read from HDFS: from the tail, or — when the
    /// writer has moved on to the next block or closed the file since — from a new reader.
    async fn read_tail(&self, offset: u64, end: u64) -> Result<Bytes> {
        if let Some(b) = self
            .tail
            .as_ref()
            .and_then(|t| Tail::read(t, offset, end - offset))
        {
            return Ok(b);
        }
        let cached = self
            .fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|r| r.file_length() as u64 >= end);
        let fresh = match cached {
            Some(r) => r,
            None => {
                let r = Arc::new(self.ctx.run(self.client.read(&self.ctx.path)).await?);
                *self.fresh.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&r));
                r
            }
        };
        if (fresh.file_length() as u64) < end {
            return Err(StorageError::Corrupt {
                site: self.ctx.site.clone(),
                locator: format!("{}@{offset}+{}", self.ctx.path, end - offset),
                reason: format!(
                    "synced bytes up to {end} are neither readable from HDFS ({}) nor held by \
                     the writer",
                    fresh.file_length()
                ),
            });
        }
        self.ctx
            .run(fresh.read_range(offset as usize, (end - offset) as usize))
            .await
    }
}

#[async_trait]
impl PackReader for HdfsReader {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes> {
        // hdfs-native panics on a range past its readable length: clamp here.
        let end = offset.saturating_add(len).min(self.len);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let split = end.min(self.readable).max(offset);
        let head = if offset < split {
            self.ctx
                .run(
                    self.reader
                        .read_range(offset as usize, (split - offset) as usize),
                )
                .await?
        } else {
            Bytes::new()
        };
        let bytes = if split < end {
            let rest = self.read_tail(split, end).await?;
            if head.is_empty() {
                rest
            } else {
                let mut joined = BytesMut::with_capacity((end - offset) as usize);
                joined.extend_from_slice(&head);
                joined.extend_from_slice(&rest);
                joined.freeze()
            }
        } else {
            head
        };
        let want = end - offset;
        if bytes.len() as u64 != want {
            return Err(StorageError::Corrupt {
                site: self.ctx.site.clone(),
                locator: format!("{}@{offset}+{want}", self.ctx.path),
                reason: format!("short read: {} of {want} bytes", bytes.len()),
            });
        }
        Ok(bytes)
    }
}
