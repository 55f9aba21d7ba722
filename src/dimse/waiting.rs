//! Connections that have not sent a byte yet. They hold no association slot: a peer that opens
//! connections and stays silent (slowloris) would otherwise keep `dicom.max_associations`
//! busy until ARTIM and lock real modalities out. Their number is bounded; when a new one
//! arrives at the bound, the longest-waiting one is closed, since a real peer sends its
//! A-ASSOCIATE-RQ (or TLS ClientHello) within milliseconds of connecting.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

/// How many silent connections are kept at once.
pub(crate) const MAX_WAITING: usize = 1024;

#[derive(Debug)]
pub(crate) struct Waiting {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// Oldest first.
    queue: VecDeque<(u64, CancellationToken)>,
}

/// One connection's place in the queue; leaving it (drop) frees the place.
pub(crate) struct Ticket<'a> {
    waiting: &'a Waiting,
    id: u64,
    /// Fired when a newer connection pushed this one out.
    pub(crate) evicted: CancellationToken,
}

impl Waiting {
    pub(crate) fn new(max: usize) -> Waiting {
        Waiting {
            max: max.max(1),
            inner: Mutex::default(),
        }
    }

    /// Take a place, pushing out the oldest connection when all are taken.
    pub(crate) fn enter(&self) -> Ticket<'_> {
        let evicted = CancellationToken::new();
        let mut inner = self.lock();
        while inner.queue.len() >= self.max {
            if let Some((_, oldest)) = inner.queue.pop_front() {
                oldest.cancel();
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.queue.push_back((id, evicted.clone()));
        Ticket {
            waiting: self,
            id,
            evicted,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().queue.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the queue consistent (every step is one
        // VecDeque call), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut inner = self.waiting.lock();
        if let Some(pos) = inner.queue.iter().position(|(id, _)| *id == self.id) {
            inner.queue.remove(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_pushed_out_at_the_bound() {
        let w = Waiting::new(2);
        let a = w.enter();
        let b = w.enter();
        assert_eq!(w.len(), 2);
        let c = w.enter();
        assert!(a.evicted.is_cancelled());
        assert!(!b.evicted.is_cancelled() && !c.evicted.is_cancelled());
        assert_eq!(w.len(), 2);
        drop(a); // already out: nothing else leaves
        assert_eq!(w.len(), 2);
        drop(b);
        assert_eq!(w.len(), 1);
        let d = w.enter();
        assert!(!c.evicted.is_cancelled() && !d.evicted.is_cancelled());
    }
}
