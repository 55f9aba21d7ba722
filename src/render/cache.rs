//! Rendered images by (instance, parameters), bounded in bytes, least recently used out first.
//!
//! A std `Mutex` is enough: it is held only for a map lookup or insert, never across `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{ImageFormat, RenderParams, Rendered};

/// `RenderParams` with the window as bits, so it can be hashed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    uid: String,
    frame: u32,
    max_size: Option<u32>,
    window: Option<(u64, u64)>,
    format: ImageFormat,
    quality: u8,
}

impl CacheKey {
    pub(crate) fn new(uid: &str, params: &RenderParams) -> CacheKey {
        CacheKey {
            uid: uid.to_string(),
            frame: params.frame,
            max_size: params.max_size,
            window: params
                .window
                .map(|w| (w.center.to_bits(), w.width.to_bits())),
            format: params.format,
            // PNG ignores quality: one entry whatever the request said.
            quality: if params.format == ImageFormat::Png {
                0
            } else {
                params.quality
            },
        }
    }

    /// Bytes an entry costs: the image plus the key and bookkeeping.
    fn cost(&self, rendered: &Rendered) -> u64 {
        (rendered.bytes.len() + self.uid.len() + 128) as u64
    }
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<CacheKey, (Rendered, u64)>,
    /// Last use tick → key; the first entry is the least recently used.
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
    bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Cache {
    capacity: u64,
    lru: Mutex<Lru>,
}

impl Cache {
    pub(crate) fn new(capacity: u64) -> Cache {
        Cache {
            capacity,
            lru: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // A panic while holding the lock leaves consistent maps (no partial updates).
        self.lru
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, key: &CacheKey) -> Option<Rendered> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let (rendered, old) = {
            let (rendered, used) = lru.entries.get_mut(key)?;
            let old = std::mem::replace(used, tick);
            (rendered.clone(), old)
        };
        lru.order.remove(&old);
        lru.order.insert(tick, key.clone());
        Some(rendered)
    }

    pub(crate) fn insert(&self, key: CacheKey, rendered: Rendered) {
        let cost = key.cost(&rendered);
        if cost > self.capacity {
            return;
        }
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        if let Some((old, used)) = lru.entries.remove(&key) {
            lru.order.remove(&used);
            lru.bytes -= key.cost(&old);
        }
        while lru.bytes + cost > self.capacity {
            let Some((_, victim)) = lru.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = lru.entries.remove(&victim) {
                lru.bytes -= victim.cost(&old);
            }
        }
        lru.bytes += cost;
        lru.order.insert(tick, key.clone());
        lru.entries.insert(key, (rendered, tick));
    }

    /// (entries, bytes) held now.
    pub(crate) fn usage(&self) -> (usize, u64) {
        let lru = self.lock();
        (lru.entries.len(), lru.bytes)
    }
}
