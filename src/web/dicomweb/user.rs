//! Who makes a DICOMweb request: the portal's session cookie (a browser viewer on the same
//! origin) or HTTP Basic credentials of a portal user (programs). Same users, same roles.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;

use crate::web::auth::{CurrentUser, Role};
use crate::web::{HttpError, WebState};

/// The authenticated user of a DICOMweb request.
#[derive(Debug, Clone)]
pub struct DicomWebUser {
    pub name: String,
    pub role: Role,
}

impl DicomWebUser {
    /// Refuse unless the user's role includes `role` (403 naming both).
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
}

impl FromRequestParts<WebState> for DicomWebUser {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<DicomWebUser, HttpError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let (name, password) = basic_credentials(value.as_bytes())
                .ok_or_else(|| HttpError::BadRequest("malformed Authorization header".into()))?;
            let archive = state.archive()?;
            return match archive
                .verify_password(&name, &password)
                .await
                .map_err(|e| HttpError::Unavailable(e.to_string()))?
            {
                Some(role) => Ok(DicomWebUser { name, role }),
                None => Err(HttpError::Challenge),
            };
        }
        match CurrentUser::from_request_parts(parts, state).await {
            Ok(user) => Ok(DicomWebUser {
                name: user.name,
                role: user.role,
            }),
            Err(_) => Err(HttpError::Challenge),
        }
    }
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
    #[test]
    fn basic_credentials() {
        // "alice:s3cr:et" — the password may contain colons
        assert_eq!(
            super::basic_credentials(b"Basic YWxpY2U6czNjcjpldA=="),
            Some(("alice".into(), "s3cr:et".into()))
        );
        assert_eq!(super::basic_credentials(b"Bearer abc"), None);
        assert_eq!(super::basic_credentials(b"Basic !!!"), None);
    }
}
