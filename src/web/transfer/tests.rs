//! Handler tests of the transfer routes (roles, CSRF, UID checks, limits, escaping) over a
//! real archive in a temporary directory; byte-exact transfers are tested end to end in
//! tests/integration/test_portal_auth.py.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::archive::Archive;
use crate::config::Config;
use crate::web::WebState;
use crate::web::auth::Role;
use crate::web::auth::sessions::COOKIE;

async fn state(dir: &std::path::Path) -> WebState {
    let mut config = Config::default();
    config.storage.data_dir = dir.join("data");
    config.http.upload_max_mb = 1;
    let (archive, _) = Archive::open(&config).await.expect("archive");
    WebState::new().with_archive(archive, &config.http)
}

/// A session of `role` (id, CSRF token), without going through the login form.
fn session(state: &WebState, role: Role) -> (String, String) {
    let idle = Duration::from_secs(60);
    let id = state
        .auth
        .sessions
        .create("tester", role, Instant::now(), idle);
    let csrf = state
        .auth
        .sessions
        .touch(&id, Instant::now(), idle)
        .expect("live")
        .csrf;
    (id, csrf)
}

fn app(state: WebState) -> Router {
    super::routes().with_state(state)
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get(uri: &str, session: Option<&str>) -> Request<Body> {
    let mut r = Request::get(uri);
    if let Some(id) = session {
        r = r.header(header::COOKIE, format!("{COOKIE}={id}"));
    }
    r.body(Body::empty()).expect("request")
}

fn multipart(session: &str, csrf_field: Option<&str>, csrf_header: Option<&str>) -> Request<Body> {
    let mut body = String::new();
    if let Some(token) = csrf_field {
        body.push_str(&format!(
            "--XX\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n"
        ));
    }
    body.push_str(
        "--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"<script>x.dcm\"\r\n\
         Content-Type: application/octet-stream\r\n\r\nnot dicom at all\r\n--XX--\r\n",
    );
    let mut r = Request::post("/upload")
        .header(header::COOKIE, format!("{COOKIE}={session}"))
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XX");
    if let Some(token) = csrf_header {
        r = r.header("x-csrf-token", token);
    }
    r.body(Body::from(body)).expect("request")
}

#[tokio::test]
async fn roles_sessions_and_uids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    let app = app(state.clone());
    let (viewer, viewer_csrf) = session(&state, Role::Viewer);

    for uri in [
        "/upload",
        "/instances/1.2.3/file",
        "/studies/1.2.3/download.zip",
    ] {
        assert_eq!(
            send(&app, get(uri, None)).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
    assert_eq!(
        send(&app, get("/upload", Some(&viewer))).await.0,
        StatusCode::FORBIDDEN
    );
    let request = multipart(&viewer, Some(&viewer_csrf), None);
    assert_eq!(
        send(&app, request).await.0,
        StatusCode::FORBIDDEN,
        "viewer upload"
    );

    for uri in [
        "/instances/abc/file",
        "/instances/../file",
        "/instances/1..2/file",
        "/instances/%2e%2e%2fetc/file",
        "/studies/1.2.x/download.zip",
    ] {
        let (status, _) = send(&app, get(uri, Some(&viewer))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
    }
    for uri in ["/instances/1.2.3/file", "/studies/1.2.3/download.zip"] {
        let (status, _) = send(&app, get(uri, Some(&viewer))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn upload_needs_the_csrf_token_and_escapes_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    let app = app(state.clone());
    let (uploader, csrf) = session(&state, Role::Uploader);

    let (status, html) = send(&app, get("/upload", Some(&uploader))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("name=\"csrf\" value=\"{csrf}\"")),
        "{html}"
    );

    for (field, header) in [(None, None), (Some("wrong"), None), (None, Some("wrong"))] {
        let (status, _) = send(&app, multipart(&uploader, field, header)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{field:?} {header:?}");
    }
    for (field, header) in [(Some(csrf.as_str()), None), (None, Some(csrf.as_str()))] {
        let (status, html) = send(&app, multipart(&uploader, field, header)).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("&#60;script&#62;x.dcm") || html.contains("&lt;script&gt;x.dcm"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("<td class=\"outcome\">refused</td>"),
            "{html}"
        );
    }
    let spool = state.archive().expect("archive").spool_dir().to_owned();
    let left: Vec<_> = std::fs::read_dir(spool).expect("spool").collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[tokio::test]
async fn upload_over_the_limit_is_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path()).await;
    let app = app(state.clone());
    let (uploader, csrf) = session(&state, Role::Uploader);
    let request = Request::post("/upload")
        .header(header::COOKIE, format!("{COOKIE}={uploader}"))
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XX")
        .header(header::CONTENT_LENGTH, (2u64 << 20).to_string())
        .header("x-csrf-token", csrf)
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&app, request).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}
