//! One store at a time per SOP Instance UID: the duplicate check and the commit of an object
//! must not interleave with another association storing the same instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Debug, Default)]
pub(crate) struct UidLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

pub(crate) struct UidGuard<'a> {
    locks: &'a UidLocks,
    uid: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl UidLocks {
    pub(crate) async fn lock(&self, uid: &str) -> UidGuard<'_> {
        let mutex = match self.locks.lock() {
            Ok(mut map) => map.entry(uid.to_string()).or_default().clone(),
            // A panic elsewhere poisoned the map: fall back to an unshared lock.
            Err(_) => Arc::default(),
        };
        UidGuard {
            locks: self,
            uid: uid.to_string(),
            guard: Some(mutex.lock_owned().await),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for UidGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.locks.locks.lock() {
            // The map's Arc and our guard's: nobody else waits, so forget the entry.
            if map
                .get(&self.uid)
                .is_some_and(|m| Arc::strong_count(m) <= 2)
            {
                map.remove(&self.uid);
            }
        }
        self.guard.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_and_entries_are_cleaned_up() {
        let locks = Arc::new(UidLocks::default());
        let first = locks.lock("1.2").await;
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("1.2").await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let _other = locks.lock("1.3").await; // other UIDs are not blocked
        drop(first);
        waiter.await.unwrap();
        drop(_other);
        assert_eq!(locks.len(), 0);
    }
}
