//! Login rate limiting: failed logins counted per account and per client address in a sliding
//! window; once either reaches the limit, every attempt on it is refused (even with the right
//! password) until its oldest counted failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

/// Keys tracked at most; beyond that the stale ones are dropped first (a flood of made-up
/// account names cannot grow memory without bound).
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
pub struct RateLimiter {
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

/// Limits, from `http.login_max_failures` and `http.login_window_secs`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_failures: u32,
    pub window: Duration,
}

impl RateLimiter {
    /// `Err(seconds to wait)` when the account or the address is blocked at `now`.
    pub fn check(
        &self,
        account: &str,
        address: IpAddr,
        now: Instant,
        limits: Limits,
    ) -> Result<(), u64> {
        let Ok(mut map) = self.failures.lock() else {
            return Ok(());
        };
        let mut wait = Duration::ZERO;
        for key in [Key::Account(account.to_string()), Key::Address(address)] {
            if let Some(times) = map.get_mut(&key) {
                prune(times, now, limits.window);
                if limits.max_failures > 0 && times.len() >= limits.max_failures as usize {
                    // Blocked until enough failures leave the window to go below the limit.
                    let idx = times.len() - limits.max_failures as usize;
                    let until = times[idx] + limits.window;
                    wait = wait.max(until.saturating_duration_since(now));
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            // Round up: a client retrying after Retry-After must not be refused again.
            Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        }
    }

    pub fn record_failure(&self, account: &str, address: IpAddr, now: Instant, limits: Limits) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= MAX_KEYS {
            map.retain(|_, times| {
                prune(times, now, limits.window);
                !times.is_empty()
            });
        }
        for key in [Key::Account(account.to_string()), Key::Address(address)] {
            let times = map.entry(key).or_default();
            prune(times, now, limits.window);
            times.push_back(now);
            // Only the newest max_failures matter for the decision.
            while times.len() > (limits.max_failures as usize).max(1) {
                times.pop_front();
            }
        }
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_failures: 3,
        window: Duration::from_secs(60),
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn blocks_account_and_address_until_the_window_passes() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for s in 0..3 {
            assert_eq!(limiter.check("alice", ip(1), at(s), LIMITS), Ok(()));
            limiter.record_failure("alice", ip(1), at(s), LIMITS);
        }
        // The account is blocked from any address, the address for any account.
        assert_eq!(limiter.check("alice", ip(1), at(3), LIMITS), Err(57));
        assert_eq!(limiter.check("alice", ip(2), at(3), LIMITS), Err(57));
        assert_eq!(limiter.check("bob", ip(1), at(3), LIMITS), Err(57));
        assert_eq!(limiter.check("bob", ip(2), at(3), LIMITS), Ok(()));
        // The first failure leaves the window at 60 s: one more attempt is allowed.
        assert_eq!(limiter.check("alice", ip(1), at(59), LIMITS), Err(1));
        assert_eq!(limiter.check("alice", ip(1), at(60), LIMITS), Ok(()));
        limiter.record_failure("alice", ip(1), at(60), LIMITS);
        assert_eq!(limiter.check("alice", ip(1), at(60), LIMITS), Err(1));
        assert_eq!(limiter.check("alice", ip(1), at(62), LIMITS), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.record_failure("a", ip(1), t0, LIMITS);
        }
        let later = t0 + Duration::from_millis(59_500);
        assert_eq!(limiter.check("a", ip(9), later, LIMITS), Err(1));
    }
}
