//! Who makes a DICOMweb request: the portal's session cookie (a browser viewer on the same
//! origin) or HTTP Basic credentials of a portal user (programs). Same users, same roles.
//!
//! Basic credentials come with every request, and argon2 costs tens of milliseconds of CPU per
//! verification: successful ones are remembered for [`CACHE_TTL`] in a [`BasicCache`], keyed by
//! a SHA-256 of name and password (the password itself is never kept), and forgotten at once
//! when the user's password changes or the user is removed ([`crate::web::auth::Auth::end_sessions_of`]).
//! Failed Basic attempts count in the portal's login rate limiter (per account and per client
//! address), so Basic cannot be used to try passwords faster than the login form.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::web::auth::login::ClientInfo;
use crate::web::auth::rate_limit::Limits;
use crate::web::auth::{CurrentUser, Role};
use crate::web::{HttpError, WebState};

/// How long a successful Basic verification is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Verifications remembered at most (a flood of distinct valid logins cannot grow memory).
const CACHE_MAX: usize = 10_000;

/// The authenticated user of a DICOMweb request.
#[derive(Debug, Clone)]
pub struct DicomWebUser {
    pub name: String,
    pub role: Role,
    /// The client's address (audit messages name it).
    pub addr: std::net::IpAddr,
}

impl DicomWebUser {
    /// Refuse unless the user's role includes `role` (403 naming both).
    pub fn require(&self, role: Role) -> Result<(), HttpError> {
        crate::web::auth::require_role(&self.name, self.role, role)
    }

    /// This user at this address, as the audit trail names participants.
    pub fn actor(&self) -> crate::audit::Actor {
        crate::audit::Actor::user(&self.name, self.addr)
    }
}

#[derive(Debug)]
struct Verified {
    name: String,
    role: Role,
    until: Instant,
}

#[derive(Debug, Default)]
struct CacheState {
    entries: HashMap<[u8; 32], Verified>,
    /// Bumped by every invalidation: a verification that started before one is not cached
    /// (it may have checked the old password).
    epoch: u64,
}

/// Recent successful Basic verifications (see the module documentation).
#[derive(Debug, Default)]
pub struct BasicCache {
    state: Mutex<CacheState>,
}

impl BasicCache {
    /// SHA-256 of the name's length, the name and the password (the length keeps
    /// ("ab", "c") and ("a", "bc") apart).
    pub fn key(name: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Role> {
        let state = self.state.lock().ok()?;
        state
            .entries
            .get(key)
            .filter(|v| now < v.until)
            .map(|v| v.role)
    }

    pub fn epoch(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.epoch)
    }

    /// Remember a verification that started at `epoch` (ignored if an invalidation happened since).
    pub fn insert(&self, key: [u8; 32], name: &str, role: Role, now: Instant, epoch: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.epoch != epoch {
            return;
        }
        if state.entries.len() >= CACHE_MAX {
            state.entries.retain(|_, v| now < v.until);
            if state.entries.len() >= CACHE_MAX {
                state.entries.clear();
            }
        }
        state.entries.insert(
            key,
            Verified {
                name: name.to_string(),
                role,
                until: now + CACHE_TTL,
            },
        );
    }

    /// Forget every verification of `user` (password changed, user removed).
    pub fn forget_user(&self, user: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.entries.retain(|_, v| v.name != user);
            state.epoch += 1;
        }
    }
}

impl FromRequestParts<WebState> for DicomWebUser {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<DicomWebUser, HttpError> {
        let Ok(client) = ClientInfo::from_request_parts(parts, state).await;
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let value = value.as_bytes().to_vec();
            return basic(state, &value, client).await;
        }
        match CurrentUser::from_request_parts(parts, state).await {
            Ok(user) => Ok(DicomWebUser {
                name: user.name,
                role: user.role,
                addr: client.addr,
            }),
            Err(_) => Err(HttpError::Challenge),
        }
    }
}

/// Verify an `Authorization` header: rate limit first, then the cache, then argon2.
async fn basic(
    state: &WebState,
    value: &[u8],
    client: ClientInfo,
) -> Result<DicomWebUser, HttpError> {
    if !is_basic(value) {
        // Another scheme (e.g. Bearer): not ours; the challenge names the one we take.
        return Err(HttpError::Challenge);
    }
    let (name, password) = basic_credentials(value)
        .ok_or_else(|| HttpError::BadRequest("malformed Authorization header (Basic)".into()))?;
    let limits = Limits {
        max_failures: state.http.login_max_failures,
        window: Duration::from_secs(state.http.login_window_secs),
    };
    // As for the login form: a name is counted under its first 65 characters.
    let account: String = name.chars().take(65).collect();
    let limiter = &state.auth.limiter;
    limiter
        .check(&account, client.addr, Instant::now(), limits)
        .map_err(HttpError::TooManyRequests)?;
    let cache = &state.auth.basic;
    let key = BasicCache::key(&name, &password);
    if let Some(role) = cache.get(&key, Instant::now()) {
        return Ok(DicomWebUser {
            name,
            role,
            addr: client.addr,
        });
    }
    let epoch = cache.epoch();
    let archive = state.archive()?;
    let verified = archive
        .verify_password(&name, &password)
        .await
        .map_err(|e| HttpError::Unavailable(e.to_string()))?;
    state.audit.login(
        &crate::audit::Actor::user(&account, client.addr),
        verified.is_some(),
    );
    match verified {
        Some(role) => {
            cache.insert(key, &name, role, Instant::now(), epoch);
            Ok(DicomWebUser {
                name,
                role,
                addr: client.addr,
            })
        }
        None => {
            limiter.record_failure(&account, client.addr, Instant::now(), limits);
            // Debug formatting: a name with line breaks cannot forge log lines.
            tracing::info!(user = ?account, addr = %client.addr, "DICOMweb Basic authentication failed");
            Err(HttpError::Challenge)
        }
    }
}

fn is_basic(value: &[u8]) -> bool {
    value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"basic ")
}

/// `Basic base64(name:password)` → (name, password).
fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_forgets_users_and_stale_verifications() {
        let cache = BasicCache::default();
        let t0 = Instant::now();
        let alice = BasicCache::key("alice", "pw-one-1");
        assert_ne!(alice, BasicCache::key("alic", "epw-one-1"));
        let epoch = cache.epoch();
        cache.insert(alice, "alice", Role::Uploader, t0, epoch);
        assert_eq!(cache.get(&alice, t0), Some(Role::Uploader));
        assert_eq!(cache.get(&BasicCache::key("alice", "pw-two-2"), t0), None);
        assert_eq!(cache.get(&alice, t0 + CACHE_TTL), None, "expired");
        let bob = BasicCache::key("bob", "pw-bob-1");
        cache.insert(bob, "bob", Role::Viewer, t0, epoch);
        cache.forget_user("alice");
        assert_eq!(cache.get(&alice, t0), None);
        assert_eq!(cache.get(&bob, t0), Some(Role::Viewer));
        // A verification that began before the password change is not remembered.
        cache.insert(alice, "alice", Role::Uploader, t0, epoch);
        assert_eq!(cache.get(&alice, t0), None);
    }

    #[test]
    fn basic_credentials() {
        // "alice:s3cr:et" — the password may contain colons
        assert_eq!(
            super::basic_credentials(b"Basic YWxpY2U6czNjcjpldA=="),
            Some(("alice".into(), "s3cr:et".into()))
        );
        assert_eq!(super::basic_credentials(b"Bearer abc"), None);
        assert_eq!(super::basic_credentials(b"Basic !!!"), None);
        assert!(is_basic(b"basic YQ=="));
        assert!(!is_basic(b"Bearer x"));
    }
}
