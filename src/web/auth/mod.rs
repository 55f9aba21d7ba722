//! Portal authentication: users (argon2id hashes, kept by the archive), sessions (HttpOnly,
//! SameSite=Strict cookie), CSRF tokens on every POST, login rate limiting per account and per
//! address. SKELETON: the interface the portal codes against; the implementation follows.

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
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
pub struct Auth {}

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
        if self.role >= role {
            Ok(())
        } else {
            Err(HttpError::Forbidden(format!(
                "this needs the {} role; {} has {}",
                role.as_str(),
                self.name,
                self.role.as_str()
            )))
        }
    }

    /// Refuse a POST whose form token is not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), HttpError> {
        if !token.is_empty() && token == self.csrf {
            Ok(())
        } else {
            Err(HttpError::Forbidden("missing or wrong CSRF token".into()))
        }
    }
}

impl FromRequestParts<WebState> for CurrentUser {
    type Rejection = HttpError;

    async fn from_request_parts(
        _parts: &mut Parts,
        state: &WebState,
    ) -> Result<CurrentUser, HttpError> {
        let _sessions: &Auth = &state.auth;
        Err(HttpError::Unauthorized)
    }
}

/// `/login`, `/logout`.
pub fn routes() -> Router<WebState> {
    Router::new()
}
