//! Portal authentication: users (argon2id hashes, kept by the archive), sessions (HttpOnly,
//! SameSite=Strict cookie), CSRF tokens on every POST, login rate limiting per account and per
//! address. Split in [`sessions`] (ids, cookies, idle expiry), [`rate_limit`] and [`login`]
//! (the form, login and logout).

pub mod login;
pub mod rate_limit;
pub mod sessions;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::WebState;
use super::error::HttpError;

/// What a user may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Search, view, download.
    Viewer,
    /// And upload.
    Uploader,
    /// And the admin pages.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Uploader => "uploader",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "uploader" => Ok(Role::Uploader),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (viewer, uploader or admin)"
            )),
        }
    }
}

/// Sessions and login attempts held by the server (in memory: a restart logs everyone out).
#[derive(Debug, Default)]
pub struct Auth {
    pub(crate) sessions: sessions::Sessions,
    pub(crate) limiter: rate_limit::RateLimiter,
    /// Recent successful DICOMweb Basic verifications.
    pub(crate) basic: crate::web::dicomweb::user::BasicCache,
}

impl Auth {
    /// End every session of `user` (after a password change or removal), and forget their cached
    /// DICOMweb Basic verifications; answers how many sessions ended.
    pub fn end_sessions_of(&self, user: &str) -> usize {
        self.basic.forget_user(user);
        self.sessions.end_user(user)
    }
}

/// The logged-in user of a request. Extracting it answers `HttpError::Unauthorized` when there
/// is no valid session.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub name: String,
    pub role: Role,
    /// The session's CSRF token: every form that POSTs carries it in a hidden field `csrf`.
    pub csrf: String,
}

impl CurrentUser {
    /// Refuse unless the user's role includes `role`.
    pub fn require(&self, role: Role) -> Result<(), HttpError> {
        require_role(&self.name, self.role, role)
    }

    /// Refuse a POST whose form token is not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), HttpError> {
        if !token.is_empty() && constant_time_eq(token.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(HttpError::Forbidden("missing or wrong CSRF token".into()))
        }
    }
}

/// 403 naming the role needed and the one `name` has, unless `has` includes `needed`. The one
/// rule for portal sessions and DICOMweb requests alike.
pub fn require_role(name: &str, has: Role, needed: Role) -> Result<(), HttpError> {
    if has >= needed {
        Ok(())
    } else {
        Err(HttpError::Forbidden(format!(
            "this needs the {} role; {name} has {}",
            needed.as_str(),
            has.as_str()
        )))
    }
}

/// Equality whose time does not depend on where the first difference is (a token guessed byte
/// by byte learns nothing from response times).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<WebState> for CurrentUser {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<CurrentUser, HttpError> {
        let id =
            sessions::cookie(&parts.headers, sessions::COOKIE).ok_or(HttpError::Unauthorized)?;
        let idle = Duration::from_secs(state.http.session_idle_secs);
        state
            .auth
            .sessions
            .touch(id, Instant::now(), idle)
            .ok_or(HttpError::Unauthorized)
    }
}

/// `/login`, `/logout`.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
}
