//! Handler tests of login, sessions, CSRF and rate limiting over a real archive in a temporary
//! directory, driven with tower's `oneshot`.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::login::{HOME, LOGIN_COOKIE, safe_next};
use super::sessions::COOKIE;
use super::{CurrentUser, Role};
use crate::archive::Archive;
use crate::config::Config;
use crate::web::WebState;

async fn whoami(user: CurrentUser) -> String {
    format!("{} {} {}", user.name, user.role.as_str(), user.csrf)
}

async fn state(dir: &std::path::Path) -> WebState {
    let mut config = Config::default();
    config.storage.data_dir = dir.join("data");
    config.http.login_max_failures = 3;
    config.http.login_window_secs = 600;
    let (archive, _) = Archive::open(&config).await.expect("archive");
    archive
        .add_user("alice", "alice-password", Role::Viewer)
        .await
        .expect("add");
    WebState::new().with_archive(archive, &config.http)
}

fn app(state: WebState) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .merge(super::routes())
        .layer(axum::middleware::from_fn(crate::web::error::login_redirect))
        .with_state(state)
}

async fn send(app: &Router, request: Request<Body>) -> (Response, String) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        Response::from_parts(parts, Body::empty()),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

fn cookie_value(response: &Response, name: &str) -> Option<String> {
    set_cookies(response).iter().find_map(|c| {
        let first = c.split(';').next()?;
        let (k, v) = first.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// GET /login then POST it; answers the POST's response.
async fn login(app: &Router, user: &str, password: &str, next: &str, ip: [u8; 4]) -> Response {
    let (form, html) = send(
        app,
        Request::get("/login").body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!(form.status(), StatusCode::OK);
    let token = cookie_value(&form, LOGIN_COOKIE).expect("login cookie");
    assert!(html.contains(&format!("value=\"{token}\"")), "{html}");
    let body = form_body(&[
        ("username", user),
        ("password", password),
        ("login_token", &token),
        ("next", next),
    ]);
    let mut request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("{LOGIN_COOKIE}={token}"))
        .body(Body::from(body))
        .expect("req");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    send(app, request).await.0
}

fn with_session(uri: &str, session: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::COOKIE, format!("other=1; {COOKIE}={session}"))
        .body(Body::empty())
        .expect("req")
}

#[tokio::test]
async fn login_session_csrf_logout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    let app = app(state.clone());

    let response = login(
        &app,
        "alice",
        "alice-password",
        "/studies?x=1",
        [10, 0, 0, 1],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/studies?x=1");
    let cookies = set_cookies(&response);
    let session_cookie = cookies
        .iter()
        .find(|c| c.starts_with("mifas_session="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    assert!(
        !session_cookie.contains("Secure"),
        "plain HTTP: {session_cookie}"
    );
    let session = cookie_value(&response, COOKIE).expect("session");
    assert_eq!(session.len(), 64, "256 bits in hex");

    let (response, body) = send(&app, with_session("/whoami", &session)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let parts: Vec<&str> = body.split(' ').collect();
    assert_eq!(&parts[..2], ["alice", "viewer"]);
    let csrf = parts[2].to_string();

    // Logout is a POST: refused without the CSRF token or with another one.
    for token in ["", "0000"] {
        let request = Request::post("/logout")
            .header(header::COOKIE, format!("{COOKIE}={session}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={token}")))
            .expect("req");
        assert_eq!(send(&app, request).await.0.status(), StatusCode::FORBIDDEN);
    }
    let request = Request::post("/logout")
        .header(header::COOKIE, format!("{COOKIE}={session}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .expect("req");
    let (response, _) = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&response)
            .iter()
            .any(|c| c.starts_with("mifas_session=;") && c.contains("Max-Age=0"))
    );
    let (response, _) = send(&app, with_session("/whoami", &session)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "session ended");
}

#[tokio::test]
async fn no_session_is_401_or_a_redirect_for_browsers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(state(dir.path()).await);
    let (response, _) = send(
        &app,
        Request::get("/whoami").body(Body::empty()).expect("r"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (response, _) = send(&app, with_session("/whoami", &"ab".repeat(32))).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "unknown session id"
    );
    let request = Request::get("/whoami?a=1&b=2")
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .body(Body::empty())
        .expect("r");
    let (response, _) = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/login?next=/whoami%3Fa%3D1%26b%3D2"
    );
}

#[tokio::test]
async fn login_token_is_required() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(state(dir.path()).await);
    let body = form_body(&[
        ("username", "alice"),
        ("password", "alice-password"),
        ("login_token", "forged"),
    ]);
    for cookie in [None, Some("mifas_login=other")] {
        let mut request = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            request = request.header(header::COOKIE, c);
        }
        let (response, _) = send(&app, request.body(Body::from(body.clone())).expect("r")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(cookie_value(&response, COOKIE).is_none());
    }
}

#[tokio::test]
async fn wrong_passwords_are_rate_limited_per_account_and_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    state
        .archive()
        .expect("archive")
        .add_user("bob", "bob-password", Role::Uploader)
        .await
        .expect("add");
    let app = app(state);
    for _ in 0..3 {
        let response = login(&app, "alice", "wrong-password", "", [10, 0, 0, 1]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Blocked: even the right password, from another address.
    let response = login(&app, "alice", "alice-password", "", [10, 0, 0, 2]).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((590..=600).contains(&retry), "{retry}");
    // The address is blocked for another account too; another address and account is not.
    let response = login(&app, "bob", "bob-password", "", [10, 0, 0, 1]).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let response = login(&app, "bob", "bob-password", "", [10, 0, 0, 3]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], HOME);
}

#[tokio::test]
async fn sessions_end_when_the_password_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    let app = app(state.clone());
    let response = login(&app, "alice", "alice-password", "", [10, 0, 0, 1]).await;
    let session = cookie_value(&response, COOKIE).expect("session");
    let request = crate::web::admin_socket::AdminRequest::Passwd {
        name: "alice".into(),
        password: "new-password".into(),
    };
    let reply =
        crate::web::admin_socket::handle(request, state.archive().expect("a"), &state.auth).await;
    assert!(reply.ok, "{reply:?}");
    assert!(reply.message.contains("1 session(s) ended"), "{reply:?}");
    let (response, _) = send(&app, with_session("/whoami", &session)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = login(&app, "alice", "new-password", "", [10, 0, 0, 1]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[test]
fn redirects_stay_on_this_site() {
    for good in ["/studies", "/studies/1.2.3?x=//y", "/patients/a%2Fb"] {
        assert_eq!(safe_next(good), good);
    }
    for bad in [
        "",
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil",
        "javascript:alert(1)",
        "/a\r\nSet-Cookie: x=1",
        "studies",
    ] {
        assert_eq!(safe_next(bad), HOME, "{bad:?}");
    }
}

#[test]
fn roles_and_csrf() {
    let user = CurrentUser {
        name: "v".into(),
        role: Role::Viewer,
        csrf: "abc".into(),
    };
    assert!(user.require(Role::Viewer).is_ok());
    assert_eq!(
        user.require(Role::Uploader).map_err(|e| e.status()),
        Err(StatusCode::FORBIDDEN)
    );
    assert!(user.check_csrf("abc").is_ok());
    for wrong in ["", "ab", "abd", "abcd"] {
        assert!(user.check_csrf(wrong).is_err(), "{wrong}");
    }
    let admin = CurrentUser {
        role: Role::Admin,
        ..user
    };
    assert!(admin.require(Role::Uploader).is_ok());
}
