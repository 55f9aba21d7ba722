//! The portal's stylesheet and its one script (the preview's instant controls), compiled into
//! the binary. Public: the login page uses the stylesheet before anyone has a session.

use axum::http::header;
use axum::response::IntoResponse;

const CSS: &str = include_str!("static/portal.css");
const PREVIEW_JS: &str = include_str!("static/preview.js");
const CACHE: &str = "public, max-age=3600";

pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        CSS,
    )
}

pub async fn preview_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        PREVIEW_JS,
    )
}
