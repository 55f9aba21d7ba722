//! Which studies each user viewed lately, so a viewer fetching a study's frames one request
//! at a time yields one DICOM Instances Accessed message per user and study per
//! [`WINDOW`], not one per frame.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A user's views of a study within this long are one access.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Entries kept at most; past it, expired ones are swept, and if none expired the map
/// starts over (some accesses are then reported twice, never missed).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
pub struct RecentAccess {
    seen: Mutex<HashMap<(String, String), Instant>>,
}

impl RecentAccess {
    /// Whether [`RecentAccess::is_new`] would answer true, without remembering anything.
    pub fn would_be_new(&self, user: &str, study_uid: &str, now: Instant) -> bool {
        let Ok(seen) = self.seen.lock() else {
            return true;
        };
        seen.get(&(user.to_string(), study_uid.to_string()))
            .is_none_or(|at| now.duration_since(*at) >= WINDOW)
    }

    /// Whether `user`'s access to `study_uid` at `now` is new (not reported within
    /// [`WINDOW`]); a new one is remembered.
    pub fn is_new(&self, user: &str, study_uid: &str, now: Instant) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        let key = (user.to_string(), study_uid.to_string());
        if let Some(at) = seen.get(&key)
            && now.duration_since(*at) < WINDOW
        {
            return false;
        }
        if seen.len() >= MAX_ENTRIES {
            seen.retain(|_, at| now.duration_since(*at) < WINDOW);
            if seen.len() >= MAX_ENTRIES {
                seen.clear();
            }
        }
        seen.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_access_per_user_and_study_per_window() {
        let r = RecentAccess::default();
        let t = Instant::now();
        assert!(r.is_new("ann", "1.2", t));
        assert!(!r.is_new("ann", "1.2", t + Duration::from_secs(5)));
        assert!(r.is_new("bob", "1.2", t + Duration::from_secs(5)));
        assert!(r.is_new("ann", "1.3", t + Duration::from_secs(5)));
        assert!(r.is_new("ann", "1.2", t + WINDOW + Duration::from_secs(1)));
    }
}
