//! Server-side sessions: a random 256-bit id (the cookie) → user, role, CSRF token and the
//! time of the last request. In memory only: a restart logs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{CurrentUser, Role};

/// The session cookie's name.
pub const COOKIE: &str = "mifas_session";

/// Sessions one user may hold at once (browsers, devices).
pub const MAX_SESSIONS_PER_USER: usize = 32;

/// 32 random bytes from the OS-seeded CSPRNG, as 64 hex digits.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[derive(Debug)]
struct Session {
    user: String,
    role: Role,
    csrf: String,
    last_seen: Instant,
}

#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `user`; answers its id. Expired sessions are dropped on the way so
    /// the map stays as small as the set of active users.
    pub fn create(&self, user: &str, role: Role, now: Instant, idle: Duration) -> String {
        let id = random_token();
        let session = Session {
            user: user.to_string(),
            role,
            csrf: random_token(),
            last_seen: now,
        };
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, s| now.saturating_duration_since(s.last_seen) < idle);
            // Logins are not rate limited once the password is right: a user's own sessions
            // are capped, the least recently used one giving way.
            let mine: Vec<(&String, Instant)> = map
                .iter()
                .filter(|(_, s)| s.user == user)
                .map(|(id, s)| (id, s.last_seen))
                .collect();
            if mine.len() >= MAX_SESSIONS_PER_USER
                && let Some(oldest) = mine
                    .iter()
                    .min_by_key(|(_, t)| *t)
                    .map(|(id, _)| (*id).clone())
            {
                map.remove(&oldest);
            }
            map.insert(id.clone(), session);
        }
        id
    }

    /// The user of a live session, which counts as activity; an idle one is ended.
    pub fn touch(&self, id: &str, now: Instant, idle: Duration) -> Option<CurrentUser> {
        let mut map = self.map.lock().ok()?;
        let session = map.get_mut(id)?;
        if now.saturating_duration_since(session.last_seen) >= idle {
            map.remove(id);
            return None;
        }
        session.last_seen = session.last_seen.max(now);
        Some(CurrentUser {
            name: session.user.clone(),
            role: session.role,
            csrf: session.csrf.clone(),
        })
    }

    pub fn end(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(id);
        }
    }

    /// End every session of `user` (password changed, account removed); answers how many.
    pub fn end_user(&self, user: &str) -> usize {
        let Ok(mut map) = self.map.lock() else {
            return 0;
        };
        let before = map.len();
        map.retain(|_, s| s.user != user);
        before - map.len()
    }

    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A Set-Cookie value: HttpOnly and SameSite=Strict always; Secure when the request came over
/// TLS. `max_age` 0 deletes the cookie.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    secure: bool,
    max_age: Option<u64>,
) -> String {
    let mut cookie = format!("{name}={value}; HttpOnly; SameSite=Strict; Path={path}");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// Whether the request reached us over TLS (`[http.tls]`: the HTTPS listener marks every
/// request), so every cookie gets `Secure`.
pub fn is_tls(parts: &axum::http::request::Parts) -> bool {
    parts
        .extensions
        .get::<crate::web::https::OverTls>()
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_expiry_and_ending() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let idle = Duration::from_secs(60);
        let a = sessions.create("alice", Role::Viewer, t0, idle);
        let b = sessions.create("alice", Role::Viewer, t0, idle);
        let c = sessions.create("bob", Role::Admin, t0, idle);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let user = sessions
            .touch(&a, t0 + Duration::from_secs(59), idle)
            .expect("live");
        assert_eq!((user.name.as_str(), user.role), ("alice", Role::Viewer));
        assert_eq!(user.csrf.len(), 64);
        // Activity moved the idle clock: still alive 59 s after the touch.
        assert!(
            sessions
                .touch(&a, t0 + Duration::from_secs(118), idle)
                .is_some()
        );
        // b was not touched: gone after 60 s idle.
        assert!(
            sessions
                .touch(&b, t0 + Duration::from_secs(60), idle)
                .is_none()
        );
        assert!(
            sessions.touch(&b, t0, idle).is_none(),
            "removed, not just hidden"
        );
        assert_eq!(sessions.end_user("alice"), 1);
        assert!(
            sessions
                .touch(&a, t0 + Duration::from_secs(119), idle)
                .is_none()
        );
        assert!(sessions.touch("nope", t0, idle).is_none());
        sessions.end(&c);
        assert_eq!(sessions.count(), 0);
    }

    #[test]
    fn sessions_per_user_are_capped() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let idle = Duration::from_secs(600);
        let first = sessions.create("carol", Role::Viewer, t0, idle);
        let ids: Vec<String> = (1..=MAX_SESSIONS_PER_USER as u64)
            .map(|i| sessions.create("carol", Role::Viewer, t0 + Duration::from_secs(i), idle))
            .collect();
        let other = sessions.create("dan", Role::Viewer, t0, idle);
        assert_eq!(sessions.count(), MAX_SESSIONS_PER_USER + 1);
        assert!(
            sessions
                .touch(&first, t0 + Duration::from_secs(100), idle)
                .is_none(),
            "oldest gave way"
        );
        assert!(
            sessions
                .touch(&ids[0], t0 + Duration::from_secs(100), idle)
                .is_some()
        );
        assert!(
            sessions
                .touch(&other, t0 + Duration::from_secs(100), idle)
                .is_some()
        );
    }

    #[test]
    fn cookie_parsing_and_attributes() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append(
            axum::http::header::COOKIE,
            "a=1; mifas_session=abc ; b=2".parse().expect("v"),
        );
        headers.append(axum::http::header::COOKIE, "c=3".parse().expect("v"));
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), Some("3"));
        assert_eq!(cookie(&headers, "mifas"), None);
        assert_eq!(
            set_cookie(COOKIE, "x", "/", false, None),
            "mifas_session=x; HttpOnly; SameSite=Strict; Path=/"
        );
        assert_eq!(
            set_cookie(COOKIE, "", "/", true, Some(0)),
            "mifas_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure"
        );
    }
}
