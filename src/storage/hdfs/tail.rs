//! The bytes of HDFS files this process is appending to that a new reader cannot get from HDFS.
//!
//! hsync makes written bytes durable on every datanode of the pipeline and updates the file's
//! length on the namenode (`get_file_info` sees it), but an hdfs-native 0.14.8 reader cannot
//! read them while the file is open: its length is the one `getBlockLocations` reports, which
//! for a file under construction leaves out the last block (Java's DFSInputStream asks a
//! datanode for that block's visible length; hdfs-native does not, and its `read_range`
//! panics past that length). Measured on MiniDFSCluster 3.4.1: after writing and hsyncing
//! 512 KiB, `get_file_info` says 524288 and a new reader 0.
//!
//! So the writer keeps the bytes of the block it is filling (at most one block: the blocks
//! before it are committed and readable from HDFS) and a reader opened by the same process
//! takes the range past HDFS's readable length from here. The memory cost is up to one block
//! per open file: keep the block size of pack sites moderate.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};

/// What one open writer has written, from the start of its current block.
#[derive(Debug)]
pub(super) struct Tail {
    /// (file offset, bytes) in file order, contiguous.
    chunks: VecDeque<(u64, Bytes)>,
    written: u64,
    synced: u64,
    /// 0 = unknown: nothing is ever dropped.
    block_size: u64,
    /// The writer went away without closing the file: its synced bytes stay here for readers
    /// until `PackFs::recover` has closed the file on HDFS.
    abandoned: bool,
}

/// A poisoned lock only means another thread panicked while holding it; the data (a list of
/// byte chunks) is still consistent, so keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) type SharedTail = Arc<Mutex<Tail>>;

impl Tail {
    /// Record bytes the writer has handed to HDFS (after `write_bytes` returned: any block
    /// it started in doing so has been allocated, so the blocks before it are committed).
    pub(super) fn push(tail: &SharedTail, bytes: Bytes) {
        let mut t = lock(tail);
        let at = t.written;
        t.written += bytes.len() as u64;
        if !bytes.is_empty() {
            t.chunks.push_back((at, bytes));
        }
        if t.block_size > 0 && t.written > 0 {
            // the block holding the last written byte is the one still under construction
            let keep_from = (t.written - 1) / t.block_size * t.block_size;
            while t
                .chunks
                .front()
                .is_some_and(|(off, b)| off + b.len() as u64 <= keep_from)
            {
                t.chunks.pop_front();
            }
        }
    }

    pub(super) fn mark_synced(tail: &SharedTail) {
        let mut t = lock(tail);
        t.synced = t.written;
    }

    /// The file is complete on HDFS: readers get everything from there.
    pub(super) fn clear(tail: &SharedTail) {
        lock(tail).chunks.clear();
    }

    pub(super) fn synced(tail: &SharedTail) -> u64 {
        lock(tail).synced
    }

    /// Bytes `[offset, offset+len)` if all of them are still held (and synced).
    pub(super) fn read(tail: &SharedTail, offset: u64, len: u64) -> Option<Bytes> {
        let t = lock(tail);
        let end = offset.checked_add(len)?;
        if end > t.synced || t.chunks.front().is_none_or(|(start, _)| *start > offset) {
            return None;
        }
        let mut parts = t.chunks.iter().filter_map(|(off, b)| {
            let b_end = off + b.len() as u64;
            (b_end > offset && *off < end).then(|| {
                let s = offset.max(*off) - off;
                let e = end.min(b_end) - off;
                b.slice(s as usize..e as usize)
            })
        });
        let first = parts.next()?;
        if first.len() as u64 == len {
            return Some(first);
        }
        let mut out = BytesMut::with_capacity(len as usize);
        out.extend_from_slice(&first);
        parts.for_each(|p| out.extend_from_slice(&p));
        (out.len() as u64 == len).then(|| out.freeze())
    }
}

/// The tails of the files this process has open for writing on one site, by path.
#[derive(Debug, Default)]
pub(super) struct Tails {
    open: Mutex<HashMap<String, SharedTail>>,
}

impl Tails {
    pub(super) fn register(&self, path: &str, block_size: u64) -> SharedTail {
        let tail = Arc::new(Mutex::new(Tail {
            chunks: VecDeque::new(),
            written: 0,
            synced: 0,
            block_size,
            abandoned: false,
        }));
        lock(&self.open).insert(path.to_string(), Arc::clone(&tail));
        tail
    }

    pub(super) fn get(&self, path: &str) -> Option<SharedTail> {
        lock(&self.open).get(path).cloned()
    }

    /// The writer of `tail` is gone without closing its file: keep the tail until
    /// [`Tails::recovered`].
    pub(super) fn abandon(tail: &SharedTail) {
        lock(tail).abandoned = true;
    }

    /// The file at `path` has been closed by lease recovery: an abandoned tail is not needed.
    pub(super) fn recovered(&self, path: &str) {
        let mut open = lock(&self.open);
        if open.get(path).is_some_and(|t| lock(t).abandoned) {
            open.remove(path);
        }
    }

    /// Forget `tail` (only if `path` still maps to it: a later writer of the same path keeps
    /// its own).
    pub(super) fn remove(&self, path: &str, tail: &SharedTail) {
        let mut open = lock(&self.open);
        if open.get(path).is_some_and(|t| Arc::ptr_eq(t, tail)) {
            open.remove(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(from: u8, n: usize) -> Bytes {
        (0..n).map(|i| from.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn holds_the_open_block_and_reads_synced_ranges() {
        let tails = Tails::default();
        let t = tails.register("/p", 100);
        Tail::push(&t, bytes(0, 60));
        Tail::push(&t, bytes(60, 30));
        // nothing synced yet: not readable
        assert_eq!(Tail::read(&t, 0, 10), None);
        Tail::mark_synced(&t);
        assert_eq!(Tail::read(&t, 50, 20), Some(bytes(50, 20)));
        assert_eq!(Tail::read(&t, 80, 11), None, "past the synced end");
        // crossing into block 2 drops the chunks that lie wholly in block 1
        Tail::push(&t, bytes(90, 40));
        Tail::mark_synced(&t);
        assert_eq!(Tail::read(&t, 10, 5), None, "block 1's first chunk is gone");
        assert_eq!(Tail::read(&t, 95, 30), Some(bytes(95, 30)));
        Tail::push(&t, bytes(130, 80));
        Tail::mark_synced(&t);
        assert_eq!(Tail::read(&t, 95, 10), None);
        assert_eq!(Tail::read(&t, 130, 10), Some(bytes(130, 10)));
        assert!(tails.get("/p").is_some());
        tails.remove("/p", &t);
        assert!(tails.get("/p").is_none());
    }

    #[test]
    fn an_abandoned_tail_stays_until_recovered() {
        let tails = Tails::default();
        let t = tails.register("/p", 100);
        Tail::push(&t, bytes(0, 10));
        Tail::mark_synced(&t);
        tails.recovered("/p");
        assert!(tails.get("/p").is_some(), "a live writer's tail stays");
        Tails::abandon(&t);
        let held = tails.get("/p").expect("abandoned tail still there");
        assert_eq!(Tail::read(&held, 0, 10), Some(bytes(0, 10)));
        tails.recovered("/p");
        assert!(tails.get("/p").is_none());
    }

    #[test]
    fn remove_keeps_a_newer_writers_tail() {
        let tails = Tails::default();
        let old = tails.register("/p", 0);
        let new = tails.register("/p", 0);
        tails.remove("/p", &old);
        assert!(tails.get("/p").is_some_and(|t| Arc::ptr_eq(&t, &new)));
    }
}
