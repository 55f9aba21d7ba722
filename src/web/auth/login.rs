//! `GET/POST /login`, `POST /logout`. The login form is protected against login CSRF by a
//! double-submit token: `GET /login` sets a random pre-session cookie (SameSite=Strict, so a
//! cross-site form never sends it) and puts the same value in a hidden field; `POST /login`
//! needs both, equal.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::CurrentUser;
use super::rate_limit::Limits;
use super::sessions::{self, COOKIE, cookie, random_token, set_cookie};
use crate::web::WebState;
use crate::web::error::HttpError;

/// The pre-session cookie of the login form, sent only to /login.
pub const LOGIN_COOKIE: &str = "mifas_login";
/// Where a login goes without a (valid) `next`.
pub const HOME: &str = "/studies";

#[derive(Template)]
#[template(path = "login.html", config = "src/web/askama.toml")]
struct LoginPage<'a> {
    token: &'a str,
    next: &'a str,
    username: &'a str,
    error: Option<&'a str>,
}

/// The client's address and whether it came over TLS, as the handlers need them.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub addr: IpAddr,
    pub tls: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientInfo, Self::Rejection> {
        // No proxy headers are trusted: the peer address is the client (a proxy in front would
        // need its own configured trust, which we do not have).
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        Ok(ClientInfo {
            addr,
            tls: sessions::is_tls(parts),
        })
    }
}

/// `next` when it is a path on this site; anything else (another host, a scheme, `//host`,
/// backslashes some browsers read as slashes, control characters) is replaced by [`HOME`].
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 2048
        && !next.chars().any(|c| c == '\\' || c.is_control());
    if local { next } else { HOME }
}

#[derive(Debug, Deserialize)]
pub struct NextParam {
    #[serde(default)]
    next: String,
}

fn render_form(
    tls: bool,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> Result<Response, HttpError> {
    let token = random_token();
    let page = LoginPage {
        token: &token,
        next: safe_next(next),
        username,
        error,
    };
    let html = page
        .render()
        .map_err(|e| HttpError::Internal(format!("login page: {e}")))?;
    let mut response = (status, axum::response::Html(html)).into_response();
    let cookie = set_cookie(LOGIN_COOKIE, &token, "/login", tls, None);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    // The page carries a token: no cache may keep it.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub async fn form(client: ClientInfo, Query(q): Query<NextParam>) -> Result<Response, HttpError> {
    render_form(client.tls, StatusCode::OK, &q.next, "", None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_token: String,
    #[serde(default)]
    next: String,
}

pub async fn submit(
    State(state): State<WebState>,
    client: ClientInfo,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, HttpError> {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || form.login_token != expected {
        return Err(HttpError::Forbidden(
            "missing or wrong login token: reload the login page".into(),
        ));
    }
    let limits = Limits {
        max_failures: state.http.login_max_failures,
        window: Duration::from_secs(state.http.login_window_secs),
    };
    // Names are at most 64 characters: a longer one is counted under its first 65, so made-up
    // huge names cannot grow the limiter's memory.
    let account: String = form.username.chars().take(65).collect();
    let limiter = &state.auth.limiter;
    limiter
        .check(&account, client.addr, Instant::now(), limits)
        .map_err(HttpError::TooManyRequests)?;
    let archive = state.archive()?;
    let role = archive
        .verify_password(&form.username, &form.password)
        .await
        .map_err(|e| HttpError::Internal(e.to_string()))?;
    state.audit.login(
        &crate::audit::Actor::user(&account, client.addr),
        role.is_some(),
    );
    let Some(role) = role else {
        limiter.record_failure(&account, client.addr, Instant::now(), limits);
        // Debug formatting: a name with line breaks cannot forge log lines.
        tracing::info!(user = ?account, addr = %client.addr, "portal login failed");
        return render_form(
            client.tls,
            StatusCode::UNAUTHORIZED,
            &form.next,
            &form.username,
            Some("Wrong user name or password."),
        );
    };
    let idle = Duration::from_secs(state.http.session_idle_secs);
    let id = state
        .auth
        .sessions
        .create(&form.username, role, Instant::now(), idle);
    tracing::info!(user = %form.username, role = role.as_str(), addr = %client.addr, "portal login");
    let mut response = Redirect::to(safe_next(&form.next)).into_response();
    let h = response.headers_mut();
    for c in [
        set_cookie(COOKIE, &id, "/", client.tls, None),
        set_cookie(LOGIN_COOKIE, "", "/login", client.tls, Some(0)),
    ] {
        if let Ok(value) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<WebState>,
    user: CurrentUser,
    client: ClientInfo,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, HttpError> {
    user.check_csrf(&form.csrf)?;
    if let Some(id) = cookie(&headers, COOKIE) {
        state.auth.sessions.end(id);
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&set_cookie(COOKIE, "", "/", client.tls, Some(0))) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
