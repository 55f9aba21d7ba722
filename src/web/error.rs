//! The one place where what went wrong becomes an HTTP status: handlers answer `HttpError`,
//! and its `IntoResponse` chooses the code and a short text that says what to fix.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request itself is wrong (a malformed UID, date, parameter or form).
    #[error("{0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// No session (or an expired one): a browser is sent to the login page.
    #[error("login required")]
    Unauthorized,
    /// A program (DICOMweb) without valid credentials: 401 with a Basic challenge.
    #[error("authentication required (HTTP Basic, or a portal session)")]
    Challenge,
    /// None of the media types (or transfer syntaxes) the request accepts can be produced.
    #[error("{0}")]
    NotAcceptable(String),
    /// The request body's media type is not one this resource takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request conflicts with what is stored (e.g. STOW of an instance of another study).
    #[error("{0}")]
    Conflict(String),
    /// Logged in, but the role does not allow this (or the CSRF token is missing or wrong).
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed logins; retry after the given number of seconds.
    #[error("too many attempts, retry in {0} s")]
    TooManyRequests(u64),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Storage sites or the index cannot answer now.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl HttpError {
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::Unauthorized | HttpError::Challenge => StatusCode::UNAUTHORIZED,
            HttpError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            HttpError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "HTTP request failed");
        }
        let mut response = (status, format!("{self}\n")).into_response();
        if let HttpError::Challenge = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"MIFAS\", charset=\"UTF-8\""),
            );
        }
        if let HttpError::TooManyRequests(secs) = self
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<crate::archive::RetrieveError> for HttpError {
    fn from(e: crate::archive::RetrieveError) -> HttpError {
        use crate::archive::RetrieveError as E;
        match e {
            E::Storage(crate::storage::StorageError::NotFound(what)) => HttpError::NotFound(what),
            E::Storage(s) => HttpError::Unavailable(s.to_string()),
            E::NoCopy(what) => HttpError::Unavailable(format!("no copy to read: {what}")),
            other => HttpError::Internal(other.to_string()),
        }
    }
}

/// A browser that asks for a page without a session is sent to the login page (303 to
/// `/login?next=<path>`); scripts and other requests keep the 401. Applied to the whole router.
pub async fn login_redirect(request: Request, next: Next) -> Response {
    let wants_page = matches!(*request.method(), Method::GET | Method::HEAD)
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let response = next.run(request).await;
    if wants_page && response.status() == StatusCode::UNAUTHORIZED {
        Redirect::to(&format!("/login?next={}", percent_encode(&target))).into_response()
    } else {
        response
    }
}

/// Percent-encoding for a query value: everything but unreserved characters and `/`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_encoding() {
        assert_eq!(
            super::percent_encode("/studies?patient_name=郭*&x=1"),
            "/studies%3Fpatient_name%3D%E9%83%AD%2A%26x%3D1"
        );
    }
}
